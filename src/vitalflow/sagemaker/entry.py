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
  in ``/opt/ml/input/config/hyperparameters.json`` (every value a string): ``vitalflow_command``
  is the vitalflow command and its positional arguments, shell-quoted (``train
  /opt/ml/input/data/dataset``); every key starting with neither ``vitalflow_`` nor
  ``sagemaker_`` is an option ``--<key> <value>`` (option names have no underscores);
  ``vitalflow_inline_<option>`` is the content of a file (the train config's JSON), which this
  script writes to ``/opt/ml/input/config/vitalflow-<option>.json`` and passes as ``--<option>
  <that file>`` after the other options. The toolkit also passes the hyperparameters as argv;
  the file is what counts.

Install: nothing when the installed vitalflow has the shipped version (a toolkit or image already
installed it); otherwise a regular pip install (it copies what it needs: a tarball extracted into a
temporary directory is removed right after, as it is when nothing was installed) with the extras
the launcher put in ``VITALFLOW_PIP_EXTRAS`` (``aws``; ``aws,train`` for ``vitalflow train``):

- no TensorFlow installed (the scikit-learn image of ``preprocess``): ``python -m pip install
  --no-cache-dir SRC[<extras>]``, one resolution;
- a TensorFlow image: the ``train`` extra asks for ``tensorflow-cpu``, a distribution other than
  the image's own (``tensorflow`` or ``tensorflow-cpu`` built by AWS), and pip would install it
  on top, a second TensorFlow in the same ``tensorflow/`` directory. So vitalflow is installed
  first without dependencies (for its metadata), then ``pip install SRC <the extras'
  requirements>`` with every TensorFlow requirement renamed to the installed distribution, its
  version bounds kept (:func:`requirements_for`): the image's TensorFlow satisfies
  ``>=2.16`` and stays; one that did not would be upgraded in place, never doubled.

Then this process becomes ``python -m vitalflow <command> ...`` (exec), so SageMaker's SIGTERM
reaches vitalflow directly and vitalflow's exit code (0, 3, 4, 75, ...) is the job's.

``VITALFLOW_SAGEMAKER_BASE`` moves ``/opt/ml`` elsewhere, as for ``vitalflow.sagemaker.env``: the
command's arguments under ``/opt/ml`` (channels, ``/opt/ml/model``, ``/opt/ml/checkpoints``) and
the inline files move with it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

#: The hyperparameter naming the vitalflow command and its positional arguments (``preprocess``).
COMMAND_KEY = "vitalflow_command"
#: ``vitalflow_inline_<option>``: the content of the file passed as ``--<option>``.
INLINE_PREFIX = "vitalflow_inline_"
#: Hyperparameter keys that are not options: the launcher's and the SageMaker toolkit's.
RESERVED_PREFIXES = ("vitalflow_", "sagemaker_")
TARBALL = "source.tar.gz"
#: The job's environment variable naming the pip extras to install (comma-separated).
EXTRAS_ENV = "VITALFLOW_PIP_EXTRAS"
DEFAULT_EXTRAS = "aws"
SAGEMAKER_BASE = "/opt/ml"
#: Distributions that install the ``tensorflow`` package: one satisfies a requirement on any other.
TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel")


def log(message: str) -> None:
    print(f"vitalflow-entry: {message}", file=sys.stderr, flush=True)


def sagemaker_base() -> Path:
    return Path(os.environ.get("VITALFLOW_SAGEMAKER_BASE", SAGEMAKER_BASE))


def inline_file(option: str, base: str | os.PathLike = SAGEMAKER_BASE) -> Path:
    """Where the content of ``vitalflow_inline_<option>`` is written: JSON, which YAML readers read."""
    return Path(base) / "input" / "config" / f"vitalflow-{option}.json"


def rebase(arg: str, base: str | os.PathLike = SAGEMAKER_BASE) -> str:
    """``arg`` with a leading ``/opt/ml`` replaced by ``base``.

    >>> rebase("/opt/ml/model", "/tmp/ml"), rebase("/opt/ml", "/tmp/ml"), rebase("/opt/mlx", "/tmp/ml")
    ('/tmp/ml/model', '/tmp/ml', '/opt/mlx')
    """
    base = str(base)
    if base == SAGEMAKER_BASE or not (arg == SAGEMAKER_BASE or arg.startswith(SAGEMAKER_BASE + "/")):
        return arg
    return base.rstrip("/") + arg[len(SAGEMAKER_BASE):]


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


def command_from_hyperparameters(hyperparameters: dict, base: str | os.PathLike = SAGEMAKER_BASE) -> list[str]:
    """The command line ``[command, positional..., --key, value, ...]`` of a training-job
    container's hyperparameters: ``vitalflow_command`` (shell-quoted), then every key starting
    with neither ``vitalflow_`` nor ``sagemaker_`` as an option, in the file's order, then
    ``--<option> <file>`` for every ``vitalflow_inline_<option>`` (without ``vitalflow_command``,
    only the options). Arguments under ``/opt/ml`` are moved to ``base`` (:func:`rebase`).

    >>> command_from_hyperparameters({"vitalflow_command": "preprocess", "output": "s3://b/o",
    ...                               "workers": "4", "sagemaker_program": "entry.py"})
    ['preprocess', '--output', 's3://b/o', '--workers', '4']
    >>> " ".join(command_from_hyperparameters({"vitalflow_command": "train /opt/ml/input/data/dataset",
    ...     "vitalflow_inline_config": "{}", "output": "/opt/ml/model"}, base="/tmp/ml"))
    'train /tmp/ml/input/data/dataset --output /tmp/ml/model --config /tmp/ml/input/config/vitalflow-config.json'
    """
    args = shlex.split(_string(hyperparameters[COMMAND_KEY])) if hyperparameters.get(COMMAND_KEY) else []
    inline = []
    for key, value in hyperparameters.items():
        if value is None:
            continue
        if key.startswith(INLINE_PREFIX):
            inline += [f"--{key[len(INLINE_PREFIX):]}", str(inline_file(key[len(INLINE_PREFIX):], SAGEMAKER_BASE))]
        elif not key.startswith(RESERVED_PREFIXES):
            args += [f"--{key}", _string(value)]
    return [rebase(arg, base) for arg in args + inline]


def write_inline_files(hyperparameters: dict, base: str | os.PathLike) -> list[Path]:
    """Write every ``vitalflow_inline_<option>`` to :func:`inline_file` under ``base``; returns the files."""
    written = []
    for key, value in hyperparameters.items():
        if key.startswith(INLINE_PREFIX) and value is not None:
            path = inline_file(key[len(INLINE_PREFIX):], base)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(value if isinstance(value, str) else json.dumps(value), encoding="utf-8")
            written.append(path)
    return written


def _hyperparameters() -> dict | None:
    path = hyperparameters_file()
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def command_line(argv: list[str]) -> list[str]:
    """The vitalflow command line: from the hyperparameters in a training-job container, else argv
    (a processing-job container's arguments); arguments under ``/opt/ml`` moved to the base.
    Exits when it names no command."""
    hyperparameters = _hyperparameters()
    base = sagemaker_base()
    if hyperparameters is not None:
        args = command_from_hyperparameters(hyperparameters, base)
    else:
        args = [rebase(arg, base) for arg in argv]
    if not args or args[0].startswith("-"):
        where = hyperparameters_file() if hyperparameters is not None else "the arguments"
        raise SystemExit(f"vitalflow-entry: no vitalflow command in {where} (got {args[:4]})")
    return args


def job_command(argv: list[str]) -> list[str]:
    """What the job runs: ``python -m vitalflow <command line>`` (:func:`command_line`)."""
    return [sys.executable, "-m", "vitalflow", *command_line(argv)]


def extras() -> tuple[str, ...]:
    """The pip extras to install, from ``$VITALFLOW_PIP_EXTRAS`` (default ``aws``)."""
    names = [e.strip() for e in os.environ.get(EXTRAS_ENV, DEFAULT_EXTRAS).split(",") if e.strip()]
    return tuple(names) or (DEFAULT_EXTRAS,)


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


def _probe(code: str) -> str | None:
    """What ``code`` prints in a fresh interpreter (None when it fails): the installed state now."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    return result.stdout.strip() if result.returncode == 0 else None


def installed_tensorflow() -> str | None:
    """The installed distribution of :data:`TENSORFLOW_DISTRIBUTIONS` (``tensorflow``, ...), or None."""
    found = _probe("import importlib.metadata as m\n"
                   f"for name in {TENSORFLOW_DISTRIBUTIONS!r}:\n"
                   "    try:\n        m.version(name)\n    except m.PackageNotFoundError:\n        continue\n"
                   "    print(name)\n    break\n")
    return found or None


def installed_requirements() -> list[str]:
    """The installed vitalflow's ``Requires-Dist`` lines (with their markers)."""
    found = _probe("import importlib.metadata as m, json; print(json.dumps(m.requires('vitalflow') or []))")
    return json.loads(found) if found else []


_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)(.*)")
_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements_for(requires: list[str], wanted: tuple[str, ...], tensorflow: str | None) -> list[str]:
    """The requirements of the extras ``wanted`` among ``requires`` (``Requires-Dist`` lines), their
    ``extra == ...`` clause dropped, and a TensorFlow requirement renamed to the installed
    distribution ``tensorflow`` (its version bounds kept; pip then upgrades that distribution in
    place if it is too old, and otherwise leaves it).

    >>> requires = ['numpy>=1.24', 'boto3>=1.43; extra == "aws"', 'tensorflow-cpu>=2.16; extra == "train"',
    ...             'xgboost-cpu>=2; (platform_system == "Linux") and extra == "train"', 'pytest; extra == "test"']
    >>> requirements_for(requires, ("aws", "train"), "tensorflow")
    ['boto3>=1.43', 'tensorflow>=2.16', 'xgboost-cpu>=2; (platform_system == "Linux")']
    >>> requirements_for(requires, ("train",), None)[0]
    'tensorflow-cpu>=2.16'
    """
    found = []
    for line in requires:
        requirement, _, marker = line.partition(";")
        named = _EXTRA.findall(marker)
        if not named or not set(named) & set(wanted):
            continue
        marker = re.sub(r"^\s*and\s+|\s+and\s*$", "", _EXTRA.sub("", marker).strip()).strip()
        match = _REQUIREMENT.fullmatch(requirement)
        name, rest = match.group(1), match.group(2).strip()
        if tensorflow and _normalized(name) in TENSORFLOW_DISTRIBUTIONS:
            name = tensorflow
        found.append(f"{name}{rest}" + (f"; {marker}" if marker else ""))
    return found


