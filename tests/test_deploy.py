"""``vitalflow deploy`` / ``vitalflow invoke``: the inference service as a SageMaker asynchronous
endpoint that scales to zero, and FeMo jobs sent to it; and the ``Dockerfile`` that builds its image.

moto, in server mode on loopback (``tests/moto_server.py``, the fixtures of ``tests/test_launch.py``),
stands in for every AWS service involved: SageMaker (CreateModel, CreateEndpointConfig,
CreateEndpoint; its endpoints are InService at once), Application Auto Scaling
(RegisterScalableTarget, PutScalingPolicy), CloudWatch (PutMetricAlarm), SNS (the notification
topics are real moto topics), S3 (the uploaded ``model.tar.gz`` and the job's request object),
and sagemaker-runtime: moto implements ``InvokeEndpointAsync`` (it does not run the container: it
writes a result it was given, or ``{"default": "response"}``, to a new bucket of its own and returns
that OutputLocation / FailureLocation), so ``invoke`` is tested end to end against it, output and
failure; waiting for a result that appears later, and the timeout, are tested on the polling
function with a scripted clock. What we check is what AWS would be asked: the resources as moto
describes them, and every HTTP request moto received (its recorder, ``MOTO_RECORDER_FILEPATH``).
Docker is not needed: the Dockerfile's structure is checked as text.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from moto_server import REGION
from test_launch import BUCKET, ROLE, _no_real_aws, aws, moto_server  # noqa: F401
from vitalflow.cli import app
from vitalflow.errors import LaunchError
from vitalflow.sagemaker import deploy as dp

boto3 = pytest.importorskip("boto3")

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = f"s3://{BUCKET}/async/out"
INPUT = f"s3://{BUCKET}/rec"
SERVE_ENV = {"VITALFLOW_SERVE_INPUT_PREFIXES": INPUT, "VITALFLOW_SERVE_OUTPUT_PREFIX": f"{OUTPUT}/timelines"}
PATIENT = "age=63,sex=F,height=160,weight=58,bmi=22.7,asa=2"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/vitalflow:test"
runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def recorded(server) -> list[dict]:
    """Every request moto received since its last reset, as (method, path, target) dicts."""
    if not server.recording.exists():
        return []
    found = []
    for line in server.recording.read_text().splitlines():
        entry = json.loads(line)
        headers = {k.lower(): v for k, v in entry.get("headers", {}).items()}
        found.append({"method": entry.get("method"), "url": entry.get("url", ""), "headers": headers,
                      "target": headers.get("x-amz-target", "")})
    return found


@pytest.fixture
def model_dir(tmp_path) -> Path:
    """A model directory as ``vitalflow train`` lays it out (card, model.keras, export/), with
    placeholder weights: deploying packs files, it loads nothing; plus a checkpoint folder and a
    dot file that must not be packed."""
    from vitalflow.model.card import ModelCard
    from vitalflow.spec import load_spec

    spec = load_spec()
    feature = {"name": "x", "unit": "1", "range": [0.0, 1.0]}
    card = ModelCard(
        tool={"name": "vitalflow", "version": "0.1.0", "tensorflow": "2.19.0", "keras": "3.10.0"},
        created_utc="2026-01-02T03:04:05Z",
        spec={"name": spec.name, "version": spec.version, "hash": "h", "content": spec.model_dump(mode="json")},
        dataset={"uri": "s3://b/ds", "fingerprint": "f" * 16, "config_hash": "c", "windows": {"train": 1}},
        timeseries=[feature], static=[feature], targets=[feature], inputs=["timeseries", "static"], window_s=300,
        horizon_s=30, config={}, config_hash="c", parameters=1,
        training={"epochs_run": 1, "best_epoch": 1, "stopped_early": False, "resumed": 0, "seconds": 1.0,
                  "history": {}},
        metrics={"val_loss": 0.1}, files={"model": "model.keras"})
    root = tmp_path / "m1"
    (root / "export").mkdir(parents=True)
    (root / "model_card.json").write_bytes(card.to_json())
    (root / "model.keras").write_bytes(b"keras")
    (root / "export" / "saved_model.pb").write_bytes(b"pb")
    (root / "_checkpoints").mkdir()
    (root / "_checkpoints" / "ckpt").write_bytes(b"c")
    (root / ".vitalflow-registry.json").write_text("{}")
    return root


def options(**kw) -> dp.DeployOptions:
    base = dict(name="vf-async", model_data_url=f"s3://{BUCKET}/models/model.tar.gz", output=OUTPUT, role=ROLE,
                region=REGION, image=IMAGE, stamp="20260102-030405", input_prefixes=(INPUT,))
    return dp.DeployOptions(**{**base, **kw})


def topics() -> tuple[str, str]:
    sns = boto3.client("sns")
    return sns.create_topic(Name="vf-done")["TopicArn"], sns.create_topic(Name="vf-failed")["TopicArn"]


def deploy_args(model, *extra) -> list:
    return ["deploy", "--model", model, "--name", "vf-async", "--async", "--output", OUTPUT, "--input-prefix", INPUT,
            "--role", ROLE, "--image", IMAGE, "--poll", "0.01", *extra]


# ---------------------------------------------------------------------------------------------
# The requests: pure
# ---------------------------------------------------------------------------------------------

def test_the_requests_of_a_deployment():
    o = options(failure_output=f"s3://{BUCKET}/async/failed", min_instances=0, max_instances=3,
                max_concurrent_invocations=2, sns_success="arn:aws:sns:us-east-1:123456789012:ok",
                sns_error="arn:aws:sns:us-east-1:123456789012:ko", environment={"MODEL_SERVER_TIMEOUT": "900"},
                model_reference="vitalflow@champion")
    calls = dp.planned_requests(o, IMAGE)
    assert [(c.service, c.operation) for c in calls] == [
        ("sagemaker", "CreateModel"), ("sagemaker", "CreateEndpointConfig"), ("sagemaker", "CreateEndpoint"),
        ("application-autoscaling", "RegisterScalableTarget"), ("application-autoscaling", "PutScalingPolicy"),
        ("application-autoscaling", "PutScalingPolicy"), ("cloudwatch", "PutMetricAlarm")]
    model, config, endpoint, target, tracking, wake, alarm = (c.request for c in calls)
    assert model["ModelName"] == "vf-async-20260102-030405" and model["ExecutionRoleArn"] == ROLE
    assert model["PrimaryContainer"] == {"Image": IMAGE, "ModelDataUrl": f"s3://{BUCKET}/models/model.tar.gz",
                                         "Environment": {**SERVE_ENV, "MODEL_SERVER_TIMEOUT": "900"}}
    assert {t["Key"]: t["Value"] for t in model["Tags"]}["vitalflow:model"] == "vitalflow@champion"
    assert config["ProductionVariants"] == [{"VariantName": "AllTraffic", "ModelName": "vf-async-20260102-030405",
                                             "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}]
    assert config["AsyncInferenceConfig"] == {
        "OutputConfig": {"S3OutputPath": OUTPUT, "S3FailurePath": f"s3://{BUCKET}/async/failed",
                         "NotificationConfig": {"SuccessTopic": "arn:aws:sns:us-east-1:123456789012:ok",
                                                "ErrorTopic": "arn:aws:sns:us-east-1:123456789012:ko"}},
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 2}}
    assert endpoint["EndpointName"] == "vf-async" and endpoint["EndpointConfigName"] == config["EndpointConfigName"]
    scaling = {"ServiceNamespace": "sagemaker", "ResourceId": "endpoint/vf-async/variant/AllTraffic",
               "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"}
    assert target == {**scaling, "MinCapacity": 0, "MaxCapacity": 3}
    assert tracking == {**scaling, "PolicyName": "ApproximateBacklogSizePerInstance-TargetTracking",
                        "PolicyType": "TargetTrackingScaling", "TargetTrackingScalingPolicyConfiguration": {
                            "TargetValue": 5.0, "CustomizedMetricSpecification": {
                                "MetricName": "ApproximateBacklogSizePerInstance", "Namespace": "AWS/SageMaker",
                                "Dimensions": [{"Name": "EndpointName", "Value": "vf-async"}],
                                "Statistic": "Average"},
                            "ScaleInCooldown": 600, "ScaleOutCooldown": 300}}
    assert wake == {**scaling, "PolicyName": "HasBacklogWithoutCapacity-ScalingPolicy", "PolicyType": "StepScaling",
                    "StepScalingPolicyConfiguration": {
                        "AdjustmentType": "ChangeInCapacity", "MetricAggregationType": "Average", "Cooldown": 300,
                        "StepAdjustments": [{"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}]}}
    assert {k: v for k, v in alarm.items() if k != "AlarmDescription"} == {
        "AlarmName": "vf-async-HasBacklogWithoutCapacity", "MetricName": "HasBacklogWithoutCapacity",
        "Namespace": "AWS/SageMaker", "Dimensions": [{"Name": "EndpointName", "Value": "vf-async"}],
        "Statistic": "Average", "Period": 60, "EvaluationPeriods": 2, "DatapointsToAlarm": 2, "Threshold": 1.0,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold", "TreatMissingData": "missing",
        "AlarmActions": [dp.WAKE_POLICY_ARN_PLACEHOLDER]}
    assert dp.wake_alarm_request(o, "arn:x")["AlarmActions"] == ["arn:x"]


def test_request_defaults_and_the_model_upload():
    o = options(upload_from="vitalflow@champion", min_instances=2, max_instances=4)
    calls = dp.planned_requests(o, IMAGE)
    assert calls[0].as_json() == {"service": "s3", "operation": "PutObject", "request": {
        "Bucket": BUCKET, "Key": "models/model.tar.gz", "Body": "<model.tar.gz of vitalflow@champion>"}}
    config = calls[2].request
    assert config["AsyncInferenceConfig"]["OutputConfig"] == {"S3OutputPath": OUTPUT,
                                                              "S3FailurePath": f"{OUTPUT}/failures"}
    assert config["AsyncInferenceConfig"]["ClientConfig"] == {"MaxConcurrentInvocationsPerInstance": 4}
    assert config["ProductionVariants"][0]["InitialInstanceCount"] == 2
    assert calls[1].request["PrimaryContainer"]["Environment"] == SERVE_ENV  # deploy's own, no --env
    two = dp.model_request(options(input_prefixes=(INPUT, f"s3://{BUCKET}/more/")), IMAGE)
    assert two["PrimaryContainer"]["Environment"]["VITALFLOW_SERVE_INPUT_PREFIXES"] == f"{INPUT},s3://{BUCKET}/more/"
    assert dp.default_model_data_url(OUTPUT, "vf-async", "20260102-030405") == \
        f"{OUTPUT}/_models/vf-async-20260102-030405/model.tar.gz"
    assert dp.dry_run_image(options(image=None)) == "<account>.dkr.ecr.us-east-1.amazonaws.com/vitalflow:" + \
        dp._version()


@pytest.mark.parametrize("kw, message", [
    (dict(name="bad_name"), "bad endpoint name 'bad_name'"),
    (dict(name="x" * 48), "1-47 letters"),
    (dict(role=None), "no IAM role for the endpoint: pass --role or set VITALFLOW_SAGEMAKER_ROLE"),
    (dict(role="admin"), "--role must be an IAM role ARN"),
    (dict(region=None), "no AWS region"),
    (dict(output="/data/out"), "--output must be an s3:// URI such as s3://bucket/prefix (got '/data/out')"),
    (dict(failure_output="s3://"), "--failure-output must be an s3:// URI"),
    (dict(sns_success="arn:aws:sqs:us-east-1:123456789012:q"), "--sns-success must be an SNS topic ARN"),
    (dict(sns_error="topic"), "--sns-error must be an SNS topic ARN"),
    (dict(instance_type="m5.large"), "--instance-type must be a SageMaker instance type"),
    (dict(min_instances=-1), "--min must be at least 0 (got -1)"),
    (dict(max_instances=0), "--max must be at least 1 (got 0)"),
    (dict(min_instances=3, max_instances=2), "--min 3 is above --max 2"),
    (dict(max_concurrent_invocations=0), "--max-concurrent-invocations must be 1-1000 (got 0)"),
    (dict(max_concurrent_invocations=1001), "--max-concurrent-invocations must be 1-1000 (got 1001)"),
    (dict(target_backlog=0.0), "--target-backlog must be above 0"),
    (dict(model_data_url="s3://b/models/m1"), "must be an s3:// model.tar.gz"),
    (dict(input_prefixes=()), "--input-prefix is required with --async: where the endpoint's jobs may read"),
    (dict(input_prefixes=("/data/rec",)), "--input-prefix must be an s3:// URI such as s3://bucket/prefix"),
    (dict(input_prefixes=(INPUT, "s3://lab/a,b")), "--input-prefix 's3://lab/a,b': a comma is not allowed"),
    (dict(environment={"VITALFLOW_SERVE_INPUT_PREFIXES": "s3://b/x"}),
     "--env VITALFLOW_SERVE_INPUT_PREFIXES: deploy sets it from --input-prefix"),
    (dict(environment={"VITALFLOW_SERVE_OUTPUT_PREFIX": "s3://b/x"}),
     "--env VITALFLOW_SERVE_OUTPUT_PREFIX: deploy sets it from --output"),
])
def test_validation_names_the_bad_option(kw, message):
    with pytest.raises(LaunchError, match=re.escape(message)):
        dp.validate(options(**kw))


def test_validation_accepts_the_limits():
    dp.validate(options(name="x" * 47, min_instances=0, max_instances=1, max_concurrent_invocations=1000,
                        role="arn:aws-cn:iam::123456789012:role/path/Role"))


def test_waiting_for_in_service_reports_each_status_and_a_failure():
    answers = iter([{"EndpointStatus": "Creating"}, {"EndpointStatus": "Creating"}, {"EndpointStatus": "InService"}])
    events: list[str] = []
    assert dp.wait_in_service(lambda: next(answers), "e", on_event=events.append, sleep=lambda s: None) == \
        {"EndpointStatus": "InService"}
    assert events == ["e: Creating", "e: InService"]
    failed = iter([{"EndpointStatus": "Creating"}, {"EndpointStatus": "Failed", "FailureReason": "image not found"}])
    with pytest.raises(LaunchError, match=r"endpoint e is Failed: image not found; delete it \(aws sagemaker "
                                          r"delete-endpoint --endpoint-name e\) and deploy again"):
        dp.wait_in_service(lambda: next(failed), "e", sleep=lambda s: None)
    clock = iter([0.0, 5.0, 11.0])
    with pytest.raises(LaunchError, match="endpoint e still Creating after 10 s"):
        dp.wait_in_service(lambda: {"EndpointStatus": "Creating"}, "e", timeout_s=10, sleep=lambda s: None,
                           clock=lambda: next(clock))


# ---------------------------------------------------------------------------------------------
# vitalflow deploy against moto
# ---------------------------------------------------------------------------------------------

def test_deploy_creates_the_endpoint_and_its_scaling_to_zero(aws, model_dir):
    success, error = topics()
    result = cli(*deploy_args(model_dir, "--max", "3", "--max-concurrent-invocations", "2", "--sns-success",
                              success, "--sns-error", error, "--env", "MODEL_SERVER_TIMEOUT=900"))
    assert result.exit_code == 0, result.output
    assert "endpoint vf-async InService in us-east-1: arn:aws:sagemaker:us-east-1:" in result.stdout
    assert "alarm vf-async-HasBacklogWithoutCapacity (HasBacklogWithoutCapacity >= 1) wakes it from zero" in \
        result.stdout
    sm = boto3.client("sagemaker")
    endpoint = sm.describe_endpoint(EndpointName="vf-async")
    assert endpoint["EndpointStatus"] == "InService"
    config = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])
    stamp = endpoint["EndpointConfigName"].removeprefix("vf-async-")
    assert re.fullmatch(r"\d{8}-\d{6}", stamp)
    assert config["AsyncInferenceConfig"] == {
        "OutputConfig": {"S3OutputPath": OUTPUT, "S3FailurePath": f"{OUTPUT}/failures",
                         "NotificationConfig": {"SuccessTopic": success, "ErrorTopic": error}},
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 2}}
    variant = config["ProductionVariants"][0]
    assert (variant["VariantName"], variant["ModelName"], variant["InstanceType"], variant["InitialInstanceCount"]) \
        == ("AllTraffic", f"vf-async-{stamp}", "ml.m5.large", 1)
    model = sm.describe_model(ModelName=f"vf-async-{stamp}")
    data_url = f"{OUTPUT}/_models/vf-async-{stamp}/model.tar.gz"
    assert model["PrimaryContainer"]["Image"] == IMAGE
    assert model["PrimaryContainer"]["ModelDataUrl"] == data_url
    # the container learns where its jobs may read and where their timelines go (the service's settings)
    assert model["PrimaryContainer"]["Environment"] == {
        "VITALFLOW_SERVE_INPUT_PREFIXES": INPUT, "VITALFLOW_SERVE_OUTPUT_PREFIX": f"{OUTPUT}/timelines",
        "MODEL_SERVER_TIMEOUT": "900"}
    assert model["ExecutionRoleArn"] == ROLE
    # the model directory, packed as a training job uploads /opt/ml/model: no _checkpoints, no dot files
    body = boto3.client("s3").get_object(Bucket=BUCKET, Key=data_url.split("/", 3)[3])["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        assert sorted(tar.getnames()) == ["export/saved_model.pb", "model.keras", "model_card.json"]

    scaling = boto3.client("application-autoscaling")
    resource = "endpoint/vf-async/variant/AllTraffic"
    [target] = scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]
    assert (target["ResourceId"], target["ScalableDimension"], target["MinCapacity"], target["MaxCapacity"]) == \
        (resource, "sagemaker:variant:DesiredInstanceCount", 0, 3)
    policies = {p["PolicyName"]: p for p in
                scaling.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=resource)["ScalingPolicies"]}
    assert set(policies) == {"ApproximateBacklogSizePerInstance-TargetTracking",
                             "HasBacklogWithoutCapacity-ScalingPolicy"}
    tracking = policies["ApproximateBacklogSizePerInstance-TargetTracking"]
    assert tracking["PolicyType"] == "TargetTrackingScaling"
    spec = tracking["TargetTrackingScalingPolicyConfiguration"]
    assert spec["TargetValue"] == 5.0
    assert spec["CustomizedMetricSpecification"] == {
        "MetricName": "ApproximateBacklogSizePerInstance", "Namespace": "AWS/SageMaker",
        "Dimensions": [{"Name": "EndpointName", "Value": "vf-async"}], "Statistic": "Average"}
    wake = policies["HasBacklogWithoutCapacity-ScalingPolicy"]
    assert wake["PolicyType"] == "StepScaling"
    assert wake["StepScalingPolicyConfiguration"]["AdjustmentType"] == "ChangeInCapacity"
    assert wake["StepScalingPolicyConfiguration"]["StepAdjustments"] == [
        {"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}]

    [alarm] = boto3.client("cloudwatch").describe_alarms(AlarmNames=["vf-async-HasBacklogWithoutCapacity"])[
        "MetricAlarms"]
    assert (alarm["MetricName"], alarm["Namespace"], alarm["Statistic"], alarm["Threshold"],
            alarm["ComparisonOperator"], alarm["EvaluationPeriods"], alarm["Period"]) == \
        ("HasBacklogWithoutCapacity", "AWS/SageMaker", "Average", 1.0, "GreaterThanOrEqualToThreshold", 2, 60)
    assert alarm["Dimensions"] == [{"Name": "EndpointName", "Value": "vf-async"}]
    assert alarm["AlarmActions"] == [wake["PolicyARN"]]  # the alarm wakes the endpoint through the step policy

    # deploying again under the same name is refused before anything is created
    before = len(sm.list_models()["Models"])
    again = cli(*deploy_args(model_dir))
    assert error_line(again) == ("Error: endpoint vf-async exists already in us-east-1: choose another --name, or "
                                 "delete it first (aws sagemaker delete-endpoint --endpoint-name vf-async)")
    assert len(sm.list_models()["Models"]) == before


def test_deploy_an_s3_model_tarball_uploads_nothing(aws):
    tarball = f"s3://{BUCKET}/registry/vitalflow/3/model.tar.gz"
    boto3.client("s3").put_object(Bucket=BUCKET, Key="registry/vitalflow/3/model.tar.gz", Body=b"tgz")
    result = cli(*deploy_args(tarball, "--min", "1", "--max", "2", "--failure-output", f"s3://{BUCKET}/failed"))
    assert result.exit_code == 0, result.output
    sm = boto3.client("sagemaker")
    [summary] = sm.list_models()["Models"]
    assert sm.describe_model(ModelName=summary["ModelName"])["PrimaryContainer"]["ModelDataUrl"] == tarball
    assert [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]] == \
        ["registry/vitalflow/3/model.tar.gz"]
    [target] = boto3.client("application-autoscaling").describe_scalable_targets(
        ServiceNamespace="sagemaker")["ScalableTargets"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 2)


def test_dry_run_prints_every_request_and_sends_nothing(aws, model_dir):
    before = recorded(aws)
    result = cli(*deploy_args(model_dir, "--max", "2", "--dry-run"))
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert [(c["service"], c["operation"]) for c in printed] == [
        ("s3", "PutObject"), ("sagemaker", "CreateModel"), ("sagemaker", "CreateEndpointConfig"),
        ("sagemaker", "CreateEndpoint"), ("application-autoscaling", "RegisterScalableTarget"),
        ("application-autoscaling", "PutScalingPolicy"), ("application-autoscaling", "PutScalingPolicy"),
        ("cloudwatch", "PutMetricAlarm")]
    stamp = printed[1]["request"]["ModelName"].removeprefix("vf-async-")
    expected = dp.planned_requests(options(
        model_data_url=f"{OUTPUT}/_models/vf-async-{stamp}/model.tar.gz", max_instances=2, stamp=stamp,
        model_reference=str(model_dir), upload_from=str(model_dir)), IMAGE)
    assert printed == [c.as_json() for c in expected]
    assert "dry run: 8 requests for endpoint vf-async in us-east-1; nothing was uploaded or created" in result.stderr
    assert recorded(aws) == before  # moto received nothing: no upload, no Create*, Put*, Register*
    assert boto3.client("sagemaker").list_models()["Models"] == []
    assert "Contents" not in boto3.client("s3").list_objects_v2(Bucket=BUCKET)


def test_dry_run_needs_no_credentials_and_shows_the_default_image(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("VITALFLOW_SERVE_IMAGE", raising=False)
    result = cli("deploy", "--model", f"s3://{BUCKET}/m1", "--name", "vf", "--async", "--output", OUTPUT,
                 "--input-prefix", INPUT, "--role", ROLE, "--region", "eu-west-1", "--dry-run")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed[0]["request"]["Body"] == f"<model.tar.gz of s3://{BUCKET}/m1>"  # an S3 model dir: not downloaded
    assert printed[1]["request"]["PrimaryContainer"]["Image"] == \
        f"<account>.dkr.ecr.eu-west-1.amazonaws.com/vitalflow:{dp._version()}"
    assert "the image's <account> is the account STS names when deploying" in result.stderr
    monkeypatch.setenv("VITALFLOW_SERVE_IMAGE", "my/image:1")
    result = cli("deploy", "--model", f"s3://{BUCKET}/m1/model.tar.gz", "--name", "vf", "--async", "--output",
                 OUTPUT, "--input-prefix", INPUT, "--role", ROLE, "--region", "eu-west-1", "--dry-run")
    printed = json.loads(result.stdout)
    assert printed[0]["operation"] == "CreateModel"  # a model.tar.gz is used as it is: no upload
    assert printed[0]["request"]["PrimaryContainer"] == {"Image": "my/image:1",
                                                         "ModelDataUrl": f"s3://{BUCKET}/m1/model.tar.gz",
                                                         "Environment": SERVE_ENV}


@pytest.mark.parametrize("change, message", [
    (dict(drop="--async"), "Error: vitalflow deploy makes asynchronous endpoints only (they queue requests and "
                           "scale to zero): pass --async"),
    (dict(name="vf_async"), "Error: bad endpoint name 'vf_async'"),
    (dict(extra=["--min", "2", "--max", "1"]), "Error: --min 2 is above --max 1"),
    (dict(extra=["--sns-success", "arn:aws:sns:us-east-1:123:x"]), "Error: --sns-success must be an SNS topic ARN"),
    (dict(extra=["--failure-output", "failed/"]), "Error: --failure-output must be an s3:// URI"),
    (dict(output="out"), "Error: --output must be an s3:// URI such as s3://bucket/prefix (got 'out')"),
    (dict(extra=["--role", "nobody"]), "Error: --role must be an IAM role ARN"),
    (dict(extra=["--env", "no-equals"]), "Error: --env 'no-equals': use NAME=VALUE"),
    (dict(extra=["--max-concurrent-invocations", "0"]), "Error: --max-concurrent-invocations must be 1-1000"),
    (dict(model="no/such/dir"), "Error: "),
    (dict(model="https://x/model"), "Error: --model 'https://x/model': a model is NAME@ALIAS"),
    (dict(drop="--input-prefix"), "Error: --input-prefix is required with --async: where the endpoint's jobs may "
                                  "read recordings (s3://bucket/prefix; repeatable); without it the service "
                                  "refuses every job"),
    (dict(extra=["--input-prefix", "rec/"]), "Error: --input-prefix must be an s3:// URI"),
    (dict(extra=["--env", "VITALFLOW_SERVE_OUTPUT_PREFIX=/tmp"]),
     "Error: --env VITALFLOW_SERVE_OUTPUT_PREFIX: deploy sets it from --output"),
])
def test_bad_options_are_one_error_line_and_nothing_is_sent(aws, model_dir, change, message):
    args = deploy_args(change.get("model", model_dir), *change.get("extra", []))
    if change.get("drop") == "--input-prefix":
        del args[args.index("--input-prefix"):args.index("--input-prefix") + 2]
    elif "drop" in change:
        args.remove(change["drop"])
    if "name" in change:
        args[args.index("vf-async")] = change["name"]
    if "output" in change:
        args[args.index(OUTPUT)] = change["output"]
    before = recorded(aws)
    assert error_line(cli(*args)).startswith(message)
    assert recorded(aws) == before


def test_missing_credentials_create_nothing(aws, model_dir, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    before = recorded(aws)
    assert error_line(cli(*deploy_args(model_dir))).startswith("Error: no AWS credentials found")
    assert recorded(aws) == before


# ---------------------------------------------------------------------------------------------
# vitalflow invoke
# ---------------------------------------------------------------------------------------------

def test_the_container_environment_is_what_the_service_reads():
    """deploy writes the variables `vitalflow serve` reads in the container (two sibling layers:
    the names are kept in both, and must agree)."""
    from vitalflow.serve import settings

    assert dp.SERVE_INPUT_PREFIXES_ENV == settings.INPUT_PREFIXES_ENV
    assert dp.SERVE_OUTPUT_PREFIX_ENV == settings.OUTPUT_PREFIX_ENV
    env = dp.container_environment(options(input_prefixes=(INPUT, f"s3://{BUCKET}/more")))
    assert settings.prefixes_from(env[dp.SERVE_INPUT_PREFIXES_ENV]) == (INPUT, f"s3://{BUCKET}/more")


def test_job_body_and_invoke_request():
    body = dp.job_body("j-1", "s3://b/rec/0001.vital")
    assert list(body) == ["jobId", "requestTime", "inputUri"]
    with_patient = dp.job_body("j-1", "s3://b/rec/0001.vital", patient=dp.parse_patient(PATIENT))
    assert with_patient["patient"] == {"age": 63, "sex": "F", "height": 160, "weight": 58, "bmi": 22.7, "asa": 2}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["requestTime"])
    assert dp.invoke_request("vf-async", "s3://b/async/out/requests/j-1.json", "j-1") == {
        "EndpointName": "vf-async", "InputLocation": "s3://b/async/out/requests/j-1.json",
        "ContentType": "application/json", "Accept": "application/json", "InferenceId": "j-1"}
    for bad in ("", " x", "a/b", "x" * 65):
        with pytest.raises(LaunchError, match="--job-id"):
            dp.check_job_id(bad)


def test_waiting_for_a_result_polls_both_locations_until_one_appears():
    appears = {"s3://o/r.out": 3}  # the output exists from the third check on
    checks: list[str] = []

    def exists(uri):
        checks.append(uri)
        return checks.count(uri) >= appears.get(uri, 10**9)

    result = dp.wait_for_result("s3://o/r.out", "s3://f/r-error.out", exists=exists, read=lambda uri: b"{}",
                                sleep=lambda s: None)
    assert result == dp.Result(True, "s3://o/r.out", b"{}")
    assert checks == ["s3://o/r.out", "s3://f/r-error.out"] * 2 + ["s3://o/r.out"]
    failed = dp.wait_for_result("s3://o/r.out", "s3://f/r-error.out", exists=lambda uri: uri.startswith("s3://f"),
                                read=lambda uri: b'{"error": "boom"}', sleep=lambda s: None)
    assert not failed.ok and dp.failure_reason(failed.body) == "boom"
    clock = iter([0.0, 4.0, 8.0, 12.0])
    sleeps: list[float] = []
    assert dp.wait_for_result("s3://o/r.out", None, exists=lambda uri: False, read=bytes, timeout_s=10, poll_s=4,
                              sleep=sleeps.append, clock=lambda: next(clock)) is None
    assert sleeps == [4, 4]


@pytest.mark.parametrize("text, message", [
    (None, "--patient is required: the patient's features, at least weight=KG"),
    ("age=63,sex=F", "--patient needs weight=KG (drug rates are per kg"),
    ("weight=58,agee=63", "--patient: unknown key 'agee' (known: age, height, weight, bmi, asa, anestart, aneend, "
                          "caseend, sex, subjectid)"),
    ("weight=58,weight=60", "--patient: weight given twice"),
    ("weight=heavy", "--patient: weight 'heavy' is not a number"),
    ("weight=nan", "--patient: weight 'nan' is not a number"),
    ("weight=58,sex=X", "--patient: sex 'X' is not F or M"),
    ("weight=58;age=63", "--patient: weight '58;age=63' is not a number"),
    ("weight=58,age", "--patient 'age': use KEY=VALUE pairs"),
    ("weight=58,age=", "--patient 'age=': use KEY=VALUE pairs"),
])
def test_a_bad_patient_is_refused(text, message):
    with pytest.raises(LaunchError, match=re.escape(message)):
        dp.parse_patient(text)


def test_patient_values():
    assert dp.parse_patient(" weight = 58.5 , subjectid=S-17, sex=m, anestart=120") == {
        "weight": 58.5, "subjectid": "S-17", "sex": "M", "anestart": 120}


def _moto_async_results(server, *results: dict) -> None:
    """Queue what moto's InvokeEndpointAsync writes next (``{"data": ..., "is_failure": bool}``)."""
    request = urllib.request.Request(server.endpoint + "/moto-api/static/sagemaker/async-endpoint-results",
                                     data=json.dumps({"region": REGION, "results": list(results)}).encode(),
                                     method="POST", headers={"Content-Type": "application/json"})
    urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=5).read()


