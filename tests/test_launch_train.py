"""``vitalflow launch train``: the ``train`` job kind, its request, and what ``entry.py`` runs in the job.

The control plane runs against moto in server mode (``tests/moto_server.py``, the fixtures of
``tests/test_launch.py``); the job's side runs against a faked ``/opt/ml``
(``VITALFLOW_SAGEMAKER_BASE``) holding ``hyperparameters.json`` as the launcher's request has it.
``vitalflow train`` itself is not run here.
"""

from __future__ import annotations

import json
import re
import sys

import pytest
from typer.testing import CliRunner

from moto_server import REGION
from test_launch import BUCKET, ROLE, _no_real_aws, _one_error_line, aws, invoke, moto_server, s3_keys  # noqa: F401
from vitalflow.cli import sagemaker as launch_cli
from vitalflow.errors import SpecError
from vitalflow.model.config import TrainConfig, load_train_config
from vitalflow.sagemaker import entry
from vitalflow.sagemaker import launch as sm
from vitalflow.sagemaker.env import PROCESSING_JOB, TRAINING_JOB

boto3 = pytest.importorskip("boto3")

DATASET = f"s3://{BUCKET}/datasets/ds1"
MODEL = f"s3://{BUCKET}/models/m1"
runner = CliRunner()


@pytest.fixture
def train_yaml(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("epochs: 3\nbatch_size: 32\nnetwork:\n  lstm_units: [16, 8]\ntarget_weights:\n  map: 2.0\n")
    return path


def train_options(**kw) -> sm.LaunchOptions:
    arguments = {"dataset": DATASET, "output": MODEL}
    for name in ("dataset", "output", "config"):
        if name in kw:
            arguments[name] = kw.pop(name)
    return sm.LaunchOptions({k: v for k, v in arguments.items() if v is not None}, **{
        "kind": "train", "role": ROLE, "region": "eu-central-1", "job_name": "vitalflow-train-1", **kw})


def build(**kw) -> dict:
    container, request = sm.build_request(sm.resolve(train_options(**kw), environ={}))
    assert container == TRAINING_JOB
    return request


# ---------------------------------------------------------------------------------------------
# The request: pure
# ---------------------------------------------------------------------------------------------

def test_train_request(train_yaml):
    r = build(config=str(train_yaml))
    assert r["AlgorithmSpecification"] == {
        "TrainingImage": "763104351884.dkr.ecr.eu-central-1.amazonaws.com/tensorflow-training:2.19.0-cpu-py312",
        "TrainingInputMode": "File"}
    assert r["InputDataConfig"] == [{"ChannelName": "dataset", "InputMode": "File", "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": f"{DATASET}/", "S3DataDistributionType": "FullyReplicated"}}}]
    hps = r["HyperParameters"]
    assert all(isinstance(v, str) for v in hps.values())
    assert {k: v for k, v in hps.items() if not k.startswith("sagemaker_")} == {
        "vitalflow_command": "train /opt/ml/input/data/dataset", "output": "/opt/ml/model",
        "checkpoints": "/opt/ml/checkpoints",
        "vitalflow_inline_config": load_train_config(train_yaml).model_dump_json()}
    assert TrainConfig.model_validate_json(hps["vitalflow_inline_config"]).epochs == 3
    assert hps["sagemaker_program"] == "entry.py"
    assert hps["sagemaker_submit_directory"] == f"{MODEL}/_code/vitalflow-train-1/source.tar.gz"
    assert entry.command_from_hyperparameters(hps) == [
        "train", "/opt/ml/input/data/dataset", "--output", "/opt/ml/model", "--checkpoints", "/opt/ml/checkpoints",
        "--config", "/opt/ml/input/config/vitalflow-config.json"]
    # the model directory is uploaded under <output>/_sagemaker/; checkpoints on every train job
    assert r["OutputDataConfig"] == {"S3OutputPath": f"{MODEL}/_sagemaker/"}
    assert r["CheckpointConfig"] == {"S3Uri": f"{MODEL}/_checkpoints/", "LocalPath": "/opt/ml/checkpoints"}
    assert r["ResourceConfig"] == {"InstanceType": "ml.c5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50}
    assert r["StoppingCondition"] == {"MaxRuntimeInSeconds": 24 * 3600}
    assert r["EnableManagedSpotTraining"] is False
    assert r["Environment"]["VITALFLOW_PIP_EXTRAS"] == "aws,train"
    assert {t["Key"]: t["Value"] for t in r["Tags"]} == {
        "vitalflow:version": sm._version(), "vitalflow:command": "train",
        "vitalflow:runs-as": "on-demand job in a training-job container"}


def test_train_spot_request_and_defaults():
    r = build(spot=True, max_run=2 * 3600, max_wait=4 * 3600, instance_type="ml.m5.xlarge")
    assert r["EnableManagedSpotTraining"] is True
    assert r["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 14400}
    assert r["CheckpointConfig"] == {"S3Uri": f"{MODEL}/_checkpoints/", "LocalPath": "/opt/ml/checkpoints"}
    assert r["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"
    assert build(spot=True)["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400, "MaxWaitTimeInSeconds": 172800}
    # without --config: the command's own defaults, no inline file
    hps = build()["HyperParameters"]
    assert not any(k.startswith("vitalflow_inline_") for k in hps)
    assert entry.command_from_hyperparameters(hps) == [
        "train", "/opt/ml/input/data/dataset", "--output", "/opt/ml/model", "--checkpoints", "/opt/ml/checkpoints"]
    # a prefix given with its slash is kept
    assert build(dataset=f"{DATASET}/")["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == f"{DATASET}/"


@pytest.mark.parametrize("region, expected", [
    ("us-east-1", "763104351884.dkr.ecr.us-east-1.amazonaws.com/tensorflow-training:2.19.0-cpu-py312"),
    ("af-south-1", "626614931356.dkr.ecr.af-south-1.amazonaws.com/tensorflow-training:2.19.0-cpu-py312"),
    ("cn-north-1", "727897471807.dkr.ecr.cn-north-1.amazonaws.com.cn/tensorflow-training:2.19.0-cpu-py312"),
    ("us-gov-west-1", "442386744353.dkr.ecr.us-gov-west-1.amazonaws.com/tensorflow-training:2.19.0-cpu-py312"),
])
def test_train_image_per_region(region, expected):
    assert build(region=region)["AlgorithmSpecification"]["TrainingImage"] == expected
    assert sm.default_image(region, sm.TENSORFLOW) == expected
    assert build(region=region, image="my/tf:2.19")["AlgorithmSpecification"]["TrainingImage"] == "my/tf:2.19"


@pytest.mark.parametrize("kw, message", [
    (dict(instance_count=2), "--instance-count 2: train runs on at most 1 instance"),
    (dict(container=PROCESSING_JOB), "train does not run in a processing-job container"),
    (dict(dataset="/data/ds"), "--dataset must be an s3:// URI"),
    (dict(dataset=None), "train needs --dataset"),
    (dict(output=f"s3://{BUCKET}"), "--output must name a prefix inside the bucket"),
    (dict(region="xx-nowhere-1"), "no default image known for region 'xx-nowhere-1': pass --image"),
    (dict(max_wait=3600), "--max-wait applies only to managed spot jobs"),
])
def test_train_rules(kw, message):
    with pytest.raises(sm.LaunchError) as info:
        build(**kw)
    assert message in str(info.value)


def test_bad_train_config_fails_while_resolving(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 0\n")
    with pytest.raises(SpecError, match=r"train config .*bad.yaml: epochs: .*greater than or equal to 1"):
        sm.resolve(train_options(config=str(bad)), environ={})
    bad.write_text("epoch: 3\n")
    with pytest.raises(SpecError, match="epoch: unknown key"):
        sm.resolve(train_options(config=str(bad)), environ={})
    with pytest.raises(SpecError, match="train config file not found"):
        sm.resolve(train_options(config=str(tmp_path / "missing.yaml")), environ={})
    # the builders are pure: an inline file they were not given is a programming error, not a read
    with pytest.raises(sm.LaunchError, match="--config .* was not read: resolve"):
        sm.build_request(train_options(config=str(bad)))


def test_train_config_must_fit_one_hyperparameter(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text("target_weights:\n" + "".join(f"  target_{i:04d}: 1.0\n" for i in range(200)))
    with pytest.raises(sm.LaunchError, match=r"--config .*big.yaml: \d+ characters as JSON; a SageMaker "
                                             r"hyperparameter holds at most 2500"):
        build(config=str(big))


# ---------------------------------------------------------------------------------------------
# The registry model: positional arguments, local outputs, inline files, checkpoints
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, message", [
    (dict(args=(sm.Arg("data", sm.CHANNEL, positional=True), sm.Arg("out", sm.OUTPUT))),
     "positional 'data' must be required"),
    (dict(args=(sm.Arg("out", sm.OUTPUT, local_path="/opt/ml/elsewhere"),)), "local_path is for an OUTPUT"),
    (dict(args=(sm.Arg("data", sm.VALUE, local_path="/opt/ml/model"), sm.Arg("out", sm.OUTPUT))),
     "local_path is for an OUTPUT"),
    (dict(args=(sm.Arg("cfg", sm.INLINE), sm.Arg("out", sm.OUTPUT))), "an inline option, and only one, needs load"),
    (dict(args=(sm.Arg("cfg", sm.VALUE, load=str), sm.Arg("out", sm.OUTPUT))), "needs load"),
    (dict(args=(sm.Arg("out", sm.OUTPUT), sm.Arg("cfg", sm.INLINE, load=str))),
     "inline files, local outputs and checkpoints need containers=('training-job',)"),
    (dict(args=(sm.Arg("out", sm.OUTPUT),), checkpoints="ckpt", containers=(TRAINING_JOB, PROCESSING_JOB)),
     "need containers=('training-job',)"),
    (dict(args=(sm.Arg("out", sm.OUTPUT), sm.Arg("ckpt")), checkpoints="ckpt", containers=(TRAINING_JOB,)),
     "option 'ckpt' given twice"),
    (dict(args=(sm.Arg("out", sm.OUTPUT),), extras=("AWS!",)), "extras must be pip extra names"),
])
def test_bad_new_kind_fields_are_refused_where_defined(kw, message):
    with pytest.raises(ValueError, match=f"job kind 'bad': .*{re.escape(message)}"):
        sm.JobKind("bad", **kw)


def test_preprocess_is_unchanged_by_the_new_fields():
    """preprocess: no positional, its output written by the command, no inline files, no checkpoints
    without spot, the scikit-learn image and the aws extra."""
    kind = sm.PREPROCESS
    assert not any(a.positional or a.local_path or a.role == sm.INLINE for a in kind.args)
    assert (kind.checkpoints, kind.image, kind.extras) == (None, sm.SKLEARN, ("aws",))
    options = sm.LaunchOptions({"input": f"s3://{BUCKET}/in", "clinical": f"s3://{BUCKET}/c.csv",
                                "output": f"s3://{BUCKET}/out"}, container=TRAINING_JOB, role=ROLE,
                               region="eu-central-1", job_name="vitalflow-p")
    r = sm.build_request(options)[1]
    assert "CheckpointConfig" not in r and "InputDataConfig" not in r
    assert r["HyperParameters"]["vitalflow_command"] == "preprocess"
    assert r["HyperParameters"]["output"] == f"s3://{BUCKET}/out"


def test_positional_and_inline_in_a_processing_container(monkeypatch):
    """A positional argument goes right after the command in a processing job's arguments too."""
    monkeypatch.setattr(sm, "JOB_KINDS", dict(sm.JOB_KINDS))
    sm.register(sm.JobKind("show", (sm.Arg("data", sm.CHANNEL, required=True, positional=True),
                                    sm.Arg("out", sm.OUTPUT, required=True), sm.Arg("n", type=int)),
                           containers=(PROCESSING_JOB,), spot=False))
    options = sm.LaunchOptions({"data": f"s3://{BUCKET}/d", "out": f"s3://{BUCKET}/o", "n": 3}, kind="show",
                               role=ROLE, region="eu-central-1", job_name="vitalflow-show")
    r = sm.build_request(options)[1]
    assert r["AppSpecification"]["ContainerArguments"] == [
        "show", "/opt/ml/processing/input/data", "--out", f"s3://{BUCKET}/o", "--n", "3"]
    assert r["ProcessingInputs"][1]["S3Input"]["S3Uri"] == f"s3://{BUCKET}/d/"


# ---------------------------------------------------------------------------------------------
# Against moto
# ---------------------------------------------------------------------------------------------

def test_launch_train_job(aws, train_yaml):
    result = invoke("launch", "train", "--dataset", DATASET, "--output", MODEL, "--config", str(train_yaml),
                    "--spot", "--max-run", "2h", "--max-wait", "4h", "--role", ROLE, "--job-name", "vitalflow-train-1")
    assert result.exit_code == 0, result.output
    assert "submitted job vitalflow-train-1 (train as a spot job)" in result.stdout

    job = boto3.client("sagemaker").describe_training_job(TrainingJobName="vitalflow-train-1")
    assert job["AlgorithmSpecification"]["TrainingImage"] == \
        f"763104351884.dkr.ecr.{REGION}.amazonaws.com/tensorflow-training:2.19.0-cpu-py312"
    assert [(c["ChannelName"], c["DataSource"]["S3DataSource"]["S3Uri"]) for c in job["InputDataConfig"]] == [
        ("dataset", f"{DATASET}/")]
    hps = job["HyperParameters"]
    assert {k: v for k, v in hps.items() if not k.startswith("sagemaker_")} == {
        "vitalflow_command": "train /opt/ml/input/data/dataset", "output": "/opt/ml/model",
        "checkpoints": "/opt/ml/checkpoints",
        "vitalflow_inline_config": load_train_config(train_yaml).model_dump_json()}
    assert job["OutputDataConfig"]["S3OutputPath"] == f"{MODEL}/_sagemaker/"
    assert job["CheckpointConfig"] == {"S3Uri": f"{MODEL}/_checkpoints/", "LocalPath": "/opt/ml/checkpoints"}
    assert job["EnableManagedSpotTraining"] is True
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 14400}
    assert job["ResourceConfig"] == {"InstanceType": "ml.c5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50}
    (sent,) = aws.requests("CreateTrainingJob")
    assert sent["Environment"] == {"PYTHONUNBUFFERED": "1", "VITALFLOW_JOB_NAME": "vitalflow-train-1",
                                   "VITALFLOW_PIP_EXTRAS": "aws,train"}
    assert sent["HyperParameters"] == hps
    assert sorted(s3_keys()) == ["models/m1/_code/vitalflow-train-1/entry.py",
                                 "models/m1/_code/vitalflow-train-1/source.tar.gz"]

    described = invoke("jobs", "vitalflow-train-1")
    assert described.exit_code == 0, described.output
    for expected in ("job vitalflow-train-1 (train as a spot job)", f"dataset: {DATASET}/",
                     "train /opt/ml/input/data/dataset --output /opt/ml/model --checkpoints /opt/ml/checkpoints "
                     "--config /opt/ml/input/config/vitalflow-config.json", f"{MODEL}/_checkpoints/"):
        assert expected in described.stdout


def test_launch_train_from_vitalflows_own_cli(aws):
    """``vitalflow launch train`` in vitalflow's own app; no --config: no inline hyperparameter."""
    from vitalflow.cli import app as vitalflow_app

    result = runner.invoke(vitalflow_app, ["launch", "train", "-d", DATASET, "-o", MODEL, "--role", ROLE,
                                           "--job-name", "vitalflow-train-2"])
    assert result.exit_code == 0, result.output
    assert "(train as an on-demand job in a training-job container)" in result.stdout
    job = boto3.client("sagemaker").describe_training_job(TrainingJobName="vitalflow-train-2")
    assert job["EnableManagedSpotTraining"] is False
    assert job["CheckpointConfig"] == {"S3Uri": f"{MODEL}/_checkpoints/", "LocalPath": "/opt/ml/checkpoints"}
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400}
    assert not any(k.startswith("vitalflow_inline_") for k in job["HyperParameters"])


@pytest.mark.parametrize("content, expected", [
    ("epochs: 0\n", "epochs: Input should be greater than or equal to 1"),
    ("loss: cross-entropy\n", "loss: "),
    ("epochs: [3\n", "is not valid YAML"),
])
def test_bad_train_config_is_refused_before_anything_is_sent(aws, tmp_path, content, expected):
    bad = tmp_path / "train.yaml"
    bad.write_text(content)
    line = _one_error_line(invoke("launch", "train", "--dataset", DATASET, "--output", MODEL, "--config", str(bad),
                                  "--role", ROLE, "--job-name", "vitalflow-train-bad"))
    assert line.startswith("Error: train config ") and str(bad) in line and expected in line, line
    assert s3_keys() == []
    assert aws.requests("CreateTrainingJob") == []
    dry = _one_error_line(invoke("launch", "train", "--dataset", DATASET, "--output", MODEL, "--config", str(bad),
                                 "--role", ROLE, "--dry-run"))
    assert dry == line


def test_train_config_on_s3_is_read_by_the_launcher(aws):
    boto3.client("s3").put_object(Bucket=BUCKET, Key="configs/train.yaml", Body=b"epochs: 5\n")
    result = invoke("launch", "train", "--dataset", DATASET, "--output", MODEL, "--config",
                    f"s3://{BUCKET}/configs/train.yaml", "--role", ROLE, "--job-name", "vitalflow-train-s3",
                    "--dry-run")
    assert result.exit_code == 0, result.output
    request = json.loads(result.stdout)
    assert json.loads(request["HyperParameters"]["vitalflow_inline_config"])["epochs"] == 5
    assert sorted(s3_keys()) == ["configs/train.yaml"]  # a dry run uploads nothing


def test_launch_train_help_lists_the_kinds_options():
    help_text = runner.invoke(launch_cli.app, ["launch", "train", "--help"], env={"COLUMNS": "250"}).stdout
    for expected in ("--dataset", "--output", "--config", "--spot", "--max-wait", "ml.c5.2xlarge",
                     "TensorFlow 2.19.0 training CPU", "An on-demand job in a training-job container by default"):
        assert expected in help_text
    assert "--checkpoints" not in help_text  # the job's own, not the user's
    listed = runner.invoke(launch_cli.app, ["launch", "--help"], env={"COLUMNS": "250"}).stdout
    assert "train" in listed and "preprocess" in listed


# ---------------------------------------------------------------------------------------------
# In the job: entry.py with a faked /opt/ml
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def fake_job(tmp_path, monkeypatch, train_yaml):
    """A training-job container's /opt/ml at ``tmp_path/ml``: hyperparameters.json as the launcher's
    request has them, one host in resourceconfig.json."""
    base = tmp_path / "ml"
    config = base / "input" / "config"
    config.mkdir(parents=True)
    hps = build(config=str(train_yaml))["HyperParameters"]
    (config / "hyperparameters.json").write_text(json.dumps(hps))
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    monkeypatch.setenv("VITALFLOW_SAGEMAKER_BASE", str(base))
    return base


def test_entry_builds_the_train_command(fake_job):
    base = fake_job
    assert entry.job_command(["--output", "ignored"]) == [
        sys.executable, "-m", "vitalflow", "train", f"{base}/input/data/dataset", "--output", f"{base}/model",
        "--checkpoints", f"{base}/checkpoints", "--config", f"{base}/input/config/vitalflow-config.json"]


def test_entry_writes_the_train_config_the_command_reads(fake_job, train_yaml):
    base = fake_job
    hps = json.loads((base / "input" / "config" / "hyperparameters.json").read_text())
    (written,) = entry.write_inline_files(hps, base)
    assert written == base / "input" / "config" / "vitalflow-config.json"
    assert load_train_config(written) == load_train_config(train_yaml)  # JSON read as YAML, the same config


def test_entry_main_writes_the_config_and_execs_vitalflow_train(fake_job, monkeypatch, train_yaml):
    """``main``: install (skipped here), write the config, then exec the train command."""
    base = fake_job
    calls = []
    monkeypatch.setattr(entry, "prepare", lambda here: calls.append(("prepare", here)))
    monkeypatch.setattr(entry.os, "execv", lambda exe, argv: calls.append(("execv", exe, argv)))
    entry.main([])
    assert calls[0][0] == "prepare"
    assert calls[1] == ("execv", sys.executable, [
        sys.executable, "-m", "vitalflow", "train", f"{base}/input/data/dataset", "--output", f"{base}/model",
        "--checkpoints", f"{base}/checkpoints", "--config", f"{base}/input/config/vitalflow-config.json"])
    assert load_train_config(base / "input" / "config" / "vitalflow-config.json") == load_train_config(train_yaml)


def test_entry_extras_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("VITALFLOW_PIP_EXTRAS", raising=False)
    assert entry.extras() == ("aws",)
    monkeypatch.setenv("VITALFLOW_PIP_EXTRAS", "aws,train")
    assert entry.extras() == ("aws", "train")


REQUIRES = ['numpy>=1.24', 'boto3>=1.43.115; extra == "aws"', 'aiobotocore>=3.10; extra == "aws"',
            'tensorflow-cpu>=2.16; extra == "train"', 'xgboost-cpu>=2; extra == "train"',
            'matplotlib>=3.8; extra == "train"', 'pytest>=8; extra == "test"']


@pytest.mark.parametrize("tensorflow, extras, expected", [
    (None, ("aws",), [("src[aws]",)]),  # preprocess in the scikit-learn image: as always
    (None, ("aws", "train"), [("src[aws,train]",)]),  # no TensorFlow: pip installs tensorflow-cpu
    ("tensorflow", ("aws", "train"), [
        ("--no-deps", "src"),
        ("src", "boto3>=1.43.115", "aiobotocore>=3.10", "tensorflow>=2.16", "xgboost-cpu>=2", "matplotlib>=3.8")]),
    ("tensorflow-cpu", ("aws", "train"), [
        ("--no-deps", "src"),
        ("src", "boto3>=1.43.115", "aiobotocore>=3.10", "tensorflow-cpu>=2.16", "xgboost-cpu>=2", "matplotlib>=3.8")]),
    ("tensorflow", ("aws",), [("--no-deps", "src"), ("src", "boto3>=1.43.115", "aiobotocore>=3.10")]),
], ids=["sklearn-image-aws", "no-tf-train", "tf-image-train", "tf-cpu-image-train", "tf-image-aws"])
def test_entry_install_keeps_the_images_tensorflow(monkeypatch, tensorflow, extras, expected):
    pips = []
    monkeypatch.setattr(entry, "installed_tensorflow", lambda: tensorflow)
    monkeypatch.setattr(entry, "installed_requirements", lambda: REQUIRES)
    monkeypatch.setattr(entry, "_pip", lambda *args: pips.append(args))
    entry.install("src", extras)
    assert pips == expected


def test_entry_probes_this_interpreter():
    """The probes run a fresh interpreter: this venv has vitalflow (with its extras' requirements)."""
    assert any("boto3" in r and 'extra == "aws"' in r for r in entry.installed_requirements())
    assert entry.installed_tensorflow() in (None, *entry.TENSORFLOW_DISTRIBUTIONS)
