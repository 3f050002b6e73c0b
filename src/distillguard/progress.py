"""Progress reporting passed into long library calls (the CLI renders it with Rich)."""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    def stage(self, name: str, total: float | None = None) -> None:
        """A new step begins; ``total`` units of work if known."""

    def advance(self, done: float) -> None:
        """``done`` units of the current step are complete (absolute, not a delta)."""

    def log(self, message: str) -> None:
        """A one-line note for the user."""


class NullReporter:
    def stage(self, name: str, total: float | None = None) -> None:
        return None

    def advance(self, done: float) -> None:
        return None

    def log(self, message: str) -> None:
        return None
