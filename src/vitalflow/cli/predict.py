"""``vitalflow predict``: batch prediction over recordings.

Exit codes as ``vitalflow preprocess``: 0 success; 1 error; 3 no case got a table, or the share of
cases with a table is below ``min_success_rate``; 75 stopped by a signal (rerun to resume).
"""

from __future__ import annotations

import shlex
from typing import Callable, Optional

import typer
from rich.console import Console

from vitalflow.cli.run import (CASES, CLINICAL, COMMIT_EVERY, INPUT, LOG_FORMAT, PROGRESS_INTERVAL, QUIET,
                               RETRY_FAILED, WORKERS, LogFormat, progress_reporter, resume_args, start_run)
from vitalflow.errors import one_line

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)
EXIT_LOW_SUCCESS, EXIT_STOPPED = 3, 75


def predict(
    ctx: typer.Context,
    model: str = typer.Option(..., "--model", "-m", help="Model directory (path or s3://), NAME@ALIAS or NAME/VERSION."),
    input: str = INPUT,
    clinical: str = CLINICAL,
    output: str = typer.Option(..., "--output", "-o", help="Output folder or s3:// prefix (cases/, ledger, card)."),
    cases: Optional[str] = CASES,
    config: Optional[str] = typer.Option(None, "--config", help="Run config YAML: crop, window step, limits (the spec "
                                                                "and window length are the model's)."),
    csv: bool = typer.Option(False, "--csv", help="Also write each case's table as CSV."),
    plots: bool = typer.Option(False, "--plots", help="Also write a PNG timeline per case (predicted vs recorded)."),
    workers: int = WORKERS,
    commit_every: int = COMMIT_EVERY,
    retry_failed: bool = RETRY_FAILED,
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete this run's predictions in --output and start fresh."),
    quiet: bool = QUIET,
    log_format: LogFormat = LOG_FORMAT,
    progress_interval: float = PROGRESS_INTERVAL,
) -> None:
    """Predict the 8 targets over recordings with a model, through the spec it was trained with; resumes."""
    from vitalflow.predict import PredictOptions
    from vitalflow.predict import predict as run
    from vitalflow.run.cases import parse_case_selection
    from vitalflow.spec import load_config

    log_format, job = start_run(log_format)
    options = PredictOptions(workers=workers, commit_every=commit_every, overwrite=overwrite,
                             retry_failed=retry_failed, csv=csv, plots=plots, host_index=job.host_index,
                             host_count=job.host_count)
    run_config = load_config(config)[0] if config is not None else None
    selected = parse_case_selection(cases) if cases is not None else None
    reporter = progress_reporter(quiet, log_format, progress_interval)
    result = run(model, input, clinical, output, cases=selected, options=options, config=run_config,
                 reporter=reporter)
    card = result.card
    c = card.cases
    if result.complete and result.cases_processed == 0:
        out.print(f"already complete: {output} holds predictions for {c.ok} cases ({c.rows} rows); nothing to do",
                  markup=False)
    else:
        m = card.model
        registered = f" ({m.registered.name} {m.registered.alias or 'version ' + str(m.registered.version)})" \
            if m.registered else ""
        out.print(f"model {m.reference}{registered}: spec {m.spec['name']} v{m.spec['version']}, "
                  f"dataset {m.dataset_fingerprint[:19]}", markup=False)
        t = card.timings_s
        out.print(f"cases: {c.done} of {c.selected} done: {c.ok} with predictions ({c.rows} rows), {c.excluded} "
                  f"excluded, {c.failed} failed; {t['total']:.1f} s (read {t['read']:.1f}, transform "
                  f"{t['transform']:.1f}, model {t['model']:.1f}, write {t['write']:.1f})", markup=False)
        for f in card.failed:
            err.print(f"  failed  case {f['case_id']} ({f['stage']}): {one_line(f['error'])}", markup=False)
        for e in card.excluded:
            out.print(f"  excluded case {e['case_id']}: {one_line(e['reason'])}", markup=False)
    resume = shlex.join(resume_args(ctx))
    if not result.complete:
        why = f"stopped by {result.stopped_by}" if result.stopped_by else "stopped"
        err.print(f"Error: {why}: {c.done} of {c.selected} cases are committed and the card is marked partial. "
                  f"Resume with: {resume}", markup=False)
        raise typer.Exit(EXIT_STOPPED)
    if c.ok == 0:
        err.print("Error: no predictions were written: every case was excluded or failed (see the card's "
                  "'excluded' and 'failed' lists)", markup=False)
        raise typer.Exit(EXIT_LOW_SUCCESS)
    minimum = card.config["min_success_rate"]
    if c.success_rate < minimum:
        err.print(f"Error: only {c.success_rate:.1%} of cases got predictions (minimum {minimum:.0%}); see the "
                  f"card's 'excluded' and 'failed' lists", markup=False)
        raise typer.Exit(EXIT_LOW_SUCCESS)
    if result.cases_processed:
        out.print(f"success: predictions for {c.ok} cases written to {output}", markup=False)


def register(target: typer.Typer, wrap: Callable[[Callable], Callable]) -> None:
    """Add ``predict`` to ``target``, wrapped by ``wrap`` (the CLI's error handler)."""
    target.command("predict")(wrap(predict))
