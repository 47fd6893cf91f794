"""A training run: a verified dataset and a config to a complete model directory.

Everything that can be refused is checked before the first epoch: the dataset (complete, verified,
of a known spec, with train and validation windows and the features the network reads; for the
decision model, examples of schema version 2 with decision labels), the config (unknown keys, bad
values, target weights naming no target), the model directory (holding another model) and the
checkpoints (of another training). Rerunning the same command resumes from the last complete
epoch; rerunning it after the model is written does nothing.

A decision model (``task: decisions``) is calibrated after training: one temperature per event and
direction label, fitted on the validation split (`vitalflow.model.calibration`), written into the
card with the expected calibration error before and after; then (config ``stack``) stacked with
XGBoost classifiers (`vitalflow.train.stack`), whose files go into ``boosted/``; then (config
``gate_values``) the value gates (`vitalflow.train.gates`).
"""

from __future__ import annotations

import datetime as _dt
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from vitalflow.dataset.reference import Dataset, open_dataset
from vitalflow.errors import ModelError, OutputError, SpecError
from vitalflow.model.boosted import BOOSTED_DIR
from vitalflow.model.calibration import BINS, apply_temperatures, fit_temperature, sigmoid
from vitalflow.model.card import CARD_NAME, EXPORT_DIR, MODEL_FILE, Calibration, DatasetRef, Feature, Head, ModelCard, \
    SpecPin, Stack, Tool, Training, Tuning, ValueGates
from vitalflow.model.config import CONTEXT_INPUTS, TrainConfig, load_train_config, train_config_hash
from vitalflow.model.heads import Heads
from vitalflow.model.inputs import TRUTH
from vitalflow.model.network import build_decision_network, build_network, compile_decision_network, \
    compile_network, input_names
from vitalflow.runtime.stop import StopRequest
from vitalflow.scores import ece
from vitalflow.spec.model import SPLITS, Spec, load_spec
from vitalflow.store import Store
from vitalflow.train.checkpoints import Checkpoints, TrainState
from vitalflow.train.fit import Split, fit, input_stats, make_deterministic, positive_weights, predict_split, \
    read_split, restore
from vitalflow.train.gates import fit_value_gates
from vitalflow.train.stack import fit_stacked

log = logging.getLogger("vitalflow.progress")
CHECKPOINT_DIR = "_checkpoints"


@dataclass(frozen=True)
class TrainResult:
    model_uri: str
    card: ModelCard | None  # None when stopped
    stopped: str | None  # the signal that stopped the run
    already_done: bool = False


def dataset_spec(dataset: Dataset) -> Spec:
    """The spec a dataset was made with: the one its card holds, or (older cards) the one it names,
    checked by hash."""
    ref = dataset.card.spec
    if ref.content is not None:
        spec = Spec.model_validate(ref.content)
        if spec.content_hash() == ref.hash:
            return spec
        raise SpecError(f"{dataset.uri}: the card's spec does not match its hash ({ref.hash}): the card was "
                        f"edited; run `vitalflow verify {dataset.uri}`")
    spec = load_spec(dataset.card.config.get("spec", ref.name))
    if spec.content_hash() != ref.hash:
        raise SpecError(f"{dataset.uri}: made with spec {ref.name} v{ref.version} ({ref.hash}), but the spec "
                        f"{ref.name} found here is v{spec.version} ({spec.content_hash()}): train with the spec "
                        "the dataset was made with")
    return spec


#: The example schema version that holds the decision labels (`vitalflow.dataset.schema`).
DECISION_SCHEMA_VERSION = 2


def check_dataset(dataset: Dataset, config: TrainConfig, spec: Spec) -> None:
    if config.task == "decisions":
        version = dataset.card.get("example_schema_version", 1)
        if version < DECISION_SCHEMA_VERSION or "labels" not in dataset.example_schema.root:
            raise OutputError(f"{dataset.uri}: examples of schema version {version} hold no decision labels; this "
                              f"vitalflow trains on schema version {DECISION_SCHEMA_VERSION}: preprocess the "
                              "recordings again (or set task: values)")
        if spec.decisions is None:
            raise SpecError(f"{dataset.uri}: its spec {spec.name} v{spec.version} defines no decision targets "
                            "(or set task: values)")
    for split in ("train", "validation"):
        if dataset.examples(split) == 0:
            raise OutputError(f"{dataset.uri}: the {split} split has no windows (the split fractions or too few "
                              "subjects): training needs train and validation windows")
    missing = [n for n in (*input_names(config), *TRUTH[config.task]) if n not in dataset.example_schema.root]
    if missing:
        hint = ("for the mask: preprocess with output.write_mask: true, or set network.use_mask: false"
                if "mask" in missing else "the decision context: preprocess the recordings again (a spec with "
                "decisions.context), or set context_inputs: false")
        raise OutputError(f"{dataset.uri}: the examples have no {', '.join(missing)} feature ({hint})")
    try:
        config.weights_for(spec.targets)
    except ValueError as exc:
        raise SpecError(f"train config: {exc}") from None


