"""``vitalflow models``: the model registry from the command line.

Every command that takes a model accepts ``NAME@ALIAS``, ``NAME/VERSION`` or a model directory
(folder or ``s3://`` prefix). Registry work lives in :mod:`vitalflow.registry`, the SageMaker Model
Registry in :mod:`vitalflow.sagemaker.model_registry`; this module parses and prints.
"""

from __future__ import annotations

import datetime as _dt
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from vitalflow.evaluate.compare import ModelHandle as _Model
from vitalflow.evaluate.compare import fmt as _fmt
from vitalflow.evaluate.compare import short as _short

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

#: The metric ``list`` shows for the test set: mean over targets of the model's MAE / persistence's
#: on the change windows (below 1: better than carrying the last value forward).
KEY_RATIO = "test.changed.mae_ratio.model"
#: ... and of a decision model: the mean over the events (group x horizon) of its test AUPRC
KEY_AUPRC = "test.mean_auprc.model"


def _wide() -> Console:
    """Tables keep names and numbers whole, even in a narrow terminal or a pipe."""
    return Console(highlight=False, width=max(out.width, 200))


def _table(rows: list[list[str]], title: str, left: int = 1) -> Table:
    table = Table(title=title, title_justify="left")
    for i, col in enumerate(rows[0]):
        table.add_column(col, justify="left" if i < left else "right", no_wrap=True)
    for row in rows[1:]:
        table.add_row(*row)
    return table


