"""``vitalflow launch`` and ``vitalflow jobs``: run the preprocessing as SageMaker jobs, and watch them.

``vitalflow.cli`` adds the two commands to its app with :func:`register` (wrapped in its error
handler). :data:`app` is a standalone Typer app with the same commands, used by the tests.
Everything AWS lives in :mod:`vitalflow.sagemaker.launch`; this module only parses and prints.
"""

from __future__ import annotations

import datetime as _dt
import functools
import json
from typing import Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from vitalflow.errors import VitalflowError

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def launch(
    input: str = typer.Option(..., "--input", "-i", help="s3:// prefix of the <caseid>.vital files."),
    clinical: str = typer.Option(..., "--clinical", "-c", help="s3:// URI of the VitalDB clinical table (CSV)."),
    output: str = typer.Option(..., "--output", "-o", help="s3:// output prefix (code goes to <output>/_code/)."),
    cases: Optional[str] = typer.Option(None, "--cases", help='Cases to process, e.g. "1-3000" (default: all files).'),
    config: Optional[str] = typer.Option(None, "--config", help="s3:// URI of a run config YAML."),
    workers: Optional[int] = typer.Option(None, "--workers", "-w", help="Worker processes per instance "
                                          "(default: the instance's CPU count)."),
    instance_count: int = typer.Option(1, "--instance-count", "-n", help="Instances; each takes its share of the cases."),
    instance_type: str = typer.Option("ml.m5.2xlarge", "--instance-type", help="SageMaker instance type."),
    mode: Optional[str] = typer.Option(None, "--mode", help="processing (default) or training (--spot implies it)."),
    spot: bool = typer.Option(False, "--spot", help="Managed spot: a training job with checkpoints in "
                              "<output>/_checkpoints/."),
    max_run: str = typer.Option("26h", "--max-run", help="Maximum run time: seconds, or e.g. 90m, 26h, 2d."),
    max_wait: Optional[str] = typer.Option(None, "--max-wait", help="Spot: maximum wait + run time "
                                           "(default: 2 x --max-run)."),
    volume_gb: int = typer.Option(50, "--volume-gb", help="EBS volume per instance, GB."),
    role: Optional[str] = typer.Option(None, "--role", help="IAM role ARN the job runs as "
                                       "(default: $VITALFLOW_SAGEMAKER_ROLE)."),
    region: Optional[str] = typer.Option(None, "--region", help="AWS region (default: AWS_REGION, "
                                         "AWS_DEFAULT_REGION or the profile's)."),
    image: Optional[str] = typer.Option(None, "--image", help="Container image URI (default: the official "
                                        "SageMaker scikit-learn 1.4-2 CPU image of the region)."),
    job_name: Optional[str] = typer.Option(None, "--job-name", help="Job name (default: vitalflow-<UTC time>)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the request JSON; upload and submit nothing."),
    wait: bool = typer.Option(False, "--wait", help="Wait for the job to end, printing its status changes."),
    poll: float = typer.Option(30.0, "--poll", min=0.01, help="Seconds between status checks with --wait."),
) -> None:
    """Submit `vitalflow preprocess` as a SageMaker processing job (or training job for --spot)."""
    from vitalflow.sagemaker import launch as sm

    options = sm.LaunchOptions(
        input=input, clinical=clinical, output=output, cases=cases, config=config, workers=workers,
        instance_count=instance_count, instance_type=instance_type, mode=mode, spot=spot,
        max_run=sm.parse_duration(max_run), max_wait=None if max_wait is None else sm.parse_duration(max_wait),
        volume_gb=volume_gb, role=role, region=region, image=image,
        **({"job_name": job_name} if job_name else {}))
    if dry_run:
        options = sm.resolve(options)
        kind, request = sm.build_request(options)
        typer.echo(json.dumps(request, indent=2))
        err.print(f"dry run: {kind} job {options.job_name} would run with code from {options.code_uri}; "
                  "nothing was uploaded or submitted", markup=False)
        return
    launched = sm.launch(options)
    region = launched.region
    out.print(f"submitted {launched.kind} job {launched.name}", markup=False)
    out.print(f"  arn:     {launched.arn}", markup=False)
    out.print(f"  code:    {launched.code_uri}", markup=False)
    out.print(f"  console: {sm.console_url(launched.kind, launched.name, region)}", markup=False)
    if wait:
        info = sm.wait(launched.name, launched.kind, region, poll_s=poll, on_event=_event)
        _finish(info)
    else:
        out.print(f"follow it with: vitalflow jobs {launched.name}", markup=False)


def _event(line: str) -> None:
    out.print(f"{_dt.datetime.now():%H:%M:%S} {line}", markup=False)


def _finish(info) -> None:
    if info.status != "Completed":
        reason = f": {info.failure_reason}" if info.failure_reason else ""
        raise VitalflowError(f"{info.kind} job {info.name} {info.status}{reason}")
    out.print(f"{info.kind} job {info.name} Completed", markup=False)


