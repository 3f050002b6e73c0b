"""``distillguard evaluate``: score a scan against simulated ground truth (CONTRACT §4)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("evaluate")
    def evaluate_cmd(
        scan: Annotated[Path, typer.Option("--scan", help="Output folder of 'distillguard scan'.")],
        truth: Annotated[
            Path, typer.Option("--truth", help="Output folder of 'distillguard simulate'.")
        ],
    ) -> None:
        """Precision/recall/FPR per population, campaign recall, linking, time to detection."""
        from rich.console import Console

        from distillguard.cli import friendly_errors
        from distillguard.evaluate import evaluate, evaluation_table

        @friendly_errors
        def go() -> None:
            ev = evaluate(scan, truth)
            console = Console()
            console.print(evaluation_table(ev))
            console.print(f"wrote {scan / 'evaluation.json'}", highlight=False)

        go()
