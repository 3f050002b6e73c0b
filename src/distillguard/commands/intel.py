"""``distillguard intel``: share indicators (export) and load partners' (import)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    from distillguard.cli import friendly_errors

    intel = typer.Typer(
        help="Share campaign indicators as STIX 2.1 (keyed hashes) and load partners' bundles.",
        no_args_is_help=True,
    )
    app.add_typer(intel, name="intel")

    @intel.command("import")
    @friendly_errors
    def import_(
        bundles: Annotated[
            list[Path],
            typer.Argument(help="STIX 2.1 bundle(s) from a partner.", show_default=False),
        ],
        out: Annotated[
            Path,
            typer.Option(
                "--out", "-o", help="Intel list (JSON) to create or add to: the gateway's input."
            ),
        ] = Path("intel-list.json"),
        block_kind: Annotated[
            list[str] | None,
            typer.Option(
                help="Kinds whose indicators block (repeatable); others watch. "
                "Default: payment_fingerprint."
            ),
        ] = None,
        min_block_confidence: Annotated[
            int, typer.Option(help="Below this STIX confidence (0-100) a block kind only watches.")
        ] = 50,
        replace: Annotated[
            bool, typer.Option(help="Start a new list instead of adding to --out.")
        ] = False,
        logs: Annotated[
            list[str] | None,
            typer.Option(
                help="Our own exchange logs (repeatable): find our accounts that match and "
                "write them to --lists-dir."
            ),
        ] = None,
        accounts: Annotated[
            Path | None,
            typer.Option(help="Our accounts table (payment fingerprints), with --logs."),
        ] = None,
        lists_dir: Annotated[
            Path | None,
            typer.Option(
                help="Write matched accounts here as accounts.parquet/campaigns.parquet, "
                "loadable by `serve --scan-dir`."
            ),
        ] = None,
        policy: Annotated[
            Path | None,
            typer.Option(help="Policy with a [gateway] table (ladder scores for --lists-dir)."),
        ] = None,
    ) -> None:
        """Load partners' STIX bundles into the gateway's watch/block list.

        Needs the key the partner hashed with, in DISTILLGUARD_INTEL_KEY; a bundle made with another key is refused.
        """  # noqa: E501 (Typer keeps line breaks)
        from rich.console import Console

        from distillguard.errors import ConfigError
        from distillguard.intel import (
            DEFAULT_BLOCK_KINDS,
            import_files,
            resolve,
            write_gateway_lists,
        )

        console = Console(stderr=True)
        if lists_dir is not None and not logs:
            raise ConfigError("--lists-dir needs --logs (our traffic to match against)")
        kinds = tuple(block_kind) if block_kind else DEFAULT_BLOCK_KINDS
        intel_list, results = import_files(
            bundles,
            out,
            block_kinds=kinds,
            min_block_confidence=min_block_confidence,
            replace=replace,
        )
        for path, r in zip(bundles, results, strict=True):
            console.print(
                f"{path}: {r.indicators:,} indicators, {r.added:,} added"
                + (f", {r.skipped_foreign:,} not keyed-hash" if r.skipped_foreign else "")
                + (f", {r.skipped_expired:,} expired" if r.skipped_expired else ""),
                highlight=False,
            )
        c = intel_list.counts()
        console.print(
            f"[bold]{len(intel_list.entries):,}[/] entries ({c.get('block', 0):,} block, "
            f"{c.get('watch', 0):,} watch) -> {out}",
            highlight=False,
        )
        if logs:
            from distillguard.gateway.config import load_gateway_policy

            gw = load_gateway_policy(policy)
            matched = resolve(intel_list, logs, accounts=accounts)
            n_block = int((matched["action"] == "block").sum())
            console.print(
                f"[bold]{len(matched):,}[/] of our accounts match ({n_block:,} block)",
                highlight=False,
            )
            if lists_dir is not None:
                write_gateway_lists(
                    matched,
                    lists_dir,
                    block_score=min(gw.ladder.block, 1.0),
                    watch_score=min(gw.ladder.watch, 1.0),
                )
                console.print(f"gateway lists -> {lists_dir} (serve --scan-dir {lists_dir})")

    @intel.command("export")
    @friendly_errors
    def export(
        scan_dir: Annotated[
            Path, typer.Argument(help="A `scan --out` directory.", show_default=False)
        ],
        out: Annotated[Path, typer.Option("--out", "-o", help="Bundle to write.")] = Path(
            "indicators.stix.json"
        ),
        raw_ids: Annotated[
            bool,
            typer.Option(help="Share account ids in clear (only with a partner of one id space)."),
        ] = False,
        identity: Annotated[
            str | None, typer.Option(help="Name of the sharing organisation in the bundle.")
        ] = None,
    ) -> None:
        """Write a STIX 2.1 bundle from a scan's campaigns.parquet (keyed hashes)."""
        import pyarrow.parquet as pq

        from distillguard.errors import InputError
        from distillguard.outputs.stix import write_stix

        path = scan_dir / "campaigns.parquet"
        try:
            rows = pq.read_table(path).to_pylist()
        except (OSError, ValueError) as err:
            raise InputError(f"cannot read campaigns: {err}", source=str(path)) from None
        write_stix(out, rows, raw_ids=raw_ids, identity_name=identity)
        typer.echo(f"{len(rows)} campaigns -> {out}")