def test_invoke_submits_the_femo_job_and_prints_the_result(aws):
    assert cli(*deploy_args(f"s3://{BUCKET}/m/model.tar.gz")).exit_code == 0
    prediction = {"jobId": "job-1", "status": "Completed", "result": {"summary": {"windows": 12}}}
    _moto_async_results(aws, {"data": json.dumps(prediction)},
                        {"data": json.dumps({"jobId": "job-2", "status": "Failed",
                                             "error": "s3://vf-launch/rec/0002.vital is not a .vital file"}),
                         "is_failure": True})
    result = cli("invoke", "vf-async", "--input", f"s3://{BUCKET}/rec/0001.vital", "--job-id", "job-1",
                 "--patient", PATIENT, "--poll", "0.01")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == prediction
    assert "job job-1 submitted to vf-async: request s3://vf-launch/async/out/requests/job-1.json" in result.stderr
    assert "job job-1 completed: s3://sagemaker-output-" in result.stderr
    # the request object is the FeMo job body with the patient, below the endpoint's S3OutputPath
    request = json.loads(boto3.client("s3").get_object(Bucket=BUCKET, Key="async/out/requests/job-1.json")[
        "Body"].read())
    assert {k: v for k, v in request.items() if k != "requestTime"} == {
        "jobId": "job-1", "inputUri": f"s3://{BUCKET}/rec/0001.vital",
        "patient": {"age": 63, "sex": "F", "height": 160, "weight": 58, "bmi": 22.7, "asa": 2}}
    [call] = [r for r in recorded(aws) if r["url"].endswith("/endpoints/vf-async/async-invocations")]
    assert call["method"] == "POST"
    assert call["headers"]["x-amzn-sagemaker-inputlocation"] == f"s3://{BUCKET}/async/out/requests/job-1.json"
    assert call["headers"]["x-amzn-sagemaker-inference-id"] == "job-1"
    assert call["headers"]["x-amzn-sagemaker-content-type"] == "application/json"

    failed = cli("invoke", "vf-async", "--input", f"s3://{BUCKET}/rec/0002.vital", "--job-id", "job-2",
                 "--patient", "weight=70", "--poll", "0.01")
    assert failed.exit_code == 1, failed.output
    submitted, line = failed.stderr.strip().splitlines()  # after the submission line: the reason, one line
    assert submitted.startswith("job job-2 submitted to vf-async")
    assert line.startswith("Error: job job-2 failed: s3://vf-launch/rec/0002.vital is not a .vital file "
                           "(s3://sagemaker-output-")

    later = cli("invoke", "vf-async", "--input", f"s3://{BUCKET}/rec/0003.vital", "--job-id", "job-3", "--no-wait",
                "-p", "weight=70")
    assert later.exit_code == 0, later.output
    answer = json.loads(later.stdout)
    assert answer["jobId"] == "job-3" and answer["request"] == f"s3://{BUCKET}/async/out/requests/job-3.json"
    assert answer["output"].startswith("s3://sagemaker-output-") and answer["failure"].startswith("s3://")


