"""Where a run executes: locally, in a SageMaker processing job, or in a SageMaker training job.

SageMaker tells a container about its cluster in files under ``/opt/ml``:

- processing jobs: ``/opt/ml/config/resourceconfig.json`` (``current_host``, ``hosts``);
- training jobs (needed for managed spot): ``/opt/ml/input/config/resourceconfig.json``, the
  hyperparameters in ``/opt/ml/input/config/hyperparameters.json`` (every value a string), the
  ``SM_*`` variables when the framework toolkit sets them, and ``/opt/ml/checkpoints``.

``VITALFLOW_SAGEMAKER_BASE`` moves ``/opt/ml`` elsewhere (to run a fake job environment).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from vitalflow.errors import VitalflowError

BASE_ENV = "VITALFLOW_SAGEMAKER_BASE"


@dataclass(frozen=True)
class JobEnvironment:
    kind: str  # "local", "processing" or "training"
    current_host: str = "local"
    hosts: tuple[str, ...] = ("local",)
    checkpoint_dir: Path | None = None
    hyperparameters: dict[str, str] = field(default_factory=dict)

    @property
    def host_index(self) -> int:
        return sorted(self.hosts).index(self.current_host)

    @property
    def host_count(self) -> int:
        return len(self.hosts)


def _resource_config(path: Path) -> tuple[str, tuple[str, ...]]:
    try:
        config = json.loads(path.read_text())
        current, hosts = config["current_host"], tuple(config["hosts"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise VitalflowError(f"{path}: unreadable SageMaker resource config ({exc})") from exc
    if current not in hosts:
        raise VitalflowError(f"{path}: current_host {current!r} is not among hosts {list(hosts)}")
    return current, hosts


def detect(base: str | os.PathLike | None = None) -> JobEnvironment:
    """The environment this process runs in (``local`` when no SageMaker files are present)."""
    base = Path(base or os.environ.get(BASE_ENV, "/opt/ml"))
    training = base / "input" / "config" / "resourceconfig.json"
    processing = base / "config" / "resourceconfig.json"
    if training.exists():
        current, hosts = _resource_config(training)
        if "SM_CURRENT_HOST" in os.environ and "SM_HOSTS" in os.environ:  # the toolkit's view wins
            current, hosts = os.environ["SM_CURRENT_HOST"], tuple(json.loads(os.environ["SM_HOSTS"]))
        hp_path = base / "input" / "config" / "hyperparameters.json"
        hyperparameters = json.loads(hp_path.read_text()) if hp_path.exists() else {}
        return JobEnvironment("training", current, hosts, base / "checkpoints",
                              {k: str(v) for k, v in hyperparameters.items()})
    if processing.exists():
        current, hosts = _resource_config(processing)
        return JobEnvironment("processing", current, hosts)
    return JobEnvironment("local")
