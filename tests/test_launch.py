"""``vitalflow launch`` / ``vitalflow jobs``, the job-kind registry, and the script a job runs
(``sagemaker/entry.py``).

moto, in server mode on loopback (``tests/moto_server.py``), stands in for the SageMaker control
plane only: it accepts CreateProcessingJob/CreateTrainingJob (a job in a processing-job or a
training-job container), answers Describe*/List* (its jobs are Completed at once) and its S3
holds the code tarball a launch uploads. The real S3 tests run
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
import typer
from typer.testing import CliRunner

from moto_server import ENV_UNSET, REGION, MotoServer
from vitalflow.cli import sagemaker as launch_cli
from vitalflow.sagemaker import entry
from vitalflow.sagemaker import launch as sm
from vitalflow.sagemaker.env import PROCESSING_JOB, TRAINING_JOB

boto3 = pytest.importorskip("boto3")

ROLE = "arn:aws:iam::123456789012:role/VitalflowSageMaker"
BUCKET = "vf-launch"
OUT = f"s3://{BUCKET}/runs/out"
BASE_ARGS = ["--input", f"s3://{BUCKET}/recordings", "--clinical", f"s3://{BUCKET}/clinical.csv", "--output", OUT]
runner = CliRunner()


def invoke(*args: str):
    from vitalflow.cli.sagemaker import app

    return runner.invoke(app, list(args))


def options(**kw) -> sm.LaunchOptions:
    """Preprocessing options: ``input``, ``cases``, ... go to the command's arguments, the rest to the job."""
    arguments = dict(input=f"s3://{BUCKET}/recordings", clinical=f"s3://{BUCKET}/clinical.csv", output=OUT)
    job = dict(role=ROLE, region="eu-central-1", job_name="vitalflow-unit")
    for key, value in kw.items():
        (arguments if key in {a.name for a in sm.PREPROCESS.args} else job)[key] = value
    return sm.LaunchOptions(arguments, **job)


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
    assert {"entry.py", "pyproject.toml", "src/vitalflow/__init__.py", "src/vitalflow/cli/__init__.py",
            "src/vitalflow/spec/master_poc.yaml", "src/vitalflow/sagemaker/entry.py"} <= names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert s3_get(code_uri.rsplit("/", 1)[0] + "/entry.py") == sm.entry_script().read_bytes()


# ---------------------------------------------------------------------------------------------
# build_request: pure
# ---------------------------------------------------------------------------------------------

def test_processing_request():
    container, r = sm.build_request(options(instance_count=3, cases="1-3000", config=f"s3://{BUCKET}/run.yaml",
                                            workers=6))
    assert container == PROCESSING_JOB == "processing-job"
    assert r["ProcessingResources"]["ClusterConfig"] == {"InstanceCount": 3, "InstanceType": "ml.m5.2xlarge",
                                                         "VolumeSizeInGB": 50}
    assert r["StoppingCondition"] == {"MaxRuntimeInSeconds": 26 * 3600}
    app = r["AppSpecification"]
    assert app["ImageUri"] == "492215442770.dkr.ecr.eu-central-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"
    assert app["ContainerEntrypoint"] == ["python3", "/opt/ml/processing/input/code/entry.py"]
    assert app["ContainerArguments"] == ["preprocess", "--input", f"s3://{BUCKET}/recordings", "--clinical",
                                         f"s3://{BUCKET}/clinical.csv", "--output", OUT, "--cases", "1-3000",
                                         "--config", f"s3://{BUCKET}/run.yaml", "--workers", "6"]
    (code,) = r["ProcessingInputs"]
    assert code["S3Input"]["S3Uri"] == f"{OUT}/_code/vitalflow-unit/"
    assert code["S3Input"]["LocalPath"] == "/opt/ml/processing/input/code"
    assert r["Environment"]["PYTHONUNBUFFERED"] == "1"
    assert "EnableManagedSpotTraining" not in r
    assert {t["Key"]: t["Value"] for t in r["Tags"]} == {
        "vitalflow:version": sm._version(), "vitalflow:command": "preprocess", "vitalflow:runs-as": "processing job"}


