"""What a job runs: one validated request model per kind, and the command built from it.

The request models are the API's bodies (``POST /api/jobs/<kind>``) and the forms' fields. They
validate as the CLI does, with the CLI's own code and messages: `parse_case_selection` for
``cases``, `load_config` for a run config, `load_train_config` for a train config; and every path
must lie inside the app's roots (`vitalflow.api.paths`; the roots come in as the validation
context). A command is a list of arguments built from the validated fields (``vitalflow <kind>
--option value ...``, or ``vitalflow launch <kind> ...`` for SageMaker), never a shell string.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from typing import Annotated, Any, ClassVar, Literal, Optional, Union

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo, field_validator,
                      model_validator)

from vitalflow.api.paths import PathRefused, check_path
from vitalflow.errors import VitalflowError

KINDS = ("preprocess", "train", "evaluate", "predict")
#: Kinds that `vitalflow launch` can run on SageMaker.
SAGEMAKER_KINDS = ("preprocess", "train", "predict")
INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")


#: The roots of the app serving the current request (set per request by `vitalflow.api.app`), for
#: bodies FastAPI validates itself; `validate_request` passes them as the validation context.
ROOTS: ContextVar[tuple[str, ...]] = ContextVar("vitalflow_app_roots", default=())


def _roots(info: ValidationInfo) -> tuple[str, ...]:
    roots = (info.context or {}).get("roots") or ROOTS.get()
    if not roots:
        raise ValueError("no roots to check paths against")
    return tuple(roots)


def _check(value: Any, info: ValidationInfo, *, must_exist: bool) -> Optional[str]:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    sagemaker = (info.data or {}).get("target") == "sagemaker"
    try:
        return check_path(str(value), _roots(info), must_exist=must_exist and not sagemaker)
    except PathRefused as exc:
        raise ValueError(str(exc)) from None


class AppJobRequest(BaseModel):
    """What every kind shares: where the job runs, and for SageMaker, on what."""

    model_config = ConfigDict(extra="forbid")

    target: Literal["local", "sagemaker"] = Field("local", description="Run as a child process of the app, or "
                                                  "submit it as a SageMaker job (`vitalflow launch`).")
    instance_type: Optional[str] = Field(None, description="SageMaker: instance type (default: the kind's).")
    instance_count: int = Field(1, ge=1, le=100, description="SageMaker: instances.")
    spot: bool = Field(False, description="SageMaker: managed spot.")

    @field_validator("instance_type")
    @classmethod
    def _instance_type(cls, value: Optional[str]) -> Optional[str]:
        if value in (None, ""):
            return None
        if not INSTANCE_TYPE.match(value):
            raise ValueError(f"{value!r} is not a SageMaker instance type (e.g. ml.m5.xlarge)")
        return value

    @model_validator(mode="after")
    def _sagemaker(self):
        if self.target == "sagemaker":
            if self.kind not in SAGEMAKER_KINDS:
                raise ValueError(f"{self.kind} jobs run only locally (vitalflow launch has no {self.kind} kind)")
            for name in self.path_fields:
                value = getattr(self, name)
                if value is not None and not value.startswith("s3://") and name not in self.local_on_sagemaker:
                    raise ValueError(f"{name}: a SageMaker job reads and writes s3:// URIs, not {value}")
        return self

    #: what subclasses define: the kind (a field, the discriminator), the fields that are paths,
    #: and those a SageMaker job may take from a local file (the launcher sends them inline)
    kind: str
    path_fields: ClassVar[tuple[str, ...]] = ()
    local_on_sagemaker: ClassVar[tuple[str, ...]] = ()

    def arguments(self) -> list[str]:
        """The command's arguments after ``vitalflow <kind>`` (or ``vitalflow launch <kind>``)."""
        raise NotImplementedError

    def argv(self, resume: bool = False) -> list[str]:
        """``vitalflow``'s arguments for this job; ``resume`` leaves out ``--overwrite`` (a resumed
        run continues what is there)."""
        args = self.arguments()
        if resume:
            args = [a for a in args if a != "--overwrite"]
        if self.target == "sagemaker":
            extra = ["--instance-count", str(self.instance_count)]
            if self.instance_type:
                extra += ["--instance-type", self.instance_type]
            if self.spot:
                extra.append("--spot")
            return ["launch", self.kind, *args, *extra]
        return [self.kind, *args]


