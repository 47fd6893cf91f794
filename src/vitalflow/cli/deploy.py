"""``vitalflow deploy`` and ``vitalflow invoke``: the inference service as a SageMaker asynchronous endpoint.

``deploy`` turns ``--model`` into the S3 ``model.tar.gz`` the endpoint serves (a registry
reference or a model directory is packed and uploaded; an ``s3://...model.tar.gz`` is used as
it is), then hands everything to :func:`vitalflow.sagemaker.deploy.deploy`; ``--dry-run`` prints
every request as JSON and sends nothing. The model's container gets, in its environment, where
jobs may read (``--input-prefix``, required) and where their timelines go (``<output>/timelines``).
``invoke`` submits one FeMo job (the recording and ``--patient``) and waits for its result.
Everything AWS lives in :mod:`vitalflow.sagemaker.deploy`; this module parses, resolves the model
and prints.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import typer
from rich.console import Console

from vitalflow.errors import LaunchError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _event(line: str) -> None:
    out.print(f"{_dt.datetime.now():%H:%M:%S} {line}", markup=False)


def _seconds(text: str, option: str) -> float:
    from vitalflow.sagemaker.launch import parse_duration

    seconds = parse_duration(text)
    if seconds < 1:
        raise LaunchError(f"{option} must be at least 1 s (got {text!r})")
    return float(seconds)


@contextlib.contextmanager
def _model_directory(model: str, dry_run: bool) -> Iterator[Path | None]:
    """The local model directory to pack, or None when ``model`` is an S3 model.tar.gz (or, in a
    dry run, an S3 model directory: it is not downloaded). A registry reference is resolved
    (downloaded once into the cache); a directory must hold a model card."""
    from vitalflow.sagemaker.model_registry import is_model_tarball

    if is_model_tarball(model):
        yield None
        return
    if model.startswith("s3://"):
        if dry_run:
            yield None
            return
        from vitalflow.model.card import read_model_card
        from vitalflow.registry.log import local_copy

        read_model_card(model)
        with local_copy(model) as local:
            yield Path(local)
        return
    if "://" in model:
        raise LaunchError(f"--model {model!r}: a model is NAME@ALIAS, NAME/VERSION, a model directory or an "
                          "s3:// model.tar.gz")
    from vitalflow.model.card import read_model_card
    from vitalflow.registry.resolve import resolve_model

    local = resolve_model(model)
    read_model_card(local)
    yield Path(local)


def deploy(
    model: str = typer.Option(..., "--model", "-m", help="NAME@ALIAS, NAME/VERSION, a model directory (folder or "
                              "s3:// prefix), or an s3:// model.tar.gz used as it is."),
    name: str = typer.Option(..., "--name", help="Endpoint name (at most 47 characters: its model and config "
                             "are <name>-<UTC time>)."),
    asynchronous: bool = typer.Option(False, "--async", help="An asynchronous endpoint (required: the only kind "
                                      "made; it queues requests and scales to zero)."),
    output: str = typer.Option(..., "--output", help="S3OutputPath: where results go (s3://bucket/prefix); "
                               "each job's timeline and summary go to <output>/timelines."),
    input_prefix: Optional[List[str]] = typer.Option(None, "--input-prefix", help="Where the endpoint's jobs may "
                                                     "read recordings (s3://bucket/prefix; repeatable; required)."),
    failure_output: Optional[str] = typer.Option(None, "--failure-output", help="S3FailurePath: where failures go "
                                                 "(default: <output>/failures)."),
    sns_success: Optional[str] = typer.Option(None, "--sns-success", help="SNS topic ARN notified of each result."),
    sns_error: Optional[str] = typer.Option(None, "--sns-error", help="SNS topic ARN notified of each failure."),
    min_instances: int = typer.Option(0, "--min", help="Minimum instances (0: scale to zero when idle)."),
    max_instances: int = typer.Option(1, "--max", help="Maximum instances."),
    instance_type: str = typer.Option("ml.m5.large", "--instance-type", help="SageMaker instance type."),
    max_concurrent: int = typer.Option(4, "--max-concurrent-invocations", help="Requests one instance "
                                       "works on at once (MaxConcurrentInvocationsPerInstance)."),
    target_backlog: float = typer.Option(5.0, "--target-backlog", help="Queued requests per instance that "
                                         "target tracking aims at (ApproximateBacklogSizePerInstance)."),
    image: Optional[str] = typer.Option(None, "--image", help="Serving image URI (default: $VITALFLOW_SERVE_IMAGE, "
                                        "else <account>.dkr.ecr.<region>.amazonaws.com/vitalflow:<version>)."),
    role: Optional[str] = typer.Option(None, "--role", help="IAM role ARN the endpoint runs as "
                                       "(default: $VITALFLOW_SAGEMAKER_ROLE)."),
    region: Optional[str] = typer.Option(None, "--region", help="AWS region (default: AWS_REGION, "
                                         "AWS_DEFAULT_REGION or the profile's)."),
    model_prefix: Optional[str] = typer.Option(None, "--model-prefix", help="Where a model directory's "
                                               "model.tar.gz is uploaded (default: <output>/_models/<name>-<time>)."),
    env: Optional[List[str]] = typer.Option(None, "--env", help="NAME=VALUE for the container's environment "
                                            "(repeatable)."),
    timeout: str = typer.Option("30m", "--timeout", help="How long to wait for the endpoint to be InService."),
    poll: float = typer.Option(30.0, "--poll", min=0.01, help="Seconds between status checks."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print every request as JSON; upload and create nothing."),
) -> None:
    """Deploy a model as a SageMaker asynchronous endpoint that scales to zero (README 'Deploy to SageMaker')."""
    from vitalflow.sagemaker import deploy as dp

    if not asynchronous:
        raise LaunchError("vitalflow deploy makes asynchronous endpoints only (they queue requests and scale to "
                          "zero): pass --async")
    when = dp.stamp()
    environment = dp.parse_env(env or [])
    timeout_s = _seconds(timeout, "--timeout")
    dp.check_s3("--output", output)
    dp.check_input_prefixes(tuple(input_prefix or ()))
    if model_prefix is not None:
        dp.check_s3("--model-prefix", model_prefix)
    tarball = dp.is_model_tarball(model)
    if tarball:
        data_url = model
    else:
        data_url = (f"{model_prefix.rstrip('/')}/{dp.MODEL_TARBALL}" if model_prefix
                    else dp.default_model_data_url(output, name, when))
    options = dp.resolve(dp.DeployOptions(
        name=name, model_data_url=data_url, output=output, role=role, region=region, image=image,
        failure_output=failure_output, sns_success=sns_success, sns_error=sns_error,
        min_instances=min_instances, max_instances=max_instances, instance_type=instance_type,
        max_concurrent_invocations=max_concurrent, target_backlog=target_backlog, environment=environment,
        input_prefixes=tuple(input_prefix or ()), model_reference=model, upload_from=None if tarball else model,
        stamp=when), os.environ)
    dp.validate(options)
    with _model_directory(model, dry_run) as local:
        if dry_run:
            calls = dp.planned_requests(options, dp.dry_run_image(options))
            typer.echo(json.dumps([c.as_json() for c in calls], indent=2))
            note = "" if options.image else (f"; the image's {dp.ACCOUNT_PLACEHOLDER} is the account STS names when "
                                             "deploying")
            err.print(f"dry run: {len(calls)} requests for endpoint {options.name} in {options.region}{note}; "
                      "nothing was uploaded or created", markup=False)
            return
        done = dp.deploy(options, local, poll_s=poll, timeout_s=timeout_s, on_event=_event)
    out.print(f"endpoint {done.name} InService in {done.region}: {done.endpoint_arn}", markup=False)
    out.print(f"  image:   {done.image}", markup=False)
    out.print(f"  model:   {done.model_data_url}" + (" (uploaded)" if done.uploaded else ""), markup=False)
    out.print(f"  results: {options.output} (failures: {options.failure_path}; timelines: "
              f"{options.timelines_path})", markup=False)
    out.print(f"  reads:   {', '.join(options.input_prefixes)}", markup=False)
    out.print(f"  scaling: {options.min_instances}-{options.max_instances} x {options.instance_type}, "
              f"{dp.BACKLOG_METRIC} target {options.target_backlog:g}; alarm {done.alarm_name} "
              f"({dp.WAKE_METRIC} >= 1) wakes it from zero", markup=False)
    out.print(f"submit a job: vitalflow invoke {done.name} --input {options.input_prefixes[0].rstrip('/')}/"
              "RECORDING.vital --patient age=63,sex=F,height=160,weight=58,bmi=22.7,asa=2", markup=False)


def invoke(
    endpoint: str = typer.Argument(..., help="The asynchronous endpoint's name."),
    input_uri: str = typer.Option(..., "--input", "-i", help="The recording to analyse (s3://..., below one of "
                                  "the endpoint's --input-prefix)."),
    patient: Optional[str] = typer.Option(None, "--patient", "-p", help="The patient's features as KEY=VALUE,... "
                                          "(keys: age, sex, height, weight, bmi, asa, anestart, aneend, caseend, "
                                          "subjectid); weight is required: --patient "
                                          "age=63,sex=F,height=160,weight=58,bmi=22.7,asa=2."),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for the result and print it."),
    timeout: str = typer.Option("600", "--timeout", help="How long to wait: seconds, or e.g. 10m."),
    poll: float = typer.Option(5.0, "--poll", min=0.01, help="Seconds between checks for the result."),
    job_id: Optional[str] = typer.Option(None, "--job-id", help="The job id (default: a new UUID)."),
    request_prefix: Optional[str] = typer.Option(None, "--request-prefix", help="Where the job body is written "
                                                 "(default: <the endpoint's S3OutputPath>/requests)."),
    region: Optional[str] = typer.Option(None, "--region", help="AWS region (default: AWS_REGION, "
                                         "AWS_DEFAULT_REGION or the profile's)."),
) -> None:
    """Submit a recording to an asynchronous endpoint as a FeMo job and print its result."""
    from vitalflow.sagemaker import deploy as dp
    from vitalflow.sagemaker.aws import require_region, resolve_region

    features = dp.parse_patient(patient)
    timeout_s = _seconds(timeout, "--timeout")
    region = require_region(resolve_region(region))
    job = dp.submit_job(endpoint, input_uri, region, patient=features, request_prefix=request_prefix, job_id=job_id)
    err.print(f"job {job.job_id} submitted to {endpoint}: request {job.request_uri}", markup=False)
    if not wait:
        out.print(json.dumps({"jobId": job.job_id, "request": job.request_uri, "output": job.output_location,
                              "failure": job.failure_location}, indent=2), markup=False)
        return
    exists, read = dp.s3_readers(region)
    result = dp.wait_for_result(job.output_location, job.failure_location, exists=exists, read=read,
                                timeout_s=timeout_s, poll_s=poll)
    if result is None:
        failure = f" (failure: {job.failure_location})" if job.failure_location else ""
        raise LaunchError(f"no result for job {job.job_id} after {timeout_s:.0f} s (an endpoint at zero instances "
                          f"takes minutes to wake): it will appear at {job.output_location}{failure}")
    if not result.ok:
        raise LaunchError(f"job {job.job_id} failed: {dp.failure_reason(result.body)} ({result.location})")
    text = result.body.decode("utf-8", "replace")
    try:
        text = json.dumps(json.loads(text), indent=2)
    except ValueError:
        pass
    typer.echo(text)
    err.print(f"job {job.job_id} completed: {result.location}", markup=False)


def register(target: typer.Typer, wrap: Callable[[Callable], Callable]) -> None:
    """Add ``deploy`` and ``invoke`` to ``target``, wrapped by ``wrap`` (the CLI's error handler)."""
    target.command("deploy")(wrap(deploy))
    target.command("invoke")(wrap(invoke))
