"""The prediction card ``prediction_card.json`` (``prediction_card-hN.json`` per host when several
hosts share a run): which model made the predictions and from what, which cases are done, excluded
or failed (with reasons), and how long it took. Written last: after a stop it says ``partial``."""

from __future__ import annotations

from typing import Any, Literal

from vitalflow.dataset.record import Record, Tool

PREDICTION_CARD_FORMAT = "vitalflow-prediction/1"


def card_name(host: str, host_count: int) -> str:
    """The card's name: one per host when several hosts share the output.

    >>> card_name("h0", 1), card_name("h1", 3)
    ('prediction_card.json', 'prediction_card-h1.json')
    """
    return "prediction_card.json" if host_count == 1 else f"prediction_card-{host}.json"


class Registered(Record):
    """The registry reference the model was taken by (``NAME@ALIAS`` or ``NAME/VERSION``)."""

    name: str
    alias: str | None = None
    version: str | None = None


class ModelRef(Record):
    reference: str  # as given to --model
    dir: str  # the model directory it resolved to
    registered: Registered | None = None
    card_sha256: str  # of model_card.json: which model exactly
    created_utc: str
    spec: dict[str, Any]  # name, version, hash of the spec the model pins (and predictions used)
    config_hash: str  # the training config's
    dataset_fingerprint: str
    dataset_uri: str
    window_s: int
    horizon_s: int


class Target(Record):
    name: str
    unit: str
    predicted: str  # column names in the case tables
    recorded: str


class CaseCounts(Record):
    selected: int  # this host's cases
    done: int  # with an outcome (ok, excluded or failed)
    ok: int  # with a table
    excluded: int
    failed: int
    rows: int  # over all tables
    success_rate: float  # ok / selected


class PredictionCard(Record):
    format: str = PREDICTION_CARD_FORMAT
    status: Literal["complete", "partial"]
    created_utc: str
    tool: Tool
    model: ModelRef
    targets: list[Target]
    inputs: dict[str, Any]  # input, clinical (uri, sha256), selection, without_file
    config: dict[str, Any]  # windows, crop and limits used (the spec is the model's)
    outputs: dict[str, Any]  # layout and options (csv, plots)
    host: str
    host_count: int
    cases: CaseCounts
    done: list[dict[str, Any]]  # {case_id, rows, files}
    excluded: list[dict[str, Any]]  # {case_id, reason}
    failed: list[dict[str, Any]]  # {case_id, stage, error}
    timings_s: dict[str, float]
    run: dict[str, Any]  # workers, stopped_by, cases processed by this run, peak memory
