"""The data contract: YAML spec files, their validated models and content hashes."""

from vitalflow.spec.model import (
    Config,
    Spec,
    StaticFeature,
    TimeseriesFeature,
    config_hash,
    load_config,
    load_spec,
)

__all__ = [
    "Config",
    "Spec",
    "StaticFeature",
    "TimeseriesFeature",
    "config_hash",
    "load_config",
    "load_spec",
]
