"""The inference service as a SageMaker **asynchronous endpoint** that scales to zero, and jobs sent to it.

``vitalflow deploy`` (:mod:`vitalflow.cli.deploy`) makes, in this order:

1. ``model.tar.gz``: the model directory uploaded as SageMaker expects it
   (:func:`vitalflow.sagemaker.model_registry.upload_model`, the tarball ``models push`` uploads
   too), unless the model given is already an S3 ``model.tar.gz``;
2. ``CreateModel`` (:func:`model_request`): the **vitalflow serving image** (the repository's
   ``Dockerfile``: ``vitalflow serve`` answering SageMaker's container contract, ``GET /ping``
   and ``POST /invocations`` on port 8080, the model unpacked by SageMaker into
   ``/opt/ml/model``), the model data URL, the execution role, and the container's environment:
   where jobs may read (``VITALFLOW_SERVE_INPUT_PREFIXES``, from the required ``--input-prefix``)
   and where their timelines go (``VITALFLOW_SERVE_OUTPUT_PREFIX`` = ``<output>/timelines``, so
   a result names S3 objects, not files that die with the instance), then any ``--env``
   variables (:func:`container_environment`);
3. ``CreateEndpointConfig`` (:func:`endpoint_config_request`): one production variant
   ``AllTraffic`` and an ``AsyncInferenceConfig``: results under ``S3OutputPath``, failures
   under ``S3FailurePath``, optional SNS ``SuccessTopic``/``ErrorTopic``, and
   ``MaxConcurrentInvocationsPerInstance``;
4. ``CreateEndpoint`` (:func:`endpoint_request`), then waiting until it is ``InService``
   (Application Auto Scaling accepts only an endpoint that exists);
5. Application Auto Scaling (:func:`scaling_requests`), the pattern AWS documents for
   asynchronous endpoints ("Autoscale an asynchronous endpoint", SageMaker developer guide):

   - ``RegisterScalableTarget``: ``endpoint/<name>/variant/AllTraffic``,
     ``sagemaker:variant:DesiredInstanceCount``, ``MinCapacity`` 0 (by default), ``MaxCapacity`` N;
   - ``PutScalingPolicy`` *target tracking* on the custom metric
     ``ApproximateBacklogSizePerInstance`` (namespace ``AWS/SageMaker``, dimension
     ``EndpointName``, statistic ``Average``): instances follow the queue, down to zero when it
     is empty (scale-in cooldown 600 s, scale-out 300 s);
   - target tracking alone never *wakes* an endpoint at zero instances (nothing computes a
     backlog *per instance* without instances), so a ``PutScalingPolicy`` *step scaling* policy
     (``ChangeInCapacity`` +1 for any breach, cooldown 300 s) and a CloudWatch alarm
     ``PutMetricAlarm`` on ``HasBacklogWithoutCapacity`` (``>= 1``, ``Average`` over 60 s, 2 of
     2 periods) whose action is that policy start one instance when a request waits with none
     running; target tracking takes over from there.

Names: the endpoint is ``<name>``; its model and endpoint config are ``<name>-<UTC time>``
(``vf-async-20260102-030405``), so a failed attempt never blocks the next; the alarm is
``<name>-HasBacklogWithoutCapacity``. An endpoint that exists already is refused (updating one
is not done here).

The image defaults to ``<account>.dkr.ecr.<region>.amazonaws.com/vitalflow:<vitalflow version>``
(:func:`serving_image`: the repository the README's ``docker push`` steps create; the account
comes from STS when deploying), else ``$VITALFLOW_SERVE_IMAGE`` or ``--image``.

``vitalflow invoke`` (:func:`submit_job`, :func:`wait_for_result`) writes the FeMo job body
``{"jobId", "requestTime", "inputUri", "patient"}`` (:func:`job_body`; the patient from
``--patient``, :func:`parse_patient`) as the request object in S3 (an
asynchronous endpoint takes an ``InputLocation``, not a body), calls ``InvokeEndpointAsync``
(sagemaker-runtime; ``InferenceId`` = the job id) and polls the returned ``OutputLocation`` and
``FailureLocation`` until one exists.

Request builders are pure (options in, request dicts out; :func:`planned_requests` lists them
all in order, which is what ``--dry-run`` prints); boto3 is called only by :func:`deploy`,
:func:`submit_job` and :func:`wait_for_result`'s default readers.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import re
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping

from vitalflow.errors import LaunchError
from vitalflow.sagemaker.aws import (JOB_NAME, ROLE_ENV, aws_call, aws_client, check_role_and_region, resolve_region,
                                     split_s3)
from vitalflow.sagemaker.model_registry import MODEL_TARBALL, is_model_tarball, upload_model

VARIANT = "AllTraffic"
SERVICE_NAMESPACE = "sagemaker"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
METRIC_NAMESPACE = "AWS/SageMaker"
BACKLOG_METRIC = "ApproximateBacklogSizePerInstance"
WAKE_METRIC = "HasBacklogWithoutCapacity"
TARGET_POLICY = f"{BACKLOG_METRIC}-TargetTracking"
WAKE_POLICY = f"{WAKE_METRIC}-ScalingPolicy"
DEFAULT_INSTANCE_TYPE = "ml.m5.large"
DEFAULT_MAX_CONCURRENT = 4
DEFAULT_TARGET_BACKLOG = 5.0  # queued requests per instance (AWS's example value)
SCALE_IN_COOLDOWN_S, SCALE_OUT_COOLDOWN_S, WAKE_COOLDOWN_S = 600, 300, 300
MAX_CONCURRENT_LIMIT = 1000  # AsyncInferenceClientConfig.MaxConcurrentInvocationsPerInstance: 1-1000
IMAGE_REPOSITORY = "vitalflow"
IMAGE_ENV = "VITALFLOW_SERVE_IMAGE"
ACCOUNT_PLACEHOLDER = "<account>"
WAKE_POLICY_ARN_PLACEHOLDER = f"<PolicyARN returned by PutScalingPolicy {WAKE_POLICY}>"
FAILURES_DIR = "failures"  # default S3FailurePath: <output>/failures
REQUESTS_DIR = "requests"  # invoke's default request prefix: <S3OutputPath>/requests
MODELS_DIR = "_models"  # deploy's default model prefix: <output>/_models/<model name>/model.tar.gz
TIMELINES_DIR = "timelines"  # where the container's jobs write timelines and summaries: <output>/timelines
# The service's settings from the environment (vitalflow.serve.settings, a sibling layer this
# module does not import; tests/test_deploy.py checks that the names agree).
SERVE_INPUT_PREFIXES_ENV = "VITALFLOW_SERVE_INPUT_PREFIXES"  # comma-separated
SERVE_OUTPUT_PREFIX_ENV = "VITALFLOW_SERVE_OUTPUT_PREFIX"
STAMP_CHARS = len("-20260102-030405")
_S3 = re.compile(r"s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9](/\S*)?")
_SNS_ARN = re.compile(r"arn:aws[a-z\-]*:sns:[a-z0-9\-]+:\d{12}:[A-Za-z0-9_\-]{1,256}")
_ENV_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,1023}")
_INFERENCE_ID = re.compile(r"[!-~][ -~]{0,63}")  # InferenceId: printable, at most 64 characters


def _version() -> str:
    return importlib.metadata.version("vitalflow")


def stamp(now: _dt.datetime | None = None) -> str:
    """``YYYYmmdd-HHMMSS`` (UTC), the suffix of a deployment's model and endpoint config names.

    >>> stamp(_dt.datetime(2026, 1, 2, 3, 4, 5))
    '20260102-030405'
    """
    return (now or _dt.datetime.now(_dt.timezone.utc)).strftime("%Y%m%d-%H%M%S")


def serving_image(account: str, region: str, version: str | None = None) -> str:
    """The default serving image: the account's ECR repository ``vitalflow``, tagged with the version.

    >>> serving_image("123456789012", "eu-central-1", "0.1.0")
    '123456789012.dkr.ecr.eu-central-1.amazonaws.com/vitalflow:0.1.0'
    >>> serving_image("123456789012", "cn-north-1", "0.1.0")
    '123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn/vitalflow:0.1.0'
    """
    domain = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{domain}/{IMAGE_REPOSITORY}:{version or _version()}"


def check_s3(option: str, uri: str) -> str:
    """``uri`` if it is ``s3://bucket[/prefix]``, else a one-line error naming ``option``.

    >>> check_s3("--output", "s3://my-bucket/async/out")
    's3://my-bucket/async/out'
    """
    if not _S3.fullmatch(str(uri)):
        raise LaunchError(f"{option} must be an s3:// URI such as s3://bucket/prefix (got {uri!r})")
    return uri


def check_input_prefixes(prefixes: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``--input-prefix`` values: at least one, each ``s3://bucket[/prefix]`` without a comma
    (the container reads them as one comma-separated variable).

    >>> check_input_prefixes(["s3://lab/ward3", "s3://lab/ward4/"])
    ('s3://lab/ward3', 's3://lab/ward4/')
    """
    if not prefixes:
        raise LaunchError("--input-prefix is required with --async: where the endpoint's jobs may read recordings "
                          "(s3://bucket/prefix; repeatable); without it the service refuses every job")
    for prefix in prefixes:
        check_s3("--input-prefix", prefix)
        if "," in prefix:
            raise LaunchError(f"--input-prefix {prefix!r}: a comma is not allowed (the container gets the prefixes "
                              f"as one comma-separated {SERVE_INPUT_PREFIXES_ENV})")
    return tuple(prefixes)


