"""``distillguard demo``: simulate labelled traffic, scan it, evaluate the scan."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from distillguard.cli import friendly_errors


def register(app: typer.Typer) -> None:
    @app.command("demo")
    @friendly_errors
    def demo(
        out: Annotated[
            Path, typer.Option("--out", "-o", help="Folder for the demo's files.")
        ] = Path("distillguard-demo"),
        scale: Annotated[
            str, typer.Option(help="Simulator scale: tiny, default or full.")
        ] = "default",
        seed: Annotated[int, typer.Option(help="Random seed of the simulated traffic.")] = 0,
    ) -> None:
        """Run the whole loop on built-in data: simulate -> scan -> evaluate.

        Simulates a few weeks of API traffic (benign customers, hard look-alikes such as batch pipelines, benchmark runs and resellers, and distillation campaigns), scans it as a user would scan their logs, and scores the scan against the ground truth.
        """  # noqa: E501 (Typer keeps line breaks, so each paragraph is one line)
        from distillguard.evaluate import evaluate, evaluation_table
        from distillguard.progress_rich import RichReporter
        from distillguard.scan import run_scan
        from distillguard.simulate import simulate

        console = Console(stderr=True)
        started = time.perf_counter()
        sim_dir, scan_dir = out / "simulated", out / "scan"
        with RichReporter(console) as rep:
            rep.stage(f"simulate traffic (scale {scale})", total=1.0)
            sim = simulate(
                sim_dir,
                seed=seed,
                scale=scale,
                progress=lambda done, total: rep.advance(done / max(total, 1)),
            )
            result = run_scan(
                [sim_dir / "exchanges.parquet"],
                scan_dir,
                accounts=sim_dir / "accounts.parquet",
                reporter=rep,
            )
            rep.stage("evaluate against ground truth")
            ev = evaluate(scan_dir, sim_dir)
        out_console = Console()
        out_console.print(evaluation_table(ev))
        s = result.summary
        out_console.print(
            f"\n[bold]distillguard demo[/]: {sim.get('rows', s['rows_read']):,} simulated "
            "exchanges, "
            f"{s['accounts']:,} accounts, {s['flagged_accounts']:,} flagged, {s['campaigns']:,} "
            f"campaigns, in {time.perf_counter() - started:.0f} s.\n"
            f"  traffic and ground truth: {sim_dir}\n"
            f"  scan outputs:             {scan_dir}  (open {scan_dir / 'report.html'})\n"
            f"  evaluation:               {scan_dir / 'evaluation.json'}",
            highlight=False,
        )