def _time(t: _dt.datetime | None) -> str:
    if t is None:
        return "-"
    if t.tzinfo is not None:
        t = t.astimezone(_dt.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S")


def _instances(info) -> str:
    if info.instance_count is None:
        return "-"
    return f"{info.instance_count} x {info.instance_type}" if info.instance_type else str(info.instance_count)


def jobs(
    name: Optional[str] = typer.Argument(None, help="A job to describe (default: list recent jobs)."),
    region: Optional[str] = typer.Option(None, "--region", help="AWS region (default: AWS_REGION, "
                                         "AWS_DEFAULT_REGION or the profile's)."),
    limit: int = typer.Option(20, "--limit", min=1, max=100, help="How many recent jobs to list."),
    name_contains: str = typer.Option("vitalflow", "--name-contains", help='List jobs whose name contains this '
                                      '("" for all).'),
    as_json: bool = typer.Option(False, "--json", help="Print SageMaker's full description as JSON."),
    wait: bool = typer.Option(False, "--wait", help="With NAME: wait for the job to end, printing status changes."),
    poll: float = typer.Option(30.0, "--poll", min=0.01, help="Seconds between status checks with --wait."),
) -> None:
    """List recent vitalflow SageMaker jobs, or describe (and --wait for) one."""
    from vitalflow.sagemaker import launch as sm

    region = sm.resolve_region(region)
    if name is None:
        found = sm.list_jobs(region, limit=limit, name_contains=name_contains or None)
        if as_json:
            typer.echo(json.dumps([j.raw for j in found], indent=2, default=str))
            return
        table = Table(title=f"SageMaker jobs in {region}", title_justify="left")
        for col in ("name", "kind", "status", "created (UTC)", "instances", "spot"):
            table.add_column(col, no_wrap=col in ("name", "created (UTC)"))
        for j in found:
            status = j.status + (f" ({j.secondary_status})" if j.secondary_status and j.secondary_status != j.status
                                 else "")
            table.add_row(j.name, j.kind, status, _time(j.created), _instances(j), "yes" if j.spot else "")
        out.print(table)
        if not found:
            out.print(f"no jobs whose name contains {name_contains!r}", markup=False)
        return
    info = sm.describe_job(name, region)
    if as_json:
        typer.echo(json.dumps(info.raw, indent=2, default=str))
    else:
        _describe_table(info)
    if wait and not info.done:
        _finish(sm.wait(info.name, info.kind, region, poll_s=poll, on_event=_event))


def _describe_table(info) -> None:
    raw = info.raw
    rows: list[tuple[str, str]] = [("name", info.name), ("kind", info.kind),
                                   ("status", info.status + (f" ({info.secondary_status})" if info.secondary_status
                                                             else ""))]
    if info.failure_reason:
        rows.append(("failure reason", info.failure_reason))
    if raw.get("ExitMessage"):
        rows.append(("exit message", raw["ExitMessage"]))
    rows += [("created (UTC)", _time(info.created)), ("ended (UTC)", _time(info.ended)),
             ("instances", _instances(info))]
    stopping = raw.get("StoppingCondition", {})
    if "MaxRuntimeInSeconds" in stopping:
        rows.append(("max run", f"{stopping['MaxRuntimeInSeconds']} s"))
    if info.kind == "training":
        rows.append(("spot", "yes" if info.spot else "no"))
        if "MaxWaitTimeInSeconds" in stopping:
            rows.append(("max wait", f"{stopping['MaxWaitTimeInSeconds']} s"))
        if raw.get("CheckpointConfig"):
            rows.append(("checkpoints", raw["CheckpointConfig"].get("S3Uri", "")))
        for key in ("TrainingTimeInSeconds", "BillableTimeInSeconds"):
            if key in raw:
                rows.append((key.replace("InSeconds", "").lower().replace("time", " time"), f"{raw[key]} s"))
        hps = raw.get("HyperParameters", {})
        rows.append(("image", raw.get("AlgorithmSpecification", {}).get("TrainingImage", "-")))
        rows.append(("code", hps.get("sagemaker_submit_directory", "-")))
        rows.append(("arguments", " ".join(f"--{k} {v}" for k, v in hps.items() if not k.startswith("sagemaker_"))))
    else:
        app_spec = raw.get("AppSpecification", {})
        rows.append(("image", app_spec.get("ImageUri", "-")))
        code = [i["S3Input"]["S3Uri"] for i in raw.get("ProcessingInputs", []) if "S3Input" in i]
        rows.append(("code", ", ".join(code) or "-"))
        rows.append(("arguments", " ".join(app_spec.get("ContainerArguments", []))))
    table = Table(show_header=False, title=f"{info.kind} job {info.name}", title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in rows:
        table.add_row(key, value)
    out.print(table)


def _errors(fn: Callable) -> Callable:
    """For the standalone :data:`app`: VitalflowError -> ``Error: ...`` and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except VitalflowError as exc:
            err.print(f"Error: {exc}", markup=False)
            raise typer.Exit(1) from None

    return wrapper


def register(target: typer.Typer, wrap: Callable[[Callable], Callable] = _errors) -> None:
    """Add ``launch`` and ``jobs`` to ``target``, each wrapped by ``wrap`` (the CLI's error handler)."""
    target.command("launch")(wrap(launch))
    target.command("jobs")(wrap(jobs))


app = typer.Typer(name="vitalflow", add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Run vitalflow preprocess as SageMaker jobs.")
register(app)
