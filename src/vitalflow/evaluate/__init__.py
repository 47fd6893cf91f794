"""Evaluation of a trained model: metrics, baselines and the report (no TensorFlow)."""
