"""The data contract (spec) and the run configuration as validated, frozen pydantic models.

A spec says what a dataset means (features, sources, units, ranges, imputation, targets); a config
says how one run builds it (which spec, windows, split, output options). Both refuse unknown keys,
so a typo in a YAML file is an error that names the field.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Annotated, Literal, Union

import fsspec
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vitalflow.errors import SpecError, one_line

BUILTIN_DIR = Path(__file__).parent
DEFAULT_SPEC = "master-poc"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_range(value: tuple[float, float], what: str) -> tuple[float, float]:
    lo, hi = value
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{what} must be finite, got [{lo}, {hi}]")
    if not lo < hi:
        raise ValueError(f"{what} needs lo < hi, got [{lo}, {hi}]")
    return value


# --- conversions (one per source) -------------------------------------------------------------
class NoConversion(Strict):
    kind: Literal["none"] = "none"


class Scale(Strict):
    kind: Literal["scale"]
    factor: float | None = None
    divisor: float | None = None

    @model_validator(mode="after")
    def _one_of(self) -> Scale:
        if (self.factor is None) == (self.divisor is None):
            raise ValueError("scale needs exactly one of factor or divisor")
        if (self.divisor if self.factor is None else self.factor) <= 0:
            raise ValueError("scale factor/divisor must be > 0")
        return self

    @property
    def multiplier(self) -> float:
        return self.factor if self.factor is not None else 1.0 / self.divisor  # type: ignore[operator]


class Infusion(Strict):
    kind: Literal["infusion"]
    concentration: float = Field(gt=0, description="drug per mL of syringe (mg/mL or ug/mL)")
    per: Literal["hour", "minute"]


class PerIdealBodyWeight(Strict):
    kind: Literal["per_ibw"]
    factor: float = Field(default=1.0, gt=0)  # applied first, e.g. 1000 for a volume in L


class VolPercentToKpa(Strict):
    kind: Literal["vol_percent_to_kpa"]
    ambient_track: str
    ambient_default_kpa: float = Field(gt=0)


Conversion = Annotated[
    Union[NoConversion, Scale, Infusion, PerIdealBodyWeight, VolPercentToKpa],
    Field(discriminator="kind"),
]


class Source(Strict):
    track: str
    convert: Conversion = NoConversion()


class MeanArterial(Strict):
    """MAP = (SYS + 2 * DIA) / 3 from two other features, used when no source has a value."""

    kind: Literal["mean_arterial"]
    systolic: str
    diastolic: str


class Impute(Strict):
    before_first_value: float
    max_gap_s: int = Field(ge=0)
    hold_after_last_s: int = Field(ge=0)
    after_last_value: float

    @property
    def carry_s(self) -> int:
        """How long a value is carried forward at most (gap fill, then the after-last hold)."""
        return max(self.max_gap_s, self.hold_after_last_s)


class Read(Strict):
    """What a time-series feature and a set-point share: read from sources in priority order,
    normalized with ``range``, implausible values (outside ``plausible``) dropped."""

    name: str
    unit: str
    sources: tuple[Source, ...] = Field(min_length=1)
    range: tuple[float, float]
    plausible: tuple[float, float]

    @field_validator("range")
    @classmethod
    def _range(cls, v: tuple[float, float]) -> tuple[float, float]:
        return _check_range(v, "range")

    @field_validator("plausible")
    @classmethod
    def _plausible(cls, v: tuple[float, float]) -> tuple[float, float]:
        return _check_range(v, "plausible")


class TimeseriesFeature(Read):
    derive: MeanArterial | None = None
    impute: Impute


#: the clinical-table columns a static feature can read (vitalflow.vital.clinical reads them)
CLINICAL_STATIC_COLUMNS = ("age", "sex", "height", "weight", "bmi", "asa")


class StaticFeature(Strict):
    name: str
    column: str
    unit: str
    range: tuple[float, float] | None = None
    categories: dict[str, float] | None = None
    default: float | str

    @field_validator("column")
    @classmethod
    def _column(cls, v: str) -> str:
        if v not in CLINICAL_STATIC_COLUMNS:
            raise ValueError(f"clinical column {v!r} is not one vitalflow reads ({', '.join(CLINICAL_STATIC_COLUMNS)})")
        return v

    @model_validator(mode="after")
    def _kind(self) -> StaticFeature:
        if (self.range is None) == (self.categories is None):
            raise ValueError(f"static feature {self.name}: give exactly one of range or categories")
        if self.range is not None:
            _check_range(self.range, f"static feature {self.name} range")
            if not isinstance(self.default, (int, float)):
                raise ValueError(f"static feature {self.name}: numeric default expected")
        elif self.default not in self.categories:  # type: ignore[operator]
            raise ValueError(f"static feature {self.name}: default {self.default!r} is not a category")
        return self


class IdealBodyWeight(Strict):
    male_base_kg: float = Field(gt=0)
    female_base_kg: float = Field(gt=0)
    kg_per_cm: float = Field(gt=0)
    reference_height_cm: float = Field(gt=0)
    floor_kg: float = Field(gt=0)


# --- decision targets: what the clinician sets, labelled per horizon ---------------------------
TASKS = ("event", "direction", "value")  # the label kinds, in the order they are laid out


class Setpoint(Read):
    """A setting the clinician turns (a TCI target, a pump rate, a ventilator or vaporizer set track).

    Read like a time-series feature (sources in priority order, converted, implausible values
    dropped), then carried forward at most ``max_gap_s`` seconds: past that the set-point is unknown
    (a device gap) and every label that needs it is masked. A *change* is a step of more than
    ``tolerance`` between consecutive seconds. ``range`` normalizes the value labels.
    """

    tolerance: float = Field(gt=0)
    max_gap_s: int = Field(default=30, ge=0)
    # used only in a case where this other set-point has no source (a pump's rate when it runs
    # manually, its TCI target when it has one)
    only_without: str | None = None


class LabelName(Strict):
    """One entry of an example's ``labels``: ``event/<group>/<H>``, ``direction/<setpoint>/<H>`` or
    ``value/<setpoint>/<H>``."""

    task: Literal["event", "direction", "value"]
    of: str  # a group (event) or a set-point (direction, value)
    horizon_s: int

    def __str__(self) -> str:
        return f"{self.task}/{self.of}/{self.horizon_s}"


class Context(Strict):
    """What a decision model sees beyond the window (README "Decision targets"): the clinician's rules
    depend on what happened before the last 5 minutes.

    - ``history_s`` / ``history_step_s``: a low-resolution stream of every time-series feature over the
      ``history_s`` seconds ending at the window's last second, one mean per ``history_step_s``
      (example feature ``history``; 0: none);
    - ``time_since``: the seconds since each set-point last changed and since the anaesthesia started
      (example feature ``context``).
    """

    history_s: int = Field(default=1800, ge=0)
    history_step_s: int = Field(default=30, gt=0)
    time_since: bool = True

    @model_validator(mode="after")
    def _steps(self) -> Context:
        if self.history_s % self.history_step_s:
            raise ValueError("history_s must be a multiple of history_step_s")
        return self

    @property
    def history_steps(self) -> int:
        return self.history_s // self.history_step_s


class Decisions(Strict):
    """The decision targets: set-points, their groups (one alert means one decision) and horizons."""

    horizons_s: tuple[int, ...] = Field(default=(60, 300, 600), min_length=1)
    context: Context = Context()
    setpoints: tuple[Setpoint, ...] = Field(min_length=1)
    groups: dict[str, tuple[str, ...]]
    tasks: tuple[Literal["event", "direction", "value"], ...] = TASKS

    @model_validator(mode="after")
    def _refs(self) -> Decisions:
        names = [s.name for s in self.setpoints]
        _unique(names, "set-point")
        _unique(list(self.tasks), "task")
        if any(h <= 0 for h in self.horizons_s) or list(self.horizons_s) != sorted(set(self.horizons_s)):
            raise ValueError("horizons_s must be positive, increasing and without repeats")
        for s in self.setpoints:
            if s.only_without is not None and (s.only_without not in names or s.only_without == s.name):
                raise ValueError(f"set-point {s.name}: only_without names {s.only_without!r}, not another set-point")
        grouped = [m for members in self.groups.values() for m in members]
        for m in grouped:
            if m not in names:
                raise ValueError(f"a group names {m!r}, which is not a set-point")
        _unique(grouped, "set-point in groups (a set-point belongs to one group)")
        missing = sorted(set(names) - set(grouped))
        if missing:
            raise ValueError(f"set-points {', '.join(missing)} belong to no group")
        return self

    def group_of(self, setpoint: str) -> str:
        return next(g for g, members in self.groups.items() if setpoint in members)

    @property
    def labels(self) -> tuple[LabelName, ...]:
        """The layout of an example's ``labels`` (and ``label_mask``): events per group and horizon,
        then directions and values per set-point and horizon (the tasks in `TASKS` order)."""
        out = []
        for task in (t for t in TASKS if t in self.tasks):
            names = list(self.groups) if task == "event" else [s.name for s in self.setpoints]
            out += [LabelName(task=task, of=n, horizon_s=h) for n in names for h in self.horizons_s]
        return tuple(out)

    @property
    def events(self) -> tuple[LabelName, ...]:
        return tuple(lab for lab in self.labels if lab.task == "event")


class Spec(Strict):
    name: str
    version: int
    ideal_body_weight: IdealBodyWeight
    timeseries: tuple[TimeseriesFeature, ...] = Field(min_length=1)
    static: tuple[StaticFeature, ...] = Field(min_length=1)
    targets: tuple[str, ...] = Field(min_length=1)
    decisions: Decisions | None = None  # None: a value-only spec (the 30 s targets alone)

    @model_validator(mode="after")
    def _names(self) -> Spec:
        names = [f.name for f in self.timeseries]
        _unique(names, "time-series feature")
        _unique([f.name for f in self.static], "static feature")
        _unique(list(self.targets), "target")
        for t in self.targets:
            if t not in names:
                raise ValueError(f"target {t!r} is not a time-series feature")
        for f in self.timeseries:
            if f.derive is not None:
                for ref in (f.derive.systolic, f.derive.diastolic):
                    if ref not in names or names.index(ref) >= names.index(f.name):
                        raise ValueError(
                            f"{f.name}: derive refers to {ref!r}, which must be a feature listed before it"
                        )
        return self

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.timeseries)

    @property
    def target_indices(self) -> tuple[int, ...]:
        return tuple(self.feature_names.index(t) for t in self.targets)

    @property
    def tracks(self) -> tuple[str, ...]:
        """Every track any feature or set-point may read (sources and ambient tracks), in spec order."""
        out: dict[str, None] = {}
        readers = [*self.timeseries, *(self.decisions.setpoints if self.decisions else ())]
        for f in readers:
            for s in f.sources:
                out[s.track] = None
                if isinstance(s.convert, VolPercentToKpa):
                    out[s.convert.ambient_track] = None
        return tuple(out)

    def content_hash(self) -> str:
        return content_hash(self.model_dump(mode="json"))


def _unique(names: list[str], what: str) -> None:
    seen = set()
    for n in names:
        if n in seen:
            raise ValueError(f"duplicate {what} name {n!r}")
        seen.add(n)


def content_hash(obj: object) -> str:
    """``sha256:<hex>`` of a JSON-able object's canonical JSON (sorted keys, no spaces)."""
    blob = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()