def _pip(*args: str) -> None:
    command = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check", *args]
    log("installing: " + " ".join(command))
    env = dict(os.environ, PIP_ROOT_USER_ACTION="ignore", PIP_BREAK_SYSTEM_PACKAGES="1")
    code = subprocess.call(command, env=env)
    if code:
        raise SystemExit(f"vitalflow-entry: pip install {' '.join(args)} failed with exit code {code}")


def install(src: Path, wanted: tuple[str, ...] = (DEFAULT_EXTRAS,)) -> None:
    """Install vitalflow from ``src`` with the extras ``wanted`` (``aws`` brings what reading and
    writing S3 needs; ``train`` TensorFlow, XGBoost, matplotlib): ``pip install SRC[extras]``, or
    where TensorFlow is installed already, ``pip install --no-deps SRC`` then ``pip install SRC
    <the extras' requirements, TensorFlow's renamed to the installed distribution>`` (module
    docstring)."""
    tensorflow = installed_tensorflow()
    if tensorflow is None:
        _pip(f"{src}[{','.join(wanted)}]")
        return
    log(f"{tensorflow} is installed: a TensorFlow requirement means that distribution")
    _pip("--no-deps", str(src))
    _pip(str(src), *requirements_for(installed_requirements(), wanted, tensorflow))


def prepare(here: Path) -> None:
    """Install vitalflow from the source shipped next to ``entry.py`` unless it is installed already.
    A source tree extracted from the tarball is removed afterwards, also when the install fails:
    ``pip install`` (not editable) has copied it, and ``exec`` would skip any cleanup at exit."""
    src = source_dir(here)
    try:
        installed = installed_version()
        if needs_install(src, installed):
            install(src, extras())
        else:
            log(f"vitalflow {installed} is installed already")
    finally:
        if src != here:
            shutil.rmtree(src, ignore_errors=True)


def main(argv: list[str]) -> None:
    here = Path(__file__).resolve().parent
    command = job_command(argv)
    prepare(here)
    hyperparameters = _hyperparameters()
    for path in write_inline_files(hyperparameters or {}, sagemaker_base()):
        log(f"wrote {path}")
    log("running: " + " ".join(command))
    os.execv(sys.executable, command)


if __name__ == "__main__":
    main(sys.argv[1:])
