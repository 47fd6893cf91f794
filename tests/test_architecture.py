"""The layering of DESIGN.md holds, and the public API is exactly what we mean to export."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import vitalflow

ROOT = Path(__file__).resolve().parents[1]


def test_layers_only_import_downward():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_transform_and_spec_do_no_io_imports():
    for package in ("transform", "spec"):
        for path in (ROOT / "src" / "vitalflow" / package).glob("*.py"):
            text = path.read_text()
            for banned in ("import os", "import vitaldb", "open(", "import logging", "print("):
                if package == "spec" and banned == "open(":  # the spec loader reads its YAML file
                    continue
                assert banned not in text, f"{path.name} uses {banned!r}"


def test_exported_members():
    exported = {name for name in dir(vitalflow) if not name.startswith("_") and name not in
                {"cli", "dataset", "errors", "launch_cli", "pool", "run", "sagemaker", "spec", "store", "transform", "vital"}}
    assert exported == set(vitalflow.__all__) - {"__version__"}
