"""The layering of DESIGN.md holds, and the public API is exactly what we mean to export."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest

import vitalflow

ROOT = Path(__file__).resolve().parents[1]
IMPORTLINTER = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]

# What `import vitalflow` must not load: the preprocessing stack and its dependencies, and the
# frameworks and SDKs of the later layers.
HEAVY = [
    "fsspec", "s3fs", "isal", "numpy", "pydantic", "yaml",
    "vitalflow.run", "vitalflow.dataset", "vitalflow.store",
    "tensorflow", "keras", "fastapi", "boto3", "mlflow",
]


def test_layers_only_import_downward():
    """Every contract of pyproject.toml's [tool.importlinter] is kept.

    The layers themselves are listed there: a new top-level package (vitalflow.runtime took
    vitalflow.pool's place; train, predict, model, registry, serve, api come later) goes into the
    "layers point downward" contract's list, and no change is needed here.
    """
    contracts = IMPORTLINTER["contracts"]
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(contracts)} kept, 0 broken" in result.stdout, result.stdout
    for contract in contracts:
        assert f"{contract['name']} KEPT" in result.stdout, result.stdout


def test_contracts_hold_designs_commitments():
    """The contracts say what DESIGN.md promises (they are easier to weaken than to read)."""
    assert IMPORTLINTER.get("include_external_packages") is True  # else externals go unchecked
    layers = next(c for c in IMPORTLINTER["contracts"] if c["type"] == "layers")["layers"]
    flat = [name.strip(" ()") for layer in layers for name in layer.split("|")]
    assert flat.index("vitalflow.synth") < flat.index("vitalflow.vital")  # synth writes .vital
    forbidden = [c for c in IMPORTLINTER["contracts"] if c["type"] == "forbidden"]

    def forbids(sources: set[str], targets: set[str]) -> bool:
        return any(sources <= set(c["source_modules"]) and targets <= set(c["forbidden_modules"])
                   and not c.get("allow_indirect_imports") and not c.get("ignore_imports")
                   for c in forbidden)

    data = {f"vitalflow.{p}" for p in ("spec", "transform", "vital", "synth", "store", "dataset")}
    assert forbids(data, {"tensorflow", "keras", "fastapi", "boto3", "mlflow"})
    assert forbids({"vitalflow.transform", "vitalflow.spec"},
                   {"vitalflow.store", "vitalflow.run", "vitalflow.sagemaker"})


def test_transform_and_spec_do_no_io_imports():
    for package in ("transform", "spec"):
        for path in (ROOT / "src" / "vitalflow" / package).glob("*.py"):
            text = path.read_text()
            for banned in ("import os", "import vitaldb", "open(", "import logging", "print("):
                if package == "spec" and banned == "open(":  # the spec loader reads its YAML file
                    continue
                assert banned not in text, f"{path.name} uses {banned!r}"


SUBPACKAGES = {module.name for module in pkgutil.iter_modules(vitalflow.__path__)}


def test_exported_members():
    exported = {name for name in dir(vitalflow)
                if not name.startswith("_") and name not in SUBPACKAGES}
    assert exported == set(vitalflow.__all__) - {"__version__"}


_FRESH_IMPORT = """
import json, sys
import vitalflow
loaded = sorted(sys.modules)
listed = dir(vitalflow)
from vitalflow import *
names = sorted(vitalflow.__all__)
star = sorted(name for name in names if name in globals())
try:
    vitalflow.no_such_name
    missing = "resolved"
except AttributeError as error:
    missing = str(error)
print(json.dumps({"loaded": loaded, "listed": listed, "star": star, "missing": missing}))
"""


def test_import_vitalflow_is_light():
    """`import vitalflow` loads none of the heavy stack; the public names load on first use."""
    result = subprocess.run([sys.executable, "-c", _FRESH_IMPORT], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    fresh = json.loads(result.stdout)
    assert [name for name in HEAVY if name in fresh["loaded"]] == []
    assert [name for name in fresh["loaded"] if name.startswith("vitalflow.")] == []
    # before any name is used, dir() already lists exactly __all__ (no subpackage is loaded yet)
    listed = {name for name in fresh["listed"] if not name.startswith("_")}
    assert listed == set(vitalflow.__all__) - {"__version__"}
    assert fresh["star"] == sorted(vitalflow.__all__)  # `from vitalflow import *` resolves them all
    assert fresh["missing"] == "module 'vitalflow' has no attribute 'no_such_name'"


def test_public_names_are_the_objects_of_their_home_modules():
    from vitalflow.dataset.reference import Dataset, open_dataset
    from vitalflow.dataset.verify import VerifyReport, verify_output
    from vitalflow.errors import VitalflowError
    from vitalflow.model.predictor import Predictor, load_model
    from vitalflow.run.preprocess import RunResult, preprocess
    from vitalflow.spec import Config, Spec, load_config, load_spec
    from vitalflow.transform import Patient, denormalize, preprocess_case
    from vitalflow.transform.normalize import denormalize_targets

    homes = {
        "Config": Config, "Patient": Patient, "RunResult": RunResult, "Spec": Spec,
        "VerifyReport": VerifyReport, "VitalflowError": VitalflowError,
        "denormalize": denormalize, "denormalize_targets": denormalize_targets,
        "load_config": load_config, "load_spec": load_spec, "preprocess": preprocess,
        "preprocess_case": preprocess_case, "verify_output": verify_output,
        "Dataset": Dataset, "open_dataset": open_dataset, "Predictor": Predictor, "load_model": load_model,
    }
    assert set(homes) == set(vitalflow.__all__) - {"__version__"}
    for name, obj in homes.items():
        assert getattr(vitalflow, name) is obj, name
    assert vitalflow.__version__ == version("vitalflow")
    from vitalflow import __version__, preprocess as again  # from-imports use __getattr__ too

    assert again is preprocess and __version__ == version("vitalflow")


# -- one home per concept (issue 23) ----------------------------------------------------------------
SRC = Path(vitalflow.__file__).parent


def _definitions(pattern: str) -> list[str]:
    """``file:line`` of every line of src/vitalflow that matches ``pattern`` (a regular expression)."""
    import re

    found = []
    for path in sorted(SRC.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(pattern, line):
                found.append(f"{path.relative_to(SRC)}:{number}")
    return found


@pytest.mark.parametrize("concept, pattern, home", [
    ("the one-line error rule", r"^\s*def _?one_line\(", "errors.py"),
    ("pydantic errors as text", r"for \w+ in \w+\.errors\(\)|\.errors\(\)\[", "errors.py"),
    ("redaction", r"^def redact\(", "errors.py"),
    ("the cache directory", r"^\s*def cache_dir\(", "locations.py"),
    ("vitalflow's home directory", r"^\s*def home\(", "locations.py"),
    ("the missing-region error", r"no AWS region", "sagemaker/aws.py"),
    ("the model reference pattern", r"re\.compile\(.*\((\?:)?@", "registry/versions.py"),
    ("a card's writer", r"^class Tool\(", "dataset/record.py"),
    ("the open-or-refuse rule of an output", r"def _?open_(ledger|output)\(", "run/driver.py"),
])
def test_each_concept_is_defined_once(concept, pattern, home):
    """A second definition of these (each once had several, already drifting) fails here."""
    found = _definitions(pattern)
    assert len(found) == 1 and found[0].startswith(home + ":"), f"{concept}: {found}"


def test_the_app_reads_no_log_text():
    """The app's job runner reads the JSON logs' structured fields, not message words: it holds no
    regular expression (a second reader of log text would have to import ``re`` here)."""
    runner = (SRC / "api" / "runner.py").read_text()
    assert "import re\n" not in runner and "re.compile(" not in runner


def test_no_module_imports_another_modules_private_helpers_in_sagemaker():
    """The SageMaker modules share the AWS helpers through `vitalflow.sagemaker.aws`'s public names."""
    import re

    for path in (SRC / "sagemaker").glob("*.py"):
        for line in path.read_text().splitlines():
            assert not re.match(r"\s*from vitalflow\.sagemaker\.\w+ import .*\b_[a-z]", line), f"{path.name}: {line}"
