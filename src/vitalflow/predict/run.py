"""A batch prediction run on one host: plan, read + transform cases in workers, the model in its
own process, commit case tables, card.

Output layout (local folder or s3:// prefix)::

    cases/<caseid>.parquet       one row per window: time, predicted targets, recorded values
    cases/<caseid>.csv           the same table (--csv)
    cases/<caseid>.png           predicted against recorded (--plots)
    _ledger/hN/run.json          what the output is made from (model, inputs, settings)
    _ledger/hN/commit-*.json     the cases each commit made durable (ok, excluded, failed)
    prediction_card.json         written last (prediction_card-hN.json per host when several)

Safe to kill at any instant, like preprocessing (the same runner, ledger and commit order): a
case's files are published atomically before the ledger record that names the case done, a rerun
with the same model, inputs and settings skips what is done and removes files of cases that no
record names.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Iterable

from vitalflow.dataset.ledger import MANIFEST_FORMAT, Ledger, manifest_differences
from vitalflow.errors import ModelError, OutputError
from vitalflow.model.card import CARD_NAME, ModelCard, read_model_card
from vitalflow.predict.card import (CaseCounts, ModelRef, PredictionCard, Registered, Target, card_name)
from vitalflow.predict.job import Outputs, PredictionCommitter, PredictJob, leftover_files
from vitalflow.predict.model_process import ModelProcess
from vitalflow.predict.table import PARQUET, case_files, context_inputs, output_columns, prediction_labels
from vitalflow.registry.resolve import resolve_model
from vitalflow.run.cases import CaseSelection
from vitalflow.registry.versions import ModelReference
from vitalflow.run.driver import CaseRunOptions, OutputKind, failed_ids, open_output, plan_cases, running
from vitalflow.run.preprocess_job import PreprocessJob
from vitalflow.runtime.pool import peak_rss_mb
from vitalflow.runtime.progress import Reporter
from vitalflow.runtime.runner import WorkerLimits, run_cases
from vitalflow.spec.model import Config, content_hash
from vitalflow.store import Store

log = logging.getLogger("vitalflow")
MANIFEST_KIND = "prediction"


@dataclass(frozen=True)
class PredictOptions(CaseRunOptions):
    """A prediction run's options: the per-case run's (`CaseRunOptions`), and which extra files to write."""

    csv: bool = False
    plots: bool = False


@dataclass
class PredictResult:
    output: str
    card: PredictionCard
    stopped_by: str | None = None
    cases_processed: int = 0

    @property
    def complete(self) -> bool:
        return self.card.status == "complete"


def registered(reference: str, model_dir: str) -> Registered | None:
    """The registry name and alias or version a reference names (None for a model directory).

    >>> registered("vitalflow@champion", "/m/3"), registered("vitalflow/3", "/m/3").version
    (Registered(name='vitalflow', alias='champion', version=None), '3')
    >>> registered("/models/m1", "/models/m1") is None
    True
    """
    parsed = ModelReference.parse(reference)
    if reference == model_dir or parsed is None:
        return None
    return Registered(name=parsed.name, alias=parsed.alias, version=parsed.version)


def prediction_config(card: ModelCard, config: Config | None) -> Config:
    """The run config for the model: windows as the model was trained on (length and horizon from
    its card); crop, step, minimum observed share and limits from ``config`` (default: the
    built-in defaults). Its ``spec`` is not used: cases go through the spec the model pins."""
    config = config or Config()
    w = config.windows
    explicit = {"length_s", "horizon_s"} & w.model_fields_set
    if explicit and (w.length_s, w.horizon_s) != (card.window_s, card.horizon_s):
        raise ModelError(f"the config's windows (length_s {w.length_s}, horizon_s {w.horizon_s}) are not the "
                         f"model's (window {card.window_s} s, horizon {card.horizon_s} s)")
    w = w.model_copy(update={"length_s": card.window_s, "horizon_s": card.horizon_s})
    config = config.model_copy(update={"windows": w})
    return config


def predict(
    model: str,
    input_uri: str | Path,
    clinical_uri: str | Path,
    output: str | Path,
    cases: CaseSelection | Iterable[int] | None = None,
    options: PredictOptions = PredictOptions(),
    config: Config | None = None,
    reporter: Reporter | None = None,
) -> PredictResult:
    """Predict every selected case (default: every ``<caseid>.vital`` in the input) with ``model``
    (a model directory, or a registry reference ``NAME@ALIAS`` / ``NAME/VERSION``)."""
    t0 = time.perf_counter()
    reference = str(model)
    model_dir = str(resolve_model(reference))
    card = read_model_card(model_dir)  # no TensorFlow here: the model itself loads in its own process
    card_bytes = Store(model_dir).read_bytes(CARD_NAME)
    spec = card.spec.load()
    config = prediction_config(card, config)
    plan = plan_cases(input_uri, clinical_uri, cases, options)
    mine, inputs = plan.mine, plan.inputs
    outputs = Outputs(csv=options.csv, plots=options.plots)
    model_ref = ModelRef(
        reference=reference, dir=model_dir, registered=registered(reference, model_dir),
        card_sha256=hashlib.sha256(card_bytes).hexdigest(), created_utc=card.created_utc,
        spec={"name": card.spec.name, "version": card.spec.version, "hash": card.spec.hash},
        config_hash=card.config_hash, dataset_fingerprint=card.dataset.fingerprint, dataset_uri=card.dataset.uri,
        window_s=card.window_s, horizon_s=card.horizon_s)
    run_config = {"crop_to_anesthesia": config.crop_to_anesthesia, "windows": config.windows.model_dump(mode="json"),
                  "limits": config.limits.model_dump(mode="json"), "min_success_rate": config.min_success_rate}
    settings = {"model_card_sha256": model_ref.card_sha256, "config": run_config,
                "outputs": {"csv": outputs.csv, "plots": outputs.plots}}
    manifest = {
        "format": MANIFEST_FORMAT,
        "kind": MANIFEST_KIND,
        "host": options.host,
        "host_count": options.host_count,
        "config_hash": content_hash(settings),
        "spec": model_ref.spec,
        "model": model_ref.model_dump(mode="json"),
        "settings": settings,
        "cases": plan.selected,
        "clinical_sha256": inputs["clinical"]["sha256"],
        "inputs": inputs,
    }
    store = Store(output)
    ledger = Ledger(store, options.host)
    name = card_name(options.host, options.host_count)
    reporter = reporter or Reporter()
    mine_set = set(mine)
    kind = OutputKind("predictions", name, lambda n: case_files.parse(n) in mine_set,
                      lambda existing, new: _differences(store, existing, new, failed_ids(ledger)),
                      lambda: _clear(store, mine, name))
    with running(store, ledger, "predict", mine, options,
                 lambda: open_output(store, ledger, manifest, options, kind)) as run:
        stop, state, tally, todo = run.stop, run.state, run.tally, run.todo
        ok = {c for c, o in state.outcomes.items() if o.status == "ok" and c not in todo}
        removed = leftover_files(store, mine, ok)
        for leftover in removed:
            store.delete(leftover)
        if removed:
            log.warning("removed %d file(s) of cases an interrupted run did not commit: %s", len(removed),
                        ", ".join(removed[:10]))
        store.clear_staging(options.host)
        job = PredictJob(PreprocessJob(plan.input_uri, plan.files, plan.patients, {}, config, spec),
                         "mask" in card.inputs, prediction_labels(card), context_inputs(card))
        timings = {"read": 0.0, "transform": 0.0, "pack": 0.0, "model": 0.0, "write": 0.0}
        run_info = {"workers": options.workers, "commit_every": options.commit_every, "stopped_by": None,
                    "cases_processed": 0, "removed_leftovers": removed, "worker_deaths": []}
        peaks = {"main": 0.0, "largest_worker": 0.0, "model_process": 0.0}
        reporter.start(tally)
        try:
            if todo:
                label = model_ref.reference if model_ref.registered else Path(model_dir.rstrip("/")).name
                with ModelProcess(model_dir) as model_process:
                    committer = PredictionCommitter(store, ledger, state.next_seq, model_process,
                                                    output_columns(card), outputs, label)
                    stats = run_cases(job=job, cases=todo, committer=committer, workers=options.workers,
                                      commit_every=options.commit_every, stop=stop, tally=tally, reporter=reporter,
                                      limits=WorkerLimits(config.limits.case_timeout_s,
                                                          config.limits.worker_memory_mb),
                                      stop_grace_s=options.stop_grace_s)
                    for k in ("read", "transform", "pack"):
                        timings[k] = stats.timings.get(k, 0.0)
                    timings.update(committer.timings)
                    timings["model_load"] = model_process.ready().load_s if model_process.loaded else 0.0
                    peaks["largest_worker"] = stats.peak_worker_rss_mb
                    peaks["model_process"] = model_process.peak_rss_mb
                    run_info["worker_deaths"] = stats.worker_deaths
        finally:
            reporter.close()
            store.remove_staging(options.host)
        peaks["main"] = peak_rss_mb()
        run_info.update(stopped_by=stop.requested, cases_processed=tally.done - tally.done_at_start,
                        peak_rss_mb=peaks)
        outcomes = ledger.load().outcomes
        timings["total"] = time.perf_counter() - t0
        card_out = _card(model_ref, card, mine, outcomes, inputs, run_config, outputs, options, timings, run_info)
        store.write_bytes(name, card_out.to_json(indent=1))
        return PredictResult(store.uri, card_out, stop.requested, run_info["cases_processed"])


def _card(model_ref: ModelRef, card: ModelCard, mine: list[int], outcomes: dict, inputs: dict, run_config: dict,
          outputs: Outputs, options: PredictOptions, timings: dict, run_info: dict) -> PredictionCard:
    mine_outcomes = [outcomes[c] for c in mine if c in outcomes]
    ok = [o for o in mine_outcomes if o.status == "ok"]
    kinds = [PARQUET] + (["csv"] if outputs.csv else []) + (["png"] if outputs.plots else [])
    complete = all(c in outcomes for c in mine)
    return PredictionCard(
        status="complete" if complete else "partial",
        created_utc=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        tool={"name": "vitalflow", "version": version("vitalflow")},
        model=model_ref,
        targets=[Target(name=name, unit=unit, predicted=f"{name}_pred", recorded=f"{name}_recorded")
                 for name, unit in output_columns(card)],
        inputs=inputs,
        config=run_config,
        outputs={"cases": f"{case_files.prefix}/<caseid>.{{{','.join(kinds)}}}", "csv": outputs.csv,
                 "plots": outputs.plots},
        host=options.host,
        host_count=options.host_count,
        cases=CaseCounts(selected=len(mine), done=len(mine_outcomes), ok=len(ok),
                         excluded=sum(o.status == "excluded" for o in mine_outcomes),
                         failed=sum(o.status == "failed" for o in mine_outcomes),
                         rows=sum(o.windows for o in ok),
                         success_rate=round(len(ok) / len(mine), 6) if mine else 0.0),
        done=[{"case_id": o.case_id, "rows": o.windows,
               "files": [case_files.name(o.case_id, k) for k in kinds]} for o in ok],
        excluded=[{"case_id": o.case_id, "reason": o.reason} for o in mine_outcomes if o.status == "excluded"],
        failed=[{"case_id": o.case_id, "stage": o.stage, "error": o.reason}
                | ({"traceback": o.traceback} if o.traceback else {})
                for o in mine_outcomes if o.status == "failed"],
        timings_s={k: round(v, 3) for k, v in timings.items()},
        run=run_info,
    )


def _clear(store: Store, mine: list[int], card: str) -> None:
    """``--overwrite``: delete this host's case files and card (the driver clears the ledger)."""
    mine_set = set(mine)
    for name in store.list(case_files.prefix):
        if case_files.parse(name) in mine_set:
            store.delete(name)
    store.delete(card)


def _differences(store: Store, existing: dict, manifest: dict, failed: set[str]) -> list[str]:
    """Why predictions already in the output cannot be resumed by this run; refuses outright an
    output that holds a dataset or another model's predictions."""
    if existing.get("kind") != MANIFEST_KIND:
        raise OutputError(f"{store.uri} holds a preprocessed dataset, not predictions: choose another --output")
    old_model, new_model = existing.get("model") or {}, manifest["model"]
    if old_model.get("card_sha256") != new_model["card_sha256"]:
        raise OutputError(
            f"{store.uri} holds predictions of another model ({old_model.get('reference', '?')}, "
            f"{old_model.get('dir', '?')}, created {old_model.get('created_utc', '?')}); --model "
            f"{new_model['reference']} is {new_model['dir']}, created {new_model['created_utc']}. "
            "Choose another --output, or pass --overwrite to replace them")
    differences = manifest_differences(existing, manifest, failed)
    if existing.get("settings") != manifest["settings"]:
        differences = [d for d in differences if not d.startswith("config or spec")]
        differences.insert(0, "settings (--config, --csv or --plots)")
    return differences
