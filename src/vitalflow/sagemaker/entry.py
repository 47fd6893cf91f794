#!/usr/bin/env python3
"""The script a SageMaker job runs: install vitalflow from the shipped source, then run the job's
vitalflow command line (``vitalflow preprocess --input ...``). Standard library only, because it
runs before vitalflow is installed; vitalflow itself imports it only for the hyperparameter format
(:func:`command_from_hyperparameters`), which the launcher writes and this script reads.

Where things are (see ``vitalflow.sagemaker.launch``):

- processing-job container: this file and ``source.tar.gz`` were downloaded to
  ``/opt/ml/processing/input/code``; the command line (``preprocess --input ...``) is this
  script's argv (the job's ``ContainerArguments``).
- training-job container (script mode): the framework toolkit extracted ``source.tar.gz`` into
  ``/opt/ml/code``, so this file sits next to ``pyproject.toml`` and ``src/``; the command line is
  in ``/opt/ml/input/config/hyperparameters.json`` (every value a string): the vitalflow command
  is ``vitalflow_command``, every other key not starting with ``sagemaker_`` is an option
  ``--<key> <value>``. The toolkit also passes them as argv; the file is what counts.

Install: nothing when the installed vitalflow has the shipped version (a toolkit or image already
installed it); otherwise ``python -m pip install --no-cache-dir SRC[aws]`` (a regular install, which
copies what it needs: a tarball extracted into a temporary directory is removed right after, as it
is when nothing was installed). Then this process becomes ``python -m vitalflow <command> ...``
(exec), so SageMaker's SIGTERM reaches vitalflow directly and vitalflow's exit code (0, 3, 4, 75,
...) is the job's.

``VITALFLOW_SAGEMAKER_BASE`` moves ``/opt/ml`` elsewhere, as for ``vitalflow.sagemaker.env``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

#: The hyperparameter naming the vitalflow command (``preprocess``); the others are its options.
COMMAND_KEY = "vitalflow_command"
TARBALL = "source.tar.gz"
EXTRAS = "aws"


def log(message: str) -> None:
    print(f"vitalflow-entry: {message}", file=sys.stderr, flush=True)


def sagemaker_base() -> Path:
    return Path(os.environ.get("VITALFLOW_SAGEMAKER_BASE", "/opt/ml"))


def hyperparameters_file() -> Path:
    return sagemaker_base() / "input" / "config" / "hyperparameters.json"


def _string(value: object) -> str:
    """A hyperparameter as a string; a JSON-quoted one (as the SageMaker SDK writes them) unquoted."""
    if isinstance(value, str):
        if len(value) >= 2 and value[0] == value[-1] == '"':
            try:
                decoded = json.loads(value)
            except ValueError:
                return value
            return decoded if isinstance(decoded, str) else value
        return value
    return json.dumps(value)


def command_from_hyperparameters(hyperparameters: dict) -> list[str]:
    """The command line ``[command, --key, value, ...]`` of a training-job container's
    hyperparameters: ``vitalflow_command``, then every key not starting with ``sagemaker_`` as an
    option, in the file's order (without ``vitalflow_command``, only the options).

    >>> command_from_hyperparameters({"vitalflow_command": "preprocess", "output": "s3://b/o",
    ...                               "workers": "4", "sagemaker_program": "entry.py"})
    ['preprocess', '--output', 's3://b/o', '--workers', '4']
    """
    args = _string(hyperparameters[COMMAND_KEY]).split() if hyperparameters.get(COMMAND_KEY) else []
    for key, value in hyperparameters.items():
        if key != COMMAND_KEY and not key.startswith("sagemaker_") and value is not None:
            args += [f"--{key}", _string(value)]
    return args


def command_line(argv: list[str]) -> list[str]:
    """The vitalflow command line: from the hyperparameters in a training-job container, else argv
    (a processing-job container's arguments). Exits when it names no command."""
    path = hyperparameters_file()
    if path.is_file():
        args = command_from_hyperparameters(json.loads(path.read_text(encoding="utf-8")))
    else:
        args = list(argv)
    if not args or args[0].startswith("-"):
        raise SystemExit(f"vitalflow-entry: no vitalflow command in {path if path.is_file() else 'the arguments'} "
                         f"(got {args[:4]})")
    return args


def _extract(tarball: Path) -> Path:
    dest = Path(tempfile.mkdtemp(prefix="vitalflow-src-"))
    with tarfile.open(tarball) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:  # Python without extraction filters: refuse absolute and parent paths
            for member in tar.getmembers():
                if member.name.startswith("/") or ".." in Path(member.name).parts:
                    raise SystemExit(f"vitalflow-entry: unsafe path {member.name!r} in {tarball}")
            tar.extractall(dest)
    return dest


def source_dir(here: Path) -> Path:
    """The vitalflow source tree: this file's directory (a training-job container) or the tarball
    beside it, extracted (a processing-job container)."""
    if (here / "pyproject.toml").is_file():
        return here
    if (here / TARBALL).is_file():
        return _extract(here / TARBALL)
    raise SystemExit(f"vitalflow-entry: neither pyproject.toml nor {TARBALL} next to {here / 'entry.py'}")


def shipped_version(src: Path) -> str | None:
    match = re.search(r'(?m)^version\s*=\s*"([^"]+)"', (src / "pyproject.toml").read_text(encoding="utf-8"))
    return match.group(1) if match else None


def installed_version() -> str | None:
    """The installed vitalflow's version, asked of a fresh interpreter (None if not installed)."""
    probe = "import importlib.metadata as m; print(m.version('vitalflow'))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd="/")
    return result.stdout.strip() if result.returncode == 0 else None


def needs_install(src: Path, installed: str | None) -> bool:
    """True unless ``installed`` is the version of the source tree ``src``."""
    return installed is None or installed != shipped_version(src)


def install(src: Path) -> None:
    """``pip install SRC[aws]``: the ``aws`` extra brings what reading and writing S3 needs."""
    command = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check",
               f"{src}[{EXTRAS}]"]
    log("installing: " + " ".join(command))
    env = dict(os.environ, PIP_ROOT_USER_ACTION="ignore", PIP_BREAK_SYSTEM_PACKAGES="1")
    code = subprocess.call(command, env=env)
    if code:
        raise SystemExit(f"vitalflow-entry: pip install of {src} failed with exit code {code}")


def prepare(here: Path) -> None:
    """Install vitalflow from the source shipped next to ``entry.py`` unless it is installed already.
    A source tree extracted from the tarball is removed afterwards, also when the install fails:
    ``pip install`` (not editable) has copied it, and ``exec`` would skip any cleanup at exit."""
    src = source_dir(here)
    try:
        installed = installed_version()
        if needs_install(src, installed):
            install(src)
        else:
            log(f"vitalflow {installed} is installed already")
    finally:
        if src != here:
            shutil.rmtree(src, ignore_errors=True)


def main(argv: list[str]) -> None:
    here = Path(__file__).resolve().parent
    args = command_line(argv)
    prepare(here)
    command = [sys.executable, "-m", "vitalflow", *args]
    log("running: " + " ".join(command))
    os.execv(sys.executable, command)


if __name__ == "__main__":
    main(sys.argv[1:])
