"""Runs jobs (skeleton; filled in by the jobs work)."""
from __future__ import annotations


class JobRunner:
    def __init__(self, settings) -> None:
        self.settings = settings

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass
