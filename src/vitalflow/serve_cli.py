"""``vitalflow serve``: the inference service (synchronous invocations, durable asynchronous jobs)."""

from __future__ import annotations

from typing import Callable

import typer


def register(target: typer.Typer, wrap: Callable[[Callable], Callable]) -> None:
    """Add ``serve`` to ``target``, wrapped by ``wrap`` (the CLI's error handler)."""
