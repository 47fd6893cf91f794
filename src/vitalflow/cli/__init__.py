"""The ``vitalflow`` command. The only module that prints; errors become one line ``Error: ...``.

Exit codes: 0 success; 1 error (bad input, spec, output); 2 usage error;
3 no windows were written (every case excluded or failed), or the share of successful cases is
below ``min_success_rate``; 4 verification of the output failed;
75 stopped by a signal before all cases were done (the card is partial; rerun to resume), or
before training finished (the last complete epoch is checkpointed; rerun to resume).
"""

from __future__ import annotations

import enum
import functools
import inspect
import json
import os
import shlex
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from vitalflow import __version__
from vitalflow.cli.run import (CASES, CLINICAL, COMMIT_EVERY, INPUT, LOG_FORMAT, PROGRESS_INTERVAL, QUIET,
                               RETRY_FAILED, WORKERS, LogFormat, configure_logging, progress_reporter,
                               log_format_of_environment, resume_args, start_run, state)
from vitalflow.errors import VitalflowError, one_line

if TYPE_CHECKING:
    from vitalflow.dataset.card import DatasetCard

EXIT_ERROR, EXIT_LOW_SUCCESS, EXIT_VERIFY_FAILED, EXIT_STOPPED = 1, 3, 4, 75
NO_WINDOWS = ("no windows were written: every case was excluded or failed "
              "(see the card's 'excluded' and 'failed' lists)")


def _flags_without_metavar(command, ctx) -> None:
    """Show flags as flags in --help. Typer's rich help (0.28+) prints ``display_type_rich`` for every
    option, flags included, which gives ``--merge <bool>`` although ``--merge true`` is refused; an
    option's metavar replaces that type text, and an empty one shows nothing."""
    for param in command.get_params(ctx):  # includes the --help option
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


class _Group(TyperGroup):
    """The app's group: flags render without a type in every command's --help (see above)."""

    def get_command(self, ctx, cmd_name):
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _flags_without_metavar(command, ctx)
        return command

    def format_help(self, ctx, formatter) -> None:
        _flags_without_metavar(self, ctx)
        super().format_help(ctx, formatter)