def _features(spec: Spec, names) -> list[Feature]:
    by_name = {f.name: f for f in spec.timeseries}
    return [Feature(name=n, unit=by_name[n].unit, range=by_name[n].range) for n in names]


def card_heads(heads: Heads) -> list[Head]:
    out = []
    for name, task, unit, rng in zip(heads.names, heads.tasks, heads.units, heads.ranges):
        _, of, horizon = name.split("/")
        out.append(Head(name=name, task=task, of=of, horizon_s=int(horizon), output="tanh" if task == "value" else "logit",
                        unit=unit, range=rng))
    return out


def calibrate(raw: np.ndarray, validation: Split, heads: Heads) -> Calibration:
    """One temperature per event and direction label on the validation split (``raw``: the network's
    output there), and the ECE before and after."""
    temperatures, before, after = {}, {}, {}
    for i in heads.calibrated:
        name = heads.names[i]
        valid = validation.label_mask[:, i] > 0
        z, y = raw[valid, i].astype(np.float64), validation.labels[valid, i].astype(np.float64)
        t = fit_temperature(z, y)
        temperatures[name] = round(t, 6)
        if valid.any():
            before[name] = ece(y, sigmoid(z), BINS)
            after[name] = ece(y, sigmoid(z / temperatures[name]), BINS)
    events = [n for n in heads.names_of("event") if n in before]
    return Calibration(temperatures=temperatures, ece_before=before, ece_after=after, bins=BINS,
                       mean_ece_before=float(np.mean([before[n] for n in events])) if events else None,
                       mean_ece_after=float(np.mean([after[n] for n in events])) if events else None)


def build_card(spec: Spec, dataset: Dataset, config: TrainConfig, model: keras.Model, state: TrainState,
               heads: Heads | None = None, class_weights: dict[str, float] | None = None,
               calibration: Calibration | None = None, tuning: Tuning | None = None,
               stack: Stack | None = None, value_gates: ValueGates | None = None) -> ModelCard:
    windows = dataset.card.config.get("windows", {})
    decisions = config.task == "decisions"
    return ModelCard(
        task=config.task,
        tool=Tool(name="vitalflow", version=version("vitalflow"), tensorflow=tf.__version__, keras=keras.__version__),
        created_utc=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        spec=SpecPin(name=spec.name, version=spec.version, hash=spec.content_hash(),
                     content=spec.model_dump(mode="json")),
        dataset=DatasetRef(uri=dataset.uri, fingerprint=dataset.fingerprint, config_hash=dataset.card.config_hash,
                           windows={s: dataset.examples(s) for s in SPLITS}),
        timeseries=_features(spec, spec.feature_names),
        static=[Feature(name=f.name, unit=f.unit, range=f.range if f.range else (-1.0, 1.0)) for f in spec.static],
        targets=[] if decisions else _features(spec, spec.targets),
        heads=card_heads(heads) if decisions else [],
        inputs=list(input_names(config)),
        window_s=int(windows.get("length_s", 300)), horizon_s=int(windows.get("horizon_s", 30)),
        config=config.model_dump(mode="json"), config_hash=train_config_hash(config),
        parameters=int(model.count_params()),
        training=Training(epochs_run=state.epochs_done, best_epoch=state.best_epoch, stopped_early=state.stopped_early,
                          resumed=state.resumed, seconds=round(state.seconds, 3), history=state.history,
                          monitor="val_auprc" if decisions else "val_loss"),
        metrics={k: v[state.best_epoch - 1] for k, v in state.history.items() if k.startswith("val_")},
        class_weights=class_weights or {},
        calibration=calibration,
        stack=stack,
        value_gates=value_gates,
        tuning=tuning,
        files={"model": MODEL_FILE, "export": EXPORT_DIR, **({"boosted": BOOSTED_DIR} if stack else {})},
    )


def write_model_dir(store: Store, model: keras.Model, card: ModelCard) -> None:
    """The model files, then the card (a directory with a card is complete; a stacked model's
    boosters are written before, by `vitalflow.train.stack.fit_stacked`)."""
    staging = Path(store.local_path("")) if store.is_local else Path(tempfile.mkdtemp(prefix="vitalflow-model-"))
    try:
        staging.mkdir(parents=True, exist_ok=True)
        model.save(staging / MODEL_FILE)
        shutil.rmtree(staging / EXPORT_DIR, ignore_errors=True)
        model.export(str(staging / EXPORT_DIR), format="tf_saved_model", verbose=False)
        if not store.is_local:
            for path in sorted(p for p in staging.rglob("*") if p.is_file()):
                store.write_bytes(path.relative_to(staging).as_posix(), path.read_bytes())
        store.write_bytes(CARD_NAME, card.to_json(indent=1))
    finally:
        if not store.is_local:
            shutil.rmtree(staging, ignore_errors=True)


