"""``vitalflow deploy`` and ``vitalflow invoke``: the inference service as a SageMaker asynchronous endpoint."""

from __future__ import annotations

from typing import Callable

import typer


def register(target: typer.Typer, wrap: Callable[[Callable], Callable]) -> None:
    """Add ``deploy`` and ``invoke`` to ``target``, wrapped by ``wrap`` (the CLI's error handler)."""
