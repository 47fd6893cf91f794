"""``vitalflow launch`` and ``vitalflow jobs``: run vitalflow commands as SageMaker jobs, and watch them.

``vitalflow launch <kind> ...`` has one subcommand per registered job kind
(:data:`vitalflow.sagemaker.launch.JOB_KINDS`), generated from it: the kind's own options
(``--input``, ...; a positional argument of the command, such as ``train``'s DATASET, is an
option ``--dataset`` here too) followed by the job's (``--instance-count``, ``--spot``, ...). Without a kind
(``vitalflow launch --input ...``) it means ``preprocess``, as before kinds existed.

``vitalflow.cli`` adds the two commands to its app with :func:`register` (wrapped in its error
handler). :data:`app` is a standalone Typer app with the same commands, used by the tests.
Everything AWS lives in :mod:`vitalflow.sagemaker.launch`; this module only parses and prints.
"""

from __future__ import annotations

import datetime as _dt
import functools
import inspect
import json
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from vitalflow.cli.run import event
from vitalflow.errors import LaunchError, VitalflowError
from vitalflow.sagemaker import launch as sm

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

#: ``--mode`` (hidden, the name before job kinds existed) accepts these for ``--container``.
_CONTAINER_ALIASES = {"processing": sm.PROCESSING_JOB, "training": sm.TRAINING_JOB}


def _duration(seconds: int) -> str:
    """``26h`` for 93600: how a default duration shows in ``--help``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return str(seconds)


def _option(name: str, annotation: Any, default: Any, *decls: str, **kw: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                             default=typer.Option(default, *decls, **kw))


def _kind_options(kind: sm.JobKind) -> list[inspect.Parameter]:
    """The kind's own options, ``--<arg>``, as the registry describes them."""
    return [_option(arg.name.replace("-", "_"), arg.type if arg.required else Optional[arg.type],
                    ... if arg.required else None, f"--{arg.name}", *([arg.short] if arg.short else []),
                    help=arg.help) for arg in kind.args]


def _job_options(kind: sm.JobKind) -> list[inspect.Parameter]:
    """The options of the SageMaker job itself; the spot ones only where the kind allows spot."""
    spot = [
        _option("spot", bool, False, "--spot", help=f"Managed spot: runs in a {sm.TRAINING_JOB} container, with "
                f"checkpoints in <{kind.output.name}>/_checkpoints/."),
        _option("max_wait", Optional[str], None, "--max-wait", help="Spot: maximum wait + run time "
                "(default: 2 x --max-run)."),
    ] if kind.spot else []
    count_help = "Instances; each takes its share of the work." if kind.max_instances != 1 else "Instances (1)."
    return [
        _option("instance_count", int, 1, "--instance-count", "-n", help=count_help),
        _option("instance_type", str, kind.instance_type, "--instance-type", help="SageMaker instance type."),
        _option("container", Optional[str], None, "--container",
                help=f"SageMaker container type: {' or '.join(kind.containers)} (default: {kind.containers[0]}"
                + (f"; --spot implies {sm.TRAINING_JOB})." if kind.spot else ").")),
        _option("mode", Optional[str], None, "--mode", hidden=True, help="Old name of --container."),
        *spot,
        _option("max_run", str, _duration(kind.max_run), "--max-run",
                help="Maximum run time: seconds, or e.g. 90m, 26h, 2d."),
        _option("volume_gb", int, sm.DEFAULT_VOLUME_GB, "--volume-gb", help="EBS volume per instance, GB."),
        _option("role", Optional[str], None, "--role", help=f"IAM role ARN the job runs as "
                f"(default: ${sm.ROLE_ENV})."),
        _option("region", Optional[str], None, "--region", help="AWS region (default: AWS_REGION, "
                "AWS_DEFAULT_REGION or the profile's)."),
        _option("image", Optional[str], None, "--image", help="Container image URI (default: the official "
                f"SageMaker {kind.image.description} image of the region)."),
        _option("job_name", Optional[str], None, "--job-name", help="Job name (default: vitalflow-<UTC time>)."),
        _option("dry_run", bool, False, "--dry-run", help="Print the request JSON; upload and submit nothing."),
        _option("wait", bool, False, "--wait", help="Wait for the job to end, printing its status changes."),
        _option("poll", float, 30.0, "--poll", min=0.01, help="Seconds between status checks with --wait."),
    ]