def test_spot_request_defaults_max_wait_to_twice_max_run():
    container, r = sm.build_request(options(spot=True, instance_count=4, max_run=10 * 3600, workers=8))
    assert container == TRAINING_JOB == "training-job"
    assert r["EnableManagedSpotTraining"] is True
    assert r["StoppingCondition"] == {"MaxRuntimeInSeconds": 36000, "MaxWaitTimeInSeconds": 72000}
    assert r["CheckpointConfig"] == {"S3Uri": f"{OUT}/_checkpoints/", "LocalPath": "/opt/ml/checkpoints"}
    assert r["ResourceConfig"] == {"InstanceType": "ml.m5.2xlarge", "InstanceCount": 4, "VolumeSizeInGB": 50}
    hps = r["HyperParameters"]
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in hps.items())
    assert hps["workers"] == "8" and hps["sagemaker_program"] == "entry.py"
    assert hps["vitalflow_command"] == "preprocess"
    assert {t["Key"]: t["Value"] for t in r["Tags"]}["vitalflow:runs-as"] == "spot job"
    assert hps["sagemaker_submit_directory"] == f"{OUT}/_code/vitalflow-unit/source.tar.gz"
    # the default 26 h run gets 52 h to wait for spot capacity
    assert sm.build_request(options(spot=True))[1]["StoppingCondition"]["MaxWaitTimeInSeconds"] == 52 * 3600


def test_on_demand_training_job_container_has_no_wait_or_checkpoints():
    container, r = sm.build_request(options(container=TRAINING_JOB))
    assert container == TRAINING_JOB and r["EnableManagedSpotTraining"] is False
    assert r["StoppingCondition"] == {"MaxRuntimeInSeconds": 26 * 3600}
    assert "CheckpointConfig" not in r


def test_max_wait_default_is_capped_at_28_days():
    r = sm.build_request(options(spot=True, max_run=20 * 86400))[1]
    assert r["StoppingCondition"] == {"MaxRuntimeInSeconds": 20 * 86400, "MaxWaitTimeInSeconds": 28 * 86400}
    r = sm.build_request(options(spot=True, max_run=3600, max_wait=5000))[1]
    assert r["StoppingCondition"]["MaxWaitTimeInSeconds"] == 5000


