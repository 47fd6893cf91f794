"""``vitalflow models``: the model registry from the command line."""

from __future__ import annotations

from typing import Callable

import typer


def register(target: typer.Typer, wrap: Callable[[Callable], Callable]) -> None:
    """Add ``models`` to ``target``, each command wrapped by ``wrap`` (the CLI's error handler)."""