def launch_command(kind: sm.JobKind) -> Callable[..., None]:
    """``vitalflow launch <kind>``: a function whose signature Typer reads, built from the registry."""
    params = _kind_options(kind) + _job_options(kind)
    names = [p.name for p in params]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise ValueError(f"job kind {kind.name!r}: options {clashes} clash with the job's own")

    def command(**values: Any) -> None:
        arguments = {arg.name: values.pop(arg.name.replace("-", "_")) for arg in kind.args}
        _launch(kind, arguments, **values)

    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__name__ = command.__qualname__ = kind.name.replace("-", "_")
    default = sm.variant(kind.containers[0], False)
    command.__doc__ = (f"Submit `vitalflow {kind.command}` as a SageMaker job: {kind.summary}. "
                       f"{'An' if default[0] in 'aeiou' else 'A'} {default} by default"
                       + (", a spot job with --spot." if kind.spot else "."))
    return command


def _launch(kind: sm.JobKind, arguments: dict[str, Any], *, instance_count: int, instance_type: str,
            container: Optional[str], mode: Optional[str], max_run: str, volume_gb: int, role: Optional[str],
            region: Optional[str], image: Optional[str], job_name: Optional[str], dry_run: bool, wait: bool,
            poll: float, spot: bool = False, max_wait: Optional[str] = None) -> None:
    if container and mode:
        raise LaunchError("--mode is the old name of --container: give one of them")
    container = container or mode
    options = sm.LaunchOptions(
        arguments=arguments, kind=kind.name, instance_count=instance_count, instance_type=instance_type,
        container=_CONTAINER_ALIASES.get(container, container), spot=spot, max_run=sm.parse_duration(max_run),
        max_wait=None if max_wait is None else sm.parse_duration(max_wait), volume_gb=volume_gb, role=role,
        region=region, image=image, **({"job_name": job_name} if job_name else {}))
    if dry_run:
        options = sm.resolve(options)
        _, request = sm.build_request(options)
        typer.echo(json.dumps(request, indent=2))
        err.print(f"dry run: job {options.job_name} ({options.variant}) would run with code from "
                  f"{options.code_uri}; nothing was uploaded or submitted", markup=False)
        return
    launched = sm.launch(options)
    region = launched.region
    out.print(f"submitted job {launched.name} ({launched.variant})", markup=False)
    event(f"submitted job {launched.name}", sagemaker_job=launched.name)
    out.print(f"  arn:     {launched.arn}", markup=False)
    out.print(f"  code:    {launched.code_uri}", markup=False)
    out.print(f"  console: {sm.console_url(launched.container, launched.name, region)}", markup=False)
    if wait:
        info = sm.wait(launched.name, launched.container, region, poll_s=poll, on_event=_event)
        _finish(info)
    else:
        out.print(f"follow it with: vitalflow jobs {launched.name}", markup=False)


