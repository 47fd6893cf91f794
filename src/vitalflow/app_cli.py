"""``vitalflow app``: the web app and REST API."""

from __future__ import annotations

from typing import Callable

import typer


def register(target: typer.Typer, wrap: Callable[[Callable], Callable]) -> None:
    """Add ``app`` to ``target``, wrapped by ``wrap`` (the CLI's error handler)."""