def check_endpoint_name(name: str, max_chars: int = 63) -> str:
    if not JOB_NAME.fullmatch(name) or len(name) > max_chars:
        raise LaunchError(f"bad endpoint name {name!r}: 1-{max_chars} letters, digits and hyphens, starting and "
                          "ending with a letter or digit")
    return name


def parse_env(pairs: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["KEY=VALUE", ...]`` as a dict (the container's environment).

    >>> parse_env(["MODEL_SERVER_TIMEOUT=900", "A=b=c"])
    {'MODEL_SERVER_TIMEOUT': '900', 'A': 'b=c'}
    """
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not _ENV_NAME.fullmatch(key):
            raise LaunchError(f"--env {pair!r}: use NAME=VALUE, NAME of letters, digits and underscores")
        env[key] = value
    return env


# ---------------------------------------------------------------------------------------------
# Deploy: options and the requests
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DeployOptions:
    """What ``vitalflow deploy`` was asked. ``model_data_url`` is the S3 ``model.tar.gz`` the
    model container gets (uploaded first when ``upload_from`` names a model directory)."""

    name: str
    model_data_url: str
    output: str
    role: str | None = None
    region: str | None = None
    image: str | None = None
    failure_output: str | None = None
    sns_success: str | None = None
    sns_error: str | None = None
    min_instances: int = 0
    max_instances: int = 1
    instance_type: str = DEFAULT_INSTANCE_TYPE
    max_concurrent_invocations: int = DEFAULT_MAX_CONCURRENT
    target_backlog: float = DEFAULT_TARGET_BACKLOG
    environment: Mapping[str, str] = field(default_factory=dict)  # --env: added to what deploy sets
    input_prefixes: tuple[str, ...] = ()  # --input-prefix: where the endpoint's jobs may read
    model_reference: str | None = None  # what --model said: kept as a tag
    upload_from: str | None = None  # the model directory (folder or s3:// prefix) packed as model_data_url
    stamp: str = field(default_factory=stamp)

    @property
    def model_name(self) -> str:
        return f"{self.name}-{self.stamp}"

    @property
    def config_name(self) -> str:
        return f"{self.name}-{self.stamp}"

    @property
    def resource_id(self) -> str:
        return f"endpoint/{self.name}/variant/{VARIANT}"

    @property
    def alarm_name(self) -> str:
        return f"{self.name}-{WAKE_METRIC}"

    @property
    def failure_path(self) -> str:
        return self.failure_output or f"{self.output.rstrip('/')}/{FAILURES_DIR}"

    @property
    def timelines_path(self) -> str:
        """Where the container writes each job's timeline and summary (``<output>/timelines``)."""
        return f"{self.output.rstrip('/')}/{TIMELINES_DIR}"

    @property
    def initial_instances(self) -> int:
        """SageMaker starts an endpoint with at least one instance; scaling takes it to zero."""
        return max(1, self.min_instances)


def default_model_data_url(output: str, name: str, when: str) -> str:
    """Where a model directory is uploaded unless ``--model-prefix`` says: below the output prefix.

    >>> default_model_data_url("s3://b/async/", "vf", "20260102-030405")
    's3://b/async/_models/vf-20260102-030405/model.tar.gz'
    """
    return f"{output.rstrip('/')}/{MODELS_DIR}/{name}-{when}/{MODEL_TARBALL}"


def resolve(options: DeployOptions, environ: Mapping[str, str]) -> DeployOptions:
    """Fill ``role`` from ``$VITALFLOW_SAGEMAKER_ROLE``, ``region`` from the AWS environment and
    ``image`` from ``$VITALFLOW_SERVE_IMAGE`` when not given. Nothing is validated."""
    return replace(options, role=options.role or environ.get(ROLE_ENV) or None,
                   region=resolve_region(options.region, dict(environ)),
                   image=options.image or environ.get(IMAGE_ENV) or None)


def validate(o: DeployOptions) -> None:
    """Raise :class:`LaunchError` naming the first option SageMaker or Auto Scaling would refuse."""
    check_endpoint_name(o.name, 63 - STAMP_CHARS)
    check_role_and_region(o.role, o.region, "the endpoint")
    check_s3("--output", o.output)
    if o.failure_output is not None:
        check_s3("--failure-output", o.failure_output)
    check_input_prefixes(o.input_prefixes)
    for name, option in ((SERVE_INPUT_PREFIXES_ENV, "--input-prefix"), (SERVE_OUTPUT_PREFIX_ENV, "--output")):
        if name in o.environment:
            raise LaunchError(f"--env {name}: deploy sets it from {option}")
    if not o.model_data_url.endswith(".tar.gz"):
        raise LaunchError(f"model data {o.model_data_url!r} must be an s3:// model.tar.gz")
    check_s3("--model", o.model_data_url)
    for option, arn in (("--sns-success", o.sns_success), ("--sns-error", o.sns_error)):
        if arn is not None and not _SNS_ARN.fullmatch(arn):
            raise LaunchError(f"{option} must be an SNS topic ARN like arn:aws:sns:{o.region}:123456789012:topic "
                              f"(got {arn!r})")
    if not o.instance_type.startswith("ml."):
        raise LaunchError(f"--instance-type must be a SageMaker instance type like {DEFAULT_INSTANCE_TYPE} "
                          f"(got {o.instance_type!r})")
    if o.min_instances < 0:
        raise LaunchError(f"--min must be at least 0 (got {o.min_instances})")
    if o.max_instances < 1:
        raise LaunchError(f"--max must be at least 1 (got {o.max_instances})")
    if o.min_instances > o.max_instances:
        raise LaunchError(f"--min {o.min_instances} is above --max {o.max_instances}")
    if not 1 <= o.max_concurrent_invocations <= MAX_CONCURRENT_LIMIT:
        raise LaunchError(f"--max-concurrent-invocations must be 1-{MAX_CONCURRENT_LIMIT} "
                          f"(got {o.max_concurrent_invocations})")
    if not o.target_backlog > 0:
        raise LaunchError(f"--target-backlog must be above 0 (got {o.target_backlog})")
    if o.image is not None and not o.image.strip():
        raise LaunchError("--image is empty")


def _tags(o: DeployOptions) -> list[dict[str, str]]:
    tags = [{"Key": "vitalflow:version", "Value": _version()}, {"Key": "vitalflow:endpoint", "Value": o.name}]
    if o.model_reference:
        tags.append({"Key": "vitalflow:model", "Value": o.model_reference[:256]})
    return tags


def container_environment(o: DeployOptions) -> dict[str, str]:
    """The serving container's environment: where jobs may read and where timelines go (the
    service reads them in ``vitalflow.serve.settings.from_environment``), then ``--env``.

    >>> container_environment(DeployOptions("e", "s3://b/m/model.tar.gz", "s3://b/out/",
    ...                                     input_prefixes=("s3://b/in", "s3://c/in"), environment={"A": "1"}))
    {'VITALFLOW_SERVE_INPUT_PREFIXES': 's3://b/in,s3://c/in', 'VITALFLOW_SERVE_OUTPUT_PREFIX': 's3://b/out/timelines', 'A': '1'}
    """
    env = {SERVE_OUTPUT_PREFIX_ENV: o.timelines_path}
    if o.input_prefixes:
        env = {SERVE_INPUT_PREFIXES_ENV: ",".join(o.input_prefixes), **env}
    return {**env, **o.environment}


def model_request(o: DeployOptions, image: str) -> dict[str, Any]:
    """``CreateModel``: the serving image with the model data (SageMaker unpacks it into
    /opt/ml/model) and the container's environment (:func:`container_environment`)."""
    container: dict[str, Any] = {"Image": image, "ModelDataUrl": o.model_data_url,
                                 "Environment": container_environment(o)}
    return {"ModelName": o.model_name, "ExecutionRoleArn": o.role, "PrimaryContainer": container, "Tags": _tags(o)}


def endpoint_config_request(o: DeployOptions) -> dict[str, Any]:
    """``CreateEndpointConfig``: one variant and the ``AsyncInferenceConfig``."""
    output: dict[str, Any] = {"S3OutputPath": o.output, "S3FailurePath": o.failure_path}
    topics = {key: arn for key, arn in (("SuccessTopic", o.sns_success), ("ErrorTopic", o.sns_error)) if arn}
    if topics:
        output["NotificationConfig"] = topics
    return {
        "EndpointConfigName": o.config_name,
        "ProductionVariants": [{"VariantName": VARIANT, "ModelName": o.model_name, "InstanceType": o.instance_type,
                                "InitialInstanceCount": o.initial_instances}],
        "AsyncInferenceConfig": {"OutputConfig": output,
                                 "ClientConfig": {"MaxConcurrentInvocationsPerInstance": o.max_concurrent_invocations}},
        "Tags": _tags(o),
    }


def endpoint_request(o: DeployOptions) -> dict[str, Any]:
    return {"EndpointName": o.name, "EndpointConfigName": o.config_name, "Tags": _tags(o)}


def _target(o: DeployOptions) -> dict[str, str]:
    return {"ServiceNamespace": SERVICE_NAMESPACE, "ResourceId": o.resource_id, "ScalableDimension": SCALABLE_DIMENSION}


def _endpoint_dimension(o: DeployOptions) -> list[dict[str, str]]:
    return [{"Name": "EndpointName", "Value": o.name}]


def scalable_target_request(o: DeployOptions) -> dict[str, Any]:
    return {**_target(o), "MinCapacity": o.min_instances, "MaxCapacity": o.max_instances}


def target_tracking_request(o: DeployOptions) -> dict[str, Any]:
    """Instances follow the queue: ``ApproximateBacklogSizePerInstance`` kept near ``target_backlog``."""
    return {
        "PolicyName": TARGET_POLICY, **_target(o), "PolicyType": "TargetTrackingScaling",
        "TargetTrackingScalingPolicyConfiguration": {
            "TargetValue": float(o.target_backlog),
            "CustomizedMetricSpecification": {"MetricName": BACKLOG_METRIC, "Namespace": METRIC_NAMESPACE,
                                              "Dimensions": _endpoint_dimension(o), "Statistic": "Average"},
            "ScaleInCooldown": SCALE_IN_COOLDOWN_S,
            "ScaleOutCooldown": SCALE_OUT_COOLDOWN_S,
        },
    }


def wake_policy_request(o: DeployOptions) -> dict[str, Any]:
    """Step scaling: +1 instance whenever its alarm (:func:`wake_alarm_request`) is in ALARM."""
    return {
        "PolicyName": WAKE_POLICY, **_target(o), "PolicyType": "StepScaling",
        "StepScalingPolicyConfiguration": {
            "AdjustmentType": "ChangeInCapacity",
            "MetricAggregationType": "Average",
            "Cooldown": WAKE_COOLDOWN_S,
            "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}],
        },
    }


def wake_alarm_request(o: DeployOptions, wake_policy_arn: str) -> dict[str, Any]:
    """``PutMetricAlarm`` on ``HasBacklogWithoutCapacity >= 1``: requests wait and no instance runs."""
    return {
        "AlarmName": o.alarm_name,
        "AlarmDescription": f"vitalflow: wake endpoint {o.name} from zero instances when requests are queued",
        "MetricName": WAKE_METRIC, "Namespace": METRIC_NAMESPACE, "Dimensions": _endpoint_dimension(o),
        "Statistic": "Average", "Period": 60, "EvaluationPeriods": 2, "DatapointsToAlarm": 2,
        "Threshold": 1.0, "ComparisonOperator": "GreaterThanOrEqualToThreshold", "TreatMissingData": "missing",
        "AlarmActions": [wake_policy_arn],
    }


@dataclass(frozen=True)
class Call:
    """One request of a deployment: the AWS service, the operation and its parameters."""

    service: str  # boto3's client name: "sagemaker", "application-autoscaling", "cloudwatch", "s3"
    operation: str  # the API's name: "CreateModel"
    request: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"service": self.service, "operation": self.operation, "request": self.request}


def upload_call(o: DeployOptions) -> Call | None:
    """The model upload, described (the body is the model directory's tarball)."""
    if o.upload_from is None:
        return None
    bucket, key = split_s3(o.model_data_url)
    return Call("s3", "PutObject", {"Bucket": bucket, "Key": key, "Body": f"<{MODEL_TARBALL} of {o.upload_from}>"})


def scaling_requests(o: DeployOptions, wake_policy_arn: str = WAKE_POLICY_ARN_PLACEHOLDER) -> list[Call]:
    return [Call("application-autoscaling", "RegisterScalableTarget", scalable_target_request(o)),
            Call("application-autoscaling", "PutScalingPolicy", target_tracking_request(o)),
            Call("application-autoscaling", "PutScalingPolicy", wake_policy_request(o)),
            Call("cloudwatch", "PutMetricAlarm", wake_alarm_request(o, wake_policy_arn))]


def planned_requests(o: DeployOptions, image: str, wake_policy_arn: str = WAKE_POLICY_ARN_PLACEHOLDER) -> list[Call]:
    """Every request of a deployment, in the order :func:`deploy` sends them. Pure."""
    upload = upload_call(o)
    return [*([upload] if upload else []),
            Call("sagemaker", "CreateModel", model_request(o, image)),
            Call("sagemaker", "CreateEndpointConfig", endpoint_config_request(o)),
            Call("sagemaker", "CreateEndpoint", endpoint_request(o)),
            *scaling_requests(o, wake_policy_arn)]


def dry_run_image(o: DeployOptions) -> str:
    """The image a dry run shows: the given one, else :func:`serving_image` with ``<account>``."""
    return o.image or serving_image(ACCOUNT_PLACEHOLDER, o.region or "<region>")


# ---------------------------------------------------------------------------------------------
# Deploy: the calls
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Deployed:
    name: str
    region: str
    image: str
    model_data_url: str
    uploaded: bool
    model_arn: str
    endpoint_config_arn: str
    endpoint_arn: str
    target_policy_arn: str
    wake_policy_arn: str
    alarm_name: str
    calls: tuple[Call, ...]


def _account(region: str) -> str:
    sts = aws_client("sts", region)
    return aws_call("reading the AWS account (sts get-caller-identity)", sts.get_caller_identity)["Account"]


def endpoint_exists(sm, name: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        sm.describe_endpoint(EndpointName=name)
        return True
    except ClientError as exc:
        message = exc.response.get("Error", {}).get("Message", "")
        if re.search(r"could not find|not found|does not exist", message, re.IGNORECASE):
            return False
        raise LaunchError(f"DescribeEndpoint {name}: {exc.response.get('Error', {}).get('Code', 'error')}: "
                          f"{message}") from exc


def wait_in_service(describe: Callable[[], dict[str, Any]], name: str, *, poll_s: float = 30.0,
                    timeout_s: float = 1800.0, on_event: Callable[[str], None] = lambda line: None,
                    sleep: Callable[[float], None] = time.sleep,
                    clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
    """Poll ``describe()`` (a DescribeEndpoint answer) until the endpoint is ``InService``; a
    ``Failed`` endpoint or the timeout is a :class:`LaunchError` naming what to do next."""
    started, last = clock(), None
    while True:
        answer = describe()
        status = answer.get("EndpointStatus", "?")
        if status != last:
            on_event(f"{name}: {status}")
            last = status
        if status == "InService":
            return answer
        if status in ("Failed", "OutOfService", "Deleting"):
            reason = answer.get("FailureReason")
            raise LaunchError(f"endpoint {name} is {status}" + (f": {reason}" if reason else "")
                              + f"; delete it (aws sagemaker delete-endpoint --endpoint-name {name}) and deploy again")
        if clock() - started > timeout_s:
            raise LaunchError(f"endpoint {name} still {status} after {timeout_s:.0f} s; its scaling is not "
                              f"registered yet: once it is InService, delete it and deploy again")
        sleep(poll_s)


def deploy(o: DeployOptions, local_dir: Path | None = None, *, poll_s: float = 30.0, timeout_s: float = 1800.0,
           on_event: Callable[[str], None] = lambda line: None,
           sleep: Callable[[float], None] = time.sleep) -> Deployed:
    """Validate, then upload the model (with ``upload_from``: ``local_dir``, its local copy, by
    default the folder itself), create model, endpoint config and endpoint, wait until it is
    InService, and register its scaling. Nothing is created when the options are invalid,
    credentials are missing or the endpoint exists."""
    validate(o)
    region = o.region
    sm = aws_client("sagemaker", region)
    if endpoint_exists(sm, o.name):
        raise LaunchError(f"endpoint {o.name} exists already in {region}: choose another --name, or delete it "
                          f"first (aws sagemaker delete-endpoint --endpoint-name {o.name})")
    image = o.image or serving_image(_account(region), region)
    sent: list[Call] = []
    uploaded = False
    if o.upload_from is not None:
        if local_dir is None and "://" in o.upload_from:
            raise LaunchError(f"{o.upload_from}: pass the local copy of the model directory to upload (local_dir)")
        upload_model(local_dir or Path(o.upload_from), o.model_data_url, region)
        sent.append(upload_call(o))  # type: ignore[arg-type]
        uploaded = True
        on_event(f"uploaded {o.model_data_url}")
    model, config, endpoint = planned_requests(replace(o, upload_from=None), image)[:3]
    model_arn = aws_call(f"CreateModel {o.model_name}", sm.create_model, **model.request)["ModelArn"]
    on_event(f"created model {o.model_name}")
    config_arn = aws_call(f"CreateEndpointConfig {o.config_name}", sm.create_endpoint_config,
                       **config.request)["EndpointConfigArn"]
    on_event(f"created endpoint config {o.config_name}")
    endpoint_arn = aws_call(f"CreateEndpoint {o.name}", sm.create_endpoint, **endpoint.request)["EndpointArn"]
    sent += [model, config, endpoint]
    wait_in_service(lambda: aws_call(f"DescribeEndpoint {o.name}", sm.describe_endpoint, EndpointName=o.name), o.name,
                    poll_s=poll_s, timeout_s=timeout_s, on_event=on_event, sleep=sleep)
    scaling = aws_client("application-autoscaling", region)
    target, tracking, wake, _ = scaling_requests(o)
    aws_call(f"RegisterScalableTarget {o.resource_id}", scaling.register_scalable_target, **target.request)
    tracking_arn = aws_call(f"PutScalingPolicy {TARGET_POLICY}", scaling.put_scaling_policy,
                         **tracking.request)["PolicyARN"]
    wake_arn = aws_call(f"PutScalingPolicy {WAKE_POLICY}", scaling.put_scaling_policy, **wake.request)["PolicyARN"]
    alarm = scaling_requests(o, wake_arn)[3]
    aws_call(f"PutMetricAlarm {o.alarm_name}", aws_client("cloudwatch", region).put_metric_alarm, **alarm.request)
    sent += [target, tracking, wake, alarm]
    return Deployed(o.name, region, image, o.model_data_url, uploaded, model_arn, config_arn, endpoint_arn,
                    tracking_arn, wake_arn, o.alarm_name, tuple(sent))


# ---------------------------------------------------------------------------------------------
# Invoke: a FeMo job through the asynchronous endpoint
# ---------------------------------------------------------------------------------------------

def new_job_id() -> str:
    return uuid.uuid4().hex


def check_job_id(job_id: str) -> str:
    if not _INFERENCE_ID.fullmatch(job_id) or "/" in job_id:
        raise LaunchError(f"--job-id {job_id!r}: 1-64 printable characters without spaces first or '/'")
    return job_id


def parse_patient(text: str | None) -> dict[str, Any]:
    """``--patient age=63,sex=F,height=160,weight=58,bmi=22.7,asa=2``: the job's ``patient`` object.

    Keys are those a job takes (``vitalflow.predict.recording.PATIENT_KEYS``), each once; numbers
    become JSON numbers, ``sex`` is F or M, ``subjectid`` stays text. ``weight`` is required (drug
    rates are per kg: the job would fail without it); the others missing take the spec's defaults.
    Checked before anything is sent: a bad value is one :class:`LaunchError` naming it.

    >>> parse_patient("age=63, sex=f,height=160,weight=58.5,bmi=22.7,asa=2")
    {'age': 63, 'sex': 'F', 'height': 160, 'weight': 58.5, 'bmi': 22.7, 'asa': 2}
    >>> parse_patient("weight=58,agee=63")
    Traceback (most recent call last):
    ...
    vitalflow.errors.LaunchError: --patient: unknown key 'agee' (known: age, height, weight, bmi, asa, anestart, aneend, caseend, sex, subjectid)
    """
    import math

    from vitalflow.predict.recording import PATIENT_KEYS, PATIENT_NUMBERS

    example = "e.g. --patient age=63,sex=F,height=160,weight=58,bmi=22.7,asa=2"
    if not text or not text.strip():
        raise LaunchError(f"--patient is required: the patient's features, at least weight=KG ({example})")
    patient: dict[str, Any] = {}
    for item in text.split(","):
        key, sep, value = (part.strip() for part in item.partition("="))
        if not sep or not key or not value:
            raise LaunchError(f"--patient {item.strip()!r}: use KEY=VALUE pairs separated by commas ({example})")
        if key not in PATIENT_KEYS:
            raise LaunchError(f"--patient: unknown key {key!r} (known: {', '.join(PATIENT_KEYS)})")
        if key in patient:
            raise LaunchError(f"--patient: {key} given twice")
        if key in PATIENT_NUMBERS:
            try:
                number = float(value)
            except ValueError:
                number = math.nan
            if not math.isfinite(number):
                raise LaunchError(f"--patient: {key} {value!r} is not a number")
            patient[key] = int(number) if number.is_integer() and "." not in value else number
        elif key == "sex":
            if value.upper() not in ("F", "M"):
                raise LaunchError(f"--patient: sex {value!r} is not F or M")
            patient[key] = value.upper()
        else:
            patient[key] = value
    if "weight" not in patient:
        raise LaunchError(f"--patient needs weight=KG (drug rates are per kg; {example})")
    return patient


def job_body(job_id: str, input_uri: str, now: _dt.datetime | None = None,
             patient: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The FeMo job format the service takes at ``/invocations``.

    >>> job_body("j1", "s3://b/rec/0001.vital", _dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=_dt.timezone.utc),
    ...          {"weight": 58})
    {'jobId': 'j1', 'requestTime': '2026-01-02T03:04:05Z', 'inputUri': 's3://b/rec/0001.vital', 'patient': {'weight': 58}}
    """
    now = now or _dt.datetime.now(_dt.timezone.utc)
    body: dict[str, Any] = {"jobId": job_id,
                            "requestTime": now.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                            "inputUri": input_uri}
    if patient is not None:
        body["patient"] = dict(patient)
    return body


def request_location(prefix: str, job_id: str) -> str:
    """Where the job body goes.

    >>> request_location("s3://b/async/out/requests/", "j1")
    's3://b/async/out/requests/j1.json'
    """
    return f"{prefix.rstrip('/')}/{job_id}.json"


def invoke_request(endpoint: str, input_location: str, job_id: str) -> dict[str, str]:
    """``InvokeEndpointAsync``: the request object's location; the job id is the ``InferenceId``."""
    return {"EndpointName": endpoint, "InputLocation": input_location, "ContentType": "application/json",
            "Accept": "application/json", "InferenceId": job_id}


def default_request_prefix(endpoint: str, region: str) -> str:
    """``<S3OutputPath>/requests`` of the endpoint's current config (DescribeEndpoint, DescribeEndpointConfig)."""
    sm = aws_client("sagemaker", region)
    described = aws_call(f"DescribeEndpoint {endpoint}", sm.describe_endpoint, EndpointName=endpoint)
    config = aws_call(f"DescribeEndpointConfig {described['EndpointConfigName']}", sm.describe_endpoint_config,
                   EndpointConfigName=described["EndpointConfigName"])
    output = (config.get("AsyncInferenceConfig") or {}).get("OutputConfig", {}).get("S3OutputPath")
    if not output:
        raise LaunchError(f"endpoint {endpoint} is not an asynchronous endpoint (its config "
                          f"{described['EndpointConfigName']} has no AsyncInferenceConfig)")
    return f"{output.rstrip('/')}/{REQUESTS_DIR}"


@dataclass(frozen=True)
class Submitted:
    job_id: str
    endpoint: str
    request_uri: str
    output_location: str
    failure_location: str | None
    body: dict[str, Any]


def submit_job(endpoint: str, input_uri: str, region: str, *, patient: Mapping[str, Any] | None = None,
               request_prefix: str | None = None, job_id: str | None = None,
               now: _dt.datetime | None = None) -> Submitted:
    """Write the job body (with ``patient``, from :func:`parse_patient`) to S3 and ``InvokeEndpointAsync`` it."""
    check_endpoint_name(endpoint)
    check_s3("--input", input_uri)
    job_id = check_job_id(job_id or new_job_id())
    if request_prefix is not None:
        check_s3("--request-prefix", request_prefix)
    prefix = request_prefix or default_request_prefix(endpoint, region)
    body = job_body(job_id, input_uri, now, patient)
    location = request_location(prefix, job_id)
    bucket, key = split_s3(location)
    aws_call(f"upload of {location}", aws_client("s3", region).put_object, Bucket=bucket, Key=key,
          Body=json.dumps(body).encode(), ContentType="application/json")
    runtime = aws_client("sagemaker-runtime", region)
    answer = aws_call(f"InvokeEndpointAsync {endpoint}", runtime.invoke_endpoint_async,
                   **invoke_request(endpoint, location, job_id))
    return Submitted(job_id, endpoint, location, answer["OutputLocation"], answer.get("FailureLocation"), body)


@dataclass(frozen=True)
class Result:
    """What appeared first: the output (``ok``) or the failure document, and its bytes."""

    ok: bool
    location: str
    body: bytes


def s3_readers(region: str) -> tuple[Callable[[str], bool], Callable[[str], bytes]]:
    """(exists, read) over S3 for :func:`wait_for_result`."""
    from botocore.exceptions import ClientError

    s3 = aws_client("s3", region)

    def exists(uri: str) -> bool:
        bucket, key = split_s3(uri)
        try:
            s3.head_object(Bucket=bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise LaunchError(f"checking {uri}: {exc.response.get('Error', {}).get('Code', 'error')}") from exc

    def read(uri: str) -> bytes:
        bucket, key = split_s3(uri)
        return aws_call(f"reading {uri}", s3.get_object, Bucket=bucket, Key=key)["Body"].read()

    return exists, read


def wait_for_result(output_location: str, failure_location: str | None, *, exists: Callable[[str], bool],
                    read: Callable[[str], bytes], timeout_s: float = 600.0, poll_s: float = 5.0,
                    sleep: Callable[[float], None] = time.sleep,
                    clock: Callable[[], float] = time.monotonic) -> Result | None:
    """Poll until the output or the failure object exists (checked at least once); None after
    ``timeout_s``."""
    started = clock()
    while True:
        for ok, location in ((True, output_location), (False, failure_location)):
            if location and exists(location):
                return Result(ok, location, read(location))
        if clock() - started >= timeout_s:
            return None
        sleep(poll_s)


def failure_reason(body: bytes, limit: int = 500) -> str:
    """One line from a failure document: its ``error`` (or ``message``) field when JSON, else the text.

    >>> failure_reason(b'{"jobId": "j1", "status": "Failed", "error": "not a .vital file:\\\\n s3://b/x"}')
    'not a .vital file: s3://b/x'
    >>> failure_reason(b"ModelError: Received server error (500)")
    'ModelError: Received server error (500)'
    """
    text = body.decode("utf-8", "replace")
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        for key in ("error", "message", "Message", "reason"):
            if doc.get(key):
                text = doc[key] if isinstance(doc[key], str) else json.dumps(doc[key])
                break
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
