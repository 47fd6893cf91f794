"""The service's settings from the environment: where jobs may read and where their outputs go.

Inside a SageMaker container ``vitalflow serve`` is started as ``serve`` alone, so the environment
is the only way to tell it where jobs may read and where timelines go (``vitalflow deploy`` sets
``VITALFLOW_SERVE_INPUT_PREFIXES`` and ``VITALFLOW_SERVE_OUTPUT_PREFIX`` in the model's
container). Options, where given, win over the environment. Last, a job run the way the container
runs it (inside the invocation) with those settings names its S3 timeline and summary, and they
are there (SeaweedFS S3 on loopback; the model call is replaced by a fixed table).
"""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

from vitalflow.serve.settings import (FAILURE_PREFIX_ENV, INPUT_PREFIXES_ENV, OUTPUT_PREFIX_ENV,
                                      ServeSettingsError, from_environment, prefixes_from)

ENV = {INPUT_PREFIXES_ENV: "s3://lab/ward3, s3://lab/ward4/", OUTPUT_PREFIX_ENV: "s3://lab/out/timelines",
       FAILURE_PREFIX_ENV: "s3://lab/out/failed"}


@pytest.fixture
def environment(monkeypatch):
    for name in (*ENV, "VITALFLOW_SERVE_TOKEN", "SAGEMAKER_BIND_TO_PORT", "MODEL_SERVER_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_the_prefixes_come_from_the_environment(environment):
    for name, value in ENV.items():
        environment.setenv(name, value)
    settings = from_environment(model="m")
    assert settings.input_prefixes == ("s3://lab/ward3", "s3://lab/ward4/")
    assert (settings.output_prefix, settings.failure_prefix) == ("s3://lab/out/timelines", "s3://lab/out/failed")
    assert (settings.results, settings.failures) == ("s3://lab/out/timelines", "s3://lab/out/failed")


def test_options_win_over_the_environment(environment):
    for name, value in ENV.items():
        environment.setenv(name, value)
    settings = from_environment(model="m", input_prefixes=("/data/rec",), output_prefix="/data/out",
                                failure_prefix="/data/failed")
    assert settings.input_prefixes == ("/data/rec",)
    assert (settings.output_prefix, settings.failure_prefix) == ("/data/out", "/data/failed")
    # an option not given (None, as `vitalflow serve` passes it) leaves the variable in force
    partly = from_environment(model="m", input_prefixes=None, output_prefix="/data/out")
    assert partly.input_prefixes == ("s3://lab/ward3", "s3://lab/ward4/") and partly.output_prefix == "/data/out"
    assert partly.failure_prefix == "s3://lab/out/failed"


def test_unset_or_empty_variables_keep_the_defaults(environment, tmp_path):
    for name in ENV:
        environment.setenv(name, " ")
    settings = from_environment(model="m", state_dir=tmp_path)
    assert settings.input_prefixes == ()
    assert settings.results == str(tmp_path / "results") and settings.failures == str(tmp_path / "failures")
    assert prefixes_from(None) is None and prefixes_from(" , ,") is None


def test_a_bad_number_in_the_environment_is_one_line(environment):
    environment.setenv("MODEL_SERVER_TIMEOUT", "an hour")
    with pytest.raises(ServeSettingsError, match=r"^MODEL_SERVER_TIMEOUT: 'an hour' is not a number$"):
        from_environment(model="m")


def test_the_container_entry_reads_the_prefixes(environment, tmp_path):
    """`vitalflow serve` with no option in a SageMaker container: everything from the environment."""
    from vitalflow.cli.serve import serve_settings

    model_dir = tmp_path / "opt-ml-model"
    model_dir.mkdir()
    (model_dir / "model_card.json").write_text("{}")  # serve_settings looks only for the card's presence
    for name, value in ENV.items():
        environment.setenv(name, value)
    settings = serve_settings(None, sagemaker_model_dir=model_dir, input_prefixes=None, output_prefix=None,
                              failure_prefix=None)
    assert settings.sagemaker and settings.host == "0.0.0.0"
    assert settings.input_prefixes == ("s3://lab/ward3", "s3://lab/ward4/")
    assert settings.results == "s3://lab/out/timelines"


class _Card:
    class spec:  # noqa: N801  (the attribute a card has)
        hash = "spec-hash"


class _Predictor:
    uri = "s3://lab/models/m1"
    card = _Card()


def test_a_job_in_a_sagemaker_container_names_its_s3_timeline(environment, s3_server, tmp_path):
    """``run_here`` (the job inside /invocations) with the settings deploy gives the container:
    the status document names the timeline and summary in S3, below ``<output>/timelines``."""
    from vitalflow.predict.table import CaseTable
    from vitalflow.serve import jobs
    from vitalflow.serve.app import AsyncJobs

    run = f"s3://{s3_server.bucket}/settings-{uuid.uuid4().hex[:8]}"
    client = s3_server.client()
    key = run.split("/", 3)[3]
    client.put_object(Bucket=s3_server.bucket, Key=f"{key}/in/0001.vital", Body=b"recording")
    environment.setenv(INPUT_PREFIXES_ENV, f"{run}/in")
    environment.setenv(OUTPUT_PREFIX_ENV, f"{run}/out/timelines")
    seen = {}

    def predict_recording(data, patient, predictor, name):
        seen.update(data=data, patient=patient, name=name)
        return CaseTable(case_id=0, start_unix=1.7e9, time_s=np.array([329, 359]), predicted=np.ones((2, 1)),
                         recorded=np.full((2, 1), np.nan), targets=[("Propofol_INF", "mg/kg/h")])

    environment.setattr(jobs, "predict_recording", predict_recording)
    settings = from_environment(model=str(tmp_path), sagemaker=True, host="0.0.0.0", state_dir=tmp_path / "state")
    status, doc = AsyncJobs(settings).run_here(_Predictor(), {
        "jobId": "sm-1", "requestTime": "2026-01-01T00:00:00Z", "s3Key": "0001.vital", "patient": {"weight": 58}})
    assert status == 200, doc
    assert seen == {"data": b"recording", "patient": {"weight": 58}, "name": "0001.vital"}
    assert doc["status"] == "Completed"
    assert doc["result"]["timeline"] == f"{run}/out/timelines/sm-1/timeline.parquet"
    assert doc["result"]["output"] == f"{run}/out/timelines/sm-1/summary.json"
    summary = json.loads(client.get_object(Bucket=s3_server.bucket, Key=f"{key}/out/timelines/sm-1/summary.json")[
        "Body"].read())
    assert summary["rows"] == 2 and summary["input"] == f"{run}/in/0001.vital"
    assert client.head_object(Bucket=s3_server.bucket, Key=f"{key}/out/timelines/sm-1/timeline.parquet")
    assert not (tmp_path / "state").exists()  # nothing local: the container's disk dies with it
    # a recording outside the prefixes the environment allows is refused inside the call
    status, doc = AsyncJobs(settings).run_here(_Predictor(), {
        "jobId": "sm-2", "requestTime": "2026-01-01T00:00:00Z", "inputUri": f"{run}/secret/0001.vital",
        "patient": {"weight": 58}})
    assert status == 400 and doc["status"] == "Failed" and "outside the locations" in doc["error"]