@pytest.mark.parametrize("kw, message", [
    (dict(max_run=777_601), "a processing job runs at most 777600 s (9 days); use --container training-job"),
    (dict(container=TRAINING_JOB, max_run=28 * 86400 + 1), "a training-job container runs at most 2419200 s"),
    (dict(spot=True, max_run=7200, max_wait=3600), "--max-wait 3600 s must be at least --max-run (7200 s)"),
    (dict(spot=True, max_wait=29 * 86400), "at most 2419200 s (28 days)"),
    (dict(max_wait=7200), "--max-wait applies only to managed spot jobs"),
    (dict(spot=True, container=PROCESSING_JOB), "managed spot needs a training-job container: drop --container "
                                                 "processing-job (--spot implies training-job)"),
    (dict(container="batch"), "--container must be processing-job or training-job (got 'batch')"),
    (dict(container="training"), "--container must be processing-job or training-job"),  # the CLI maps old names
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
    (dict(output=None), "preprocess needs --output"),
    (dict(workers="6"), "--workers must be a whole number"),
    (dict(kind="nope"), "unknown job kind 'nope': one of predict, preprocess, train"),
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
# The job-kind registry drives the request and the command line
# ---------------------------------------------------------------------------------------------

#: A fake second kind: ``vitalflow score`` does not exist; nothing in vitalflow names this kind.
SCORE = sm.JobKind(
    "score", summary="scores a model on a dataset", containers=(TRAINING_JOB, PROCESSING_JOB), max_instances=1,
    instance_type="ml.g5.xlarge", max_run=3600,
    args=(sm.Arg("model", sm.CHANNEL, "s3:// URI of the model archive.", required=True, file=True),
          sm.Arg("data", sm.CHANNEL, "s3:// prefix of the examples.", required=True),
          sm.Arg("labels", sm.S3_INPUT, "s3:// URI of a label table."),
          sm.Arg("report", sm.OUTPUT, "s3:// prefix of the report.", required=True),
          sm.Arg("batch-size", sm.VALUE, "Examples per batch.", type=int, minimum=1)))
SCORE_ARGS = {"model": f"s3://{BUCKET}/models/m1/model.tar.gz", "data": f"s3://{BUCKET}/examples/",
              "report": f"s3://{BUCKET}/reports/r1", "batch-size": 64}


@pytest.fixture
def score_kind(monkeypatch):
    """``score`` registered for one test, as a real kind is: one :func:`register` call."""
    monkeypatch.setattr(sm, "JOB_KINDS", dict(sm.JOB_KINDS))  # the registry as it was, afterwards
    return sm.register(SCORE)


def score_options(**kw) -> sm.LaunchOptions:
    return sm.LaunchOptions(kw.pop("arguments", SCORE_ARGS), **{
        "kind": "score", "role": ROLE, "region": "eu-central-1", "job_name": "vitalflow-score-1", **kw})


def test_a_registered_kind_drives_the_request(score_kind):
    """The builders run a second kind's command with its own channels, defaults and output prefix."""
    container, r = sm.build_request(score_options())
    assert container == TRAINING_JOB  # the kind's first container
    local = ["--model", "/opt/ml/input/data/model/model.tar.gz", "--data", "/opt/ml/input/data/data",
             "--report", f"s3://{BUCKET}/reports/r1", "--batch-size", "64"]
    assert entry.command_from_hyperparameters(r["HyperParameters"]) == ["score", *local]
    assert r["InputDataConfig"] == [
        {"ChannelName": name, "InputMode": "File", "DataSource": {"S3DataSource": {
            "S3DataType": "S3Prefix", "S3Uri": SCORE_ARGS[name], "S3DataDistributionType": "FullyReplicated"}}}
        for name in ("model", "data")]
    assert r["ResourceConfig"]["InstanceType"] == "ml.g5.xlarge"
    assert r["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    assert r["HyperParameters"]["sagemaker_submit_directory"] == \
        f"s3://{BUCKET}/reports/r1/_code/vitalflow-score-1/source.tar.gz"
    assert r["OutputDataConfig"] == {"S3OutputPath": f"s3://{BUCKET}/reports/r1/_sagemaker/"}
    assert {t["Key"]: t["Value"] for t in r["Tags"]}["vitalflow:command"] == "score"

    container, r = sm.build_request(score_options(container=PROCESSING_JOB))
    assert container == PROCESSING_JOB
    assert r["AppSpecification"]["ContainerArguments"] == [
        "score", *(a.replace("/opt/ml/input/data/", "/opt/ml/processing/input/") for a in local)]
    assert [(i["InputName"], i["S3Input"]["S3Uri"], i["S3Input"]["LocalPath"]) for i in r["ProcessingInputs"]] == [
        ("code", f"s3://{BUCKET}/reports/r1/_code/vitalflow-score-1/", "/opt/ml/processing/input/code"),
        ("model", SCORE_ARGS["model"], "/opt/ml/processing/input/model"),
        ("data", SCORE_ARGS["data"], "/opt/ml/processing/input/data")]


@pytest.mark.parametrize("kw, message", [
    (dict(instance_count=2), "--instance-count 2: score runs on at most 1 instance"),
    (dict(arguments={**SCORE_ARGS, "model": f"s3://{BUCKET}/models/"}), "--model must name one S3 object, not a "
                                                                        "prefix"),
    (dict(arguments={**SCORE_ARGS, "data": "/local/examples"}), "--data must be an s3:// URI"),
    (dict(arguments={**SCORE_ARGS, "batch-size": 0}), "--batch-size must be at least 1 (got 0)"),
    (dict(arguments={**SCORE_ARGS, "input": f"s3://{BUCKET}/x"}), "score has no option --input"),
    (dict(arguments={k: v for k, v in SCORE_ARGS.items() if k != "data"}), "score needs --data"),
])
def test_a_registered_kinds_rules(score_kind, kw, message):
    with pytest.raises(sm.LaunchError) as info:
        sm.build_request(score_options(**kw))
    assert message in str(info.value)


def test_container_and_spot_rules_come_from_the_kind(monkeypatch):
    monkeypatch.setattr(sm, "JOB_KINDS", dict(sm.JOB_KINDS))
    sm.register(sm.JobKind("score-here", SCORE.args, containers=(PROCESSING_JOB,), spot=False))
    with pytest.raises(sm.LaunchError, match="score-here does not run in a training-job container"):
        sm.build_request(score_options(kind="score-here", container=TRAINING_JOB))
    with pytest.raises(sm.LaunchError, match="score-here cannot run with managed spot"):
        sm.build_request(score_options(kind="score-here", spot=True))
    app = typer.Typer()
    launch_cli.register(app)
    help_text = runner.invoke(app, ["launch", "score-here", "--help"], env={"COLUMNS": "250"}).stdout
    assert "--model" in help_text and "--batch-size" in help_text and "--spot" not in help_text


@pytest.mark.parametrize("kw, message", [
    (dict(args=(sm.Arg("data", sm.CHANNEL),)), "needs exactly one OUTPUT option"),
    (dict(args=(sm.Arg("code", sm.CHANNEL), sm.Arg("out", sm.OUTPUT))), "channel 'code' is reserved"),
    (dict(args=(sm.Arg("out", sm.OUTPUT), sm.Arg("out"))), "option 'out' given twice"),
    (dict(args=(sm.Arg("Out_dir", sm.OUTPUT),)), "bad option name 'Out_dir'"),
    (dict(args=(sm.Arg("out", sm.OUTPUT), sm.Arg("x", "disk"))), "option 'x': unknown role 'disk'"),
    (dict(args=(sm.Arg("out", sm.OUTPUT),), containers=(PROCESSING_JOB,)), "managed spot needs the training-job"),
])
def test_a_bad_job_kind_is_refused_where_it_is_defined(kw, message):
    with pytest.raises(ValueError, match=f"job kind 'bad': .*{message}"):
        sm.JobKind("bad", **kw)
    with pytest.raises(ValueError, match="job kind 'preprocess' is registered already"):
        sm.register(sm.JobKind("preprocess", (sm.Arg("out", sm.OUTPUT),)))


def test_launch_without_a_kind_means_preprocess():
    """``vitalflow launch --input ...`` (the invocation before kinds existed) is ``launch preprocess``,
    in the standalone app and in vitalflow's own; ``launch --help`` lists the kinds."""
    from vitalflow.cli import app as vitalflow_app

    dry = [*BASE_ARGS, "--role", ROLE, "--region", "eu-west-1", "--job-name", "vitalflow-x", "--dry-run"]
    requests = [json.loads(runner.invoke(target, ["launch", *kind, *dry]).stdout)
                for target in (launch_cli.app, vitalflow_app) for kind in ([], ["preprocess"])]
    assert requests[0]["ProcessingJobName"] == "vitalflow-x" and requests.count(requests[0]) == 4
    listed = invoke("launch", "--help")
    assert listed.exit_code == 0 and "preprocess" in listed.stdout and "Submit `vitalflow preprocess`" in listed.stdout


# ---------------------------------------------------------------------------------------------
# Against moto
# ---------------------------------------------------------------------------------------------

def test_a_launch_with_json_logs_names_its_job_to_the_app(aws):
    """The app runs every command with VITALFLOW_LOG_FORMAT=json and reads the submitted job's name
    from the structured ``sagemaker_job`` field of a log record (`vitalflow.api.runner.parse_line`),
    never from the printed text; with text logs no such record is written (stdout says it)."""
    from vitalflow.cli import run as cli_run
    from vitalflow.api.runner import parse_line
    from vitalflow.cli import app as vitalflow_app

    args = ["launch", "preprocess", *BASE_ARGS, "--role", ROLE]
    try:
        result = runner.invoke(vitalflow_app, [*args, "--job-name", "vitalflow-json-1"],
                               env={"VITALFLOW_LOG_FORMAT": "json"})
        assert result.exit_code == 0, result.output
        progress: dict = {}
        for line in result.stderr.splitlines():
            parse_line(line, progress)
        assert progress.get("sagemaker_job") == "vitalflow-json-1", result.stderr
        text = runner.invoke(vitalflow_app, [*args, "--job-name", "vitalflow-text-1"], env={"VITALFLOW_LOG_FORMAT": ""})
        assert text.exit_code == 0 and "sagemaker_job" not in text.stderr and "vitalflow-text-1" in text.stdout
    finally:
        cli_run.configure_logging("text")


def test_launch_processing_job(aws):
    result = invoke("launch", "preprocess", *BASE_ARGS, "--cases", "1-3000", "--config", f"s3://{BUCKET}/run.yaml",
                    "--instance-count", "3", "--workers", "4", "--role", ROLE, "--job-name", "vitalflow-proc-1")
    assert result.exit_code == 0, result.output
    assert "submitted job vitalflow-proc-1 (preprocess as a processing job)" in result.stdout
    assert "follow it with: vitalflow jobs vitalflow-proc-1" in result.stdout

    job = boto3.client("sagemaker").describe_processing_job(ProcessingJobName="vitalflow-proc-1")
    assert job["RoleArn"] == ROLE
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 93600}
    assert job["AppSpecification"]["ImageUri"] == sm.default_image(REGION)
    assert job["AppSpecification"]["ContainerEntrypoint"] == ["python3", "/opt/ml/processing/input/code/entry.py"]
    assert job["AppSpecification"]["ContainerArguments"] == [
        "preprocess", "--input", f"s3://{BUCKET}/recordings", "--clinical", f"s3://{BUCKET}/clinical.csv",
        "--output", OUT, "--cases", "1-3000", "--config", f"s3://{BUCKET}/run.yaml", "--workers", "4"]
    (code,) = job["ProcessingInputs"]
    assert code["S3Input"]["S3Uri"] == f"{OUT}/_code/vitalflow-proc-1/"
    assert code["S3Input"]["LocalPath"] == "/opt/ml/processing/input/code"
    # moto does not keep these: the request as the server received it
    (sent,) = aws.requests("CreateProcessingJob")
    assert sent["ProcessingResources"]["ClusterConfig"] == {"InstanceCount": 3, "InstanceType": "ml.m5.2xlarge",
                                                            "VolumeSizeInGB": 50}
    assert sent["Environment"] == {"PYTHONUNBUFFERED": "1", "VITALFLOW_JOB_NAME": "vitalflow-proc-1",
                                  "VITALFLOW_PIP_EXTRAS": "aws"}
    assert sorted(s3_keys()) == ["runs/out/_code/vitalflow-proc-1/entry.py",
                                 "runs/out/_code/vitalflow-proc-1/source.tar.gz"]
    assert_code_shipped(f"{OUT}/_code/vitalflow-proc-1/source.tar.gz")


def test_launch_spot_job(aws, monkeypatch):
    monkeypatch.setenv("VITALFLOW_SAGEMAKER_ROLE", ROLE)  # no --role: the variable
    result = invoke("launch", *BASE_ARGS, "--cases", "1-10,17", "--spot", "--instance-count", "2",
                    "--instance-type", "ml.c5.4xlarge", "--max-run", "10h", "--workers", "8",
                    "--job-name", "vitalflow-spot-1")
    assert result.exit_code == 0, result.output
    assert "submitted job vitalflow-spot-1 (preprocess as a spot job)" in result.stdout

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
        "vitalflow_command": "preprocess", "input": f"s3://{BUCKET}/recordings",
        "clinical": f"s3://{BUCKET}/clinical.csv", "output": OUT, "cases": "1-10,17", "workers": "8"}
    assert hps["sagemaker_program"] == "entry.py"
    assert hps["sagemaker_submit_directory"] == f"{OUT}/_code/vitalflow-spot-1/source.tar.gz"
    assert hps["sagemaker_region"] == REGION
    (sent,) = aws.requests("CreateTrainingJob")
    assert sent["Environment"] == {"PYTHONUNBUFFERED": "1", "VITALFLOW_JOB_NAME": "vitalflow-spot-1",
                                  "VITALFLOW_PIP_EXTRAS": "aws"}
    assert "InputDataConfig" not in sent  # no channels: hosts split the cases themselves
    assert_code_shipped(hps["sagemaker_submit_directory"])


@pytest.mark.parametrize("flag", [["--container", "training-job"], ["--mode", "training"]], ids=["container", "mode"])
def test_launch_on_demand_in_a_training_job_container(aws, flag):
    """``--container training-job`` without spot; ``--mode training``, its name before, still works."""
    result = invoke("launch", *BASE_ARGS, *flag, "--role", ROLE, "--job-name", "vitalflow-ondemand-1")
    assert result.exit_code == 0, result.output
    assert "(preprocess as an on-demand job in a training-job container)" in result.stdout
    job = boto3.client("sagemaker").describe_training_job(TrainingJobName="vitalflow-ondemand-1")
    assert job["EnableManagedSpotTraining"] is False
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 93600}
    assert "CheckpointConfig" not in job


