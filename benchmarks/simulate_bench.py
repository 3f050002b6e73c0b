"""Benchmarks for ``distillguard simulate`` (and the naive baseline through ``evaluate``).

    python benchmarks/simulate_bench.py throughput            # tiny + default: rows/s
    python benchmarks/simulate_bench.py full --out DIR        # full scale: time, peak RSS
    python benchmarks/simulate_bench.py realism --sim DIR [--data ../shared/data]
    python benchmarks/simulate_bench.py baseline --sim DIR    # naive baseline -> evaluate

Each prints a Markdown table for docs/simulator.md. ``full`` runs the generator in a
child process so the peak RSS reported (ru_maxrss of the child) is the generator's own.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np


def throughput(seed: int) -> None:
    from distillguard.simulate import simulate

    print("| scale | rows | accounts | seconds | rows/s |\n|---|---|---|---|---|")
    for scale in ("tiny", "default"):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            s = simulate(Path(tmp), seed=seed, scale=scale)
            dt = time.perf_counter() - t0
        print(f"| {scale} | {s['rows']:,} | {s['accounts']:,} | {dt:.1f} | {s['rows'] / dt:,.0f} |")


def full(out: Path, seed: int, keep: bool) -> None:
    code = (
        "import json, sys; from pathlib import Path; from distillguard.simulate import simulate; "
        f"print(json.dumps(simulate(Path({str(out)!r}), seed={seed}, scale='full')))"
    )
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    dt = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    size_gb = sum(p.stat().st_size for p in out.glob("*.parquet")) / 1e9
    print("| scale | rows | attack rows | accounts | seconds | rows/s | peak RSS | on disk |")
    print("|---|---|---|---|---|---|---|---|")
    print(
        f"| full | {summary['rows']:,} | {summary['attack_rows']:,} | {summary['accounts']:,} | "
        f"{dt:.0f} | {summary['rows'] / dt:,.0f} | {peak_mb:,.0f} MB | {size_gb:.1f} GB |"
    )
    print(json.dumps(summary["populations"]))
    if not keep:
        shutil.rmtree(out, ignore_errors=True)


def _interarrival_cv(con: duckdb.DuckDBPyConnection, where: str) -> float | None:
    # Median over accounts of the inter-arrival CV (accounts with >= 20 exchanges).
    row = con.execute(f"""
        WITH g AS (
            SELECT account_id,
                   epoch(ts) - lag(epoch(ts)) OVER (PARTITION BY account_id ORDER BY ts) AS gap
            FROM e WHERE {where}
        ), a AS (
            SELECT account_id, stddev_pop(gap) / nullif(avg(gap), 0) AS cv
            FROM g WHERE gap IS NOT NULL GROUP BY 1 HAVING count(*) >= 20
        ) SELECT median(cv) FROM a
    """).fetchone()
    return None if row is None or row[0] is None else float(row[0])


def realism(sim: Path, data: Path | None) -> None:
    con = duckdb.connect()
    con.execute(f"CREATE VIEW e AS SELECT * FROM read_parquet('{sim / 'exchanges.parquet'}')")
    con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{sim / 'truth_accounts.parquet'}')")
    con.execute("CREATE TABLE ep AS SELECT e.*, t.population FROM e JOIN t USING (account_id)")
    print(
        "| population | accounts | median exch/account/day | median inter-arrival CV | "
        "median input tok | median output tok | p90 input tok |"
    )
    print("|---|---|---|---|---|---|---|")
    pops = [r[0] for r in con.execute("SELECT DISTINCT population FROM ep ORDER BY 1").fetchall()]
    con.execute("CREATE OR REPLACE VIEW e AS SELECT * FROM ep")
    for pop in pops:
        stats = con.execute(f"""
            SELECT count(DISTINCT account_id), median(input_tokens), median(output_tokens),
                   quantile_cont(input_tokens, 0.9)
            FROM ep WHERE population = '{pop}'
        """).fetchone()
        # Per active day (first to last exchange), so late sign-ups are not diluted.
        rate = con.execute(f"""
            SELECT median(n / greatest(1.0, (epoch(last) - epoch(first)) / 86400)) FROM
            (SELECT account_id, count(*) AS n, min(ts) AS first, max(ts) AS last
             FROM ep WHERE population = '{pop}' GROUP BY 1)
        """).fetchone()
        assert stats is not None and rate is not None
        cv = _interarrival_cv(con, f"population = '{pop}'")
        cv_s = "-" if cv is None else f"{cv:.2f}"
        print(
            f"| {pop} | {stats[0]} | {rate[0]:.1f} | {cv_s} | {stats[1]:.0f} | {stats[2]:.0f} | "
            f"{stats[3]:.0f} |"
        )
    if data is not None:
        _reference(data)


def _reference(data: Path) -> None:
    """The same figures measured on the real traces, for comparison."""
    import pandas as pd

    print(
        "\n| real trace | requests | median input tok | median output tok | p90 input tok | "
        "inter-arrival CV |"
    )
    print("|---|---|---|---|---|---|")
    for name in ("conv", "code"):
        d = pd.read_csv(data / "azure_llm_2023" / f"AzureLLMInferenceTrace_{name}.csv")
        ts = np.sort(pd.to_datetime(d.TIMESTAMP).to_numpy().astype("int64") / 1e9)
        gaps = np.diff(ts)
        print(
            f"| Azure 2023 {name} | {len(d):,} | {d.ContextTokens.median():.0f} | "
            f"{d.GeneratedTokens.median():.0f} | {d.ContextTokens.quantile(0.9):.0f} | "
            f"{gaps.std() / gaps.mean():.2f} |"
        )
    for name in ("conversation", "synthetic"):
        d = pd.read_json(data / "mooncake" / f"{name}_trace.jsonl", lines=True)
        gaps = np.diff(np.sort(d.timestamp.to_numpy().astype(float)))
        cv = gaps.std() / gaps.mean() if gaps.mean() > 0 else float("nan")
        print(
            f"| Mooncake {name} | {len(d):,} | {d.input_length.median():.0f} | "
            f"{d.output_length.median():.0f} | {d.input_length.quantile(0.9):.0f} | {cv:.2f} |"
        )
    cvs: list[float] = []
    rates: list[float] = []
    for tier in ("m-large", "m-mid", "m-small"):
        for path in (data / "servegen" / "language" / tier).glob("chunk-*-trace.csv"):
            arr = np.loadtxt(path, delimiter=",", usecols=(1, 2), ndmin=2)
            on = arr[:, 0] > 0
            if on.any():
                cvs.append(float(np.average(arr[on, 1], weights=arr[on, 0])))
                rates.append(float(arr[:, 0].mean() * 86400))
    print(
        f"\nServeGen language clients: {len(cvs)}; per-client inter-arrival CV (rate-weighted) "
        f"median {np.median(cvs):.2f}, p10 {np.percentile(cvs, 10):.2f}, "
        f"p90 {np.percentile(cvs, 90):.2f}; "
        f"requests/day median {np.median(rates):,.0f}, p10 {np.percentile(rates, 10):,.0f}, "
        f"p90 {np.percentile(rates, 90):,.0f}"
    )


def baseline(sim: Path, max_daily: int, z: float) -> dict[str, Any]:
    from distillguard.baselines import naive_volume_baseline
    from distillguard.evaluate import evaluate

    with tempfile.TemporaryDirectory() as tmp:
        naive_volume_baseline(sim / "exchanges.parquet", Path(tmp), max_daily=max_daily, z=z)
        ev = evaluate(Path(tmp), sim)
    o = ev["overall"]
    print(
        f"overall: precision {o['precision']}, recall {o['recall']}, FPR {o['fpr']}, AUC {o['auc']}"
    )
    print("| population | label | accounts | flagged | recall / FPR |\n|---|---|---|---|---|")
    for pop, m in ev["populations"].items():
        rate = m["recall"] if m["label"] == "attack" else m["fpr"]
        print(
            f"| {pop} | {m['label']} | {m['accounts']} | {m['flagged']} | "
            f"{100 * (rate or 0):.1f}% |"
        )
    print("| campaign | accounts | recall | harvested before account flag |\n|---|---|---|---|")
    for cid, m in ev["campaigns"].items():
        share = m.get("harvested_before_account_flag_share")
        print(
            f"| {cid} | {m['accounts']} | {100 * m['recall']:.0f}% | "
            f"{'-' if share is None else f'{100 * share:.0f}%'} |"
        )
    return ev


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("throughput").add_argument("--seed", type=int, default=0)
    f = sub.add_parser("full")
    f.add_argument("--out", type=Path, required=True)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--keep", action="store_true")
    r = sub.add_parser("realism")
    r.add_argument("--sim", type=Path, required=True)
    r.add_argument("--data", type=Path, default=None)
    b = sub.add_parser("baseline")
    b.add_argument("--sim", type=Path, required=True)
    b.add_argument("--max-daily", type=int, default=1000)
    b.add_argument("--z", type=float, default=3.0)
    args = ap.parse_args()
    if args.cmd == "throughput":
        throughput(args.seed)
    elif args.cmd == "full":
        full(args.out, args.seed, args.keep)
    elif args.cmd == "realism":
        realism(args.sim, args.data)
    else:
        baseline(args.sim, args.max_daily, args.z)


if __name__ == "__main__":
    main()
