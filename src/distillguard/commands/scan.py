"""``distillguard scan``: hunt campaigns in exchange logs (CONTRACT §2)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from distillguard.cli import friendly_errors


def register(app: typer.Typer) -> None:
    @app.command("scan")
    @friendly_errors
    def scan(
        inputs: Annotated[
            list[str],
            typer.Argument(
                help="Exchange logs: Parquet or JSONL (.jsonl, .jsonl.gz, .jsonl.zst) files, "
                "folders of them, or globs, in any mix.",
                show_default=False,
            ),
        ],
        out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the outputs.")],
        accounts: Annotated[
            Path | None,
            typer.Option(
                help="Optional accounts table (Parquet or JSONL): tier, created_at, payment..."
            ),
        ] = None,
        policy: Annotated[
            Path | None,
            typer.Option(
                help="Policy TOML (detectors, weights, thresholds). Default: the packaged one."
            ),
        ] = None,
        show_prompts: Annotated[
            bool,
            typer.Option(help="Include sample prompts in report.html (redacted by default)."),
        ] = False,
        raw_ids: Annotated[
            bool,
            typer.Option(help="Put raw ids in indicators.stix.json instead of keyed hashes."),
        ] = False,
        max_line_bytes: Annotated[
            int, typer.Option(help="JSONL lines longer than this are quarantined, never loaded.")
        ] = 4 << 20,
        engine: Annotated[
            str,
            typer.Option(
                help="Engine for the stages after ingestion: duckdb (in process) or spark."
            ),
        ] = "duckdb",
        spark_master: Annotated[
            str,
            typer.Option(
                help="With --engine spark: local[N], a cluster's master URL, or sc://HOST:PORT "
                "for Spark Connect."
            ),
        ] = "local[*]",
        spark_conf: Annotated[
            list[str] | None,
            typer.Option(help="With --engine spark: KEY=VALUE for the Spark session (repeat)."),
        ] = None,
    ) -> None:
        """Scan exchange logs for distillation campaigns.

        Writes accounts.parquet, campaigns.parquet, exchanges_scored.parquet, summary.json, quarantine.jsonl, report.html and indicators.stix.json into --out.

        Bad rows never stop the scan: they go to quarantine.jsonl with file, line and reason.

        Needs free disk in --out of about the logs' size (a validated copy is staged there, and the engine spills past the policy's memory_limit); big logs are staged and classified by one worker process per core.
        """  # noqa: E501 (Typer keeps line breaks, so each paragraph is one line)
        from distillguard.engine import ENGINES, EngineConfig
        from distillguard.errors import ConfigError
        from distillguard.policy import load_policy
        from distillguard.progress_rich import RichReporter
        from distillguard.scan import run_scan

        console = Console(stderr=True)
        if engine not in ENGINES:
            raise ConfigError(f"--engine: expected one of {', '.join(ENGINES)}, got {engine!r}")
        conf: dict[str, str] = {}
        for item in spark_conf or []:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise ConfigError(f"--spark-conf: expected KEY=VALUE, got {item!r}")
            conf[key.strip()] = value.strip()
        cfg = EngineConfig(
            engine="spark" if engine == "spark" else "duckdb",
            spark_master=spark_master,
            spark_conf=conf,
        )
        pol = load_policy(policy)
        with RichReporter(console) as rep:
            result = run_scan(
                list(inputs),
                out,
                accounts=accounts,
                policy=pol,
                reporter=rep,
                max_line_bytes=max_line_bytes,
                show_prompts=show_prompts,
                raw_ids=raw_ids,
                engine=cfg,
            )
        s = result.summary
        console.print(
            f"[bold]{s['rows_read']:,}[/] rows ({s['rows_quarantined']:,} quarantined), "
            f"[bold]{s['accounts']:,}[/] accounts, [bold red]{s['flagged_accounts']:,}[/] flagged, "
            f"[bold]{s['campaigns']:,}[/] campaigns in {s['elapsed_s']:.1f} s -> {out}",
            highlight=False,
        )
