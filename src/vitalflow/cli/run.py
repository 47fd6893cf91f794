"""What the per-case commands (``preprocess``, ``predict``) share on the command line, in one
place: their common options, logging (text or JSON lines), the progress reporter and the command
that resumes a stopped run. The run itself is `vitalflow.run.driver`'s.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import sys
from typing import Optional

import typer
from rich.console import Console

err = Console(stderr=True, highlight=False, soft_wrap=True)
state = {"verbose": False, "log_format": "text"}  # --verbose (before or after the subcommand); the log format
LOG_FORMAT_ENV = "VITALFLOW_LOG_FORMAT"  # every command's log format when it has no --log-format (the app sets json)
#: The structured fields a log record may carry, written as they are in JSON lines: a per-case
#: run's progress (`vitalflow.runtime.progress`), a finished training epoch (`vitalflow.train.fit`),
#: a submitted SageMaker job (``vitalflow launch``). The app reads these, never the message text.
EVENT_FIELDS = ("progress", "epoch", "sagemaker_job")


class LogFormat(str, enum.Enum):
    text = "text"
    json = "json"


# -- the options every per-case command takes (one declaration each) ------------------------------
INPUT = typer.Option(..., "--input", "-i", help="Folder or s3:// prefix of <caseid>.vital files.")
CLINICAL = typer.Option(..., "--clinical", "-c", help="VitalDB clinical table (CSV; path or s3://).")
CASES: Optional[str] = typer.Option(None, "--cases", help='Cases to run, e.g. "1-10,17,0022" (default: all files).')
WORKERS = typer.Option(os.cpu_count() or 1, "--workers", "-w", min=1, help="Worker processes.")
COMMIT_EVERY = typer.Option(16, "--commit-every", min=1, help="Cases per commit (their files + one ledger record).")
RETRY_FAILED = typer.Option(False, "--retry-failed", help="On resume, run failed cases again.")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress output.")
LOG_FORMAT = typer.Option(LogFormat.text, "--log-format", case_sensitive=False, envvar=LOG_FORMAT_ENV,
                          help="text, or json (one JSON object per log line).")
PROGRESS_INTERVAL = typer.Option(30.0, "--progress-interval", min=0.1,
                                 help="Seconds between progress lines when not on a terminal.")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data = {"time": self.formatTime(record), "level": record.levelname, "logger": record.name,
                "message": record.getMessage()}
        data.update({name: getattr(record, name) for name in EVENT_FIELDS if hasattr(record, name)})
        return json.dumps(data)


def log_format_of_environment() -> str:
    """``$VITALFLOW_LOG_FORMAT`` (text or json; anything else is text)."""
    value = os.environ.get(LOG_FORMAT_ENV, "").strip().lower()
    return value if value in ("text", "json") else "text"


def event(message: str, **fields) -> None:
    """A structured record (`EVENT_FIELDS`) for whoever reads JSON logs; nothing in text logs, where
    the command's own output says it already."""
    if state["log_format"] == "json":
        logging.getLogger("vitalflow.progress").info(message, extra=fields)


def configure_logging(log_format: str) -> None:
    state["log_format"] = log_format
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if log_format == "json" else logging.Formatter("%(levelname)s %(message)s"))
    logging.basicConfig(level=logging.INFO if state["verbose"] else logging.WARNING, handlers=[handler], force=True)
    logging.getLogger("vitalflow.progress").setLevel(logging.INFO)


def start_run(log_format: LogFormat | str):
    """Configure logging for ``log_format`` and find where the run is (`vitalflow.sagemaker.env`:
    this machine, or one host of a SageMaker job, said in one warning line): (format, job)."""
    from vitalflow.sagemaker.env import detect

    log_format = LogFormat(log_format).value
    configure_logging(log_format)
    job = detect()
    if job.kind != "local":
        logging.getLogger("vitalflow").warning(
            "%s: host %s is %d of %d", job.description, job.current_host, job.host_index + 1, job.host_count)
    return log_format, job


def resume_args(ctx: typer.Context) -> list[str]:
    """The command that resumes this run: every option given that differs from its default, except
    ``--overwrite`` (resuming must not delete), and ``--verbose`` if it was given before or after."""
    args = ["vitalflow", ctx.info_name or "preprocess"]
    for param in ctx.command.params:
        name, value = param.name, ctx.params.get(param.name)
        if name in ("overwrite", "verbose") or not getattr(param, "opts", None) or value is None:
            continue
        if not param.required and value == param.default:
            continue
        flag = max(param.opts, key=len)  # the long name
        if getattr(param, "is_flag", False):
            if value:
                args.append(flag)
            elif param.secondary_opts:
                args.append(max(param.secondary_opts, key=len))
        else:
            args += [flag, str(value.value if isinstance(value, enum.Enum) else value)]
    if state["verbose"]:
        args.append("--verbose")
    return args


def progress_reporter(quiet: bool, log_format: str, interval: float):
    """No progress (``--quiet``), a bar on a terminal, else a log line every ``interval`` seconds."""
    from vitalflow.runtime.progress import BarReporter, LogReporter, Reporter

    if quiet:
        return Reporter()
    if log_format == "text" and sys.stderr.isatty():
        return BarReporter(err)
    return LogReporter(interval)
