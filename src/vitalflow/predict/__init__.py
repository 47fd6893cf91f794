"""Batch prediction: recordings through a model's own spec and the model, per case, on the case runner.

TensorFlow runs only in the model process (`vitalflow.predict.model_process`); importing this
package imports no TensorFlow.
"""

from vitalflow.predict.run import PredictOptions, PredictResult, predict

__all__ = ["PredictOptions", "PredictResult", "predict"]