def _created(ms: int) -> str:
    return _dt.datetime.fromtimestamp(ms / 1000, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M") if ms else "-"


# --- commands --------------------------------------------------------------------------------------

def list_models(
    name: Optional[str] = typer.Argument(None, help="A registered model name (default: every registered model)."),
) -> None:
    """Registered model versions with their key metrics and aliases."""
    from vitalflow.registry.tracking import tracking_uri
    from vitalflow.registry.versions import list_versions

    versions = list_versions(name)
    if not versions:
        out.print(f"no registered models in {tracking_uri()}: `vitalflow train` registers every model it trains",
                  markup=False)
        return
    rows = [["model", "aliases", "created (UTC)", "val_loss", "mean AUPRC (test)", "MAE/persistence (test, changed)",
             "spec", "dataset", "run"]]
    for v in versions:
        spec = f"{v.tags.get('spec.name', '?')} v{v.tags.get('spec.version', '?')}"
        rows.append([v.reference, ", ".join(f"@{a}" for a in v.aliases) or "-", _created(v.created_ms),
                     _fmt(v.metrics.get("best.val_loss")), _fmt(v.metrics.get(KEY_AUPRC)),
                     _fmt(v.metrics.get(KEY_RATIO)), spec,
                     _short(v.tags.get("dataset.fingerprint", "-")), v.run_id[:8]])
    _wide().print(_table(rows, f"Registered models in {tracking_uri()}", left=3))


def _lineage_rows(model: _Model) -> list[list[str]]:
    card = model.card
    rows = [["lineage", "value"],
            ["dataset", card.dataset.uri],
            ["dataset fingerprint", card.dataset.fingerprint],
            ["dataset windows", ", ".join(f"{s} {n}" for s, n in card.dataset.windows.items())],
            ["spec", f"{card.spec.name} v{card.spec.version} ({card.spec.hash})"],
            ["config hash", card.config_hash],
            ["tool", f"vitalflow {card.tool.version}, TensorFlow {card.tool.tensorflow}, Keras {card.tool.keras}"]]
    if model.version is not None:
        rows.append(["trained into", model.version.tags.get("model.uri", "-")])
    return rows


def _print_metrics(metrics: dict, title: str) -> None:
    """The tables of a metrics document (`vitalflow.evaluate.tables`)."""
    from vitalflow.evaluate.tables import metrics_tables

    for table in metrics_tables(metrics):
        _wide().print(_table(table.rows, f"{title}: {table.title}", left=2))


def show(
    model: str = typer.Argument(..., help="NAME@ALIAS, NAME/VERSION or a model directory."),
) -> None:
    """A model's card, lineage and test metrics against the baselines."""
    from vitalflow.predict.table import output_columns

    m = _Model(model)
    card, t = m.card, m.card.training
    if m.version is not None:
        v = m.version
        aliases = ", ".join(f"@{a}" for a in v.aliases) or "none"
        out.print(f"{v.reference} (aliases: {aliases}; created {_created(v.created_ms)} UTC; MLflow run {v.run_id})",
                  markup=False)
        package = v.tags.get("sagemaker.model_package_arn")
        if package:
            out.print(f"SageMaker model package: {package}", markup=False)
    out.print(f"model directory: {m.uri}", markup=False)
    out.print(f"trained {card.created_utc}: {t.epochs_run} epochs{', stopped early' * t.stopped_early}, best "
              f"{t.best_epoch}, val_loss {_fmt(card.metrics.get('val_loss'), 5)}, val_mae "
              f"{_fmt(card.metrics.get('val_mae'), 5)} (normalized); {card.parameters} parameters; targets "
              f"{', '.join(name for name, _ in output_columns(card))}", markup=False)
    _wide().print(_table(_lineage_rows(m), "Lineage", left=2))
    metrics = m.metrics()
    if metrics is None:
        out.print(f"no test evaluation in {m.uri}: vitalflow evaluate {model} DATASET", markup=False)
        return
    out.print(f"test split of {metrics.get('dataset', '?')}: {metrics['windows']} windows", markup=False)
    _print_metrics(metrics, f"{m.label} against the baselines")


def promote(
    model: str = typer.Argument(..., help="NAME/VERSION (or NAME@ALIAS) to point the alias at."),
    alias: str = typer.Option("champion", "--alias", "-a", help="The alias (e.g. champion, challenger)."),
) -> None:
    """Point an alias (default champion) at a registered version: NAME@ALIAS then names it."""
    from vitalflow.registry.versions import promote as promote_version

    info, before = promote_version(model, alias)
    was = "" if before is None else (" (it was already)" if before == info.version
                                     else f" (was {info.name}/{before})")
    out.print(f"{info.name}@{alias} -> {info.reference}{was}", markup=False)


def compare(
    a: str = typer.Argument(..., help="First model: NAME@ALIAS, NAME/VERSION or a model directory."),
    b: str = typer.Argument(..., help="Second model."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Score both now on this dataset's split "
                                          "(default: their stored test evaluations, if of the same windows)."),
    split: str = typer.Option("test", "--split", help="The split (with --dataset)."),
) -> None:
    """Two models' metrics side by side on the same windows, with the baselines."""
    from vitalflow.evaluate.compare import compare_models

    result = compare_models(a, b, dataset, split, warn=lambda text: err.print(text, markup=False))
    label_a, label_b = result.labels
    out.print(result.headline, markup=False)
    _wide().print(_table(result.summary, "Summary"))
    for table in result.tables():
        _wide().print(_table(table.rows, f"{label_a} vs {label_b}: {table.title}", left=2))


def push(
    model: str = typer.Argument(..., help="NAME@ALIAS, NAME/VERSION or a model directory."),
    group: str = typer.Option(..., "--group", "-g", help="SageMaker model package group (created if missing)."),
    s3_prefix: Optional[str] = typer.Option(None, "--s3-prefix", "--bucket", help="Where model.tar.gz and "
                                            "metrics.json go (default: s3://sagemaker-<region>-<account>/"
                                            "vitalflow/models)."),
    region: Optional[str] = typer.Option(None, "--region", help="AWS region (default: AWS_REGION, "
                                         "AWS_DEFAULT_REGION or the profile's)."),
) -> None:
    """Create a SageMaker model package (PendingManualApproval, metrics attached) from a model."""
    from vitalflow.registry.log import lineage_tags, local_copy
    from vitalflow.registry.versions import PACKAGE_TAG, set_version_tag
    from vitalflow.sagemaker import model_registry
    from vitalflow.sagemaker.aws import require_region, resolve_region

    region = require_region(resolve_region(region))
    model_registry.check_group(group)
    m = _Model(model)
    metadata = lineage_tags(m.card, m.version.tags.get("model.uri", m.uri) if m.version else m.uri)
    if m.version is not None:
        metadata = {**metadata, "mlflow.model": m.version.reference, "mlflow.run_id": m.version.run_id}
        name, number = m.version.name, m.version.version
    else:
        name, number = m.card.config.get("registered_model", "vitalflow"), "unregistered-" + \
            m.card.created_utc.replace(":", "").replace("-", "")
    with local_copy(m.uri) as local:
        pushed = model_registry.push(local, group, name, number, m.metrics(), metadata, region, s3_prefix)
    made = " (created)" if pushed.group_created else ""
    out.print(f"pushed {m.label} to model package group {pushed.group}{made}: {pushed.model_package_arn} "
              f"({model_registry.APPROVAL})", markup=False)
    out.print(f"model data {pushed.model_data_url}; metrics {pushed.metrics_url or 'none (no test evaluation)'}",
              markup=False)
    if m.version is not None:
        set_version_tag(name, number, PACKAGE_TAG, pushed.model_package_arn)
        out.print(f"tagged {m.version.reference}: {PACKAGE_TAG}", markup=False)


def register_model(
    model_dir: str = typer.Argument(..., help="A model directory (folder or s3:// prefix), e.g. a SageMaker job's."),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d", help="Evaluate on its test split first "
                                          "(default: the evaluation already in the directory, if any)."),
    name: Optional[str] = typer.Option(None, "--name", help="Registered model (default: the config's "
                                       "registered_model)."),
) -> None:
    """Log an existing model directory as a run and register it (what `vitalflow train` does itself)."""
    from vitalflow.model.card import read_model_card
    from vitalflow.registry.log import log_training
    from vitalflow.registry.tracking import tracking_uri

    card = read_model_card(model_dir)
    metrics = None
    if dataset:
        from vitalflow.evaluate.run import evaluate_model

        metrics = evaluate_model(model_dir, dataset, "test").metrics
    else:
        metrics = _Model(model_dir).metrics()
    version = log_training(model_dir, metrics, name or card.config.get("registered_model", "vitalflow"))
    out.print(f"registered: {version} (MLflow run {version.run_id} in {tracking_uri()})", markup=False)


def register(target: typer.Typer, wrap: Callable[[Callable], Callable]) -> None:
    """Add ``models`` to ``target``, each command wrapped by ``wrap`` (the CLI's error handler)."""
    host = target.info.cls if isinstance(target.info.cls, type) else TyperGroup  # keeps the app's help style
    models = typer.Typer(cls=host, no_args_is_help=True, add_completion=False)
    models.command("list")(wrap(list_models))
    models.command("show")(wrap(show))
    models.command("promote")(wrap(promote))
    models.command("compare")(wrap(compare))
    models.command("push")(wrap(push))
    models.command("register")(wrap(register_model))
    target.add_typer(models, name="models", help="The model registry (MLflow): list, show, promote and compare "
                     "registered models; push one to the SageMaker Model Registry.")
