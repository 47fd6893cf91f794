"""Build, submit and watch the SageMaker jobs that run ``vitalflow preprocess`` on every host.

One job, N instances, the same command on each: every host derives its share of the cases from
the job's resource config (``vitalflow.sagemaker.env``), so nothing is sharded in S3 and the only
input a job downloads is our code. Two kinds of job run it:

- a **processing job** (``CreateProcessingJob``, the default): the code prefix
  ``<output>/_code/<job>/`` (``source.tar.gz`` and ``entry.py``) is a ``ProcessingInput`` downloaded
  to ``/opt/ml/processing/input/code``, and ``AppSpecification.ContainerEntrypoint`` runs
  ``python3 .../entry.py`` with the ``vitalflow preprocess`` arguments as ``ContainerArguments``;
- a **training job** (``CreateTrainingJob``), needed for managed spot (``spot=True``): the
  framework container's script mode downloads ``sagemaker_submit_directory`` (the tarball),
  extracts it to ``/opt/ml/code`` and runs ``sagemaker_program`` (``entry.py``), which reads the
  arguments from ``/opt/ml/input/config/hyperparameters.json`` (every value a string). With spot,
  ``CheckpointConfig`` syncs ``/opt/ml/checkpoints`` with ``<output>/_checkpoints/`` and
  ``MaxWaitTimeInSeconds`` defaults to twice the maximum run time.

The default image is the official **SageMaker scikit-learn 1.4-2 CPU image**
(``<account>.dkr.ecr.<region>.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3``): a CPU-only
framework image with Python 3.10 (vitalflow's minimum) and numpy/pandas, far smaller than the
PyTorch/TensorFlow deep learning images (no CUDA, no framework we do not use), carrying the
SageMaker training toolkit that gives training jobs script mode, and the image the SageMaker SDK's
``SKLearnProcessor`` uses for processing jobs. Its registry accounts per region are copied from
``sagemaker-core`` 2.27.0 (``image_uri_config/sklearn.json``, the data behind
``sagemaker.core.image_uris.retrieve("sklearn", region, version="1.4-2")``) into
:data:`SKLEARN_ACCOUNTS`, so no SageMaker SDK is needed: ``sagemaker-core`` would pull ~50
packages (scipy, pandas, paramiko, ...) into the control plane for one table lookup. ``image``
overrides it (any image with ``python3`` >= 3.10 and pip; the job installs vitalflow and its
dependencies from PyPI at start, so it needs internet access).

Limits checked before anything is sent (from the SageMaker API): a processing job runs at most
777,600 s (9 days) on 1-100 instances; a training job at most 28 days; ``MaxWaitTimeInSeconds``
must be at least the run time; job names are at most 63 letters, digits and hyphens; every
container argument and processing environment value at most 256 characters.

Nothing here prints: progress reaches the caller through the ``on_event`` callback.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import io
import json
import os
import re
import tarfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from vitalflow.errors import LaunchError

PROCESSING, TRAINING = "processing", "training"
DEFAULT_INSTANCE_TYPE = "ml.m5.2xlarge"
DEFAULT_MAX_RUN_S = 26 * 3600  # the Master POC plan's 26 h budget for the full preprocessing run
DEFAULT_VOLUME_GB = 50
PROCESSING_MAX_RUN_S = 777_600  # ProcessingStoppingCondition.MaxRuntimeInSeconds maximum (9 days)
TRAINING_MAX_RUN_S = 28 * 86_400  # StoppingCondition.MaxRuntimeInSeconds: "The maximum value is 28 days"
PROCESSING_MAX_INSTANCES = 100  # ProcessingClusterConfig.InstanceCount maximum
PROCESSING_MAX_VOLUME_GB = 16_384
MAX_ARGUMENT_CHARS = 256  # ContainerArgument, ProcessingEnvironmentValue
MAX_HYPERPARAMETER_CHARS = 2500
ROLE_ENV = "VITALFLOW_SAGEMAKER_ROLE"

CODE_DIR = "_code"
CHECKPOINT_DIR = "_checkpoints"
SAGEMAKER_OUTPUT_DIR = "_sagemaker"
TARBALL = "source.tar.gz"
ENTRY = "entry.py"
PROCESSING_CODE_PATH = "/opt/ml/processing/input/code"
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
#: Arguments of ``vitalflow preprocess`` a job passes on, in this order (also entry.py's keys).
ARGUMENT_KEYS = ("input", "clinical", "output", "cases", "config", "workers")

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

_JOB_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
_ROLE_ARN = re.compile(r"arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+")
_DURATION = re.compile(r"\s*(\d+)\s*([smhd]?)\s*")
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


@dataclass(frozen=True)
class LaunchOptions:
    """What to run and where. ``input``, ``clinical``, ``output`` and ``config`` are ``s3://`` URIs."""

    input: str
    clinical: str
    output: str
    cases: str | None = None
    config: str | None = None
    workers: int | None = None
    instance_count: int = 1
    instance_type: str = DEFAULT_INSTANCE_TYPE
    mode: str | None = None  # "processing" | "training"; None: training with spot, else processing
    spot: bool = False
    max_run: int = DEFAULT_MAX_RUN_S
    max_wait: int | None = None  # spot only; default 2 x max_run
    volume_gb: int = DEFAULT_VOLUME_GB
    role: str | None = None
    region: str | None = None
    image: str | None = None
    job_name: str = field(default_factory=default_job_name)

    @property
    def kind(self) -> str:
        return self.mode or (TRAINING if self.spot else PROCESSING)

    @property
    def output_prefix(self) -> str:
        return self.output.rstrip("/")

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

    def preprocess_arguments(self) -> dict[str, str]:
        """The ``vitalflow preprocess`` options every host runs with, as strings."""
        values = {"input": self.input, "clinical": self.clinical, "output": self.output, "cases": self.cases,
                  "config": self.config, "workers": None if self.workers is None else str(self.workers)}
        return {k: values[k] for k in ARGUMENT_KEYS if values[k] is not None}