# --- run configuration -----------------------------------------------------------------------
class Windows(Strict):
    length_s: int = Field(default=300, gt=0)
    step_s: int = Field(default=30, gt=0)
    horizon_s: int = Field(default=30, ge=0)
    # a window is kept only if at least this share of the input-only signals (the time-series
    # features that are not targets) were recorded at least once in it (README "Bad input")
    min_observed_share: float = Field(default=0.25, ge=0, le=1)


SPLITS = ("train", "validation", "test")  # a dataset's splits, in this order: the fractions of `Split`


class Split(Strict):
    train: float = Field(default=0.70, ge=0)
    validation: float = Field(default=0.15, ge=0)
    test: float = Field(default=0.15, ge=0)
    seed: int = 0

    @model_validator(mode="after")
    def _sum(self) -> Split:
        if not math.isclose(self.train + self.validation + self.test, 1.0, abs_tol=1e-9):
            raise ValueError("split fractions must add up to 1")
        return self

    @property
    def fractions(self) -> dict[str, float]:
        return {split: getattr(self, split) for split in SPLITS}


class Output(Strict):
    compression: Literal["none", "GZIP"] = "GZIP"  # by measurement: README "Performance"
    write_mask: bool = True


class Limits(Strict):
    """Bounds that keep one hostile recording from taking a worker's memory or time, or from
    becoming windows of defaults (README "Bad input")."""

    max_recording_h: float = Field(default=48, gt=0)  # longest span a case may have after bounding
    max_inflated_mb: int = Field(default=2048, gt=0)  # decompressed .vital content, absolute cap
    max_inflation_ratio: float = Field(default=100, gt=1)  # ... and this multiple of the file size (>= 1 MB)
    min_read_fraction: float = Field(default=0.5, ge=0, le=1)  # a read that stops early must cover this share
    case_timeout_s: float = Field(default=900, gt=0)  # one case's read + transform + encode
    worker_memory_mb: int = Field(default=4096, ge=512)  # address space a worker may add to what it inherits (RLIMIT_AS)

    def max_inflated_bytes(self, file_bytes: int) -> int:
        """The decompression cap for a file of ``file_bytes``.

        >>> Limits().max_inflated_bytes(3_000_000) // 2**20, Limits().max_inflated_bytes(10**9) // 2**20
        (286, 2048)
        """
        return int(min(self.max_inflated_mb * 2**20, max(self.max_inflation_ratio * file_bytes, 2**20)))


