"""Where a run executes: locally, or in one of SageMaker's two container types.

The kinds name the SageMaker job type whose container this is, not what runs in it (a vitalflow
job kind such as ``preprocess`` may run in either, see :mod:`vitalflow.sagemaker.launch`):

- ``"processing-job"``: a container of a SageMaker processing job, told about its cluster in
  ``/opt/ml/config/resourceconfig.json`` (``current_host``, ``hosts``);
- ``"training-job"``: a container of a SageMaker training job (the only type with managed spot):
  ``/opt/ml/input/config/resourceconfig.json``, the hyperparameters in
  ``/opt/ml/input/config/hyperparameters.json`` (every value a string), the ``SM_*`` variables
  when the framework toolkit sets them, and ``/opt/ml/checkpoints``;
- ``"local"``: neither.

``VITALFLOW_SAGEMAKER_BASE`` moves ``/opt/ml`` elsewhere (to run a fake job environment).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from vitalflow.errors import VitalflowError

BASE_ENV = "VITALFLOW_SAGEMAKER_BASE"
LOCAL, PROCESSING_JOB, TRAINING_JOB = "local", "processing-job", "training-job"


@dataclass(frozen=True)
class JobEnvironment:
    kind: str  # LOCAL, PROCESSING_JOB or TRAINING_JOB
    current_host: str = "local"
    hosts: tuple[str, ...] = ("local",)
    checkpoint_dir: Path | None = None
    hyperparameters: dict[str, str] = field(default_factory=dict)

    @property
    def description(self) -> str:
        """``"local"``, ``"SageMaker processing-job container"`` or ``"SageMaker training-job container"``."""
        return self.kind if self.kind == LOCAL else f"SageMaker {self.kind} container"

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
    training_job = base / "input" / "config" / "resourceconfig.json"
    processing_job = base / "config" / "resourceconfig.json"
    if training_job.exists():
        current, hosts = _resource_config(training_job)
        if "SM_CURRENT_HOST" in os.environ and "SM_HOSTS" in os.environ:  # the toolkit's view wins
            current, hosts = os.environ["SM_CURRENT_HOST"], tuple(json.loads(os.environ["SM_HOSTS"]))
        hp_path = base / "input" / "config" / "hyperparameters.json"
        hyperparameters = json.loads(hp_path.read_text()) if hp_path.exists() else {}
        return JobEnvironment(TRAINING_JOB, current, hosts, base / "checkpoints",
                              {k: str(v) for k, v in hyperparameters.items()})
    if processing_job.exists():
        current, hosts = _resource_config(processing_job)
        return JobEnvironment(PROCESSING_JOB, current, hosts)
    return JobEnvironment(LOCAL)