def test_old_mode_names_and_clashes():
    """``--mode processing`` is ``--container processing-job``; both at once are refused."""
    dry = ["--role", ROLE, "--region", "eu-west-1", "--job-name", "vitalflow-x", "--dry-run"]
    assert "ProcessingJobName" in json.loads(invoke("launch", *BASE_ARGS, "--mode", "processing", *dry).stdout)
    clash = invoke("launch", *BASE_ARGS, "--mode", "training", "--container", "training-job", *dry)
    assert _one_error_line(clash) == "Error: --mode is the old name of --container: give one of them"


def test_dry_run_prints_the_request_and_submits_nothing(aws):
    result = invoke("launch", *BASE_ARGS, "--spot", "--role", ROLE, "--job-name", "vitalflow-dry", "--dry-run")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    container, expected = sm.build_request(options(spot=True, region=REGION, job_name="vitalflow-dry"))
    assert printed == expected and container == TRAINING_JOB
    assert "dry run: job vitalflow-dry (preprocess as a spot job) would run with code from " in result.stderr
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
    assert lines[-1] == "job vitalflow-wait-1 (preprocess as a spot job) Completed"


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
    info = sm.wait("j", TRAINING_JOB, poll_s=5, on_event=events.append, describe=_scripted(answers),
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
    info = sm.wait("p", PROCESSING_JOB, on_event=events.append, describe=_scripted(processing), sleep=lambda s: None)
    assert info.status == "Completed" and events == ["p: InProgress", "p: Completed"]


def test_wait_gives_up_after_its_timeout():
    stuck = {"ProcessingJobName": "p", "ProcessingJobStatus": "InProgress"}
    with pytest.raises(sm.LaunchError, match="job p still InProgress after 0 s"):
        sm.wait("p", PROCESSING_JOB, describe=lambda name: stuck, sleep=lambda s: None, timeout_s=0)


def test_jobs_wait_on_a_failing_job_prints_the_reason(aws, monkeypatch):
    invoke("launch", *BASE_ARGS, "--role", ROLE, "--job-name", "vitalflow-fail-1")
    answers = iter([{"ProcessingJobName": "vitalflow-fail-1", "ProcessingJobStatus": "InProgress"}] * 2 + [
        {"ProcessingJobName": "vitalflow-fail-1", "ProcessingJobStatus": "Failed",
         "FailureReason": "AlgorithmError: exit code 1"}])
    monkeypatch.setattr(sm, "_describe_raw", lambda client, name, container: next(answers))
    result = invoke("jobs", "vitalflow-fail-1", "--wait", "--poll", "0.01")
    assert result.exit_code == 1
    assert "vitalflow-fail-1: failure reason: AlgorithmError: exit code 1" in result.stdout
    assert result.stderr.strip() == "Error: job vitalflow-fail-1 (processing job) Failed: AlgorithmError: exit code 1"


def test_jobs_lists_and_describes(aws):
    for args in (["--instance-count", "3", "--job-name", "vitalflow-list-proc"],
                 ["--spot", "--instance-count", "2", "--job-name", "vitalflow-list-spot"],
                 ["--job-name", "other-job"]):
        assert invoke("launch", *BASE_ARGS, "--role", ROLE, *args).exit_code == 0

    result = invoke("jobs")
    assert result.exit_code == 0, result.output
    rows = {cells[0]: cells for cells in ([c.strip() for c in line.replace("┃", "│").split("│")[1:-1]]
                                          for line in result.stdout.splitlines() if "│" in line or "┃" in line)}
    assert set(rows) - {"name"} == {"vitalflow-list-proc", "vitalflow-list-spot"}
    assert rows["name"][:5] == ["name", "command", "container", "spot", "status"]
    assert rows["vitalflow-list-proc"][1:5] == ["preprocess", "processing-job", "", "Completed"]
    assert rows["vitalflow-list-spot"][1:5] == ["preprocess", "training-job", "yes", "Completed"]
    assert rows["vitalflow-list-spot"][6] == "2 x ml.m5.2xlarge"

    everything = invoke("jobs", "--name-contains", "", "--json")
    assert {j.get("ProcessingJobName") or j.get("TrainingJobName") for j in json.loads(everything.stdout)} == {
        "vitalflow-list-proc", "vitalflow-list-spot", "other-job"}

    described = invoke("jobs", "vitalflow-list-spot")
    assert described.exit_code == 0, described.output
    text = described.stdout
    for expected in ("job vitalflow-list-spot (preprocess as a spot job)", "Completed", "training-job",
                     f"preprocess --input s3://{BUCKET}/recordings --clinical", "2 x ml.m5.2xlarge", "93600 s",
                     "187200 s",
                     f"{OUT}/_checkpoints/", f"{OUT}/_code/vitalflow-list-spot/source.tar.gz"):
        assert expected in text
    described = invoke("jobs", "vitalflow-list-proc").stdout
    assert "job vitalflow-list-proc (preprocess as a processing job)" in described
    assert f"{OUT}/_code/vitalflow-list-proc/" in described and "channels" not in described
    raw = json.loads(invoke("jobs", "vitalflow-list-proc", "--json").stdout)
    assert raw["ProcessingJobName"] == "vitalflow-list-proc"

    missing = invoke("jobs", "vitalflow-nope")
    assert missing.exit_code == 1
    assert missing.stderr.strip() == f"Error: no SageMaker job named 'vitalflow-nope' in {REGION}"


def test_launch_a_registered_kind(score_kind, aws):
    """Against moto (server mode, ``tests/moto_server.py``): an app registered after the fake kind
    has ``launch score`` with the kind's own options; the job is submitted with its channels, and
    ``vitalflow jobs`` shows its command line."""
    app = typer.Typer()
    launch_cli.register(app)
    result = runner.invoke(app, ["launch", "score", "--model", SCORE_ARGS["model"], "--data", SCORE_ARGS["data"],
                                 "--report", SCORE_ARGS["report"], "--batch-size", "64", "--role", ROLE,
                                 "--job-name", "vitalflow-score-1"])
    assert result.exit_code == 0, result.output
    assert "submitted job vitalflow-score-1 (score as an on-demand job in a training-job container)" in result.stdout
    job = boto3.client("sagemaker").describe_training_job(TrainingJobName="vitalflow-score-1")
    assert job["HyperParameters"]["vitalflow_command"] == "score"
    assert [c["ChannelName"] for c in job["InputDataConfig"]] == ["model", "data"]
    assert job["ResourceConfig"]["InstanceType"] == "ml.g5.xlarge"
    assert sorted(s3_keys()) == ["reports/r1/_code/vitalflow-score-1/entry.py",
                                 "reports/r1/_code/vitalflow-score-1/source.tar.gz"]
    described = runner.invoke(app, ["jobs", "vitalflow-score-1"])
    assert described.exit_code == 0, described.output
    for expected in ("job vitalflow-score-1 (score as an on-demand job in a training-job container)",
                     f"model: {SCORE_ARGS['model']}, data: {SCORE_ARGS['data']}",
                     "score --model /opt/ml/input/data/model/model.tar.gz --data /opt/ml/input/data/data --report"):
        assert expected in described.stdout


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

def test_entry_command_line_from_hyperparameters_or_argv(tmp_path, monkeypatch):
    hps = {"vitalflow_command": "preprocess", "input": "s3://b/in", "clinical": "s3://b/c.csv",
           "output": "s3://b/out", "cases": '"0022,17"', "workers": "4", "sagemaker_program": "entry.py",
           "sagemaker_submit_directory": "s3://b/x.tar.gz"}
    expected = ["preprocess", "--input", "s3://b/in", "--clinical", "s3://b/c.csv", "--output", "s3://b/out",
                "--cases", "0022,17", "--workers", "4"]
    assert entry.command_from_hyperparameters(hps) == expected
    monkeypatch.setenv("VITALFLOW_SAGEMAKER_BASE", str(tmp_path / "ml"))
    assert entry.command_line(["preprocess", "--input", "x"]) == ["preprocess", "--input", "x"]  # processing: argv
    with pytest.raises(SystemExit, match=r"no vitalflow command in the arguments \(got \['--input', 'x'\]\)"):
        entry.command_line(["--input", "x"])
    config = tmp_path / "ml" / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(hps))
    assert entry.command_line(["--input", "ignored"]) == expected  # training-job container: the file
    del hps["vitalflow_command"]
    (config / "hyperparameters.json").write_text(json.dumps(hps))
    with pytest.raises(SystemExit, match="no vitalflow command in .*hyperparameters.json"):
        entry.command_line([])