# ---------------------------------------------------------------------------------------------
# Options: defaults from the environment, validation
# ---------------------------------------------------------------------------------------------

def resolve(options: LaunchOptions, environ: dict[str, str] | None = None) -> LaunchOptions:
    """Fill ``role`` from ``$VITALFLOW_SAGEMAKER_ROLE`` and ``region`` from ``$AWS_REGION``,
    ``$AWS_DEFAULT_REGION`` or the AWS profile, when not given. Validates nothing."""
    environ = os.environ if environ is None else environ
    role = options.role or environ.get(ROLE_ENV) or None
    return replace(options, role=role, region=resolve_region(options.region, environ))


def resolve_region(region: str | None = None, environ: dict[str, str] | None = None) -> str | None:
    """``region``, else ``$AWS_REGION``, ``$AWS_DEFAULT_REGION``, the AWS profile's region, else None."""
    environ = os.environ if environ is None else environ
    return region or environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or _profile_region()


def _profile_region() -> str | None:
    try:
        import boto3
    except ImportError:
        return None
    try:
        return boto3.session.Session().region_name
    except Exception:  # a broken profile must not hide the real message ("no region")
        return None


def _check_s3(name: str, uri: str | None) -> None:
    if uri is None:
        return
    if not re.fullmatch(r"s3://[^/\s]+(/.*)?", uri):
        raise LaunchError(f"--{name} must be an s3:// URI (got {uri!r}): a SageMaker job reads and writes S3")


