"""``vitalflow launch`` / ``vitalflow jobs`` and the script a job runs (``sagemaker/entry.py``).

moto, in server mode on loopback (``tests/moto_server.py``), stands in for the SageMaker control
plane only: it accepts CreateProcessingJob/CreateTrainingJob, answers Describe*/List* (its jobs
are Completed at once) and its S3 holds the code tarball a launch uploads. The real S3 tests run
on SeaweedFS; nothing here runs a job's container. What we check is what SageMaker would be
asked: the requests as moto returns them from Describe*, and, for the fields moto drops
(a processing job's ProcessingResources and Environment, a training job's Environment), the
requests as the server received them over HTTP.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from moto_server import ENV_UNSET, REGION, MotoServer
from vitalflow.sagemaker import entry
from vitalflow.sagemaker import launch as sm

boto3 = pytest.importorskip("boto3")

ROLE = "arn:aws:iam::123456789012:role/VitalflowSageMaker"
BUCKET = "vf-launch"
OUT = f"s3://{BUCKET}/runs/out"
BASE_ARGS = ["--input", f"s3://{BUCKET}/recordings", "--clinical", f"s3://{BUCKET}/clinical.csv", "--output", OUT]
runner = CliRunner()


def invoke(*args: str):
    from vitalflow.launch_cli import app

    return runner.invoke(app, list(args))


def options(**kw) -> sm.LaunchOptions:
    base = dict(input=f"s3://{BUCKET}/recordings", clinical=f"s3://{BUCKET}/clinical.csv", output=OUT,
                role=ROLE, region="eu-central-1", job_name="vitalflow-unit")
    base.update(kw)
    return sm.LaunchOptions(**base)


@pytest.fixture(autouse=True)
def _no_real_aws(monkeypatch, tmp_path):
    """Every test: no ~/.aws, no instance metadata (a non-loopback address), wide tables."""
    for name in ENV_UNSET:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("COLUMNS", "250")


@pytest.fixture(scope="module")
def moto_server(tmp_path_factory):
    """A ``moto_server`` subprocess on 127.0.0.1 standing in for the SageMaker control plane only
    (S3 in the real tests runs on SeaweedFS; here moto's S3 holds the uploaded code tarball)."""
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def aws(moto_server, monkeypatch):
    """The environment pointed at a freshly reset moto with the bucket ``vf-launch``."""
    moto_server.reset()
    for key, value in moto_server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it caches credentials: keep moto's out of other tests
    boto3.client("s3").create_bucket(Bucket=BUCKET)
    return moto_server


def s3_keys() -> list[str]:
    return [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def tar_names(data: bytes) -> set[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return set(tar.getnames())


def s3_get(uri: str) -> bytes:
    bucket, key = uri[len("s3://"):].split("/", 1)
    return boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()


def assert_code_shipped(code_uri: str) -> None:
    names = tar_names(s3_get(code_uri))
    assert {"entry.py", "pyproject.toml", "src/vitalflow/__init__.py", "src/vitalflow/cli.py",
            "src/vitalflow/spec/master_poc.yaml", "src/vitalflow/sagemaker/entry.py"} <= names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert s3_get(code_uri.rsplit("/", 1)[0] + "/entry.py") == sm.entry_script().read_bytes()


# ---------------------------------------------------------------------------------------------
# build_request: pure
# ---------------------------------------------------------------------------------------------

def test_processing_request():
    kind, r = sm.build_request(options(instance_count=3, cases="1-3000", config=f"s3://{BUCKET}/run.yaml", workers=6))
    assert kind == "processing"
    assert r["ProcessingResources"]["ClusterConfig"] == {"InstanceCount": 3, "InstanceType": "ml.m5.2xlarge",
                                                         "VolumeSizeInGB": 50}
    assert r["StoppingCondition"] == {"MaxRuntimeInSeconds": 26 * 3600}
    app = r["AppSpecification"]
    assert app["ImageUri"] == "492215442770.dkr.ecr.eu-central-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"
    assert app["ContainerEntrypoint"] == ["python3", "/opt/ml/processing/input/code/entry.py"]
    assert app["ContainerArguments"] == ["--input", f"s3://{BUCKET}/recordings", "--clinical",
                                         f"s3://{BUCKET}/clinical.csv", "--output", OUT, "--cases", "1-3000",
                                         "--config", f"s3://{BUCKET}/run.yaml", "--workers", "6"]
    (code,) = r["ProcessingInputs"]
    assert code["S3Input"]["S3Uri"] == f"{OUT}/_code/vitalflow-unit/"
    assert code["S3Input"]["LocalPath"] == "/opt/ml/processing/input/code"
    assert r["Environment"]["PYTHONUNBUFFERED"] == "1"
    assert "EnableManagedSpotTraining" not in r


def test_spot_request_defaults_max_wait_to_twice_max_run():
    kind, r = sm.build_request(options(spot=True, instance_count=4, max_run=10 * 3600, workers=8))
    assert kind == "training"
    assert r["EnableManagedSpotTraining"] is True
    assert r["StoppingCondition"] == {"MaxRuntimeInSeconds": 36000, "MaxWaitTimeInSeconds": 72000}
    assert r["CheckpointConfig"] == {"S3Uri": f"{OUT}/_checkpoints/", "LocalPath": "/opt/ml/checkpoints"}
    assert r["ResourceConfig"] == {"InstanceType": "ml.m5.2xlarge", "InstanceCount": 4, "VolumeSizeInGB": 50}
    hps = r["HyperParameters"]
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in hps.items())
    assert hps["workers"] == "8" and hps["sagemaker_program"] == "entry.py"
    assert hps["sagemaker_submit_directory"] == f"{OUT}/_code/vitalflow-unit/source.tar.gz"
    # the default 26 h run gets 52 h to wait for spot capacity
    assert sm.build_request(options(spot=True))[1]["StoppingCondition"]["MaxWaitTimeInSeconds"] == 52 * 3600


def test_training_without_spot_has_no_wait_or_checkpoints():
    kind, r = sm.build_request(options(mode="training"))
    assert kind == "training" and r["EnableManagedSpotTraining"] is False
    assert r["StoppingCondition"] == {"MaxRuntimeInSeconds": 26 * 3600}
    assert "CheckpointConfig" not in r


def test_max_wait_default_is_capped_at_28_days():
    r = sm.build_request(options(spot=True, max_run=20 * 86400))[1]
    assert r["StoppingCondition"] == {"MaxRuntimeInSeconds": 20 * 86400, "MaxWaitTimeInSeconds": 28 * 86400}
    r = sm.build_request(options(spot=True, max_run=3600, max_wait=5000))[1]
    assert r["StoppingCondition"]["MaxWaitTimeInSeconds"] == 5000


@pytest.mark.parametrize("kw, message", [
    (dict(max_run=777_601), "a processing job runs at most 777600 s"),
    (dict(mode="training", max_run=28 * 86400 + 1), "a training job runs at most 2419200 s (28 days)"),
    (dict(spot=True, max_run=7200, max_wait=3600), "--max-wait 3600 s must be at least --max-run (7200 s)"),
    (dict(spot=True, max_wait=29 * 86400), "at most 2419200 s (28 days)"),
    (dict(max_wait=7200), "--max-wait applies only to managed spot jobs"),
    (dict(spot=True, mode="processing"), "managed spot needs a training job"),
    (dict(mode="batch"), "--mode must be processing or training"),
    (dict(instance_count=101), "a processing job has at most 100 instances"),
    (dict(instance_count=0), "--instance-count must be at least 1"),
    (dict(max_run=0), "--max-run must be at least 1 s"),
    (dict(workers=0), "--workers must be at least 1"),
    (dict(job_name="bad_name"), "bad job name 'bad_name'"),
    (dict(job_name="x" * 64), "1-63 letters"),
    (dict(instance_type="m5.large"), "--instance-type must be a SageMaker instance type"),
    (dict(role="my-role"), "--role must be an IAM role ARN"),
    (dict(region="xx-nowhere-1"), "no default image known for region 'xx-nowhere-1': pass --image"),
    (dict(cases="1," * 200), "at most 256 characters"),
    (dict(output="/data/out"), "--output must be an s3:// URI (got '/data/out')"),
    (dict(input="recordings/"), "--input must be an s3:// URI"),
    (dict(config="run.yaml"), "--config must be an s3:// URI"),
    (dict(output=f"s3://{BUCKET}"), "--output must name a prefix inside the bucket"),
])
def test_limits_and_bad_options(kw, message):
    with pytest.raises(sm.LaunchError) as info:
        sm.build_request(options(**kw))
    assert message in str(info.value)


def test_limits_that_hold():
    assert sm.build_request(options(max_run=777_600))[1]["StoppingCondition"]["MaxRuntimeInSeconds"] == 777_600
    assert sm.build_request(options(spot=True, instance_count=150))[1]["ResourceConfig"]["InstanceCount"] == 150
    assert sm.build_request(options(region="xx-nowhere-1", image="my/image:1"))[1]["AppSpecification"]["ImageUri"] \
        == "my/image:1"
    assert sm.default_image("cn-north-1").endswith(".amazonaws.com.cn/sagemaker-scikit-learn:1.4-2-cpu-py3")


def test_parse_duration():
    assert [sm.parse_duration(x) for x in ("26h", "90m", "600", "2d", "30s")] == [93600, 5400, 600, 172800, 30]
    with pytest.raises(sm.LaunchError, match="bad duration '1 week'"):
        sm.parse_duration("1 week")


def test_role_and_region_come_from_the_environment(monkeypatch):
    env = {"VITALFLOW_SAGEMAKER_ROLE": ROLE, "AWS_DEFAULT_REGION": "eu-west-1"}
    resolved = sm.resolve(options(role=None, region=None), env)
    assert (resolved.role, resolved.region) == (ROLE, "eu-west-1")
    assert sm.resolve(options(role=None, region=None), {"AWS_REGION": "us-west-2"}).region == "us-west-2"
    assert sm.resolve(options(region="ap-south-1"), {"AWS_REGION": "us-west-2"}).region == "ap-south-1"


def test_code_tarball_holds_entry_script_and_package():
    data = sm.build_code_tarball()
    names = tar_names(data)
    assert {"entry.py", "pyproject.toml", "README.md", "src/vitalflow/__init__.py", "src/vitalflow/spec/master_poc.yaml",
            "src/vitalflow/sagemaker/launch.py", "src/vitalflow/sagemaker/entry.py"} <= names
    assert not any("__pycache__" in n or ".egg-info" in n for n in names)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getmember("entry.py").mode & 0o111
        pyproject = tar.extractfile("pyproject.toml").read().decode()
    assert 'name = "vitalflow"' in pyproject
    generated = sm._generated_pyproject()  # what a non-editable install ships instead
    assert 'name = "vitalflow"' in generated and '"numpy>=1.24"' in generated and 'where = ["src"]' in generated


# ---------------------------------------------------------------------------------------------
# Against moto
# ---------------------------------------------------------------------------------------------

def test_launch_processing_job(aws):
    result = invoke("launch", *BASE_ARGS, "--cases", "1-3000", "--config", f"s3://{BUCKET}/run.yaml",
                    "--instance-count", "3", "--workers", "4", "--role", ROLE, "--job-name", "vitalflow-proc-1")
    assert result.exit_code == 0, result.output
    assert "submitted processing job vitalflow-proc-1" in result.stdout
    assert "follow it with: vitalflow jobs vitalflow-proc-1" in result.stdout

    job = boto3.client("sagemaker").describe_processing_job(ProcessingJobName="vitalflow-proc-1")
    assert job["RoleArn"] == ROLE
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 93600}
    assert job["AppSpecification"]["ImageUri"] == sm.default_image(REGION)
    assert job["AppSpecification"]["ContainerEntrypoint"] == ["python3", "/opt/ml/processing/input/code/entry.py"]
    assert job["AppSpecification"]["ContainerArguments"] == [
        "--input", f"s3://{BUCKET}/recordings", "--clinical", f"s3://{BUCKET}/clinical.csv", "--output", OUT,
        "--cases", "1-3000", "--config", f"s3://{BUCKET}/run.yaml", "--workers", "4"]
    (code,) = job["ProcessingInputs"]
    assert code["S3Input"]["S3Uri"] == f"{OUT}/_code/vitalflow-proc-1/"
    assert code["S3Input"]["LocalPath"] == "/opt/ml/processing/input/code"
    # moto does not keep these: the request as the server received it
    (sent,) = aws.requests("CreateProcessingJob")
    assert sent["ProcessingResources"]["ClusterConfig"] == {"InstanceCount": 3, "InstanceType": "ml.m5.2xlarge",
                                                            "VolumeSizeInGB": 50}
    assert sent["Environment"] == {"PYTHONUNBUFFERED": "1", "VITALFLOW_JOB_NAME": "vitalflow-proc-1"}
    assert sorted(s3_keys()) == ["runs/out/_code/vitalflow-proc-1/entry.py",
                                 "runs/out/_code/vitalflow-proc-1/source.tar.gz"]
    assert_code_shipped(f"{OUT}/_code/vitalflow-proc-1/source.tar.gz")


def test_launch_spot_training_job(aws, monkeypatch):
    monkeypatch.setenv("VITALFLOW_SAGEMAKER_ROLE", ROLE)  # no --role: the variable
    result = invoke("launch", *BASE_ARGS, "--cases", "1-10,17", "--spot", "--instance-count", "2",
                    "--instance-type", "ml.c5.4xlarge", "--max-run", "10h", "--workers", "8",
                    "--job-name", "vitalflow-spot-1")
    assert result.exit_code == 0, result.output
    assert "submitted training job vitalflow-spot-1" in result.stdout

    job = boto3.client("sagemaker").describe_training_job(TrainingJobName="vitalflow-spot-1")
    assert job["RoleArn"] == ROLE
    assert job["ResourceConfig"] == {"InstanceType": "ml.c5.4xlarge", "InstanceCount": 2, "VolumeSizeInGB": 50}
    assert job["EnableManagedSpotTraining"] is True
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 36000, "MaxWaitTimeInSeconds": 72000}
    assert job["CheckpointConfig"] == {"S3Uri": f"{OUT}/_checkpoints/", "LocalPath": "/opt/ml/checkpoints"}
    assert job["AlgorithmSpecification"]["TrainingImage"] == sm.default_image(REGION)
    assert job["OutputDataConfig"]["S3OutputPath"] == f"{OUT}/_sagemaker/"
    hps = job["HyperParameters"]
    assert all(isinstance(v, str) for v in hps.values())
    assert {k: v for k, v in hps.items() if not k.startswith("sagemaker_")} == {
        "input": f"s3://{BUCKET}/recordings", "clinical": f"s3://{BUCKET}/clinical.csv", "output": OUT,
        "cases": "1-10,17", "workers": "8"}
    assert hps["sagemaker_program"] == "entry.py"
    assert hps["sagemaker_submit_directory"] == f"{OUT}/_code/vitalflow-spot-1/source.tar.gz"
    assert hps["sagemaker_region"] == REGION
    (sent,) = aws.requests("CreateTrainingJob")
    assert sent["Environment"] == {"PYTHONUNBUFFERED": "1", "VITALFLOW_JOB_NAME": "vitalflow-spot-1"}
    assert "InputDataConfig" not in sent  # no channels: hosts split the cases themselves
    assert_code_shipped(hps["sagemaker_submit_directory"])


