"""One error root for everything distillguard raises on purpose.

Like pySigma's ``SigmaError``, every error carries *where* the problem is (a file, a
line, a field) so the CLI can print one clear line and the user can go straight to it.
"""

from __future__ import annotations


class DistillGuardError(Exception):
    """Root of all distillguard errors; the CLI prints ``str(err)`` as one line."""

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.source = source
        self.line = line
        self.field = field

    def __str__(self) -> str:
        where = []
        if self.source is not None:
            where.append(self.source if self.line is None else f"{self.source}:{self.line}")
        if self.field is not None:
            where.append(f"field '{self.field}'")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class InputError(DistillGuardError):
    """An input file cannot be read at all (not a bad row: those go to quarantine)."""


class ConfigError(DistillGuardError):
    """A policy, TOML file or command-line option is invalid."""


class DetectorError(DistillGuardError):
    """A detector was misused (e.g. scored before it was fitted)."""