def validate(options: LaunchOptions) -> None:
    """Raise :class:`LaunchError` naming the first option that SageMaker would refuse."""
    o = options
    if not o.role:
        raise LaunchError(f"no IAM role for the job: pass --role or set {ROLE_ENV}")
    if not _ROLE_ARN.fullmatch(o.role):
        raise LaunchError(f"--role must be an IAM role ARN like arn:aws:iam::123456789012:role/Name (got {o.role!r})")
    if not o.region:
        raise LaunchError("no AWS region: pass --region or set AWS_REGION or AWS_DEFAULT_REGION "
                          "(or a region in your AWS profile)")
    for name in ("input", "clinical", "output", "config"):
        _check_s3(name, getattr(o, name))
    if o.output_prefix.count("/") < 3:
        raise LaunchError(f"--output must name a prefix inside the bucket, e.g. s3://bucket/out (got {o.output!r})")
    if o.mode not in (None, PROCESSING, TRAINING):
        raise LaunchError(f"--mode must be processing or training (got {o.mode!r})")
    if o.spot and o.mode == PROCESSING:
        raise LaunchError("managed spot needs a training job: drop --mode processing (--spot implies training)")
    if o.max_wait is not None and not o.spot:
        raise LaunchError("--max-wait applies only to managed spot jobs (--spot)")
    if not _JOB_NAME.fullmatch(o.job_name):
        raise LaunchError(f"bad job name {o.job_name!r}: 1-63 letters, digits and hyphens, "
                          "starting and ending with a letter or digit")
    if not o.instance_type.startswith("ml."):
        raise LaunchError(f"--instance-type must be a SageMaker instance type like {DEFAULT_INSTANCE_TYPE} "
                          f"(got {o.instance_type!r})")
    if o.workers is not None and o.workers < 1:
        raise LaunchError(f"--workers must be at least 1 (got {o.workers})")
    if o.instance_count < 1:
        raise LaunchError(f"--instance-count must be at least 1 (got {o.instance_count})")
    if o.volume_gb < 1:
        raise LaunchError(f"--volume-gb must be at least 1 (got {o.volume_gb})")
    if o.max_run < 1:
        raise LaunchError(f"--max-run must be at least 1 s (got {o.max_run})")
    if o.kind == PROCESSING:
        if o.instance_count > PROCESSING_MAX_INSTANCES:
            raise LaunchError(f"--instance-count {o.instance_count}: a processing job has at most "
                              f"{PROCESSING_MAX_INSTANCES} instances")
        if o.max_run > PROCESSING_MAX_RUN_S:
            raise LaunchError(f"--max-run {o.max_run} s: a processing job runs at most {PROCESSING_MAX_RUN_S} s "
                              "(9 days); use --mode training for up to 28 days")
        if o.volume_gb > PROCESSING_MAX_VOLUME_GB:
            raise LaunchError(f"--volume-gb {o.volume_gb}: a processing job has at most {PROCESSING_MAX_VOLUME_GB} GB")
    else:
        if o.max_run > TRAINING_MAX_RUN_S:
            raise LaunchError(f"--max-run {o.max_run} s: a training job runs at most {TRAINING_MAX_RUN_S} s (28 days)")
        if o.max_wait is not None and not o.max_run <= o.max_wait <= TRAINING_MAX_RUN_S:
            raise LaunchError(f"--max-wait {o.max_wait} s must be at least --max-run ({o.max_run} s) and at most "
                              f"{TRAINING_MAX_RUN_S} s (28 days)")


def max_wait_seconds(options: LaunchOptions) -> int | None:
    """Spot only: ``max_wait``, else 2 x ``max_run`` capped at 28 days (never below ``max_run``)."""
    if not options.spot:
        return None
    if options.max_wait is not None:
        return options.max_wait
    return max(options.max_run, min(2 * options.max_run, TRAINING_MAX_RUN_S))


def default_image(region: str) -> str:
    """The official SageMaker scikit-learn 1.4-2 CPU image (Python 3.10) in ``region``.

    >>> default_image("eu-central-1")
    '492215442770.dkr.ecr.eu-central-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3'
    """
    account = SKLEARN_ACCOUNTS.get(region)
    if account is None:
        raise LaunchError(f"no default image known for region {region!r}: pass --image with an image URI")
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{domain}/{SKLEARN_IMAGE}"


# ---------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------

def build_request(options: LaunchOptions) -> tuple[str, dict[str, Any]]:
    """``(kind, request)``: the ``CreateProcessingJob`` or ``CreateTrainingJob`` request for
    ``options`` (role and region must be set: see :func:`resolve`). Pure: no I/O, no AWS call."""
    validate(options)
    o = options
    image = o.image or default_image(o.region)
    arguments = o.preprocess_arguments()
    environment = {"PYTHONUNBUFFERED": "1", "VITALFLOW_JOB_NAME": o.job_name}
    tags = [{"Key": "vitalflow:version", "Value": _version()}]
    if o.kind == PROCESSING:
        container_args = [x for key, value in arguments.items() for x in (f"--{key}", value)]
        for value in container_args + list(environment.values()):
            if len(value) > MAX_ARGUMENT_CHARS:
                raise LaunchError(f"{value[:60]!r}...: a processing job's arguments are at most "
                                  f"{MAX_ARGUMENT_CHARS} characters each")
        return PROCESSING, {
            "ProcessingJobName": o.job_name,
            "RoleArn": o.role,
            "ProcessingResources": {"ClusterConfig": {
                "InstanceCount": o.instance_count, "InstanceType": o.instance_type, "VolumeSizeInGB": o.volume_gb}},
            "StoppingCondition": {"MaxRuntimeInSeconds": o.max_run},
            "AppSpecification": {
                "ImageUri": image,
                "ContainerEntrypoint": ["python3", f"{PROCESSING_CODE_PATH}/{ENTRY}"],
                "ContainerArguments": container_args,
            },
            "ProcessingInputs": [{"InputName": "code", "S3Input": {
                "S3Uri": o.code_prefix, "LocalPath": PROCESSING_CODE_PATH, "S3DataType": "S3Prefix",
                "S3InputMode": "File", "S3DataDistributionType": "FullyReplicated"}}],
            "Environment": environment,
            "Tags": tags,
        }
    hyperparameters = dict(arguments)
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
        "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": "File"},
        "HyperParameters": hyperparameters,
        "OutputDataConfig": {"S3OutputPath": f"{o.output_prefix}/{SAGEMAKER_OUTPUT_DIR}/"},
        "ResourceConfig": {"InstanceType": o.instance_type, "InstanceCount": o.instance_count,
                           "VolumeSizeInGB": o.volume_gb},
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": o.spot,
        "Environment": environment,
        "Tags": tags,
    }
    if o.spot:
        stopping["MaxWaitTimeInSeconds"] = max_wait_seconds(o)
        request["CheckpointConfig"] = {"S3Uri": o.checkpoint_uri, "LocalPath": CHECKPOINT_LOCAL_PATH}
    return TRAINING, request


