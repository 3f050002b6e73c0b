"""``distillguard replay``: what a policy would have done to past traffic, and to whom."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    from distillguard.cli import friendly_errors

    @app.command("replay")
    @friendly_errors
    def replay(
        inputs: Annotated[
            list[str], typer.Argument(help="Exchange logs, as for scan.", show_default=False)
        ],
        policy: Annotated[
            Path | None,
            typer.Option(
                help="Policy TOML (scan tables, and [gateway] for the ladder; without one the "
                "packaged gateway.toml)."
            ),
        ] = None,
        out: Annotated[
            Path, typer.Option("--out", "-o", help="Folder for replay_*.parquet and the scan.")
        ] = Path("replay"),
        accounts: Annotated[Path | None, typer.Option(help="Optional accounts table.")] = None,
        truth: Annotated[
            Path | None,
            typer.Option(help="Labels (account_id, label): benign accounts hit are collateral."),
        ] = None,
        allow: Annotated[
            Path | None,
            typer.Option(help="Known-good accounts (one per line, JSON list or table)."),
        ] = None,
        show: Annotated[int, typer.Option(help="Collateral accounts to list.")] = 20,
    ) -> None:
        """Replay a policy over past logs: which accounts and exchanges it would have throttled, verified, degraded or blocked, when, and the collateral.

        Writes replay_accounts.parquet (one row per listed account: action, first time of each action, exchanges per action, collateral) and replay_exchanges.parquet (every exchange that got an action) into --out.
        """  # noqa: E501 (Typer keeps line breaks, so each paragraph is one line)
        from rich.console import Console
        from rich.table import Table

        from distillguard.progress_rich import RichReporter
        from distillguard.replay import replay as run
        from distillguard.replay import summary_rows

        console = Console(stderr=True)
        with RichReporter(console) as rep:
            r = run(
                inputs,
                out,
                policy=policy,
                accounts=accounts,
                truth=truth,
                allow=allow,
                reporter=rep,
            )
        table = Table(title=f"replay ({r.gateway_source})")
        for col in ("action", "accounts", "exchanges", "collateral accounts"):
            table.add_column(col, justify="left" if col == "action" else "right")
        for action, n_acc, n_ex, n_col in summary_rows(r):
            table.add_row(action, f"{n_acc:,}", f"{n_ex:,}", f"{n_col:,}")
        console.print(table)
        quiet = int((r.accounts["action"] == "allow").sum())
        if quiet:
            console.print(
                f"{quiet:,} listed accounts made no exchange after they were listed.",
                highlight=False,
            )
        if truth is None and allow is None:
            console.print("collateral unknown: pass --truth and/or --allow")
        elif len(r.collateral):
            ct = Table(title=f"collateral: {len(r.collateral):,} accounts hit")
            for col in ("account", "action", "from", "exchanges hit", "why"):
                ct.add_column(col)
            for row in r.collateral.sort_values("listed_at").head(show).itertuples():
                hit = sum(
                    getattr(row, f"{a}_exchanges")
                    for a in ("throttle", "verify", "degrade", "block")
                )
                ct.add_row(
                    str(row.account_id),
                    str(row.action),
                    str(row.listed_at)[:16],
                    f"{hit:,}",
                    str(row.collateral_reason),
                )
            console.print(ct)
        else:
            console.print("[green]no collateral[/]: no benign or allow-listed account was hit")
        console.print(f"-> {out}/replay_accounts.parquet, {out}/replay_exchanges.parquet")
