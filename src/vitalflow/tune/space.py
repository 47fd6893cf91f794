"""The tune config: a base train config and the search space over it (validated; unknown keys are errors).

A tune config (YAML)::

    base: train.yaml              # optional: a train config file (relative to this file), else the defaults
    train: {epochs: 8}            # optional: train config keys over the base
    search:                       # dotted paths into the train config -> one distribution each
      learning_rate: {log_uniform: [1.0e-4, 1.0e-2]}
      batch_size: {choice: [64, 128, 256]}
      network.dropout: {uniform: [0, 0.4]}
      network.lstm_units: {choice: [[48, 24], [64, 32]]}
      network.dense_units: {int: [16, 64]}
    study_name: vitalflow         # the Optuna study in STUDY_DIR/study.db
    seed: 0                       # the TPE sampler's
    pruner: {startup_trials: 2, warmup_epochs: 2}   # median pruning; null: never prune

A distribution is one of ``uniform: [lo, hi]``, ``log_uniform: [lo, hi]`` (lo > 0), ``int: [lo, hi]``,
``log_int: [lo, hi]`` or ``choice: [a, b, ...]`` (any YAML values: lists and mappings too). Every
path must name a setting of the base config, and the base with each bound or choice set must be a
valid train config: both are checked before any trial.

>>> tune = TuneConfig.model_validate({"search": {"network.dropout": {"uniform": [0, 0.4]}}})
>>> base = TrainConfig().model_dump(mode="json")
>>> check_space(tune, base, "tune config")
>>> apply(base, {"network.dropout": 0.25}).network.dropout
0.25
>>> check_space(TuneConfig.model_validate({"search": {"network.dropuot": {"uniform": [0, 0.4]}}}), base,
...             "t")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
vitalflow.errors.SpecError: t: search: network.dropuot: no such train config setting (network has conv_filters, ...)
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator

from vitalflow.errors import SpecError, one_line
from vitalflow.model.config import TrainConfig
from vitalflow.spec.model import Strict, _read_yaml, _validate, content_hash

_SCALAR = (type(None), bool, int, float, str)


class Distribution(Strict):
    """Exactly one of the fields."""

    uniform: tuple[float, float] | None = None
    log_uniform: tuple[float, float] | None = None
    int_: tuple[int, int] | None = Field(default=None, alias="int")
    log_int: tuple[int, int] | None = None
    choice: list[Any] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one(self) -> Distribution:
        given = [k for k in ("uniform", "log_uniform", "int_", "log_int", "choice") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of uniform, log_uniform, int, log_int, choice")
        if self.choice is None:
            lo, hi = self.bounds
            if not lo < hi:
                raise ValueError(f"needs lo < hi, got [{lo}, {hi}]")
            if given[0] in ("log_uniform", "log_int") and lo <= 0:
                raise ValueError(f"a log scale needs lo > 0, got {lo}")
        return self

    @property
    def bounds(self) -> tuple:
        return next(v for v in (self.uniform, self.log_uniform, self.int_, self.log_int) if v is not None)

    @property
    def encoded(self) -> bool:
        """Whether Optuna sees the choices as JSON strings (it takes only None, bool, int, float, str)."""
        return self.choice is not None and not all(isinstance(c, _SCALAR) for c in self.choice)

    def values(self) -> list:
        """What to check before the trials: the bounds, or every choice."""
        return list(self.choice) if self.choice is not None else list(self.bounds)

    def suggest(self, trial, name: str):
        """Sample from an Optuna trial; returns the config value (decoded)."""
        if self.uniform is not None:
            return trial.suggest_float(name, *self.uniform)
        if self.log_uniform is not None:
            return trial.suggest_float(name, *self.log_uniform, log=True)
        if self.int_ is not None:
            return trial.suggest_int(name, *self.int_)
        if self.log_int is not None:
            return trial.suggest_int(name, *self.log_int, log=True)
        if self.encoded:
            return json.loads(trial.suggest_categorical(name, [json.dumps(c) for c in self.choice]))
        return trial.suggest_categorical(name, list(self.choice))

    def decode(self, value):
        """An Optuna param (as stored) as the config value."""
        return json.loads(value) if self.encoded else value


class Pruner(Strict):
    """Optuna's MedianPruner: a trial whose validation mean AUPRC at an epoch is below the median of
    the earlier trials' at that epoch is stopped."""

    startup_trials: int = Field(default=2, ge=0)  # trials finished before any is pruned
    warmup_epochs: int = Field(default=2, ge=1)  # the first epoch a trial can be pruned at