def test_launch_training_mode_on_demand(aws):
    result = invoke("launch", *BASE_ARGS, "--mode", "training", "--role", ROLE, "--job-name", "vitalflow-train-1")
    assert result.exit_code == 0, result.output
    job = boto3.client("sagemaker").describe_training_job(TrainingJobName="vitalflow-train-1")
    assert job["EnableManagedSpotTraining"] is False
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 93600}
    assert "CheckpointConfig" not in job


def test_dry_run_prints_the_request_and_submits_nothing(aws):
    result = invoke("launch", *BASE_ARGS, "--spot", "--role", ROLE, "--job-name", "vitalflow-dry", "--dry-run")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    kind, expected = sm.build_request(options(spot=True, region=REGION, job_name="vitalflow-dry"))
    assert printed == expected and kind == "training"
    assert "nothing was uploaded or submitted" in result.stderr
    assert s3_keys() == []
    assert boto3.client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []
    assert aws.requests("CreateTrainingJob") == [] and aws.requests("CreateProcessingJob") == []


def test_dry_run_needs_no_credentials(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    result = invoke("launch", *BASE_ARGS, "--role", ROLE, "--region", "eu-west-1", "--dry-run")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["ProcessingJobName"].startswith("vitalflow-")


def test_launch_wait_prints_status_until_completed(aws):
    result = invoke("launch", *BASE_ARGS, "--spot", "--role", ROLE, "--job-name", "vitalflow-wait-1", "--wait",
                    "--poll", "0.01")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(line.endswith("vitalflow-wait-1: Completed") for line in lines)  # moto's jobs end at once
    assert lines[-1] == "training job vitalflow-wait-1 Completed"


def _scripted(answers):
    answers = iter(answers)
    return lambda name: next(answers)


def test_wait_reports_each_transition_and_the_failure_reason():
    def training(status, secondary, message, **extra):
        return {"TrainingJobName": "j", "TrainingJobStatus": status, "SecondaryStatus": secondary,
                "SecondaryStatusTransitions": [{"Status": secondary, "StatusMessage": message}], **extra}

    answers = [training("InProgress", "Starting", "Preparing the instances for training"),
               training("InProgress", "Starting", "Preparing the instances for training"),
               training("InProgress", "Downloading", "Downloading the training image"),
               training("InProgress", "Training", "Training image download completed. Training in progress."),
               training("InProgress", "Interrupted", "Spot interruption"),
               training("InProgress", "Training", "Training in progress."),
               training("Failed", "Failed", "Training job failed",
                        FailureReason="AlgorithmError: ExecuteUserScriptError: exit code 3")]
    events, sleeps = [], []
    info = sm.wait("j", "training", poll_s=5, on_event=events.append, describe=_scripted(answers),
                   sleep=sleeps.append)
    assert info.status == "Failed" and info.failure_reason.endswith("exit code 3")
    assert events == [
        "j: InProgress",
        "j:   Starting - Preparing the instances for training",
        "j:   Downloading - Downloading the training image",
        "j:   Training - Training image download completed. Training in progress.",
        "j:   Interrupted - Spot interruption",
        "j:   Training - Training in progress.",
        "j: Failed",
        "j:   Failed - Training job failed",
        "j: failure reason: AlgorithmError: ExecuteUserScriptError: exit code 3",
    ]
    assert sleeps == [5] * 6

    processing = [{"ProcessingJobName": "p", "ProcessingJobStatus": s} for s in ("InProgress", "InProgress",
                                                                                  "Completed")]
    events = []
    info = sm.wait("p", "processing", on_event=events.append, describe=_scripted(processing), sleep=lambda s: None)
    assert info.status == "Completed" and events == ["p: InProgress", "p: Completed"]


def test_wait_gives_up_after_its_timeout():
    stuck = {"ProcessingJobName": "p", "ProcessingJobStatus": "InProgress"}
    with pytest.raises(sm.LaunchError, match="job p still InProgress after 0 s"):
        sm.wait("p", "processing", describe=lambda name: stuck, sleep=lambda s: None, timeout_s=0)


def test_jobs_wait_on_a_failing_job_prints_the_reason(aws, monkeypatch):
    invoke("launch", *BASE_ARGS, "--role", ROLE, "--job-name", "vitalflow-fail-1")
    answers = iter([{"ProcessingJobName": "vitalflow-fail-1", "ProcessingJobStatus": "InProgress"}] * 2 + [
        {"ProcessingJobName": "vitalflow-fail-1", "ProcessingJobStatus": "Failed",
         "FailureReason": "AlgorithmError: exit code 1"}])
    monkeypatch.setattr(sm, "_describe_raw", lambda client, name, kind: next(answers))
    result = invoke("jobs", "vitalflow-fail-1", "--wait", "--poll", "0.01")
    assert result.exit_code == 1
    assert "vitalflow-fail-1: failure reason: AlgorithmError: exit code 1" in result.stdout
    assert result.stderr.strip() == "Error: processing job vitalflow-fail-1 Failed: AlgorithmError: exit code 1"


def test_jobs_lists_and_describes(aws):
    for args in (["--instance-count", "3", "--job-name", "vitalflow-list-proc"],
                 ["--spot", "--instance-count", "2", "--job-name", "vitalflow-list-spot"],
                 ["--job-name", "other-job"]):
        assert invoke("launch", *BASE_ARGS, "--role", ROLE, *args).exit_code == 0

    result = invoke("jobs")
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    assert set(rows) - {"name"} == {"vitalflow-list-proc", "vitalflow-list-spot"}
    assert "processing" in rows["vitalflow-list-proc"] and "Completed" in rows["vitalflow-list-proc"]
    spot = rows["vitalflow-list-spot"]
    assert "training" in spot and "2 x ml.m5.2xlarge" in spot and "yes" in spot

    everything = invoke("jobs", "--name-contains", "", "--json")
    assert {j.get("ProcessingJobName") or j.get("TrainingJobName") for j in json.loads(everything.stdout)} == {
        "vitalflow-list-proc", "vitalflow-list-spot", "other-job"}

    described = invoke("jobs", "vitalflow-list-spot")
    assert described.exit_code == 0, described.output
    text = described.stdout
    for expected in ("training job vitalflow-list-spot", "Completed", "2 x ml.m5.2xlarge", "93600 s", "187200 s",
                     f"{OUT}/_checkpoints/", f"{OUT}/_code/vitalflow-list-spot/source.tar.gz"):
        assert expected in text
    raw = json.loads(invoke("jobs", "vitalflow-list-proc", "--json").stdout)
    assert raw["ProcessingJobName"] == "vitalflow-list-proc"

    missing = invoke("jobs", "vitalflow-nope")
    assert missing.exit_code == 1
    assert missing.stderr.strip() == f"Error: no SageMaker job named 'vitalflow-nope' in {REGION}"


# ---------------------------------------------------------------------------------------------
# Errors: one line, nothing uploaded
# ---------------------------------------------------------------------------------------------

def _one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def test_missing_role(aws):
    line = _one_error_line(invoke("launch", *BASE_ARGS))
    assert line == "Error: no IAM role for the job: pass --role or set VITALFLOW_SAGEMAKER_ROLE"
    assert s3_keys() == []


def test_missing_region(aws, monkeypatch):
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    line = _one_error_line(invoke("launch", *BASE_ARGS, "--role", ROLE))
    assert line == ("Error: no AWS region: pass --region or set AWS_REGION or AWS_DEFAULT_REGION "
                    "(or a region in your AWS profile)")
    assert _one_error_line(invoke("jobs")).startswith("Error: no AWS region")


def test_missing_credentials(aws, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    line = _one_error_line(invoke("launch", *BASE_ARGS, "--role", ROLE))
    assert line.startswith("Error: no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    assert _one_error_line(invoke("jobs")).startswith("Error: no AWS credentials found")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    assert s3_keys() == []


def test_non_s3_output(aws):
    args = [a if a != OUT else "/data/out" for a in BASE_ARGS]
    line = _one_error_line(invoke("launch", *args, "--role", ROLE))
    assert line == "Error: --output must be an s3:// URI (got '/data/out'): a SageMaker job reads and writes S3"
    assert s3_keys() == []


def test_missing_bucket_names_the_upload(aws):
    args = [a.replace(BUCKET, "no-such-bucket") for a in BASE_ARGS]
    line = _one_error_line(invoke("launch", *args, "--role", ROLE, "--job-name", "vitalflow-nobucket"))
    assert line.startswith("Error: upload of s3://no-such-bucket/runs/out/_code/vitalflow-nobucket/source.tar.gz: "
                           "NoSuchBucket")
    assert aws.requests("CreateProcessingJob") == []


# ---------------------------------------------------------------------------------------------
# entry.py: the script inside the job
# ---------------------------------------------------------------------------------------------

def test_entry_arguments_from_hyperparameters_or_argv(tmp_path, monkeypatch):
    hps = {"input": "s3://b/in", "clinical": "s3://b/c.csv", "output": "s3://b/out", "cases": '"0022,17"',
           "workers": "4", "sagemaker_program": "entry.py", "sagemaker_submit_directory": "s3://b/x.tar.gz"}
    expected = ["--input", "s3://b/in", "--clinical", "s3://b/c.csv", "--output", "s3://b/out",
                "--cases", "0022,17", "--workers", "4"]
    assert entry.arguments_from_hyperparameters(hps) == expected
    monkeypatch.setenv("VITALFLOW_SAGEMAKER_BASE", str(tmp_path / "ml"))
    assert entry.preprocess_arguments(["--input", "x"]) == ["--input", "x"]  # processing: argv
    config = tmp_path / "ml" / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hps))
    assert entry.preprocess_arguments(["--input", "ignored"]) == expected  # training: the file


def test_entry_finds_and_judges_the_shipped_source(tmp_path):
    code = tmp_path / "processing-code"
    code.mkdir()
    (code / "source.tar.gz").write_bytes(sm.build_code_tarball())
    src = entry.source_dir(code)  # processing: the tarball beside entry.py is extracted
    assert (src / "pyproject.toml").is_file() and (src / "src" / "vitalflow" / "cli.py").is_file()
    assert entry.source_dir(src) == src  # training: the toolkit extracted it around entry.py
    version = entry.shipped_version(src)
    assert version == entry.installed_version()  # this venv has vitalflow installed
    assert not entry.needs_install(src, version)
    assert entry.needs_install(src, None) and entry.needs_install(src, "0.0.0")
    with pytest.raises(SystemExit, match="neither pyproject.toml nor source.tar.gz"):
        entry.source_dir(tmp_path / "empty")


def test_entry_runs_preprocess_in_a_fake_training_job(corpus, tmp_path):
    """The training-job layout end to end: the tarball extracted as the toolkit does, the arguments
    in hyperparameters.json, one host in resourceconfig.json; entry.py execs vitalflow preprocess."""
    code = tmp_path / "opt-ml-code"
    code.mkdir()
    with tarfile.open(fileobj=io.BytesIO(sm.build_code_tarball())) as tar:
        tar.extractall(code, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    config = tmp_path / "ml" / "input" / "config"
    config.mkdir(parents=True)
    out = tmp_path / "out"
    (config / "hyperparameters.json").write_text(json.dumps({
        "input": str(corpus), "clinical": str(corpus / "clinical.csv"), "output": str(out), "cases": "1-2",
        "workers": "1", "sagemaker_program": "entry.py"}))
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    env = dict(os.environ, VITALFLOW_SAGEMAKER_BASE=str(tmp_path / "ml"))
    run = subprocess.run([sys.executable, str(code / "entry.py"), "--input", "ignored"], env=env, cwd=code,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "is installed already" in run.stderr and "pip install" not in run.stderr
    assert "success" in run.stdout
    card = json.loads((out / "preprocessing_metadata.json").read_text())
    assert card["cases"]["selected"] == 2


def test_entry_removes_the_extracted_source_in_a_processing_job(corpus, tmp_path):
    """The processing-job layout end to end: entry.py beside source.tar.gz, the arguments as argv.
    The tarball is extracted into a temporary directory, which is gone before preprocess runs."""
    code = tmp_path / "processing-input-code"
    code.mkdir()
    (code / "source.tar.gz").write_bytes(sm.build_code_tarball())
    (code / "entry.py").write_bytes(sm.entry_script().read_bytes())
    config = tmp_path / "ml" / "config"
    config.mkdir(parents=True)
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    temp = tmp_path / "tmp"
    temp.mkdir()
    out = tmp_path / "out"
    env = dict(os.environ, VITALFLOW_SAGEMAKER_BASE=str(tmp_path / "ml"), TMPDIR=str(temp))
    run = subprocess.run([sys.executable, str(code / "entry.py"), "--input", str(corpus), "--clinical",
                          str(corpus / "clinical.csv"), "--output", str(out), "--workers", "1"],
                         env=env, cwd=code, capture_output=True, text=True, timeout=300)
    assert sorted(p.name for p in temp.iterdir()) == [], run.stderr  # no vitalflow-src-* left
    assert run.returncode == 0, run.stdout + run.stderr
    assert "is installed already" in run.stderr
    assert json.loads((out / "preprocessing_metadata.json").read_text())["status"] == "complete"


@pytest.mark.parametrize("installed", [None, "0.1.0"], ids=["install-fails", "installed"])
def test_entry_prepare_removes_the_extracted_source(tmp_path, monkeypatch, installed):
    code = tmp_path / "code"
    code.mkdir()
    (code / "source.tar.gz").write_bytes(sm.build_code_tarball())
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(entry.tempfile, "tempdir", str(temp))
    monkeypatch.setattr(entry, "installed_version", lambda: installed)
    extracted = []

    def failing_install(src):
        extracted.append((src, (src / "pyproject.toml").is_file()))
        raise SystemExit("vitalflow-entry: pip install failed")

    monkeypatch.setattr(entry, "install", failing_install)
    monkeypatch.setattr(entry, "shipped_version", lambda src: "0.1.0")
    if installed is None:
        with pytest.raises(SystemExit, match="pip install failed"):
            entry.prepare(code)
        assert extracted and extracted[0][1] and extracted[0][0].parent == temp  # it was there for pip
    else:
        entry.prepare(code)
        assert not extracted
    assert list(temp.iterdir()) == []
    assert sorted(p.name for p in code.iterdir()) == ["source.tar.gz"]


def test_entry_prepare_keeps_a_training_jobs_code_dir(tmp_path, monkeypatch):
    code = tmp_path / "opt-ml-code"  # the toolkit extracted the tarball here: entry.py's own directory
    with tarfile.open(fileobj=io.BytesIO(sm.build_code_tarball())) as tar:
        tar.extractall(code, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    monkeypatch.setattr(entry, "installed_version", lambda: entry.shipped_version(code))
    entry.prepare(code)
    assert (code / "pyproject.toml").is_file() and (code / "src" / "vitalflow" / "cli.py").is_file()


# ---------------------------------------------------------------------------------------------
# Packaging: the aws extra, the license
# ---------------------------------------------------------------------------------------------

def _requirements(extra: str) -> list[str]:
    import importlib.metadata
    import re

    marker = re.compile(r";\s*extra\s*==\s*[\"']" + re.escape(extra) + r"[\"']\s*$")
    return [r.split(";")[0].strip() for r in importlib.metadata.requires("vitalflow") or [] if marker.search(r)]


def test_aws_extra_brings_boto3():
    """``pip install vitalflow[aws]`` must install boto3 itself: aiobotocore 3.x has no boto3 extra."""
    import re

    for extra in ("aws", "test"):
        names = [re.match(r"[A-Za-z0-9_.\-]+", r).group(0).lower() for r in _requirements(extra)]
        assert "boto3" in names, (extra, _requirements(extra))
        assert not any("[boto3]" in r for r in _requirements(extra)), _requirements(extra)


def test_license_is_shipped():
    import importlib.metadata

    root = Path(__file__).resolve().parents[1]
    license_text = (root / "LICENSE").read_text(encoding="utf-8")
    assert license_text.startswith("MIT License\n") and "Copyright (c) 2026 the vitalflow authors" in license_text
    meta = importlib.metadata.metadata("vitalflow")
    assert meta.get("License-Expression") == "MIT"
    assert "LICENSE" in (meta.get_all("License-File") or [])
    assert "LICENSE" in tar_names(sm.build_code_tarball())
