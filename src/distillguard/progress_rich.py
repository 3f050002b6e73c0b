"""The CLI's progress display: one Rich bar per pipeline step, with elapsed time."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)


class RichReporter:
    def __init__(self, console: Console, *, scale: float = 100.0) -> None:
        self.console = console
        self.scale = scale
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description:<38}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None
        self._total: float | None = None

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._finish()
        self.progress.stop()

    def _finish(self) -> None:
        if self._task is not None:
            self.progress.update(self._task, completed=self.scale, total=self.scale)

    def stage(self, name: str, total: float | None = None) -> None:
        self._finish()
        self._total = total
        self._task = self.progress.add_task(name, total=self.scale if total else None)

    def advance(self, done: float) -> None:
        if self._task is not None and self._total:
            self.progress.update(self._task, completed=self.scale * done / self._total)

    def log(self, message: str) -> None:
        self.progress.console.print(f"  {message}", highlight=False)