#: The search space without a tune config (or one without ``search``): over the defaults of
#: ``vitalflow train`` (README "Training").
DEFAULT_SEARCH: dict[str, dict] = {
    "learning_rate": {"log_uniform": [3e-4, 1e-2]},
    "batch_size": {"choice": [64, 128, 256]},
    "network.dropout": {"uniform": [0.0, 0.4]},
    "network.conv_filters": {"choice": [[32, 32], [64, 64]]},
    "network.lstm_units": {"choice": [[32, 16], [48, 24], [64, 32]]},
    "network.dense_units": {"choice": [16, 32, 64]},
    "head_weights.direction": {"uniform": [0.0, 1.0]},
    "max_positive_weight": {"log_uniform": [5.0, 50.0]},
}


class TuneConfig(Strict):
    base: str | None = None  # a train config file; relative to the tune config's folder
    train: dict[str, Any] = {}  # train config keys over the base (mappings merge)
    search: dict[str, Distribution] = Field(default_factory=lambda: {k: Distribution.model_validate(v)
                                                                     for k, v in DEFAULT_SEARCH.items()},
                                            min_length=1)
    study_name: str = Field(default="vitalflow", min_length=1)
    seed: int = 0
    pruner: Pruner | None = Pruner()


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def set_path(config: dict, path: str, value) -> dict:
    """A copy of ``config`` with the dotted ``path`` set."""
    out = copy.deepcopy(config)
    *parents, leaf = path.split(".")
    node = out
    for part in parents:
        node = node[part]
    node[leaf] = value
    return out


def apply(base: dict, params: dict[str, Any]) -> TrainConfig:
    """The base config (a full dump) with each dotted path set, validated."""
    config = base
    for path, value in params.items():
        config = set_path(config, path, value)
    return TrainConfig.model_validate(config)


def _check_path(base: dict, path: str, where: str) -> None:
    node, seen = base, []
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            what = ".".join(seen) or "the train config"
            if not isinstance(node, dict):
                raise SpecError(f"{where}: search: {path}: no such train config setting ({what} is "
                                f"{json.dumps(node)}, not a mapping, in the base config)")
            raise SpecError(f"{where}: search: {path}: no such train config setting ({what} has "
                            f"{', '.join(node) or 'no keys'})")
        node = node[part]
        seen.append(part)


def check_space(tune: TuneConfig, base: dict, where: str) -> None:
    """Every path names a setting of ``base`` (a full dump), and ``base`` with each bound or choice
    set is a valid train config; a decision model (the objective is the validation mean event AUPRC)."""
    if base.get("task") != "decisions":
        raise SpecError(f"{where}: the base train config has task: {base.get('task')}; tune searches decision "
                        "models (task: decisions), whose objective is the validation mean event AUPRC")
    for path, dist in tune.search.items():
        _check_path(base, path, where)
        for value in dist.values():
            try:
                config = apply(base, {path: value})
            except ValidationError as exc:
                raise SpecError(f"{where}: search: {path} = {json.dumps(value)} is not a valid train config "
                                f"({one_line(exc)})") from None
            if config.task != "decisions":
                raise SpecError(f"{where}: search: {path}: tune searches decision models (task: decisions)")


def load_tune_config(path: str | Path | None) -> tuple[TuneConfig, dict]:
    """The tune config at ``path`` (or the defaults) and its base train config as a full dump,
    both checked (`check_space`)."""
    where = "tune config" if path is None else f"tune config {path}"
    tune = TuneConfig() if path is None else _validate(TuneConfig, _read_yaml(str(path), "tune config"), where)
    data: dict = {}
    if tune.base is not None:
        base = tune.base
        if path is not None and "://" not in base and not Path(base).is_absolute():
            parent = str(path).rsplit("/", 1)[0] if "/" in str(path) else "."
            base = f"{parent}/{base}"
        data = _read_yaml(base, "train config")
        where_base = f"train config {base}"
    else:
        where_base = where
    data = _merge(data, tune.train)
    if tune.train:
        where_base = f"{where_base} (with the tune config's train keys)"
    config = _validate(TrainConfig, data, where_base)
    full = config.model_dump(mode="json")
    check_space(tune, full, where)
    return tune, full


def space_hash(tune: TuneConfig, base: dict) -> str:
    """What makes a study: the base config, the search space and the sampler's seed (not the pruner,
    the study name or the number of trials)."""
    return content_hash({"base": base, "search": {k: v.model_dump(mode="json", by_alias=True)
                                                  for k, v in tune.search.items()}, "seed": tune.seed})
