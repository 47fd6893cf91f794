"""Where vitalflow keeps things on this machine: the one home of both directories and their
environment variables.

    $VITALFLOW_HOME   (default ~/.vitalflow)        the embedded MLflow store (`vitalflow.registry.tracking`)
    $VITALFLOW_CACHE  (default ~/.cache/vitalflow)  datasets read from S3 (``datasets/``, ``parsed/``:
                                                    `vitalflow.model.inputs`) and registered models
                                                    downloaded for use (``models/``: `vitalflow.registry.resolve`)

Both expand ``~`` (a value from a shell profile or a systemd unit often holds one literally).

>>> import os
>>> os.environ["VITALFLOW_CACHE"] = "~/scratch/vf"
>>> str(cache_dir()) == os.path.expanduser("~/scratch/vf")
True
>>> del os.environ["VITALFLOW_CACHE"]
>>> cache_dir().parts[-2:]
('.cache', 'vitalflow')
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "VITALFLOW_HOME"
CACHE_ENV = "VITALFLOW_CACHE"


def home() -> Path:
    """``$VITALFLOW_HOME`` or ``~/.vitalflow``."""
    return Path(os.environ.get(HOME_ENV) or Path.home() / ".vitalflow").expanduser()


def cache_dir() -> Path:
    """``$VITALFLOW_CACHE`` or ``~/.cache/vitalflow``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "vitalflow").expanduser()
