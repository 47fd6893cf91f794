"""Where a model reference points: ``NAME@ALIAS``, ``NAME/VERSION`` or a model directory."""

from __future__ import annotations


def resolve_model(reference: str) -> str:
    """The model directory (local path or URI) that ``reference`` names; a registry reference
    that names no registered model, alias or version is a `ModelError`."""
    return reference  # placeholder until the registry lands: a model directory
