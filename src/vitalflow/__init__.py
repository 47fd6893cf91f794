"""vitalflow: VitalDB ``.vital`` recordings to windowed, normalized TFRecord datasets.

The public API is what ``__all__`` lists; everything else may change without notice.
"""

from importlib.metadata import version as _version

__version__ = _version("vitalflow")

from vitalflow.dataset.verify import VerifyReport, verify_output  # noqa: E402
from vitalflow.errors import VitalflowError  # noqa: E402
from vitalflow.run.preprocess import RunResult, preprocess  # noqa: E402
from vitalflow.spec import Config, Spec, load_config, load_spec  # noqa: E402
from vitalflow.transform import Patient, denormalize, preprocess_case  # noqa: E402
from vitalflow.transform.normalize import denormalize_targets  # noqa: E402

__all__ = [
    "Config",
    "Patient",
    "RunResult",
    "Spec",
    "VerifyReport",
    "VitalflowError",
    "__version__",
    "denormalize",
    "denormalize_targets",
    "load_config",
    "load_spec",
    "preprocess",
    "preprocess_case",
    "verify_output",
]
