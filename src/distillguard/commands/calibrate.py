"""``distillguard calibrate``: a policy whose thresholds meet a target FPR on benign traffic."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    from distillguard.cli import friendly_errors

    @app.command("calibrate")
    @friendly_errors
    def calibrate(
        benign: Annotated[
            list[str],
            typer.Option(
                help="Benign exchange logs (repeatable): traffic you know to be legitimate.",
                show_default=False,
            ),
        ],
        target_fpr: Annotated[
            float, typer.Option(help="Largest share of benign accounts the policy may flag.")
        ] = 0.001,
        out: Annotated[Path, typer.Option("--out", "-o", help="Policy TOML to write.")] = Path(
            "policy.calibrated.toml"
        ),
        accounts: Annotated[
            Path | None, typer.Option(help="Optional accounts table for the benign logs.")
        ] = None,
        policy: Annotated[
            Path | None,
            typer.Option(help="Base policy to calibrate (default: the packaged one)."),
        ] = None,
        max_rounds: Annotated[
            int, typer.Option(help="Verification scans at most (campaign lift can add flags).")
        ] = 4,
    ) -> None:
        """Set the flag threshold from your own benign traffic, and write it as a policy.

        Scans the benign logs, picks the lowest threshold at which at most --target-fpr of their accounts are flagged, checks it by scanning again with the written policy, and writes the policy (the base policy with its numbers changed; comments kept).
        """  # noqa: E501 (Typer keeps line breaks, so each paragraph is one line)
        from rich.console import Console

        from distillguard.calibrate import binomial_upper
        from distillguard.calibrate import calibrate as run
        from distillguard.progress_rich import RichReporter

        console = Console(stderr=True)
        with RichReporter(console) as rep:
            r = run(
                benign,
                out,
                target_fpr=target_fpr,
                accounts=accounts,
                base_policy=policy,
                max_rounds=max_rounds,
                reporter=rep,
            )
        ok = r.flagged <= int(target_fpr * r.accounts + 1e-9)
        console.print(
            f"scan.threshold [bold]{r.threshold:.4f}[/] (was {r.base_threshold:g}), "
            f"linking.candidate_threshold {r.candidate_threshold:.4f}: "
            f"{r.flagged}/{r.accounts} benign accounts flagged ({r.fpr:.4%}, target "
            f"{target_fpr:g}{'' if ok else ', NOT met'}) after {r.rounds} verification "
            f"scan(s) -> {out}",
            highlight=False,
        )
        if r.accounts and target_fpr * r.accounts < 1:
            console.print(
                f"[yellow]note:[/] {r.accounts} accounts cannot resolve an FPR of {target_fpr:g} "
                f"(one account is {1 / r.accounts:.2%}); on unseen traffic expect up to "
                f"{binomial_upper(target_fpr, r.accounts):.2%}.",
                highlight=False,
            )
