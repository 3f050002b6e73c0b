"""``distillguard version``: print the version and the engine versions in use."""

from __future__ import annotations

import typer

from distillguard import __version__


def register(app: typer.Typer) -> None:
    @app.command("version")
    def version() -> None:
        """Print distillguard's version and the versions of its engines."""
        import duckdb
        import ibis
        import pyarrow

        print(f"distillguard {__version__}")
        print(
            f"ibis {ibis.__version__}, duckdb {duckdb.__version__}, pyarrow {pyarrow.__version__}"
        )