class Config(Strict):
    spec: str = DEFAULT_SPEC
    crop_to_anesthesia: bool = True
    windows: Windows = Windows()
    split: Split = Split()
    output: Output = Output()
    limits: Limits = Limits()
    min_success_rate: float = Field(default=0.95, ge=0, le=1)


# --- loading -----------------------------------------------------------------------------------
def _read_yaml(path: str | Path, what: str) -> dict:
    try:
        # a local path or an s3:// URI; a filesystem of its own, never one cached with another
        # process's endpoint or credentials (as vitalflow.store does)
        with fsspec.open(str(path), "rt", skip_instance_cache=True) as f:
            data = yaml.safe_load(f.read())
    except FileNotFoundError:
        raise SpecError(f"{what} file not found: {path}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise SpecError(f"{what} file {path} is not valid YAML{where}: {problem}") from exc
    except IsADirectoryError:
        raise SpecError(f"{what} file {path} is a folder, not a file") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(f"{what} file {path} must hold a mapping at the top level")
    return data


def _validate(model: type[BaseModel], data: dict, where: str):
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{where}: {one_line(exc)}") from exc


def load_validated(model: type[BaseModel], path: str | Path, what: str):
    """A YAML file (local path or s3:// URI) validated as ``model``; every problem is a `SpecError`
    naming the file and the field (an unknown key is an error)."""
    return _validate(model, _read_yaml(str(path), what), f"{what} {path}")


def spec_path(name_or_path: str, relative_to: str | None = None) -> str:
    """A built-in spec name (``master-poc``), or a spec YAML path or URI (relative to the config)."""
    builtin = BUILTIN_DIR / f"{name_or_path.replace('-', '_')}.yaml"
    if "/" not in name_or_path and not name_or_path.endswith((".yaml", ".yml")) and builtin.exists():
        return str(builtin)
    if relative_to is None or "://" in name_or_path or name_or_path.startswith("/"):
        return name_or_path
    return f"{relative_to.rstrip('/')}/{name_or_path}"


def load_spec(name_or_path: str = DEFAULT_SPEC, relative_to: str | None = None) -> Spec:
    path = spec_path(name_or_path, relative_to)
    return load_validated(Spec, path, "spec")


def load_config(path: str | Path | None = None) -> tuple[Config, Spec]:
    """Load a run config (defaults when ``path`` is None; a local path or s3:// URI) and its spec."""
    if path is None:
        config = Config()
        return config, load_spec(config.spec)
    path = str(path)
    config = load_validated(Config, path, "config")
    return config, load_spec(config.spec, relative_to=path.rpartition("/")[0] or ".")


def config_hash(config: Config, spec: Spec) -> str:
    """Hash of everything that determines the dataset's content: the config and the spec's content."""
    data = config.model_dump(mode="json")
    data["spec"] = spec.content_hash()
    return content_hash(data)