def request_kind(request: dict[str, Any]) -> str:
    return PROCESSING if "ProcessingJobName" in request else TRAINING


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


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


def upload_code(options: LaunchOptions, tarball: bytes | None = None) -> str:
    """Put ``source.tar.gz`` and ``entry.py`` under ``<output>/_code/<job>/``; returns the tarball URI."""
    tarball = build_code_tarball() if tarball is None else tarball
    s3 = _client("s3", options.region)
    for name, data in ((TARBALL, tarball), (ENTRY, entry_script().read_bytes())):
        bucket, key = _split_s3(options.code_prefix + name)
        _call(f"upload of {options.code_prefix + name}", s3.put_object, Bucket=bucket, Key=key, Body=data)
    return options.code_uri


# ---------------------------------------------------------------------------------------------
# AWS calls
# ---------------------------------------------------------------------------------------------

def _client(service: str, region: str | None):
    """A boto3 client; the endpoint comes from ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_<SERVICE>``)."""
    try:
        import boto3
    except ImportError as exc:
        raise LaunchError("boto3 is not installed: pip install 'vitalflow[aws]'") from exc
    session = boto3.session.Session(region_name=region)
    if session.get_credentials() is None:
        raise LaunchError("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                          "or AWS_PROFILE, or run where an IAM role provides them")
    if session.region_name is None:
        raise LaunchError("no AWS region: pass --region or set AWS_REGION or AWS_DEFAULT_REGION "
                          "(or a region in your AWS profile)")
    return session.client(service)


def _call(what: str, fn: Callable, **kwargs):
    """Call boto3 and turn its errors into one-line :class:`LaunchError`."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        return fn(**kwargs)
    except NoCredentialsError as exc:
        raise LaunchError("no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                          "or AWS_PROFILE, or run where an IAM role provides them") from exc
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise LaunchError(f"{what}: {error.get('Code', 'error')}: {error.get('Message', exc)}") from exc
    except BotoCoreError as exc:
        raise LaunchError(f"{what}: {exc}") from exc


def submit(request: dict[str, Any], region: str | None = None) -> str:
    """Send a request built by :func:`build_request`; returns the job's ARN."""
    if request_kind(request) == PROCESSING:
        name = request["ProcessingJobName"]
        sm = _client("sagemaker", region)
        return _call(f"CreateProcessingJob {name}", sm.create_processing_job, **request)["ProcessingJobArn"]
    name = request["TrainingJobName"]
    sm = _client("sagemaker", region)
    return _call(f"CreateTrainingJob {name}", sm.create_training_job, **request)["TrainingJobArn"]


@dataclass(frozen=True)
class Launched:
    kind: str
    name: str
    arn: str
    code_uri: str
    region: str
    request: dict[str, Any]


def launch(options: LaunchOptions) -> Launched:
    """Resolve, validate, build the request, upload the code, submit. Nothing is uploaded when the
    options are invalid or no credentials are found."""
    options = resolve(options)
    kind, request = build_request(options)
    _client("sagemaker", options.region)  # fail on missing credentials before uploading anything
    code_uri = upload_code(options)
    arn = submit(request, options.region)
    return Launched(kind, options.job_name, arn, code_uri, options.region, request)


def console_url(kind: str, name: str, region: str) -> str:
    page = "processing-jobs" if kind == PROCESSING else "jobs"
    return f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}#/{page}/{name}"


# ---------------------------------------------------------------------------------------------
# Watching and listing
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class JobInfo:
    """One job as ``vitalflow jobs`` shows it, from a Describe* (or List*) answer."""

    name: str
    kind: str
    status: str
    created: _dt.datetime | None = None
    ended: _dt.datetime | None = None
    secondary_status: str | None = None
    instance_count: int | None = None
    instance_type: str | None = None
    spot: bool = False
    failure_reason: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self.status in _TERMINAL


