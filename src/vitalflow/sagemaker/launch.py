"""Build, submit and watch the SageMaker jobs that run a vitalflow command on every host.

A **job kind** (:class:`JobKind`, registered in :data:`JOB_KINDS`) says which vitalflow command a
job runs, which of its arguments are S3 locations and how each reaches the container, and which
instance, image and spot rules apply. ``preprocess`` (:data:`PREPROCESS`), ``train``
(:data:`TRAIN`) and ``predict`` (:data:`PREDICT`) are registered; another is one more :func:`register` call: the
request builders, the ``vitalflow launch <kind>`` command line (:mod:`vitalflow.cli.sagemaker`) and
the script a job runs (``entry.py``) all follow the registry.

One job, N instances, the same command on each (``preprocess`` hosts derive their share of the
cases from the job's resource config, ``vitalflow.sagemaker.env``, so nothing is sharded in S3).
A job runs in one of SageMaker's two container types:

- a **processing-job container** (``CreateProcessingJob``; the default, "preprocess as a
  processing job"): the code prefix ``<output>/_code/<job>/`` (``source.tar.gz`` and
  ``entry.py``) is a ``ProcessingInput`` downloaded to ``/opt/ml/processing/input/code``, and
  ``AppSpecification.ContainerEntrypoint`` runs ``python3 .../entry.py`` with the vitalflow
  command line (``preprocess --input ...``) as ``ContainerArguments``;
- a **training-job container** (``CreateTrainingJob``), the only type with managed spot, so
  ``spot=True`` ("preprocess as a spot job") runs there: the framework container's script mode
  downloads ``sagemaker_submit_directory`` (the tarball), extracts it to ``/opt/ml/code`` and runs
  ``sagemaker_program`` (``entry.py``), which reads the command line from
  ``/opt/ml/input/config/hyperparameters.json`` (every value a string): ``vitalflow_command``
  holds the command and its positional arguments (``train /opt/ml/input/data/dataset``, shell
  quoted), every key that starts with neither ``vitalflow_`` nor ``sagemaker_`` is an option
  (``output``), and ``vitalflow_inline_<option>`` carries a file's content (see ``entry.py``).
  Option names have no underscores, so no option can clash with these keys. With spot,
  ``CheckpointConfig`` syncs ``/opt/ml/checkpoints`` with ``<output>/_checkpoints/`` and
  ``MaxWaitTimeInSeconds`` defaults to twice the maximum run time. Without spot
  (``container=TRAINING_JOB``) it is an on-demand job that may run longer than a processing
  job's 9 days.

**Training** (:data:`TRAIN`, ``vitalflow launch train --dataset s3://b/ds --output s3://b/models/m1
[--config train.yaml] [--spot]``) runs the command a user runs locally, ``vitalflow train
DATASET --output MODEL_DIR --checkpoints DIR [--config FILE]``, as a training job on one
instance of the SageMaker TensorFlow image:

- the dataset prefix is the input channel ``dataset`` (``InputDataConfig``), downloaded before
  the command starts to ``/opt/ml/input/data/dataset``, the command's positional DATASET;
- the command writes its model directory to ``/opt/ml/model`` (``--output /opt/ml/model``: an
  :data:`OUTPUT` with ``local_path``), which SageMaker uploads when the command ends as
  ``<output>/_sagemaker/<job>/output/model.tar.gz`` (``OutputDataConfig``);
- ``CheckpointConfig`` (``<output>/_checkpoints/`` <-> ``/opt/ml/checkpoints``) on every train
  job, spot or not, and the command gets ``--checkpoints /opt/ml/checkpoints``;
- ``--config`` (a local YAML or an ``s3://`` URI) is read and validated by the launcher with
  :func:`vitalflow.model.config.load_train_config` (a bad config fails before anything is
  uploaded or sent) and travels as its JSON in one hyperparameter, ``vitalflow_inline_config``
  (at most 2,500 characters); ``entry.py`` writes it to
  ``/opt/ml/input/config/vitalflow-config.json`` (JSON is YAML) and passes ``--config`` that file.

  Stopping: SageMaker sends SIGTERM (a stopped job, the end of ``--max-run``, a reclaimed spot
  instance) and ``vitalflow train`` exits 75 after saving what it can to ``--checkpoints``.
  SageMaker restarts an interrupted **managed-spot** job by itself, on a new instance, with
  ``/opt/ml/checkpoints`` restored from ``<output>/_checkpoints/``, so training resumes there.
  An on-demand job is not restarted; launching it again with the same ``--output`` restores the
  same checkpoints into the new job.

The default image of ``preprocess`` is the official **SageMaker scikit-learn 1.4-2 CPU image**
(``<account>.dkr.ecr.<region>.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3``): a CPU-only
framework image with Python 3.10 (vitalflow's minimum) and numpy/pandas, far smaller than the
PyTorch/TensorFlow deep learning images (no CUDA, no framework we do not use), carrying the
SageMaker training toolkit that gives training-job containers script mode, and the image the
SageMaker SDK's ``SKLearnProcessor`` uses for processing jobs. ``train`` needs TensorFlow >= 2.16
(Keras 3): its default is the official **SageMaker TensorFlow 2.19.0 training CPU image**
(``tensorflow-training:2.19.0-cpu-py312``, the newest TF 2.x training image, Python 3.12). The
registry accounts per region are copied from ``sagemaker-core`` (``image_uri_config/sklearn.json``
and ``tensorflow.json``, the data behind ``sagemaker.core.image_uris.retrieve``) into
:data:`SKLEARN` and :data:`TENSORFLOW`, so no SageMaker SDK is needed: ``sagemaker-core`` would
pull ~50 packages (scipy, pandas, paramiko, ...) into the control plane for one table lookup.
``image`` overrides it (any image with ``python3`` >= 3.10 and pip; the job installs vitalflow
and its dependencies from PyPI at start, so it needs internet access). The pip extras a job
installs are the kind's (``aws``; ``aws,train`` for ``train``), sent as ``VITALFLOW_PIP_EXTRAS``
in the job's environment; how ``entry.py`` keeps the image's own TensorFlow is explained there.

Limits checked before anything is sent (from the SageMaker API): a processing job runs at most
777,600 s (9 days) on 1-100 instances; a training-job container at most 28 days;
``MaxWaitTimeInSeconds`` must be at least the run time; job names are at most 63 letters, digits
and hyphens; every container argument and processing environment value at most 256 characters.

Request builders are pure (options in, request dict out; :func:`resolve` reads the files an
:data:`INLINE` argument names before); boto3 is called only by
:func:`upload_code`, :func:`submit` and the watching functions. Nothing here prints: progress
reaches the caller through the ``on_event`` callback.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import io
import json
import os
import re
import shlex
import tarfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from vitalflow.errors import LaunchError
from vitalflow.sagemaker.aws import (JOB_NAME, ROLE_ENV, aws_call, aws_client, check_role_and_region,
                                     resolve_region, split_s3)
from vitalflow.model.config import load_train_config
from vitalflow.sagemaker.entry import (COMMAND_KEY, DEFAULT_EXTRAS, EXTRAS_ENV, INLINE_PREFIX,
                                       command_from_hyperparameters)
from vitalflow.sagemaker.env import PROCESSING_JOB, TRAINING_JOB

CONTAINERS = (PROCESSING_JOB, TRAINING_JOB)
DEFAULT_INSTANCE_TYPE = "ml.m5.2xlarge"
DEFAULT_MAX_RUN_S = 26 * 3600  # the Master POC plan's 26 h budget for the full preprocessing run
DEFAULT_VOLUME_GB = 50
PROCESSING_MAX_RUN_S = 777_600  # ProcessingStoppingCondition.MaxRuntimeInSeconds maximum (9 days)
TRAINING_MAX_RUN_S = 28 * 86_400  # StoppingCondition.MaxRuntimeInSeconds: "The maximum value is 28 days"
PROCESSING_MAX_INSTANCES = 100  # ProcessingClusterConfig.InstanceCount maximum
PROCESSING_MAX_VOLUME_GB = 16_384
MAX_ARGUMENT_CHARS = 256  # ContainerArgument, ProcessingEnvironmentValue
MAX_HYPERPARAMETER_CHARS = 2500

CODE_DIR = "_code"
CHECKPOINT_DIR = "_checkpoints"
SAGEMAKER_OUTPUT_DIR = "_sagemaker"
TARBALL = "source.tar.gz"
ENTRY = "entry.py"
CODE_INPUT = "code"
PROCESSING_INPUT_PATH = "/opt/ml/processing/input"
PROCESSING_CODE_PATH = f"{PROCESSING_INPUT_PATH}/{CODE_INPUT}"
TRAINING_CHANNEL_PATH = "/opt/ml/input/data"
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
MODEL_LOCAL_PATH = "/opt/ml/model"  # uploaded as <S3OutputPath>/<job>/output/model.tar.gz
#: The directories a training job uploads when it ends: where an OUTPUT with ``local_path`` may point.
UPLOADED_LOCAL_PATHS = (MODEL_LOCAL_PATH, "/opt/ml/output/data")
TRAIN_INSTANCE_TYPE = "ml.c5.2xlarge"  # 8 vCPUs, 16 GiB: a CPU Keras CNN-LSTM is compute-bound
TRAIN_MAX_RUN_S = 24 * 3600


@dataclass(frozen=True)
class FrameworkImage:
    """An official SageMaker framework image: ``<account>.dkr.ecr.<region>.<domain>/<repository>``."""

    description: str  # "scikit-learn 1.4-2 CPU"
    repository: str  # "sagemaker-scikit-learn:1.4-2-cpu-py3"
    accounts: Mapping[str, str]  # region -> registry account

    def uri(self, region: str) -> str:
        account = self.accounts.get(region)
        if account is None:
            raise LaunchError(f"no default image known for region {region!r}: pass --image with an image URI")
        domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
        return f"{account}.dkr.ecr.{region}.{domain}/{self.repository}"


SKLEARN_IMAGE = "sagemaker-scikit-learn:1.4-2-cpu-py3"
#: Registry account of the official scikit-learn 1.4-2 image per region (from sagemaker-core 2.27.0).
SKLEARN_ACCOUNTS = {
    "af-south-1": "510948584623", "ap-east-1": "651117190479", "ap-northeast-1": "354813040037",
    "ap-northeast-2": "366743142698", "ap-northeast-3": "867004704886", "ap-south-1": "720646828776",
    "ap-south-2": "628508329040", "ap-southeast-1": "121021644041", "ap-southeast-2": "783357654285",
    "ap-southeast-3": "951798379941", "ap-southeast-4": "106583098589", "ca-central-1": "341280168497",
    "ca-west-1": "190319476487", "cn-north-1": "450853457545", "cn-northwest-1": "451049120500",
    "eu-central-1": "492215442770", "eu-central-2": "680994064768", "eu-north-1": "662702820516",
    "eu-south-1": "978288397137", "eu-south-2": "104374241257", "eu-west-1": "141502667606",
    "eu-west-2": "764974769150", "eu-west-3": "659782779980", "il-central-1": "898809789911",
    "me-central-1": "272398656194", "me-south-1": "801668240914", "sa-east-1": "737474898029",
    "us-east-1": "683313688378", "us-east-2": "257758044811", "us-gov-east-1": "237065988967",
    "us-gov-west-1": "414596584902", "us-west-1": "746614075791", "us-west-2": "246618743249",
}
SKLEARN = FrameworkImage("scikit-learn 1.4-2 CPU", SKLEARN_IMAGE, SKLEARN_ACCOUNTS)

TENSORFLOW_IMAGE = "tensorflow-training:2.19.0-cpu-py312"
#: Registry account of the official TensorFlow 2.19.0 training image per region (from sagemaker-core,
#: ``image_uri_config/tensorflow.json``, ``training`` 2.19.0: py312, cpu and gpu).
TENSORFLOW_ACCOUNTS = {
    "af-south-1": "626614931356", "ap-east-1": "871362719292", "ap-east-2": "975050140332",
    "ap-northeast-1": "763104351884", "ap-northeast-2": "763104351884", "ap-northeast-3": "364406365360",
    "ap-south-1": "763104351884", "ap-south-2": "772153158452", "ap-southeast-1": "763104351884",
    "ap-southeast-2": "763104351884", "ap-southeast-3": "907027046896", "ap-southeast-4": "457447274322",
    "ap-southeast-5": "550225433462", "ap-southeast-6": "633930458069", "ap-southeast-7": "590183813437",
    "ca-central-1": "763104351884", "ca-west-1": "204538143572", "cn-north-1": "727897471807",
    "cn-northwest-1": "727897471807", "eu-central-1": "763104351884", "eu-central-2": "380420809688",
    "eu-north-1": "763104351884", "eu-south-1": "692866216735", "eu-south-2": "503227376785",
    "eu-west-1": "763104351884", "eu-west-2": "763104351884", "eu-west-3": "763104351884",
    "il-central-1": "780543022126", "me-central-1": "914824155844", "me-south-1": "217643126080",
    "mx-central-1": "637423239942", "sa-east-1": "763104351884", "us-east-1": "763104351884",
    "us-east-2": "763104351884", "us-gov-east-1": "446045086412", "us-gov-west-1": "442386744353",
    "us-west-1": "763104351884", "us-west-2": "763104351884",
}
TENSORFLOW = FrameworkImage("TensorFlow 2.19.0 training CPU", TENSORFLOW_IMAGE, TENSORFLOW_ACCOUNTS)

_DURATION = re.compile(r"\s*(\d+)\s*([smhd]?)\s*")
_OPTION_NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
_TERMINAL = {"Completed", "Failed", "Stopped"}


def default_job_name(now: _dt.datetime | None = None) -> str:
    """``vitalflow-YYYYmmdd-HHMMSS`` (UTC).

    >>> default_job_name(_dt.datetime(2026, 1, 2, 3, 4, 5))
    'vitalflow-20260102-030405'
    """
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("vitalflow-%Y%m%d-%H%M%S")


def parse_duration(text: str | int) -> int:
    """Seconds from ``93600``, ``"93600"``, ``"90m"``, ``"26h"`` or ``"2d"``.

    >>> parse_duration("26h"), parse_duration("90m"), parse_duration(45), parse_duration("2d")
    (93600, 5400, 45, 172800)
    """
    if isinstance(text, int):
        return text
    match = _DURATION.fullmatch(str(text))
    if not match:
        raise LaunchError(f"bad duration {text!r}: use seconds or a number with s, m, h or d (e.g. 26h)")
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


# ---------------------------------------------------------------------------------------------
# Job kinds: the vitalflow command a job runs, how its options reach the container, its rules
# ---------------------------------------------------------------------------------------------

#: How an option's value reaches the command (:attr:`Arg.role`).
VALUE, S3_INPUT, CHANNEL, OUTPUT, INLINE = "value", "s3-input", "channel", "output", "inline"
ROLES = (VALUE, S3_INPUT, CHANNEL, OUTPUT, INLINE)


@dataclass(frozen=True)
class Arg:
    """One argument of the command a job kind runs: ``--<name> VALUE``, or with ``positional``
    just ``VALUE``, after the command and before its options (in the kinds' order). ``vitalflow
    launch <kind>`` takes every argument as an option ``--<name>``.

    ``role`` says what the value is and how it reaches the command:

    - :data:`VALUE`: passed as given (``--cases 1-10``);
    - :data:`S3_INPUT`: an ``s3://`` URI the command reads itself (each host streams what it
      needs), passed as given;
    - :data:`CHANNEL`: an ``s3://`` URI SageMaker downloads to every instance before the command
      starts (a ``ProcessingInput`` to ``/opt/ml/processing/input/<name>``, or an
      ``InputDataConfig`` channel to ``/opt/ml/input/data/<name>``); the command gets that local
      directory, or with ``file=True`` the downloaded file in it;
    - :data:`OUTPUT`: the ``s3://`` prefix of the job's output, exactly one per kind; the job's
      code (``_code/``), checkpoints (``_checkpoints/``) and SageMaker output (``_sagemaker/``) go
      below it. The command writes the prefix itself (each S3 object appears whole, which resume
      relies on; SageMaker's own output upload happens at the end or file by file), or with
      ``local_path`` (``/opt/ml/model``, training-job containers only) the command gets that
      local directory and SageMaker uploads it when the command ends, as ``model.tar.gz`` under
      ``<output>/_sagemaker/<job>/output/``;
    - :data:`INLINE`: a local path or ``s3://`` URI of a small file the launcher reads with
      ``load`` (path -> text; it validates, and raises with one line) when the options are
      resolved; the text travels in the request (the hyperparameter ``vitalflow_inline_<name>``,
      training-job containers only) and the command gets the file ``entry.py`` writes it to.

    ``help``, ``short`` and ``required`` make the ``vitalflow launch <kind>`` option; ``type`` is
    ``str`` or ``int`` (with an optional ``minimum``).
    """

    name: str
    role: str = VALUE
    help: str = ""
    required: bool = False
    type: type = str
    minimum: int | None = None
    short: str | None = None
    file: bool = False
    positional: bool = False
    local_path: str | None = None  # OUTPUT only: the directory the command writes, uploaded by SageMaker
    # CHANNEL only: a value that is not an s3:// URI (a registry reference such as NAME@ALIAS) is
    # passed as given instead of being downloaded
    or_value: bool = False
    load: Callable[[str], str] | None = field(default=None, compare=False)  # INLINE only

    @property
    def is_s3(self) -> bool:
        return self.role in (S3_INPUT, CHANNEL, OUTPUT)

    def problems(self) -> list[str]:
        """What is wrong with this argument on its own (empty when nothing)."""
        found = []
        if not _OPTION_NAME.fullmatch(self.name):
            found.append(f"bad option name {self.name!r}")
        if self.role not in ROLES:
            found.append(f"option {self.name!r}: unknown role {self.role!r}")
        if self.role == CHANNEL and self.name == CODE_INPUT:
            found.append(f"channel {self.name!r} is reserved for the job's code")
        if self.positional and (self.role == INLINE or not self.required):
            found.append(f"positional {self.name!r} must be required and not {INLINE}")
        if self.local_path is not None and (self.role != OUTPUT or self.local_path not in UPLOADED_LOCAL_PATHS):
            found.append(f"option {self.name!r}: local_path is for an OUTPUT, one of {', '.join(UPLOADED_LOCAL_PATHS)}")
        if self.or_value and self.role != CHANNEL:
            found.append(f"option {self.name!r}: or_value is for a {CHANNEL}")
        if (self.role == INLINE) != (self.load is not None):
            found.append(f"option {self.name!r}: an {INLINE} option, and only one, needs load")
        return found


@dataclass(frozen=True)
class JobKind:
    """A kind of job: ``vitalflow <command> --<arg> VALUE ...`` on every instance, and its rules.

    ``containers``: the SageMaker container types it may run in, the first being the default
    without spot; ``spot``: whether managed spot is allowed (it needs a training-job container);
    ``max_instances``: a lower limit than SageMaker's (1 for a single-host command);
    ``instance_type`` and ``max_run``: the defaults of ``--instance-type`` and ``--max-run``;
    ``image``: the default image; ``extras``: the pip extras the job installs with vitalflow;
    ``checkpoints``: the option through which the command gets ``/opt/ml/checkpoints`` (not an
    option of ``vitalflow launch``), with ``CheckpointConfig`` on every job, spot or not.
    A kind with an :data:`INLINE` option, an OUTPUT with ``local_path`` or ``checkpoints`` runs
    only in training-job containers.
    """

    name: str
    args: tuple[Arg, ...]
    summary: str = ""
    command: str = ""  # the vitalflow subcommand; default: name
    containers: tuple[str, ...] = CONTAINERS
    spot: bool = True
    max_instances: int | None = None
    instance_type: str = DEFAULT_INSTANCE_TYPE
    max_run: int = DEFAULT_MAX_RUN_S
    image: FrameworkImage = SKLEARN
    extras: tuple[str, ...] = (DEFAULT_EXTRAS,)
    checkpoints: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "command", self.command or self.name)
        names = [a.name for a in self.args] + ([self.checkpoints] if self.checkpoints else [])
        problems = [p for a in self.args for p in a.problems()]
        if self.checkpoints and not _OPTION_NAME.fullmatch(self.checkpoints):
            problems.append(f"bad option name {self.checkpoints!r}")
        problems += [f"option {n!r} given twice" for n in sorted(set(names)) if names.count(n) > 1]
        if self.containers != (TRAINING_JOB,) and (self.checkpoints or any(
                a.role == INLINE or a.local_path for a in self.args)):
            problems.append(f"inline files, local outputs and checkpoints need containers=({TRAINING_JOB!r},)")
        if not self.extras or not all(re.fullmatch(r"[a-z0-9][a-z0-9-]*", e) for e in self.extras):
            problems.append("extras must be pip extra names")
        if [a.role for a in self.args].count(OUTPUT) != 1:
            problems.append("needs exactly one OUTPUT option")
        if not self.containers or set(self.containers) - set(CONTAINERS):
            problems.append(f"containers must be among {CONTAINERS}")
        if self.spot and TRAINING_JOB not in self.containers:
            problems.append("managed spot needs the training-job container")
        if not _OPTION_NAME.fullmatch(self.name) or not self.command.strip():
            problems.append("needs a name (lowercase, hyphens) and a command")
        if problems:
            raise ValueError(f"job kind {self.name!r}: " + "; ".join(problems))

    @property
    def output(self) -> Arg:
        return next(a for a in self.args if a.role == OUTPUT)


#: The registered job kinds by name (``vitalflow launch <name>``).
JOB_KINDS: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    """Add ``kind`` to :data:`JOB_KINDS` (a name registered already is refused)."""
    if kind.name in JOB_KINDS:
        raise ValueError(f"job kind {kind.name!r} is registered already")
    JOB_KINDS[kind.name] = kind
    return kind


def job_kind(name: str) -> JobKind:
    try:
        return JOB_KINDS[name]
    except KeyError:
        raise LaunchError(f"unknown job kind {name!r}: one of {', '.join(sorted(JOB_KINDS))}") from None


PREPROCESS = register(JobKind(
    "preprocess",
    summary="recordings to train/validation/test TFRecords; the instances split the cases among themselves",
    args=(
        Arg("input", S3_INPUT, "s3:// prefix of the <caseid>.vital files.", required=True, short="-i"),
        Arg("clinical", S3_INPUT, "s3:// URI of the VitalDB clinical table (CSV).", required=True, short="-c"),
        Arg("output", OUTPUT, "s3:// output prefix (code goes to <output>/_code/).", required=True, short="-o"),
        Arg("cases", VALUE, 'Cases to process, e.g. "1-3000" (default: all files).'),
        Arg("config", S3_INPUT, "s3:// URI of a run config YAML."),
        Arg("workers", VALUE, "Worker processes per instance (default: the instance's CPU count).",
            type=int, minimum=1, short="-w"),
    ),
))
DEFAULT_KIND = PREPROCESS.name


def _train_config_json(path: str) -> str:
    """The train config at ``path`` (local or s3://), validated, as JSON (a bad one: one-line SpecError)."""
    return load_train_config(path).model_dump_json()


TRAIN = register(JobKind(
    "train",
    summary="trains the model on a dataset downloaded to the instance; SageMaker uploads the model "
            "directory as <output>/_sagemaker/<job>/output/model.tar.gz",
    args=(
        Arg("dataset", CHANNEL, "s3:// prefix of a preprocessed dataset (downloaded to the instance).",
            required=True, positional=True, short="-d"),
        Arg("output", OUTPUT, "s3:// prefix for the model (<output>/_sagemaker/), checkpoints and code.",
            required=True, short="-o", local_path=MODEL_LOCAL_PATH),
        Arg("config", INLINE, "Train config YAML, a local path or s3:// URI (checked before anything is sent).",
            short="-c", load=_train_config_json),
    ),
    containers=(TRAINING_JOB,), max_instances=1, instance_type=TRAIN_INSTANCE_TYPE, max_run=TRAIN_MAX_RUN_S,
    image=TENSORFLOW, extras=("aws", "train"), checkpoints="checkpoints",
))


PREDICT = register(JobKind(
    "predict",
    summary="batch prediction over recordings with a model (its own spec); the instances split the cases "
            "among themselves; case tables and the prediction card go to <output>",
    args=(
        Arg("model", CHANNEL, "Model: the s3:// prefix of a model directory (downloaded to each instance), or a "
            "registry reference NAME@ALIAS / NAME/VERSION (resolved in the job: set MLFLOW_TRACKING_URI).",
            required=True, short="-m", or_value=True),
        Arg("input", S3_INPUT, "s3:// prefix of the <caseid>.vital files.", required=True, short="-i"),
        Arg("clinical", S3_INPUT, "s3:// URI of the VitalDB clinical table (CSV).", required=True, short="-c"),
        Arg("output", OUTPUT, "s3:// output prefix for cases/, the ledger and the card (code goes to "
            "<output>/_code/).", required=True, short="-o"),
        Arg("cases", VALUE, 'Cases to predict, e.g. "1-3000" (default: all files).'),
        Arg("config", S3_INPUT, "s3:// URI of a run config YAML (crop, window step, limits)."),
        Arg("workers", VALUE, "Worker processes per instance (default: the instance's CPU count).",
            type=int, minimum=1, short="-w"),
    ),
    containers=(PROCESSING_JOB, TRAINING_JOB), image=TENSORFLOW, extras=("aws", "train"),
))


def variant(container: str, spot: bool, command: str | None = None) -> str:
    """How a job runs, in words.

    >>> variant(PROCESSING_JOB, False, "preprocess"), variant(TRAINING_JOB, True, "preprocess")
    ('preprocess as a processing job', 'preprocess as a spot job')
    >>> variant(TRAINING_JOB, False)
    'on-demand job in a training-job container'
    """
    if container == PROCESSING_JOB:
        label = "processing job"
    else:
        label = "spot job" if spot else "on-demand job in a training-job container"
    if command is None:
        return label
    return f"{command} as {'an' if label[0] in 'aeiou' else 'a'} {label}"


@dataclass(frozen=True)
class LaunchOptions:
    """What to run and where: ``vitalflow <command of kind>`` with ``arguments`` (option name ->
    value; ``None`` leaves an option out) on ``instance_count`` instances. ``None`` for
    ``instance_type``, ``container`` and ``max_run`` means the kind's default (see :func:`settle`)."""

    arguments: Mapping[str, Any]
    kind: str = DEFAULT_KIND
    instance_count: int = 1
    instance_type: str | None = None
    container: str | None = None  # PROCESSING_JOB | TRAINING_JOB; None: TRAINING_JOB with spot, else the kind's
    spot: bool = False
    max_run: int | None = None
    max_wait: int | None = None  # spot only; default 2 x max_run
    volume_gb: int = DEFAULT_VOLUME_GB
    role: str | None = None
    region: str | None = None
    image: str | None = None
    job_name: str = field(default_factory=default_job_name)
    #: INLINE option name -> the text its file holds (read by :func:`resolve`).
    inline: Mapping[str, str] = field(default_factory=dict)

    @property
    def job(self) -> JobKind:
        return job_kind(self.kind)

    @property
    def output_prefix(self) -> str:
        return str(self.arguments.get(self.job.output.name) or "").rstrip("/")

    @property
    def code_prefix(self) -> str:
        """``<output>/_code/<job>/``: the tarball and entry.py of this job."""
        return f"{self.output_prefix}/{CODE_DIR}/{self.job_name}/"

    @property
    def code_uri(self) -> str:
        return self.code_prefix + TARBALL

    @property
    def checkpoint_uri(self) -> str:
        return f"{self.output_prefix}/{CHECKPOINT_DIR}/"

    @property
    def variant(self) -> str:
        """``"preprocess as a processing job"``, ``"preprocess as a spot job"``, ..."""
        settled = settle(self)
        return variant(settled.container, settled.spot, settled.job.command)


# ---------------------------------------------------------------------------------------------
# Options: defaults from the kind and the environment, validation
# ---------------------------------------------------------------------------------------------

def settle(options: LaunchOptions) -> LaunchOptions:
    """Fill ``container``, ``instance_type`` and ``max_run`` from the job kind when not given. Pure."""
    kind = options.job
    return replace(options, container=options.container or (TRAINING_JOB if options.spot else kind.containers[0]),
                   instance_type=options.instance_type or kind.instance_type,
                   max_run=kind.max_run if options.max_run is None else options.max_run)


def resolve(options: LaunchOptions, environ: dict[str, str] | None = None) -> LaunchOptions:
    """:func:`settle`, fill ``role`` from ``$VITALFLOW_SAGEMAKER_ROLE`` and ``region`` from
    ``$AWS_REGION``, ``$AWS_DEFAULT_REGION`` or the AWS profile, when not given, and read the
    files of the kind's :data:`INLINE` options (:func:`read_inline`: a bad file raises; nothing
    else is validated)."""
    environ = os.environ if environ is None else environ
    role = options.role or environ.get(ROLE_ENV) or None
    return read_inline(settle(replace(options, role=role, region=resolve_region(options.region, environ))))


def read_inline(options: LaunchOptions) -> LaunchOptions:
    """``options`` with the text of every :data:`INLINE` option given (its ``load`` applied to the
    path), unless read already. Raises what ``load`` raises, e.g. a one-line ``SpecError``."""
    inline = dict(options.inline)
    for arg in options.job.args:
        value = options.arguments.get(arg.name)
        if arg.role == INLINE and value is not None and arg.name not in inline:
            inline[arg.name] = arg.load(str(value))
    return replace(options, inline=inline)


def _as_channel(arg: Arg, value: Any) -> bool:
    """Whether ``value`` of ``arg`` is downloaded as a channel (an ``or_value`` channel's
    non-S3 value is passed as given)."""
    return arg.role == CHANNEL and not (arg.or_value and not str(value).startswith("s3://"))


def _check_argument(arg: Arg, value: Any) -> None:
    if arg.or_value and not str(value).startswith("s3://"):
        if not str(value).strip() or "://" in str(value):
            raise LaunchError(f"--{arg.name} must be an s3:// URI or a registry reference such as NAME@ALIAS "
                              f"(got {value!r})")
        return
    if arg.is_s3 and not re.fullmatch(r"s3://[^/\s]+(/.*)?", str(value)):
        raise LaunchError(f"--{arg.name} must be an s3:// URI (got {value!r}): a SageMaker job reads and writes S3")
    if arg.role == CHANNEL and arg.file and str(value).endswith("/"):
        raise LaunchError(f"--{arg.name} must name one S3 object, not a prefix (got {value!r})")
    if arg.type is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise LaunchError(f"--{arg.name} must be a whole number (got {value!r})")
        if arg.minimum is not None and value < arg.minimum:
            raise LaunchError(f"--{arg.name} must be at least {arg.minimum} (got {value})")


def _validate_arguments(o: LaunchOptions) -> None:
    kind = o.job
    unknown = sorted(set(o.arguments) - {a.name for a in kind.args})
    if unknown:
        raise LaunchError(f"{kind.name} has no option --{unknown[0]}")
    for arg in kind.args:
        value = o.arguments.get(arg.name)
        if value is None:
            if arg.required:
                raise LaunchError(f"{kind.name} needs --{arg.name}")
            continue
        _check_argument(arg, value)
    if o.output_prefix.count("/") < 3:
        raise LaunchError(f"--{kind.output.name} must name a prefix inside the bucket, e.g. s3://bucket/out "
                          f"(got {o.arguments[kind.output.name]!r})")


def _validate_resources(o: LaunchOptions) -> None:
    kind = o.job
    if o.container not in CONTAINERS:
        raise LaunchError(f"--container must be {' or '.join(CONTAINERS)} (got {o.container!r})")
    if o.spot and not kind.spot:
        raise LaunchError(f"{kind.name} cannot run with managed spot")
    if o.container not in kind.containers:
        raise LaunchError(f"{kind.name} does not run in a {o.container} container")
    if o.spot and o.container != TRAINING_JOB:
        raise LaunchError(f"managed spot needs a {TRAINING_JOB} container: drop --container {o.container} "
                          f"(--spot implies {TRAINING_JOB})")
    if o.max_wait is not None and not o.spot:
        raise LaunchError("--max-wait applies only to managed spot jobs (--spot)")
    if not o.instance_type.startswith("ml."):
        raise LaunchError(f"--instance-type must be a SageMaker instance type like {DEFAULT_INSTANCE_TYPE} "
                          f"(got {o.instance_type!r})")
    for name, value in (("instance-count", o.instance_count), ("volume-gb", o.volume_gb)):
        if value < 1:
            raise LaunchError(f"--{name} must be at least 1 (got {value})")
    if o.max_run < 1:
        raise LaunchError(f"--max-run must be at least 1 s (got {o.max_run})")
    if kind.max_instances is not None and o.instance_count > kind.max_instances:
        raise LaunchError(f"--instance-count {o.instance_count}: {kind.name} runs on at most "
                          f"{kind.max_instances} instance{'s' if kind.max_instances > 1 else ''}")
    if o.container == PROCESSING_JOB:
        if o.instance_count > PROCESSING_MAX_INSTANCES:
            raise LaunchError(f"--instance-count {o.instance_count}: a processing job has at most "
                              f"{PROCESSING_MAX_INSTANCES} instances")
        if o.max_run > PROCESSING_MAX_RUN_S:
            raise LaunchError(f"--max-run {o.max_run} s: a processing job runs at most {PROCESSING_MAX_RUN_S} s "
                              f"(9 days); use --container {TRAINING_JOB} for up to 28 days")
        if o.volume_gb > PROCESSING_MAX_VOLUME_GB:
            raise LaunchError(f"--volume-gb {o.volume_gb}: a processing job has at most {PROCESSING_MAX_VOLUME_GB} GB")
    else:
        if o.max_run > TRAINING_MAX_RUN_S:
            raise LaunchError(f"--max-run {o.max_run} s: a {TRAINING_JOB} container runs at most "
                              f"{TRAINING_MAX_RUN_S} s (28 days)")
        if o.max_wait is not None and not o.max_run <= o.max_wait <= TRAINING_MAX_RUN_S:
            raise LaunchError(f"--max-wait {o.max_wait} s must be at least --max-run ({o.max_run} s) and at most "
                              f"{TRAINING_MAX_RUN_S} s (28 days)")


def validate(options: LaunchOptions) -> None:
    """Raise :class:`LaunchError` naming the first option that SageMaker would refuse."""
    o = settle(options)
    check_role_and_region(o.role, o.region, "the job")
    _validate_arguments(o)
    if not JOB_NAME.fullmatch(o.job_name):
        raise LaunchError(f"bad job name {o.job_name!r}: 1-63 letters, digits and hyphens, "
                          "starting and ending with a letter or digit")
    _validate_resources(o)


def max_wait_seconds(options: LaunchOptions) -> int | None:
    """Spot only: ``max_wait``, else 2 x ``max_run`` capped at 28 days (never below ``max_run``)."""
    if not options.spot:
        return None
    if options.max_wait is not None:
        return options.max_wait
    max_run = settle(options).max_run
    return max(max_run, min(2 * max_run, TRAINING_MAX_RUN_S))


def default_image(region: str, image: FrameworkImage = SKLEARN) -> str:
    """The official SageMaker ``image`` in ``region``: by default scikit-learn 1.4-2 CPU (Python 3.10).

    >>> default_image("eu-central-1")
    '492215442770.dkr.ecr.eu-central-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3'
    >>> default_image("eu-central-1", TENSORFLOW)
    '763104351884.dkr.ecr.eu-central-1.amazonaws.com/tensorflow-training:2.19.0-cpu-py312'
    """
    return image.uri(region)


# ---------------------------------------------------------------------------------------------
# Requests: pure, options in, request out
# ---------------------------------------------------------------------------------------------

def channel_path(container: str, name: str) -> str:
    """Where SageMaker puts the channel ``name`` in a container of type ``container``.

    >>> channel_path(PROCESSING_JOB, "data"), channel_path(TRAINING_JOB, "data")
    ('/opt/ml/processing/input/data', '/opt/ml/input/data/data')
    """
    return f"{PROCESSING_INPUT_PATH if container == PROCESSING_JOB else TRAINING_CHANNEL_PATH}/{name}"


def _argument_values(options: LaunchOptions, positional: bool) -> dict[str, str]:
    o = settle(options)
    arguments: dict[str, str] = {}
    for arg in o.job.args:
        value = o.arguments.get(arg.name)
        if value is None or arg.role == INLINE or arg.positional != positional:
            continue
        if _as_channel(arg, value):
            local = channel_path(o.container, arg.name)
            value = f"{local}/{str(value).rsplit('/', 1)[-1]}" if arg.file else local
        elif arg.local_path:
            value = arg.local_path
        arguments[arg.name] = str(value)
    if not positional and o.job.checkpoints:
        arguments[o.job.checkpoints] = CHECKPOINT_LOCAL_PATH
    return arguments


def positional_arguments(options: LaunchOptions) -> list[str]:
    """The positional arguments of the command every host runs, in the kind's order (a channel's
    value is its local path in the container)."""
    return list(_argument_values(options, positional=True).values())


def command_arguments(options: LaunchOptions) -> dict[str, str]:
    """The options of the command every host runs, as strings, in the kind's order: a channel's
    value is its local path in the container, an OUTPUT with ``local_path`` that path, every
    other value is passed as given; then the kind's ``checkpoints`` option. :data:`INLINE`
    options are not among them (``entry.py`` adds each with the file it writes)."""
    return _argument_values(options, positional=False)


def channels(options: LaunchOptions) -> dict[str, str]:
    """Channel name -> the ``s3://`` URI SageMaker downloads for it (a prefix ends with ``/``, so
    that ``s3://b/ds`` does not also download ``s3://b/ds-old/``)."""
    found = {}
    for arg in options.job.args:
        value = options.arguments.get(arg.name)
        if value is not None and _as_channel(arg, value):
            found[arg.name] = str(value) if arg.file or str(value).endswith("/") else f"{value}/"
    return found


def inline_hyperparameters(options: LaunchOptions) -> dict[str, str]:
    """``vitalflow_inline_<option>`` -> the text of each :data:`INLINE` option given (read by
    :func:`resolve`), checked against SageMaker's limit of one hyperparameter."""
    found = {}
    for arg in options.job.args:
        value = options.arguments.get(arg.name)
        if arg.role != INLINE or value is None:
            continue
        if arg.name not in options.inline:
            raise LaunchError(f"--{arg.name} {value} was not read: resolve() the options first")
        text = options.inline[arg.name]
        if len(text) > MAX_HYPERPARAMETER_CHARS:
            raise LaunchError(f"--{arg.name} {value}: {len(text)} characters as JSON; a SageMaker hyperparameter "
                              f"holds at most {MAX_HYPERPARAMETER_CHARS}")
        found[INLINE_PREFIX + arg.name] = text
    return found


def _processing_input(name: str, uri: str) -> dict[str, Any]:
    return {"InputName": name, "S3Input": {
        "S3Uri": uri, "LocalPath": channel_path(PROCESSING_JOB, name), "S3DataType": "S3Prefix",
        "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"}}


def _processing_request(o: LaunchOptions, common: dict[str, Any]) -> dict[str, Any]:
    container_args = [o.job.command, *positional_arguments(o)] + [
        x for key, value in command_arguments(o).items() for x in (f"--{key}", value)]
    for value in container_args + list(common["Environment"].values()):
        if len(value) > MAX_ARGUMENT_CHARS:
            raise LaunchError(f"{value[:60]!r}...: a processing job's arguments are at most "
                              f"{MAX_ARGUMENT_CHARS} characters each")
    return {
        "ProcessingJobName": o.job_name,
        "RoleArn": o.role,
        "ProcessingResources": {"ClusterConfig": {
            "InstanceCount": o.instance_count, "InstanceType": o.instance_type, "VolumeSizeInGB": o.volume_gb}},
        "StoppingCondition": {"MaxRuntimeInSeconds": o.max_run},
        "AppSpecification": {
            "ImageUri": common["Image"],
            "ContainerEntrypoint": ["python3", f"{PROCESSING_CODE_PATH}/{ENTRY}"],
            "ContainerArguments": container_args,
        },
        "ProcessingInputs": [_processing_input(CODE_INPUT, o.code_prefix)]
        + [_processing_input(name, uri) for name, uri in channels(o).items()],
        "Environment": common["Environment"],
        "Tags": common["Tags"],
    }


def _training_request(o: LaunchOptions, common: dict[str, Any]) -> dict[str, Any]:
    command = shlex.join([o.job.command, *positional_arguments(o)])
    hyperparameters = {COMMAND_KEY: command, **command_arguments(o), **inline_hyperparameters(o)}
    hyperparameters.update({
        "sagemaker_program": ENTRY,
        "sagemaker_submit_directory": o.code_uri,
        "sagemaker_region": o.region,
        "sagemaker_job_name": o.job_name,
        "sagemaker_container_log_level": "20",
    })
    for key, value in hyperparameters.items():
        if len(value) > MAX_HYPERPARAMETER_CHARS:
            raise LaunchError(f"--{key} is longer than {MAX_HYPERPARAMETER_CHARS} characters")
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": o.max_run}
    request: dict[str, Any] = {
        "TrainingJobName": o.job_name,
        "RoleArn": o.role,
        "AlgorithmSpecification": {"TrainingImage": common["Image"], "TrainingInputMode": "File"},
        "HyperParameters": hyperparameters,
        "OutputDataConfig": {"S3OutputPath": f"{o.output_prefix}/{SAGEMAKER_OUTPUT_DIR}/"},
        "ResourceConfig": {"InstanceType": o.instance_type, "InstanceCount": o.instance_count,
                           "VolumeSizeInGB": o.volume_gb},
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": o.spot,
        "Environment": common["Environment"],
        "Tags": common["Tags"],
    }
    if channels(o):
        request["InputDataConfig"] = [
            {"ChannelName": name, "InputMode": "File", "DataSource": {"S3DataSource": {
                "S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}}}
            for name, uri in channels(o).items()]
    if o.spot:
        stopping["MaxWaitTimeInSeconds"] = max_wait_seconds(o)
    if o.spot or o.job.checkpoints:
        request["CheckpointConfig"] = {"S3Uri": o.checkpoint_uri, "LocalPath": CHECKPOINT_LOCAL_PATH}
    return request


def build_request(options: LaunchOptions) -> tuple[str, dict[str, Any]]:
    """``(container, request)``: the ``CreateProcessingJob`` (``container`` :data:`PROCESSING_JOB`)
    or ``CreateTrainingJob`` (:data:`TRAINING_JOB`) request that runs ``options``' job kind (role
    and region must be set: see :func:`resolve`). Pure: no I/O, no AWS call."""
    o = settle(options)
    validate(o)
    common = {
        "Image": o.image or default_image(o.region, o.job.image),
        "Environment": {"PYTHONUNBUFFERED": "1", "VITALFLOW_JOB_NAME": o.job_name,
                        EXTRAS_ENV: ",".join(o.job.extras)},
        "Tags": [{"Key": "vitalflow:version", "Value": _version()},
                 {"Key": "vitalflow:command", "Value": o.job.command},
                 {"Key": "vitalflow:runs-as", "Value": variant(o.container, o.spot)}],
    }
    if o.container == PROCESSING_JOB:
        return PROCESSING_JOB, _processing_request(o, common)
    return TRAINING_JOB, _training_request(o, common)


def request_container(request: dict[str, Any]) -> str:
    return PROCESSING_JOB if "ProcessingJobName" in request else TRAINING_JOB


def _version() -> str:
    return importlib.metadata.version("vitalflow")


# ---------------------------------------------------------------------------------------------
# Code shipping
# ---------------------------------------------------------------------------------------------

def entry_script() -> Path:
    return Path(__file__).with_name(ENTRY)


def _source_root() -> tuple[Path, Path | None]:
    """(the ``vitalflow`` package directory, the project root holding its pyproject.toml or None)."""
    package = Path(__file__).resolve().parents[1]
    root = package.parent.parent
    pyproject = root / "pyproject.toml"
    if package.parent.name == "src" and pyproject.is_file() and \
            re.search(r'(?m)^name\s*=\s*"vitalflow"', pyproject.read_text(encoding="utf-8")):
        return package, root
    return package, None


def _generated_pyproject() -> str:
    """A minimal pyproject.toml from the installed distribution's metadata (non-editable installs)."""
    meta = importlib.metadata.metadata("vitalflow")
    requires = [r for r in (meta.get_all("Requires-Dist") or []) if "extra ==" not in r]
    deps = ",\n".join(f"    {json.dumps(r)}" for r in requires)
    return (
        '[build-system]\nrequires = ["setuptools>=68", "wheel"]\nbuild-backend = "setuptools.build_meta"\n\n'
        f'[project]\nname = "vitalflow"\nversion = "{meta["Version"]}"\n'
        f'requires-python = {json.dumps(meta.get("Requires-Python") or ">=3.10")}\n'
        f"dependencies = [\n{deps}\n]\n\n"
        '[project.scripts]\nvitalflow = "vitalflow.cli:main"\n\n'
        '[tool.setuptools.packages.find]\nwhere = ["src"]\n\n'
        '[tool.setuptools.package-data]\nvitalflow = ["spec/*.yaml"]\n'
    )


def build_code_tarball() -> bytes:
    """``source.tar.gz``: ``entry.py``, ``pyproject.toml`` (+ README/LICENSE) and ``src/vitalflow``.

    Built from the installed package: an editable install ships the project's own pyproject.toml,
    any other install a minimal one generated from its metadata. Caches are left out.
    """
    package, root = _source_root()
    buffer = io.BytesIO()

    def add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), mode, int(time.time())
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        add_bytes(tar, ENTRY, entry_script().read_bytes(), 0o755)
        if root is not None:
            for extra in ("pyproject.toml", "README.md", "LICENSE", "LICENSE.txt"):
                if (root / extra).is_file():
                    add_bytes(tar, extra, (root / extra).read_bytes())
        else:
            add_bytes(tar, "pyproject.toml", _generated_pyproject().encode())
        for path in sorted(package.rglob("*")):
            rel = path.relative_to(package)
            if not path.is_file() or "__pycache__" in rel.parts or path.suffix in (".pyc", ".pyo") \
                    or any(p.endswith(".egg-info") for p in rel.parts):
                continue
            add_bytes(tar, f"src/vitalflow/{rel.as_posix()}", path.read_bytes())
    return buffer.getvalue()


def upload_code(options: LaunchOptions, tarball: bytes | None = None) -> str:
    """Put ``source.tar.gz`` and ``entry.py`` under ``<output>/_code/<job>/``; returns the tarball URI."""
    tarball = build_code_tarball() if tarball is None else tarball
    s3 = aws_client("s3", options.region)
    for name, data in ((TARBALL, tarball), (ENTRY, entry_script().read_bytes())):
        bucket, key = split_s3(options.code_prefix + name)
        aws_call(f"upload of {options.code_prefix + name}", s3.put_object, Bucket=bucket, Key=key, Body=data)
    return options.code_uri


# ---------------------------------------------------------------------------------------------
# Submitting (the AWS client and call rules: `vitalflow.sagemaker.aws`)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Api:
    """The names SageMaker gives one container type's job calls and fields: ``Processing`` or ``Training``."""

    word: str

    def field(self, suffix: str) -> str:  # "Name" -> "ProcessingJobName"
        return f"{self.word}Job{suffix}"

    def method(self, verb: str, plural: bool = False) -> str:  # "create" -> "create_processing_job"
        return f"{verb}_{self.word.lower()}_job{'s' if plural else ''}"


_APIS = {PROCESSING_JOB: _Api("Processing"), TRAINING_JOB: _Api("Training")}


def submit(request: dict[str, Any], region: str | None = None) -> str:
    """Send a request built by :func:`build_request`; returns the job's ARN."""
    api = _APIS[request_container(request)]
    name = request[api.field("Name")]
    sm = aws_client("sagemaker", region)
    return aws_call(f"Create{api.word}Job {name}", getattr(sm, api.method("create")), **request)[api.field("Arn")]


@dataclass(frozen=True)
class Launched:
    container: str
    variant: str
    name: str
    arn: str
    code_uri: str
    region: str
    request: dict[str, Any]


def launch(options: LaunchOptions) -> Launched:
    """Resolve, validate, build the request, upload the code, submit. Nothing is uploaded when the
    options are invalid or no credentials are found."""
    options = resolve(options)
    container, request = build_request(options)
    aws_client("sagemaker", options.region)  # fail on missing credentials before uploading anything
    code_uri = upload_code(options)
    arn = submit(request, options.region)
    return Launched(container, options.variant, options.job_name, arn, code_uri, options.region, request)


def console_url(container: str, name: str, region: str) -> str:
    page = "processing-jobs" if container == PROCESSING_JOB else "jobs"
    return f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}#/{page}/{name}"


# ---------------------------------------------------------------------------------------------
# Watching and listing
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class JobInfo:
    """One job as ``vitalflow jobs`` shows it, from a Describe* (or List*) answer. ``command_line``
    is the vitalflow command line the job runs (``["preprocess", "--input", ...]``), empty when
    the answer does not tell (a list summary, a job vitalflow did not launch)."""

    name: str
    container: str
    status: str
    created: _dt.datetime | None = None
    ended: _dt.datetime | None = None
    secondary_status: str | None = None
    instance_count: int | None = None
    instance_type: str | None = None
    spot: bool = False
    failure_reason: str | None = None
    command_line: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self.status in _TERMINAL

    @property
    def command(self) -> str | None:
        return self.command_line[0] if self.command_line else None

    @property
    def variant(self) -> str:
        return variant(self.container, self.spot, self.command)


def _command_line(container: str, raw: dict[str, Any]) -> tuple[str, ...]:
    if container == PROCESSING_JOB:
        line = raw.get("AppSpecification", {}).get("ContainerArguments") or []
    else:
        line = command_from_hyperparameters(raw.get("HyperParameters") or {})
    return tuple(line) if line and not line[0].startswith("-") else ()


def job_info(container: str, raw: dict[str, Any]) -> JobInfo:
    """A :class:`JobInfo` from a DescribeProcessingJob/DescribeTrainingJob answer or a list summary."""
    api = _APIS[container]
    if container == PROCESSING_JOB:
        resources = raw.get("ProcessingResources", {}).get("ClusterConfig", {})
    else:
        resources = raw.get("ResourceConfig", {})
    return JobInfo(raw[api.field("Name")], container, raw.get(api.field("Status"), "?"), raw.get("CreationTime"),
                   raw.get(f"{api.word}EndTime"), raw.get("SecondaryStatus"), resources.get("InstanceCount"),
                   resources.get("InstanceType"), bool(raw.get("EnableManagedSpotTraining")),
                   raw.get("FailureReason"), _command_line(container, raw), raw)


def _describe_raw(sm, name: str, container: str) -> dict[str, Any]:
    api = _APIS[container]
    return aws_call(f"Describe{api.word}Job {name}", getattr(sm, api.method("describe")), **{api.field("Name"): name})


def describe_job(name: str, region: str | None = None, container: str | None = None) -> JobInfo:
    """The job called ``name``: a processing job, else a training-job container's (or only ``container``)."""
    sm = aws_client("sagemaker", region)
    for c in [container] if container else CONTAINERS:
        try:
            return job_info(c, _describe_raw(sm, name, c))
        except LaunchError as exc:
            text = str(exc).lower()
            if "could not find" not in text and "not found" not in text:
                raise
    which = f"{_APIS[container].word.lower()} " if container else ""  # SageMaker's name: "processing job"
    raise LaunchError(f"no SageMaker {which}job named {name!r} in {region or 'this region'}")


def list_jobs(region: str | None = None, limit: int = 20, name_contains: str | None = "vitalflow",
              details: bool = True) -> list[JobInfo]:
    """The ``limit`` most recent jobs of both container types whose name contains
    ``name_contains``, newest first. With ``details`` each is described (for its instance count
    and type, and the command it runs)."""
    sm = aws_client("sagemaker", region)
    query: dict[str, Any] = {"SortBy": "CreationTime", "SortOrder": "Descending", "MaxResults": max(1, min(limit, 100))}
    if name_contains:
        query["NameContains"] = name_contains
    found: list[JobInfo] = []
    for container, api in _APIS.items():
        answer = aws_call(f"List{api.word}Jobs", getattr(sm, api.method("list", plural=True)), **query)
        found += [job_info(container, summary) for summary in answer.get(api.field("Summaries"), [])]
    epoch = _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)
    found.sort(key=lambda j: _aware(j.created) or epoch, reverse=True)
    found = found[:limit]
    if details:
        found = [job_info(j.container, _describe_raw(sm, j.name, j.container)) for j in found]
    return found


def _aware(t: _dt.datetime | None) -> _dt.datetime | None:
    if t is not None and t.tzinfo is None:
        return t.replace(tzinfo=_dt.timezone.utc)
    return t


def wait(name: str, container: str, region: str | None = None, *, poll_s: float = 30.0,
         on_event: Callable[[str], None] = lambda line: None,
         describe: Callable[[str], dict[str, Any]] | None = None,
         sleep: Callable[[float], None] = time.sleep, timeout_s: float | None = None) -> JobInfo:
    """Poll the job until it is Completed, Failed or Stopped; returns its last description.

    ``on_event`` gets one line per status change (training-job containers: also per secondary
    status change, with SageMaker's status message) and, on failure, the ``FailureReason``.
    ``describe`` replaces the Describe* call (tests script it); ``timeout_s`` gives up with
    :class:`LaunchError`.
    """
    if describe is None:
        sm = aws_client("sagemaker", region)

        def describe(job: str) -> dict[str, Any]:
            return _describe_raw(sm, job, container)

    started = time.monotonic()
    last_status = last_secondary = None
    while True:
        info = job_info(container, describe(name))
        if info.status != last_status:
            on_event(f"{name}: {info.status}")
            last_status = info.status
        if info.secondary_status and info.secondary_status != last_secondary:
            transitions = info.raw.get("SecondaryStatusTransitions") or []
            message = transitions[-1].get("StatusMessage") if transitions else None
            on_event(f"{name}:   {info.secondary_status}" + (f" - {message}" if message else ""))
            last_secondary = info.secondary_status
        if info.done:
            if info.status != "Completed" and info.failure_reason:
                on_event(f"{name}: failure reason: {info.failure_reason}")
            return info
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            raise LaunchError(f"job {name} still {info.status} after {timeout_s:.0f} s")
        sleep(poll_s)
