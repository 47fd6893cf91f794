"""``vitalflow predict``: batch prediction over recordings."""

from __future__ import annotations

from typing import Callable

import typer


def register(target: typer.Typer, wrap: Callable[[Callable], Callable]) -> None:
    """Add ``predict`` to ``target``, wrapped by ``wrap`` (the CLI's error handler)."""
