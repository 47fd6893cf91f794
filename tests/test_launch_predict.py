"""``vitalflow launch predict``: the ``predict`` job kind, its requests, and a launch against moto.

The model is either an S3 model directory (an input channel, downloaded to each instance) or a
registry reference (``NAME@ALIAS``, passed as given). Multi-instance like preprocess: every
instance runs the same command and takes its share of the cases (``vitalflow.sagemaker.env``).
"""

from __future__ import annotations

import pytest

from moto_server import REGION
from test_launch import BUCKET, ROLE, _no_real_aws, _one_error_line, aws, invoke, moto_server, s3_keys  # noqa: F401
from vitalflow.sagemaker import entry
from vitalflow.sagemaker import launch as sm
from vitalflow.sagemaker.env import PROCESSING_JOB, TRAINING_JOB

boto3 = pytest.importorskip("boto3")

MODEL = f"s3://{BUCKET}/models/m1"
REC = f"s3://{BUCKET}/rec"
CLINICAL = f"s3://{BUCKET}/rec/clinical.csv"
OUT = f"s3://{BUCKET}/pred/p1"


def options(model=MODEL, **kw) -> sm.LaunchOptions:
    arguments = {"model": model, "input": REC, "clinical": CLINICAL, "output": OUT, **kw.pop("arguments", {})}
    return sm.LaunchOptions(arguments, **{"kind": "predict", "role": ROLE, "region": "eu-central-1",
                                          "job_name": "vitalflow-pred-1", **kw})


def build(**kw) -> tuple[str, dict]:
    return sm.build_request(sm.resolve(options(**kw), environ={}))


def test_the_predict_kind():
    kind = sm.job_kind("predict")
    assert kind.containers[0] == PROCESSING_JOB and kind.extras == ("aws", "train")
    assert kind.image == sm.TENSORFLOW and kind.max_instances is None
    assert [a.name for a in kind.args] == ["model", "input", "clinical", "output", "cases", "config", "workers"]


def test_a_model_directory_on_s3_is_a_channel():
    container, r = build(instance_count=3, arguments={"cases": "1-100", "workers": 4})
    assert container == PROCESSING_JOB
    assert r["AppSpecification"]["ImageUri"] == \
        "763104351884.dkr.ecr.eu-central-1.amazonaws.com/tensorflow-training:2.19.0-cpu-py312"
    assert r["AppSpecification"]["ContainerArguments"] == [
        "predict", "--model", "/opt/ml/processing/input/model", "--input", REC, "--clinical", CLINICAL,
        "--output", OUT, "--cases", "1-100", "--workers", "4"]
    inputs = {i["InputName"]: i["S3Input"] for i in r["ProcessingInputs"]}
    assert inputs["model"]["S3Uri"] == f"{MODEL}/" and inputs["model"]["LocalPath"] == "/opt/ml/processing/input/model"
    assert r["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 3
    assert r["Environment"]["VITALFLOW_PIP_EXTRAS"] == "aws,train"


def test_a_registry_reference_is_passed_as_given():
    _, r = build(model="vitalflow@champion")
    assert r["AppSpecification"]["ContainerArguments"][:3] == ["predict", "--model", "vitalflow@champion"]
    assert [i["InputName"] for i in r["ProcessingInputs"]] == ["code"]


def test_in_a_training_job_container_the_model_is_a_channel_there():
    container, r = build(spot=True)
    assert container == TRAINING_JOB
    assert r["InputDataConfig"][0]["ChannelName"] == "model"
    assert entry.command_from_hyperparameters(r["HyperParameters"])[:3] == [
        "predict", "--model", "/opt/ml/input/data/model"]


@pytest.mark.parametrize("model, message", [
    ("http://example.com/m", "--model must be an s3:// URI or a registry reference"),
    ("", "--model must be an s3:// URI or a registry reference"),
])
def test_bad_model_values(model, message):
    with pytest.raises(sm.LaunchError, match=message):
        build(model=model)


def test_input_must_be_on_s3():
    with pytest.raises(sm.LaunchError, match="--input must be an s3:// URI"):
        build(arguments={"input": "/local/rec"})


def test_launch_predict_job(aws):
    result = invoke("launch", "predict", "--model", MODEL, "--input", REC, "--clinical", CLINICAL, "--output", OUT,
                    "--instance-count", "2", "--role", ROLE, "--job-name", "vitalflow-pred-1")
    assert result.exit_code == 0, result.output
    assert "submitted job vitalflow-pred-1 (predict as a processing job)" in result.stdout
    job = boto3.client("sagemaker").describe_processing_job(ProcessingJobName="vitalflow-pred-1")
    assert job["AppSpecification"]["ContainerArguments"] == [
        "predict", "--model", "/opt/ml/processing/input/model", "--input", REC, "--clinical", CLINICAL,
        "--output", OUT]
    assert job["AppSpecification"]["ImageUri"] == \
        f"763104351884.dkr.ecr.{REGION}.amazonaws.com/tensorflow-training:2.19.0-cpu-py312"
    (sent,) = aws.requests("CreateProcessingJob")
    assert sent["ProcessingResources"]["ClusterConfig"]["InstanceCount"] == 2
    assert sent["Environment"]["VITALFLOW_PIP_EXTRAS"] == "aws,train"
    assert sorted(s3_keys()) == ["pred/p1/_code/vitalflow-pred-1/entry.py",
                                 "pred/p1/_code/vitalflow-pred-1/source.tar.gz"]
