"""A training run: config, dataset and checkpoints to a model directory."""
