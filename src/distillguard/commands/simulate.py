"""``distillguard simulate``: write labelled traffic (CONTRACT §3)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("simulate")
    def simulate_cmd(
        out: Annotated[Path, typer.Option("--out", help="Folder to write the scenario into.")],
        seed: Annotated[
            int, typer.Option("--seed", help="Random seed; same seed, same output.")
        ] = 0,
        scale: Annotated[str, typer.Option("--scale", help="tiny | default | full")] = "default",
        scenario: Annotated[
            Path | None,
            typer.Option("--scenario", help="TOML file overriding populations/campaigns."),
        ] = None,
    ) -> None:
        """Simulate benign populations and distillation campaigns, with ground truth."""
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        from distillguard.cli import friendly_errors
        from distillguard.simulate import Scenario, simulate

        @friendly_errors
        def go() -> None:
            scen = Scenario.from_toml(scenario) if scenario is not None else None
            console = Console(stderr=True)
            with Progress(
                TextColumn("simulate"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} chunks"),
                TimeElapsedColumn(),
                console=console,
                transient=True,
            ) as bar:
                task = bar.add_task("simulate", total=None)

                def progress(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)

                summary = simulate(out, seed=seed, scale=scale, progress=progress, scenario=scen)
            console.print(
                f"wrote {summary['rows']:,} exchanges ({summary['attack_rows']:,} harvesting) from "
                f"{summary['accounts']:,} accounts ({summary['attack_accounts']:,} attack) "
                f"to {out} "
                f"in {summary['elapsed_s']:.1f} s",
                highlight=False,
            )

        go()
