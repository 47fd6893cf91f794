"""Pure numpy transforms: grid, units, impute, normalize, windows and ``preprocess_case``."""

from vitalflow.transform.case import CaseArrays, Crop, FeatureStats, preprocess_case
from vitalflow.transform.normalize import denormalize, normalize
from vitalflow.transform.patient import Patient

__all__ = ["CaseArrays", "Crop", "FeatureStats", "Patient", "denormalize", "normalize", "preprocess_case"]