def test_invoke_errors_are_one_line(aws):
    line = error_line(cli("invoke", "vf-async", "--input", "/local/rec.vital", "--patient", PATIENT))
    assert line == "Error: --input must be an s3:// URI such as s3://bucket/prefix (got '/local/rec.vital')"
    line = error_line(cli("invoke", "no-such-endpoint", "--input", f"s3://{BUCKET}/rec/0001.vital", "-p", PATIENT))
    assert line.startswith("Error: DescribeEndpoint no-such-endpoint: ValidationException: Could not find endpoint")
    line = error_line(cli("invoke", "vf-async", "--input", f"s3://{BUCKET}/r.vital", "--timeout", "0", "-p", PATIENT))
    assert line == "Error: --timeout must be at least 1 s (got '0')"
    # a bad patient is refused before anything is sent (not even the endpoint is looked up)
    assert cli(*deploy_args(f"s3://{BUCKET}/m/model.tar.gz")).exit_code == 0
    before = recorded(aws)
    for patient, message in ((None, "Error: --patient is required"),
                             ("age=63,sex=F,weight=58,wieght=58", "Error: --patient: unknown key 'wieght'"),
                             ("age=63,sex=F", "Error: --patient needs weight=KG")):
        extra = ["--patient", patient] if patient else []
        line = error_line(cli("invoke", "vf-async", "--input", f"s3://{BUCKET}/rec/0001.vital", *extra))
        assert line.startswith(message), line
    assert recorded(aws) == before


# ---------------------------------------------------------------------------------------------
# The serving image
# ---------------------------------------------------------------------------------------------

def test_dockerfile_builds_the_serving_container():
    text = (ROOT / "Dockerfile").read_text()
    instructions = [line.split(None, 1) for line in re.sub(r"\\\n", " ", text).splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    keywords = [k.upper() for k, *_ in instructions]
    args = {k.upper(): v.strip() for k, v in instructions if k.upper() in ("ENTRYPOINT", "CMD", "EXPOSE", "USER")}
    assert keywords[0] == "FROM" or keywords[0] == "ARG"
    assert json.loads(args["ENTRYPOINT"]) == ["vitalflow"] and json.loads(args["CMD"]) == ["serve"]
    assert args["EXPOSE"] == "8080"
    assert args["USER"] not in ("root", "0")
    joined = re.sub(r"\\\n", " ", text)
    assert re.search(r"pip install [^\n]*\.\[[a-z,]*\bserve\b[a-z,]*\]", joined), "installs the serve extra"
    assert "/opt/ml/model" in text
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")  # runs unprivileged
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "tests"} <= {p.strip("/") for p in ignored}