def job_info(kind: str, raw: dict[str, Any]) -> JobInfo:
    """A :class:`JobInfo` from a DescribeProcessingJob/DescribeTrainingJob answer or a list summary."""
    if kind == PROCESSING:
        cluster = raw.get("ProcessingResources", {}).get("ClusterConfig", {})
        return JobInfo(raw["ProcessingJobName"], kind, raw.get("ProcessingJobStatus", "?"), raw.get("CreationTime"),
                       raw.get("ProcessingEndTime"), None, cluster.get("InstanceCount"), cluster.get("InstanceType"),
                       False, raw.get("FailureReason"), raw)
    resources = raw.get("ResourceConfig", {})
    return JobInfo(raw["TrainingJobName"], kind, raw.get("TrainingJobStatus", "?"), raw.get("CreationTime"),
                   raw.get("TrainingEndTime"), raw.get("SecondaryStatus"), resources.get("InstanceCount"),
                   resources.get("InstanceType"), bool(raw.get("EnableManagedSpotTraining")),
                   raw.get("FailureReason"), raw)


def _describe_raw(sm, name: str, kind: str) -> dict[str, Any]:
    if kind == PROCESSING:
        return _call(f"DescribeProcessingJob {name}", sm.describe_processing_job, ProcessingJobName=name)
    return _call(f"DescribeTrainingJob {name}", sm.describe_training_job, TrainingJobName=name)


def describe_job(name: str, region: str | None = None, kind: str | None = None) -> JobInfo:
    """The job called ``name``: a processing job, else a training job (or only ``kind``)."""
    sm = _client("sagemaker", region)
    kinds = [kind] if kind else [PROCESSING, TRAINING]
    for k in kinds:
        try:
            return job_info(k, _describe_raw(sm, name, k))
        except LaunchError as exc:
            text = str(exc).lower()
            if "could not find" not in text and "not found" not in text:
                raise
    raise LaunchError(f"no SageMaker {kind + ' ' if kind else ''}job named {name!r} in {region or 'this region'}")


def list_jobs(region: str | None = None, limit: int = 20, name_contains: str | None = "vitalflow",
              details: bool = True) -> list[JobInfo]:
    """The ``limit`` most recent processing and training jobs whose name contains ``name_contains``,
    newest first. With ``details`` each is described (for its instance count and type)."""
    sm = _client("sagemaker", region)
    query: dict[str, Any] = {"SortBy": "CreationTime", "SortOrder": "Descending", "MaxResults": max(1, min(limit, 100))}
    if name_contains:
        query["NameContains"] = name_contains
    found: list[JobInfo] = []
    for kind, op, key in ((PROCESSING, sm.list_processing_jobs, "ProcessingJobSummaries"),
                          (TRAINING, sm.list_training_jobs, "TrainingJobSummaries")):
        answer = _call(f"List{'Processing' if kind == PROCESSING else 'Training'}Jobs", op, **query)
        found += [job_info(kind, summary) for summary in answer.get(key, [])]
    epoch = _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)
    found.sort(key=lambda j: _aware(j.created) or epoch, reverse=True)
    found = found[:limit]
    if details:
        found = [job_info(j.kind, _describe_raw(sm, j.name, j.kind)) for j in found]
    return found


def _aware(t: _dt.datetime | None) -> _dt.datetime | None:
    if t is not None and t.tzinfo is None:
        return t.replace(tzinfo=_dt.timezone.utc)
    return t


def wait(name: str, kind: str, region: str | None = None, *, poll_s: float = 30.0,
         on_event: Callable[[str], None] = lambda line: None,
         describe: Callable[[str], dict[str, Any]] | None = None,
         sleep: Callable[[float], None] = time.sleep, timeout_s: float | None = None) -> JobInfo:
    """Poll the job until it is Completed, Failed or Stopped; returns its last description.

    ``on_event`` gets one line per status change (training jobs: also per secondary status change,
    with SageMaker's status message) and, on failure, the ``FailureReason``. ``describe`` replaces
    the Describe* call (tests script it); ``timeout_s`` gives up with :class:`LaunchError`.
    """
    if describe is None:
        sm = _client("sagemaker", region)

        def describe(job: str) -> dict[str, Any]:
            return _describe_raw(sm, job, kind)

    started = time.monotonic()
    last_status = last_secondary = None
    while True:
        info = job_info(kind, describe(name))
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