class _DefaultKind:
    """Mixed into the ``launch`` group: ``vitalflow launch --input ...`` (an option where the kind
    goes, after the group's own flags such as ``--verbose``) means ``vitalflow launch preprocess --input ...``."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        flags = {o for p in self.get_params(ctx) if getattr(p, "is_flag", False) for o in p.opts + p.secondary_opts}
        i = 0
        while i < len(args) and args[i] in flags:
            i += 1
        if i < len(args) and args[i].startswith("-"):
            args = [*args[:i], sm.DEFAULT_KIND, *args[i:]]
        return super().parse_args(ctx, args)


def _launch_group() -> None:
    """The ``launch`` group's callback: nothing to do; ``register``'s wrapper may add options (``--verbose``)."""


def _event(line: str) -> None:
    out.print(f"{_dt.datetime.now():%H:%M:%S} {line}", markup=False)


def _finish(info) -> None:
    if info.status != "Completed":
        reason = f": {info.failure_reason}" if info.failure_reason else ""
        raise VitalflowError(f"job {info.name} ({info.variant}) {info.status}{reason}")
    out.print(f"job {info.name} ({info.variant}) Completed", markup=False)


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
    region = sm.resolve_region(region)
    if name is None:
        found = sm.list_jobs(region, limit=limit, name_contains=name_contains or None)
        if as_json:
            typer.echo(json.dumps([j.raw for j in found], indent=2, default=str))
            return
        table = Table(title=f"SageMaker jobs in {region}", title_justify="left")
        for col in ("name", "command", "container", "spot", "status", "created (UTC)", "instances"):
            table.add_column(col, no_wrap=col in ("name", "created (UTC)"))
        for j in found:
            status = j.status + (f" ({j.secondary_status})" if j.secondary_status and j.secondary_status != j.status
                                 else "")
            table.add_row(j.name, j.command or "-", j.container, "yes" if j.spot else "", status, _time(j.created),
                          _instances(j))
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
        _finish(sm.wait(info.name, info.container, region, poll_s=poll, on_event=_event))


def _describe_table(info: sm.JobInfo) -> None:
    raw = info.raw
    rows: list[tuple[str, str]] = [("name", info.name), ("command", info.command or "-"),
                                   ("container", info.container),
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
    if info.container == sm.TRAINING_JOB:
        rows.append(("spot", "yes" if info.spot else "no"))
        if "MaxWaitTimeInSeconds" in stopping:
            rows.append(("max wait", f"{stopping['MaxWaitTimeInSeconds']} s"))
        if raw.get("CheckpointConfig"):
            rows.append(("checkpoints", raw["CheckpointConfig"].get("S3Uri", "")))
        for key in ("TrainingTimeInSeconds", "BillableTimeInSeconds"):
            if key in raw:
                rows.append((key.replace("InSeconds", "").lower().replace("time", " time"), f"{raw[key]} s"))
        image = raw.get("AlgorithmSpecification", {}).get("TrainingImage", "-")
        code = raw.get("HyperParameters", {}).get("sagemaker_submit_directory", "-")
        channels = [(c.get("ChannelName", "?"), c.get("DataSource", {}).get("S3DataSource", {}).get("S3Uri", "?"))
                    for c in raw.get("InputDataConfig", [])]
    else:
        image = raw.get("AppSpecification", {}).get("ImageUri", "-")
        inputs = [(i.get("InputName", "?"), i["S3Input"]["S3Uri"]) for i in raw.get("ProcessingInputs", [])
                  if "S3Input" in i]
        code = ", ".join(uri for input_name, uri in inputs if input_name == sm.CODE_INPUT) or "-"
        channels = [(input_name, uri) for input_name, uri in inputs if input_name != sm.CODE_INPUT]
    rows += [("image", image), ("code", code)]
    if channels:
        rows.append(("channels", ", ".join(f"{channel}: {uri}" for channel, uri in channels)))
    rows.append(("command line", " ".join(info.command_line) or "-"))
    table = Table(show_header=False, title=f"job {info.name} ({info.variant})", title_justify="left")
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
    """Add ``launch`` (a subcommand per job kind registered now) and ``jobs`` to ``target``, each
    command wrapped by ``wrap`` (the CLI's error handler)."""
    host = target.info.cls if isinstance(target.info.cls, type) else TyperGroup  # keeps the app's help style
    launcher = typer.Typer(cls=type("LaunchGroup", (_DefaultKind, host), {}), no_args_is_help=True,
                           add_completion=False)
    launcher.callback()(wrap(_launch_group))
    for kind in sm.JOB_KINDS.values():
        launcher.command(kind.name)(wrap(launch_command(kind)))
    target.add_typer(launcher, name="launch", help=f"Run a vitalflow command as a SageMaker job: `vitalflow launch "
                     f"KIND OPTIONS`, KIND one of {', '.join(sm.JOB_KINDS)} (without KIND: {sm.DEFAULT_KIND}).")
    target.command("jobs")(wrap(jobs))


app = typer.Typer(name="vitalflow", add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Run vitalflow commands as SageMaker jobs.")
register(app)