#: A per-case command run by the app writes a progress record every 2 s (both ``preprocess`` and
#: ``predict`` take this option: `vitalflow.cli.run`); its logs are JSON lines because the runner
#: sets ``VITALFLOW_LOG_FORMAT=json`` for every job (`vitalflow.api.runner.parse_line`).
STRUCTURED_PROGRESS = ("--progress-interval", "2")


def _opt(flag: str, value: Any) -> list[str]:
    return [] if value is None else [flag, str(value)]


def _flag(flag: str, on: bool) -> list[str]:
    return [flag] if on else []


class _Cases(BaseModel):
    cases: Optional[str] = Field(None, description='Cases, e.g. "1-10,17,0022" (default: all files).',
                                 examples=["1-10,17"])

    @field_validator("cases")
    @classmethod
    def _cases(cls, value: Optional[str]) -> Optional[str]:
        from vitalflow.run.cases import parse_case_selection

        if value is None or not value.strip():
            return None
        try:
            parse_case_selection(value.strip())
        except VitalflowError as exc:
            raise ValueError(str(exc)) from None
        return value.strip()


def _run_config(value: Optional[str]) -> Optional[str]:
    from vitalflow.spec import load_config

    if value is not None:
        try:
            load_config(value)
        except (VitalflowError, OSError) as exc:
            raise ValueError(str(exc)) from None
    return value


def _existing(value: Any, info: ValidationInfo) -> Optional[str]:
    return _check(value, info, must_exist=True)


def _written(value: Any, info: ValidationInfo) -> Optional[str]:
    return _check(value, info, must_exist=False)


def _train_config(value: Optional[str]) -> Optional[str]:
    from vitalflow.model.config import load_train_config

    if value is not None:
        try:
            load_train_config(value)
        except (VitalflowError, OSError) as exc:
            raise ValueError(str(exc)) from None
    return value


def _model_reference(value: Any, info: ValidationInfo) -> str:
    return _model(value, info)


#: The path and reference fields of the requests: each checked once, here (inside the roots; a
#: config also loaded and validated as the command would).
ExistingPath = Annotated[str, BeforeValidator(_existing)]
WrittenPath = Annotated[str, BeforeValidator(_written)]
OptionalWrittenPath = Annotated[Optional[str], BeforeValidator(_written)]
RunConfigPath = Annotated[Optional[str], BeforeValidator(_existing), AfterValidator(_run_config)]
TrainConfigPath = Annotated[Optional[str], BeforeValidator(_existing), AfterValidator(_train_config)]
ModelReference = Annotated[str, BeforeValidator(_model_reference)]


class PreprocessRequest(AppJobRequest, _Cases):
    """``vitalflow preprocess``: recordings + clinical table -> a dataset."""

    kind: Literal["preprocess"] = "preprocess"
    input: ExistingPath = Field(..., description="Folder (or s3:// prefix) of <caseid>.vital files.")
    clinical: ExistingPath = Field(..., description="The clinical table (CSV).")
    output: WrittenPath = Field(..., description="Output folder (or s3:// prefix).")
    config: RunConfigPath = Field(None, description="Run config YAML.")
    workers: int = Field(1, ge=1, le=256, description="Worker processes.")
    merge: bool = Field(False, description="Also write single split files.")
    retry_failed: bool = Field(False, description="On resume, run failed cases again.")
    overwrite: bool = Field(False, description="Delete what is in the output and start fresh.")
    path_fields: ClassVar[tuple[str, ...]] = ("input", "clinical", "output", "config")




    def arguments(self) -> list[str]:
        args = ["--input", self.input, "--clinical", self.clinical, "--output", self.output,
                *_opt("--cases", self.cases), *_opt("--config", self.config), "--workers", str(self.workers)]
        if self.target == "local":
            args += [*_flag("--merge", self.merge), *_flag("--retry-failed", self.retry_failed),
                     *_flag("--overwrite", self.overwrite), *STRUCTURED_PROGRESS]
        return args


