"""vitalflow: VitalDB ``.vital`` recordings to windowed, normalized TFRecord datasets.

The public API is what ``__all__`` lists; everything else may change without notice.

``import vitalflow`` is light: it imports none of numpy, pydantic, fsspec or the preprocessing
stack. Each public name is imported from its home module the first time it is used (PEP 562
module ``__getattr__``), then kept in the module's namespace.
"""

import typing as _typing

__all__ = [
    "Config",
    "Dataset",
    "Patient",
    "Predictor",
    "RunResult",
    "Spec",
    "VerifyReport",
    "VitalflowError",
    "__version__",
    "denormalize",
    "denormalize_targets",
    "load_config",
    "load_model",
    "load_spec",
    "open_dataset",
    "preprocess",
    "preprocess_case",
    "verify_output",
]

# Public name -> the module it is imported from. Every name of __all__ but __version__.
_HOMES = {
    "Config": "vitalflow.spec",
    "Dataset": "vitalflow.dataset.reference",
    "Patient": "vitalflow.transform",
    "Predictor": "vitalflow.model.predictor",
    "RunResult": "vitalflow.run.preprocess",
    "Spec": "vitalflow.spec",
    "VerifyReport": "vitalflow.dataset.verify",
    "VitalflowError": "vitalflow.errors",
    "denormalize": "vitalflow.transform",
    "denormalize_targets": "vitalflow.transform.normalize",
    "load_config": "vitalflow.spec",
    "load_model": "vitalflow.model.predictor",
    "load_spec": "vitalflow.spec",
    "open_dataset": "vitalflow.dataset.reference",
    "preprocess": "vitalflow.run.preprocess",
    "preprocess_case": "vitalflow.transform",
    "verify_output": "vitalflow.dataset.verify",
}

if _typing.TYPE_CHECKING:  # what type checkers and IDEs see; never run
    from vitalflow.dataset.reference import Dataset, open_dataset
    from vitalflow.dataset.verify import VerifyReport, verify_output
    from vitalflow.errors import VitalflowError
    from vitalflow.model.predictor import Predictor, load_model
    from vitalflow.run.preprocess import RunResult, preprocess
    from vitalflow.spec import Config, Spec, load_config, load_spec
    from vitalflow.transform import Patient, denormalize, preprocess_case
    from vitalflow.transform.normalize import denormalize_targets

    __version__: str


def __getattr__(name: str) -> object:
    if name == "__version__":
        from importlib.metadata import version  # ~30 ms: only when asked

        value: object = version("vitalflow")
    elif name in _HOMES:
        from importlib import import_module

        value = getattr(import_module(_HOMES[name]), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups do not come here
    return value


def __dir__() -> list[str]:
    # The public names whether imported yet or not, plus what the module holds: dunders, private
    # helpers and the subpackages imported so far.
    return sorted(set(globals()) | set(__all__))