def test_entry_finds_and_judges_the_shipped_source(tmp_path):
    code = tmp_path / "processing-code"
    code.mkdir()
    (code / "source.tar.gz").write_bytes(sm.build_code_tarball())
    src = entry.source_dir(code)  # processing: the tarball beside entry.py is extracted
    assert (src / "pyproject.toml").is_file() and (src / "src" / "vitalflow" / "cli" / "__init__.py").is_file()
    assert entry.source_dir(src) == src  # training: the toolkit extracted it around entry.py
    version = entry.shipped_version(src)
    assert version == entry.installed_version()  # this venv has vitalflow installed
    assert not entry.needs_install(src, version)
    assert entry.needs_install(src, None) and entry.needs_install(src, "0.0.0")
    with pytest.raises(SystemExit, match="neither pyproject.toml nor source.tar.gz"):
        entry.source_dir(tmp_path / "empty")


def test_entry_runs_preprocess_in_a_fake_training_job_container(corpus, tmp_path):
    """The training-job container's layout end to end: the tarball extracted as the toolkit does,
    the command line in hyperparameters.json, one host in resourceconfig.json; entry.py execs
    vitalflow preprocess."""
    code = tmp_path / "opt-ml-code"
    code.mkdir()
    with tarfile.open(fileobj=io.BytesIO(sm.build_code_tarball())) as tar:
        tar.extractall(code, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    config = tmp_path / "ml" / "input" / "config"
    config.mkdir(parents=True)
    out = tmp_path / "out"
    (config / "hyperparameters.json").write_text(json.dumps({
        "vitalflow_command": "preprocess", "input": str(corpus), "clinical": str(corpus / "clinical.csv"),
        "output": str(out), "cases": "1-2",
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


def test_entry_removes_the_extracted_source_in_a_processing_job_container(corpus, tmp_path):
    """The processing-job container's layout end to end: entry.py beside source.tar.gz, the command
    line as argv.
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
    run = subprocess.run([sys.executable, str(code / "entry.py"), "preprocess", "--input", str(corpus), "--clinical",
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

    def failing_install(src, wanted):
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


def test_entry_prepare_keeps_a_training_job_containers_code_dir(tmp_path, monkeypatch):
    code = tmp_path / "opt-ml-code"  # the toolkit extracted the tarball here: entry.py's own directory
    with tarfile.open(fileobj=io.BytesIO(sm.build_code_tarball())) as tar:
        tar.extractall(code, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    monkeypatch.setattr(entry, "installed_version", lambda: entry.shipped_version(code))
    entry.prepare(code)
    assert (code / "pyproject.toml").is_file() and (code / "src" / "vitalflow" / "cli" / "__init__.py").is_file()


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
