"""vitalflow: VitalDB ``.vital`` recordings to windowed, normalized TFRecord datasets."""

__version__ = "0.1.0"
