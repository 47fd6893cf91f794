"""The model registry: every trained model as a versioned MLflow model with its lineage."""
