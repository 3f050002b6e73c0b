"""Progress reporting passed into long library calls (the CLI renders it with Rich)."""

from __future__ import annotations

import time
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


class StageTimer:
    """Passes everything on to ``inner`` and records how long each stage took, so the
    scan's summary says where the time went whatever renders the progress."""

    def __init__(self, inner: Reporter) -> None:
        self.inner = inner
        self.timings: dict[str, float] = {}
        self._name: str | None = None
        self._t0 = 0.0

    def close(self) -> None:
        if self._name is not None:
            self.timings[self._name] = round(
                self.timings.get(self._name, 0.0) + time.perf_counter() - self._t0, 3
            )
            self._name = None

    def stage(self, name: str, total: float | None = None) -> None:
        self.close()
        self._name, self._t0 = name, time.perf_counter()
        self.inner.stage(name, total)

    def advance(self, done: float) -> None:
        self.inner.advance(done)

    def log(self, message: str) -> None:
        self.inner.log(message)