def build_model(config: TrainConfig, dataset: Dataset, spec: Spec
                ) -> tuple[keras.Model, Heads | None, dict[str, float] | None]:
    """The compiled network for ``dataset``'s examples (weights drawn from ``config.seed``), its
    decision heads and the event labels' class weights (None, None for a value model)."""
    keras.utils.set_random_seed(config.seed)
    length, features = dataset.example_schema["timeseries"].reshape
    static = dataset.example_schema["static"].size
    if config.task != "decisions":
        model = build_network(config, length, features, static, spec.target_indices)
        return compile_network(model, config, config.weights_for(spec.targets)), None, None
    heads = Heads.from_spec(spec)
    weights, class_weights = positive_weights(dataset, config, heads)
    context = {n: dataset.example_schema[n].reshape or dataset.example_schema[n].shape
               for n in input_names(config) if n in CONTEXT_INPUTS}
    stats = input_stats(dataset, config) if config.decision_network.normalize else None
    setpoints = [sp.name for sp in spec.decisions.setpoints]
    setpoint_index = [setpoints.index(heads.names[i].split("/")[1]) for i in heads.indices("value")]
    model = build_decision_network(config, length, features, static, heads, context, stats, setpoint_index)
    return compile_decision_network(model, config, heads, weights), heads, class_weights


def train_model(dataset_uri: str, output: str, config_path: str | None = None, checkpoints_uri: str | None = None,
                overwrite: bool = False, on_epoch: Callable[[int, dict[str, float]], None] | None = None,
                tuning: Tuning | None = None) -> TrainResult:
    """Train (or resume training) the network on a dataset and write the model directory.
    ``on_epoch``: passed to `vitalflow.train.fit.fit` (called after each epoch; what it raises ends
    the training and propagates, no model written). ``tuning``: the study that chose the config,
    recorded in the card."""
    config = load_train_config(config_path)
    dataset = open_dataset(dataset_uri)
    spec = dataset_spec(dataset)
    check_dataset(dataset, config, spec)
    store = Store(output)
    checkpoints = Checkpoints(checkpoints_uri or store.url(CHECKPOINT_DIR))
    expected = {"config_hash": train_config_hash(config), "dataset_fingerprint": dataset.fingerprint}
    if overwrite:
        checkpoints.clear()
        store.delete(CARD_NAME)
    elif store.exists(CARD_NAME):
        from vitalflow.model.card import read_model_card

        card = read_model_card(store.uri)
        if card.config_hash == expected["config_hash"] and card.dataset.fingerprint == dataset.fingerprint:
            log.info("%s holds this model already (same dataset and config): nothing to do", store.uri)
            return TrainResult(store.uri, card, None, already_done=True)
        raise ModelError(f"{store.uri} holds another model (of dataset {card.dataset.fingerprint}, config "
                         f"{card.config_hash}): choose another --output or pass --overwrite")
    state = checkpoints.state()
    if state is not None:
        differs = [k.replace("_", " ") for k, v in expected.items() if getattr(state, k) != v]
        if differs:
            raise ModelError(f"{checkpoints.uri} holds checkpoints of another training ({' and '.join(differs)} "
                             "differ): pass --overwrite to start over, or choose another --output")
    make_deterministic()
    model, heads, class_weights = build_model(config, dataset, spec)
    if state is None or state.latest_file is None:
        checkpoints.remove_leftovers(None)
        state = TrainState(**expected)
    else:
        restore(model, checkpoints, state)
        checkpoints.remove_leftovers(state)
        state = state.model_copy(update={"resumed": state.resumed + 1})
        log.info("resuming after epoch %d from %s", state.epochs_done, checkpoints.uri)
    with StopRequest(then="stopping after the current batch; the last complete epoch is checkpointed") as stop:
        state, stopped = fit(model, config, dataset, checkpoints, state, stop, heads, on_epoch)
        if stopped:
            return TrainResult(store.uri, None, stop.requested or "stop")
    model.set_weights(checkpoints.arrays(state.best_file)["weights"])
    calibration = stack = gates = None
    if heads is not None:
        validation = read_split(dataset, "validation", config, max(config.batch_size, 256))
        raw = predict_split(model, validation)
        calibration = calibrate(raw, validation, heads)
        temperatures = [calibration.temperatures[n] for n in heads.names_of("event")]
        events = apply_temperatures(raw, heads.indices("event"), np.array(temperatures))
        if config.stack and config.context_inputs:
            stack, events = fit_stacked(dataset, spec, heads, events, config.seed, store)
        if config.gate_values and config.context_inputs:
            gates = fit_value_gates(dataset, spec, heads, raw, events, validation)
    card = build_card(spec, dataset, config, model, state, heads, class_weights, calibration, tuning, stack, gates)
    write_model_dir(store, model, card)
    return TrainResult(store.uri, card, None)