app = typer.Typer(
    name="vitalflow",
    cls=_Group,
    help="Turn VitalDB .vital recordings into windowed, normalized TFRecord datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
_VERBOSE_HELP = "Show tracebacks and per-case log lines."


class SplitName(str, enum.Enum):
    train = "train"
    validation = "validation"
    test = "test"


def _version(value: bool) -> None:
    if value:
        out.print(f"vitalflow {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help=_VERBOSE_HELP),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    state["verbose"] = verbose
    configure_logging(log_format_of_environment())








def _error(message: str) -> None:
    """Print ``Error: <message>`` as exactly one line."""
    err.print(f"Error: {one_line(message)}", markup=False)


def _describe(exc: BaseException) -> str:
    """An error's message (`one_line`: an OS error as ``<file>: <reason>``), or its type's name."""
    return one_line(exc) or type(exc).__name__


def _errors(fn):
    """Every command's wrapper. Turns vitalflow and OS errors into one line ``Error: ...`` and exit
    code 1 (traceback with --verbose), and adds the one ``--verbose/-v`` option every command takes
    after its name (the same as ``vitalflow --verbose <command>``)."""

    @functools.wraps(fn)
    def wrapper(*args, verbose: bool = False, **kwargs):
        if verbose and not state["verbose"]:
            state["verbose"] = True
            configure_logging(state["log_format"])
        try:
            return fn(*args, **kwargs)
        except (VitalflowError, OSError) as exc:
            if state["verbose"]:
                err.print(traceback.format_exc(), markup=False)
            _error(_describe(exc))
            raise typer.Exit(EXIT_ERROR) from None

    signature = inspect.signature(fn, eval_str=True)
    option = inspect.Parameter("verbose", inspect.Parameter.KEYWORD_ONLY, annotation=bool,
                               default=typer.Option(False, "--verbose", "-v", help=_VERBOSE_HELP))
    wrapper.__signature__ = signature.replace(parameters=[*signature.parameters.values(), option])
    wrapper.__annotations__ = {**getattr(fn, "__annotations__", {}), "verbose": bool}
    return wrapper


@app.command()
@_errors
def synth(
    out_dir: Path = typer.Argument(..., help="Directory to write NNNN.vital files and clinical.csv into."),
    cases: int = typer.Option(..., "--cases", "-n", min=1, help="Number of recordings."),
    seed: int = typer.Option(0, help="Random seed; the same seed gives the same files."),
    hours: Optional[float] = typer.Option(None, min=0.1, help="Length of each recording (default: drawn, ~2-4.5 h)."),
    waves: bool = typer.Option(True, "--waves/--no-waves", help="Include waveform tracks (~20 MB per 3 h case)."),
    world: str = typer.Option("default", "--world",
                              help="The simulated clinician: default, deterministic (fixed delay, no unexplained "
                                   "changes) or random (Poisson changes, no reaction to the monitor)."),
) -> None:
    """Write synthetic VitalDB-like recordings and a clinical table."""
    from vitalflow.synth import WORLDS, synth_corpus

    if world not in WORLDS:
        raise typer.BadParameter(f"must be one of {', '.join(WORLDS)}", param_hint="--world")
    paths = synth_corpus(out_dir, cases, seed=seed, hours=hours, waves=waves, world=world)
    size = sum(p.stat().st_size for p in paths)
    out.print(f"wrote {len(paths)} recordings ({size / 1e6:.1f} MB) and clinical.csv to {out_dir}")


@app.command()
@_errors
def preprocess(
    ctx: typer.Context,
    input: str = INPUT,
    clinical: str = CLINICAL,
    output: str = typer.Option(..., "--output", "-o", help="Output folder or s3:// prefix (parts, ledger, card)."),
    cases: Optional[str] = CASES,
    config: Optional[str] = typer.Option(None, "--config", help="Run config YAML (path or s3://)."),
    workers: int = WORKERS,
    commit_every: int = COMMIT_EVERY,
    retry_failed: bool = RETRY_FAILED,
    merge: bool = typer.Option(False, "--merge", help="Also write single train/validation/test.tfrecord files."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete what is in --output and start fresh."),
    quiet: bool = QUIET,
    log_format: LogFormat = LOG_FORMAT,
    progress_interval: float = PROGRESS_INTERVAL,
) -> None:
    """Preprocess recordings into train/validation/test TFRecords; resumes an interrupted run."""
    from vitalflow.run.preprocess import RunOptions

    log_format, job = start_run(log_format)
    options = RunOptions(workers=workers, commit_every=commit_every, overwrite=overwrite,
                         retry_failed=retry_failed, merge=merge, host_index=job.host_index, host_count=job.host_count)
    code = _preprocess_and_report(input, clinical, output, cases, config, options,
                                  progress_reporter(quiet, log_format, progress_interval), resume_args(ctx))
    if code:
        raise typer.Exit(code)


def _preprocess_and_report(input_dir, clinical, output, cases, config_path, options, reporter,
                           resume: list[str]) -> int:
    """Run, print what happened, and return the exit code. ``resume`` is the command (as arguments)
    that resumes this run; it is printed, quoted, when the run stopped or too few cases succeeded."""
    from vitalflow.run.cases import parse_case_selection
    from vitalflow.run.preprocess import preprocess as run
    from vitalflow.spec import load_config

    config, spec = load_config(config_path)
    selected = parse_case_selection(cases) if cases is not None else None
    result = run(input_dir, clinical, output, config, spec, cases=selected, options=options, reporter=reporter)
    card = result.card
    c = card.cases
    windows = sum(s.windows for s in card.splits.values())
    idle = result.complete and card.run["cases_processed"] == 0  # a rerun of a complete output
    if idle:
        counts = "".join(f", {n} {k}" for k, n in (("excluded", c.excluded), ("failed", c.failed)) if n)
        out.print(f"already complete: {output} holds {c.done} cases ({windows} windows{counts}); nothing to do",
                  markup=False)
    else:
        _print_summary(card)
        for f in card.failed:
            err.print(f"  failed  case {f['case_id']} ({f['stage']}): {_case_message(f)}", markup=False)
            if state["verbose"] and f.get("traceback"):
                err.print(f["traceback"].rstrip(), markup=False)
        for e in card.excluded:
            out.print(f"  excluded case {e['case_id']}: {_case_message(e, 'reason')}", markup=False)
    if not result.complete:
        why = f"stopped by {result.stopped_by}" if result.stopped_by else "stopped"
        _error(f"{why}: {c.done} of {c.selected} cases are committed and the card is marked partial. "
               f"Resume with: {shlex.join(resume)}")
        return EXIT_STOPPED
    if not result.verify.ok:
        for p in result.verify.problems:
            err.print(f"  verify: {one_line(p)}", markup=False)
        _error(f"verification of {output} failed ({len(result.verify.problems)} problems)")
        return EXIT_VERIFY_FAILED
    if windows == 0:
        _error(NO_WINDOWS)
        return EXIT_LOW_SUCCESS
    rate, minimum = c.success_rate, config.min_success_rate
    if rate < minimum:
        retry = resume if "--retry-failed" in resume else [*resume, "--retry-failed"]
        where = "'failed' list" + (" and 'inputs.without_file'" if c.without_file else "")
        _error(f"only {rate:.1%} of cases succeeded (minimum {minimum:.0%}); see the card's {where}; "
               f"after fixing the inputs rerun with --retry-failed: {shlex.join(retry)}")
        return EXIT_LOW_SUCCESS
    if not idle:
        merged = " (and merged split files)" if card.merged else ""
        out.print(f"success: {windows} windows from {c.with_windows} cases written to {output}{merged} "
                  "and verified", markup=False)
    return 0


def _case_message(entry: dict, key: str = "error") -> str:
    """A failed or excluded case's message without a leading ``case N:`` (the line names the case)."""
    text = one_line(entry[key] or "")
    prefix = f"case {entry['case_id']}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def _print_summary(card: DatasetCard) -> None:
    table = Table(title="dataset", title_justify="left")
    for col in ("split", "cases", "subjects", "windows", "parts", "MB"):
        table.add_column(col, justify="left" if col == "split" else "right")
    for split, s in card.splits.items():
        parts = card.files[split]
        size = sum(p.bytes for p in parts) / 1e6
        table.add_row(split, str(s.cases), str(s.subjects), str(s.windows), str(len(parts)), f"{size:.1f}")
    out.print(table)
    c = card.cases
    counts = f"{c.with_windows} with windows, {c.excluded} excluded, {c.failed} failed"
    if card.status == "partial":  # the rate covers only the cases done so far
        line = (f"cases: {c.done} of {c.selected} cases done ({counts}); "
                f"success rate so far {c.success_rate:.1%} of those")
    else:
        missing = f" ({c.without_file} without a file)" if c.without_file else ""
        line = f"cases: {c.selected} selected{missing}, {counts} (success rate {c.success_rate:.1%})"
    out.print(f"{line}; {card.timings_s['total']:.1f} s", markup=False)
    for warning in card.warnings:
        err.print(f"warning: {one_line(warning)}", markup=False)


@app.command()
@_errors
def verify(
    output_dir: str = typer.Argument(..., help="A preprocess output (folder or s3:// prefix)."),
    merge: bool = typer.Option(False, "--merge", help="After verifying, also write single split files "
                                                      "(for outputs several hosts wrote)."),
    workers: int = typer.Option(os.cpu_count() or 1, "--workers", min=1, help="Processes reading the data back."),
) -> None:
    """Read every output file back and check it against the ledger and card; exit 0 only if all holds.

    For an output several hosts wrote, first combines their ledgers into one card. The card records
    the outcome (``verification``)."""
    from vitalflow.dataset.card import read_card, write_card
    from vitalflow.dataset.merge import merge_parts
    from vitalflow.dataset.verify import verify_output
    from vitalflow.store import Store

    store = Store(output_dir)
    report = verify_output(output_dir, workers=workers)
    if report.ok and merge:
        card = read_card(store)
        parts = [p for ps in card.files.values() for p in ps]
        write_card(store, card.with_merged(merge_parts(store, parts, card.compression)))
        report = verify_output(output_dir, workers=workers)
    write_card(store, read_card(store).verified(report))
    for p in report.problems:
        err.print(f"  {one_line(p)}", markup=False)
    counts = ", ".join(f"{k} {v}" for k, v in report.examples.items())
    if not report.ok:
        _error(f"{output_dir} failed verification ({len(report.problems)} problems; examples: {counts})")
        raise typer.Exit(EXIT_VERIFY_FAILED)
    out.print(f"verified {output_dir}: examples {counts}; shapes, ranges, counts, checksums and splits hold")


@app.command()
@_errors
def demo(
    directory: Path = typer.Argument(Path("vitalflow-demo"), help="Where to put the demo corpus and output."),
    cases: int = typer.Option(12, "--cases", "-n", min=2, help="Number of synthetic recordings."),
    waves: bool = typer.Option(False, "--waves/--no-waves", help="Include waveform tracks (slower, ~20 MB per 3 h)."),
) -> None:
    """Synthesize a small corpus, preprocess and verify it, then (with the train extra) train a model
    and evaluate it against the baselines."""
    from vitalflow.synth import synth_corpus

    corpus, output, config = directory / "recordings", directory / "output", directory / "run.yaml"
    synth_corpus(corpus, cases, seed=0, hours=1.5, waves=waves)
    out.print(f"synthesized {cases} recordings in {corpus}")
    # the split is stable per subject (README "Splits"): with the 9 subjects of the default demo the
    # default seed leaves validation empty, seed 3 fills all three splits
    config.write_text("# vitalflow demo run config (see README 'Run config')\nsplit: {seed: 3}\n")
    from vitalflow.run.preprocess import RunOptions

    resume = ["vitalflow", "preprocess", "--input", str(corpus), "--clinical", str(corpus / "clinical.csv"),
              "--output", str(output), "--config", str(config), "--merge"] + (["--verbose"] if state["verbose"] else [])
    code = _preprocess_and_report(str(corpus), str(corpus / "clinical.csv"), str(output), None, str(config),
                                  RunOptions(overwrite=True, merge=True), progress_reporter(False, "text", 30.0), resume)
    if code:
        raise typer.Exit(code)
    out.print(f"read it in TensorFlow: see README 'Output schema'; card: {output / 'preprocessing_metadata.json'}")
    from vitalflow.dataset.reference import open_dataset

    empty = [s for s, files in open_dataset(str(output)).parts.items() if not files]
    try:
        _train_extra()
        if empty:
            raise VitalflowError(f"the {' and '.join(empty)} split of {cases} cases holds no windows "
                                 "(the split is by subject): run the demo with --cases 12 or more")
    except VitalflowError as exc:
        out.print(f"not training: {exc}", markup=False)
        return
    model = directory / "model"
    _, evaluation = _train(str(output), str(model), None, None, overwrite=True)
    _evaluate(str(model), str(output), "test", None, result=evaluation)


def _train_extra():
    """The training stack, or an error saying how to install it."""
    # TensorFlow's C++ logging (oneDNN notes, CPU feature hints) is noise to a user; Python-side
    # warnings and errors still show
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        import tensorflow  # noqa: F401
        import xgboost  # noqa: F401
    except ImportError as exc:
        raise VitalflowError(f"training needs the train extra ({exc.name} is not installed): "
                             'pip install "vitalflow[train]"') from None


def _train(dataset: str, output: str, config: str | None, checkpoints: str | None, overwrite: bool,
           register: bool = True, tuning=None):
    """Train; then (``register``, a new model) evaluate it on the test split and log it to the
    registry. Returns the training result and the evaluation (None when not evaluated).
    ``tuning``: the study that chose the config (`vitalflow tune`), recorded in the card."""
    _train_extra()
    from vitalflow.train.run import train_model

    result = train_model(dataset, output, config, checkpoints, overwrite, tuning=tuning)
    if result.stopped:
        err.print(f"stopped by {result.stopped}: the last complete epoch is checkpointed; rerun the same "
                  "command to resume", markup=False)
        raise typer.Exit(EXIT_STOPPED)
    t = result.card.training
    done = "already trained" if result.already_done else f"trained in {t.seconds:.1f} s"
    best = (f"val mean AUPRC {result.card.metrics.get('val_auprc', float('nan')):.4f}"
            if result.card.task == "decisions" else f"val_loss {result.card.metrics.get('val_loss', float('nan')):.5f}")
    out.print(f"model: {result.model_uri} ({done}; {t.epochs_run} epochs{', stopped early' * t.stopped_early}, "
              f"best {t.best_epoch}: {best}; {result.card.parameters} parameters)", markup=False)
    if not register or result.already_done:
        return result, None
    from vitalflow.registry.tracking import TRACKING_ENV, tracking_uri
    from vitalflow.sagemaker.env import LOCAL, detect

    if detect().kind != LOCAL and not os.environ.get(TRACKING_ENV):
        out.print(f"not registered: in a SageMaker job the embedded registry would vanish with the container "
                  f"(set {TRACKING_ENV} to a tracking server); afterwards: vitalflow models register "
                  "<the job's model directory>", markup=False)
        return result, None
    from vitalflow.dataset.reference import open_dataset
    from vitalflow.evaluate.run import evaluate_model
    from vitalflow.registry.log import log_training

    evaluation = None
    if open_dataset(dataset).examples("test"):
        evaluation = evaluate_model(result.model_uri, dataset, "test")
    else:
        out.print("not evaluated: the test split holds no windows (registered without test metrics)", markup=False)
    name = result.card.config.get("registered_model", "vitalflow")
    version = log_training(result.model_uri, evaluation.metrics if evaluation else None, name)
    out.print(f"registered: {version} (MLflow run {version.run_id} in {tracking_uri()}); promote it with "
              f"vitalflow models promote {version} --alias champion", markup=False)
    return result, evaluation


def _evaluate(model_dir: str, dataset: str, split: str, output: str | None, result=None, resamples: int = 1000):
    """Evaluate (or, given ``result``, print an evaluation already made); ``model_dir`` may be a
    registry reference (``NAME@ALIAS``, ``NAME/VERSION``)."""
    _train_extra()
    from vitalflow.evaluate.run import evaluate_model
    from vitalflow.evaluate.tables import metrics_tables
    from vitalflow.registry.resolve import resolve_model

    if result is None:
        result = evaluate_model(resolve_model(model_dir), dataset, split, output, resamples=resamples)
    for t in metrics_tables(result.metrics):
        table = Table(title=f"{split} split: {t.title}", title_justify="left")
        for i, col in enumerate(t.rows[0]):
            table.add_column(col, justify="left" if i < 1 else "right", no_wrap=True)
        for row in t.rows[1:]:
            table.add_row(*row)
        # names and numbers whole, even in a narrow terminal or a pipe
        Console(highlight=False, width=max(out.width, 200)).print(table)
    out.print(f"metrics and report: {result.output} (metrics.json, report.md, report.html)", markup=False)
    return result


@app.command()
@_errors
def train(
    dataset: str = typer.Argument(..., help="A verified preprocess output (folder or s3:// prefix)."),
    output: str = typer.Option(..., "--output", "-o", help="Model directory to write (folder or s3:// prefix)."),
    config: Optional[str] = typer.Option(None, "--config", help="Training config YAML (path or s3://; "
                                                                 "default: built-in, README 'Training')."),
    checkpoints: Optional[str] = typer.Option(None, "--checkpoints", help="Checkpoint directory "
                                                                           "(default: <output>/_checkpoints)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Discard the checkpoints and model in --output "
                                                              "and train from scratch."),
    register: bool = typer.Option(True, "--register/--no-register", help="Evaluate the new model on the test "
                                  "split and register it in the MLflow registry (README 'Registry')."),
) -> None:
    """Train the CNN-LSTM-LSTM on a dataset; rerun the same command to resume after a stop or crash."""
    _train(dataset, output, config, checkpoints, overwrite, register)


@app.command()
@_errors
def evaluate(
    model_dir: str = typer.Argument(..., help="A model: NAME@ALIAS, NAME/VERSION or a model directory (folder or "
                                    "s3:// prefix)."),
    dataset: str = typer.Argument(..., help="A verified preprocess output made with the model's spec."),
    split: SplitName = typer.Option(SplitName.test, "--split", help="The split to score."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Where to write metrics.json and the "
                                                                       "report (default: <model>/evaluation/<split>)."),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="Bootstrap resamples over cases for the "
                                  "95 % intervals of a decision model's scores (0: no intervals)."),
) -> None:
    """Score the model against its baselines (a decision model: no skill, the rule protocol, XGBoost and,
    on synthetic data, the oracle; a value model: persistence, the training median and XGBoost); write
    metrics and a report."""
    _evaluate(model_dir, dataset, split.value, output, resamples=bootstrap)


@app.command()
@_errors
def tune(
    dataset: str = typer.Argument(..., help="A verified preprocess output (folder or s3:// prefix)."),
    trials: int = typer.Option(..., "--trials", "-n", min=1, help="Trials to finish (complete or pruned), "
                               "counting those the study holds already."),
    output: Path = typer.Option(..., "--output", "-o", help="Study directory (local): study.db, trials/, "
                                "best.yaml, best-model/."),
    config: Optional[str] = typer.Option(None, "--config", help="Tune config YAML: base train config and search "
                                         "space (default: built-in, README 'Hyper-parameter search')."),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=0, help="Start no trial after this many "
                                            "seconds (the running one finishes)."),
    register: bool = typer.Option(True, "--register/--no-register", help="Evaluate the best model on the test "
                                  "split and register it in the MLflow registry."),
) -> None:
    """Search train configs with Optuna (median pruning on the validation mean AUPRC), then train the best
    one into <output>/best-model like `vitalflow train`; rerun the same command to resume."""
    _train_extra()
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise VitalflowError('tune needs Optuna: pip install "vitalflow[train]"') from None
    from vitalflow.tune.study import prepare_best_model, run_study

    result = run_study(dataset, output, trials, config, timeout)
    counts = ", ".join(f"{n} {state}" for state, n in sorted(result.counts.items()))
    out.print(f"study {result.study_name!r} in {result.storage}: {counts or 'no trials'} "
              f"({result.ran} finished by this run)", markup=False)
    if result.stopped:
        err.print(f"stopped by {result.stopped}: rerun the same command to resume the study (an interrupted "
                  "trial reruns from its last complete epoch)", markup=False)
        raise typer.Exit(EXIT_STOPPED)
    best = result.best
    if best is None:
        raise VitalflowError(f"no trial of study {result.study_name!r} completed ({counts or 'none ran'}): "
                             "nothing to train; run more --trials")
    out.print(f"best trial {best.number}: val mean AUPRC {best.value:.4f} ({result.finished} trials finished)",
              markup=False)
    table = Table()
    table.add_column("parameter", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    for name, value in best.params.items():
        table.add_row(name, f"{value:.4g}" if isinstance(value, float) else json.dumps(value))
    Console(highlight=False, width=max(out.width, 120)).print(table)
    best_config = output / "best.yaml"
    out.print(f"best config: {best_config} (vitalflow train DATASET --config {best_config})", markup=False)
    if result.timed_out:
        out.print(f"--timeout reached: {result.finished} of {trials} trials finished; the best so far is trained",
                  markup=False)
    _train(dataset, str(prepare_best_model(output, best)), str(best_config), best.checkpoints, False, register,
           tuning=result.tuning())


@app.command("spec")
@_errors
def spec_table(
    config: Optional[Path] = typer.Option(None, "--config", help="Run config naming the spec (default: built-in)."),
) -> None:
    """Print the spec's feature tables as Markdown (README's tables are generated by this)."""
    from vitalflow.spec import load_config
    from vitalflow.spec.tables import markdown_tables

    _, spec = load_config(config)
    out.print(markdown_tables(spec), markup=False)


from vitalflow.cli import api, deploy, predict, registry, sagemaker, serve  # noqa: E402 (the command groups)

sagemaker.register(app, _errors)
registry.register(app, _errors)
predict.register(app, _errors)
serve.register(app, _errors)
deploy.register(app, _errors)
api.register(app, _errors)


def main() -> None:
    app()
