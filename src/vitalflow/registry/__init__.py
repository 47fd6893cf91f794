"""The model registry: every trained model as a versioned MLflow model with its lineage.

- :mod:`.tracking`: where the registry is (``$MLFLOW_TRACKING_URI`` or the embedded SQLite store);
- :mod:`.log`: :func:`log_training`, a training's run and registered version;
- :mod:`.versions`: references (``NAME@ALIAS``, ``NAME/VERSION``), versions, aliases, tags;
- :mod:`.resolve`: :func:`resolve_model`, a reference to a local model directory.

MLflow is imported only when a registry function runs.
"""