class TrainRequest(AppJobRequest):
    """``vitalflow train``: a dataset -> a model directory (registered in the registry)."""

    kind: Literal["train"] = "train"
    dataset: ExistingPath = Field(..., description="A verified preprocess output.")
    output: WrittenPath = Field(..., description="The model directory to write.")
    config: TrainConfigPath = Field(None, description="Training config YAML (default: built-in).")
    register_model: bool = Field(True, description="Evaluate on the test split and register the model "
                                 "(`--register/--no-register`).")
    overwrite: bool = Field(False, description="Discard checkpoints and model and train from scratch.")
    path_fields: ClassVar[tuple[str, ...]] = ("dataset", "output", "config")
    local_on_sagemaker: ClassVar[tuple[str, ...]] = ("config",)




    def arguments(self) -> list[str]:
        if self.target == "sagemaker":
            return ["--dataset", self.dataset, "--output", self.output, *_opt("--config", self.config)]
        return [self.dataset, "--output", self.output, *_opt("--config", self.config),
                *_flag("--overwrite", self.overwrite), *_flag("--no-register", not self.register_model)]


def _model(value: Any, info: ValidationInfo) -> str:
    """A model reference: a model directory inside the roots, else NAME@ALIAS or NAME/VERSION
    (`vitalflow.registry.versions.ModelReference`, the one parser)."""
    from vitalflow.model.card import CARD_NAME
    from vitalflow.registry.versions import ModelReference

    text = str(value or "").strip()
    if not text:
        raise ValueError("a model is needed: NAME@ALIAS, NAME/VERSION or a model directory")
    try:
        path = check_path(text, _roots(info), must_exist=False)
    except PathRefused as exc:
        if ModelReference.parse(text) is not None:
            return text
        raise ValueError(str(exc)) from None
    if path.startswith("s3://") or ModelReference.parse(text) is None:
        return path
    from pathlib import Path

    return path if (Path(path) / CARD_NAME).is_file() else text  # a local folder wins, as in the CLI


class EvaluateRequest(AppJobRequest):
    """``vitalflow evaluate``: a model on a dataset's split, against the baselines."""

    kind: Literal["evaluate"] = "evaluate"
    model: ModelReference = Field(..., description="NAME@ALIAS, NAME/VERSION or a model directory.")
    dataset: ExistingPath = Field(..., description="A verified preprocess output made with the model's spec.")
    split: Literal["train", "validation", "test"] = "test"
    output: OptionalWrittenPath = Field(None, description="Where metrics and report go (default: <model>/evaluation/<split>).")
    path_fields: ClassVar[tuple[str, ...]] = ("dataset", "output")




    def arguments(self) -> list[str]:
        return [self.model, self.dataset, "--split", self.split, *_opt("--output", self.output)]


class PredictRequest(AppJobRequest, _Cases):
    """``vitalflow predict``: a model over recordings -> per-case prediction timelines."""

    kind: Literal["predict"] = "predict"
    model: ModelReference = Field(..., description="NAME@ALIAS, NAME/VERSION or a model directory.")
    input: ExistingPath = Field(..., description="Folder (or s3:// prefix) of <caseid>.vital files.")
    clinical: ExistingPath = Field(..., description="The clinical table (CSV).")
    output: WrittenPath = Field(..., description="Output folder (or s3:// prefix).")
    config: RunConfigPath = Field(None, description="Run config YAML (crop, window step, limits).")
    workers: int = Field(1, ge=1, le=256, description="Worker processes.")
    csv: bool = Field(False, description="Also write each case's table as CSV.")
    plots: bool = Field(False, description="Also write a PNG timeline per case.")
    overwrite: bool = Field(False, description="Delete this run's predictions and start fresh.")
    path_fields: ClassVar[tuple[str, ...]] = ("input", "clinical", "output", "config")





    def arguments(self) -> list[str]:
        args = ["--model", self.model, "--input", self.input, "--clinical", self.clinical, "--output", self.output,
                *_opt("--cases", self.cases), *_opt("--config", self.config), "--workers", str(self.workers)]
        if self.target == "local":
            args += [*_flag("--csv", self.csv), *_flag("--plots", self.plots), *_flag("--overwrite", self.overwrite),
                     *STRUCTURED_PROGRESS]
        return args


REQUESTS: dict[str, type[AppJobRequest]] = {"preprocess": PreprocessRequest, "train": TrainRequest,
                                         "evaluate": EvaluateRequest, "predict": PredictRequest}
AnyRequest = Annotated[Union[PreprocessRequest, TrainRequest, EvaluateRequest, PredictRequest],
                       Field(discriminator="kind")]


def validate_request(kind: str, data: dict, roots: tuple[str, ...]) -> AppJobRequest:
    """The request of ``kind`` from ``data`` (a form's or a JSON body's fields), checked against ``roots``;
    raises pydantic's ValidationError."""
    model = REQUESTS[kind]
    return model.model_validate({**data, "kind": kind}, context={"roots": roots})


