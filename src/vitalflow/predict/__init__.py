"""Batch prediction: recordings through a model's own spec and the model, per case, on the case runner."""
