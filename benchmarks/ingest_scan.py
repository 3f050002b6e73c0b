"""Ingest + validation + scan throughput and peak memory, on generated JSONL logs.

    python benchmarks/ingest_scan.py --rows 5000000          # one size
    python benchmarks/ingest_scan.py --rows 1000000 2000000 5000000   # RSS vs N

Each size runs in a fresh process (so peak RSS is that run's own) and reports rows/s for
ingest+validation alone and for the whole scan, and the peak resident memory. About 1% of
the rows are bad (broken JSON, wrong types, duplicates) so the careful path is exercised.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

_TEXT = (
    "explain the difference between two approaches write a python function that parses "
    "summarize this article translate into french solve for x step by step what is the "
    "capital of how do I configure a reverse proxy with caching and rate limits for an api"
)
WORDS = tuple(_TEXT.split(" "))


def generate(path: Path, rows: int, seed: int = 0, bad_every: int = 100) -> None:
    """Realistic-sized rows (~450 bytes): 20k accounts, prompts of 20-60 words."""
    rng = np.random.default_rng(seed)
    t0 = 1_793_534_400
    accounts = rng.integers(0, 20_000, rows)
    with path.open("wb") as fh:
        chunk = 100_000
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            lens = rng.integers(20, 60, n)
            words = rng.integers(0, len(WORDS), (n, 60))
            out = bytearray()
            for i in range(n):
                k = start + i
                rec = {
                    "exchange_id": f"ex-{k}",
                    "ts": t0 + k * 0.25,
                    "account_id": f"acct-{accounts[i]}",
                    "model": "model-large",
                    "prompt": " ".join(WORDS[w] for w in words[i, : lens[i]]),
                    "input_tokens": int(lens[i] * 4),
                    "output_tokens": int(rng.integers(50, 2000)),
                    "ip": f"198.51.{accounts[i] % 256}.{k % 250 + 1}",
                    "user_agent": "openai-python/1.52.0",
                    "endpoint": "chat.completions",
                    "temperature": 0.7,
                    "max_tokens": 2048,
                    "turn_index": int(k % 3),
                }
                if bad_every and k % bad_every == 7:  # bad rows of several kinds
                    bad = (k // bad_every) % 3
                    if bad == 0:
                        out += b'{"exchange_id": "broken\n'
                        continue
                    if bad == 1:
                        rec["input_tokens"] = "many"
                    else:
                        rec["exchange_id"] = f"ex-{k - 1}"
                out += orjson.dumps(rec) + b"\n"
            fh.write(out)


def run_one(rows: int, workdir: Path, bad_every: int, ingest_only: bool) -> dict[str, Any]:
    from distillguard.ingest import stage_inputs
    from distillguard.scan import run_scan

    log = workdir / f"bench-{rows}-bad{bad_every}.jsonl"
    if not log.exists():
        generate(log, rows, bad_every=bad_every)
    t = time.perf_counter()
    staged = stage_inputs([log], workdir / "stage", workdir / "q.jsonl")
    ingest_s = time.perf_counter() - t
    out: dict[str, Any] = {
        "rows": rows,
        "bad_every": bad_every,
        "file_mb": round(log.stat().st_size / 1e6, 1),
        "ingest_s": round(ingest_s, 2),
        "ingest_rows_per_s": round(staged.rows_read / ingest_s),
        "quarantined": staged.rows_quarantined,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    if ingest_only:
        return out
    t = time.perf_counter()
    result = run_scan([log], workdir / "out")
    scan_s = time.perf_counter() - t
    return out | {
        "scan_s": round(scan_s, 2),
        "scan_rows_per_s": round(result.summary["rows_read"] / scan_s),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "stages": result.summary.get("stage_seconds", {}),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, nargs="+", default=[5_000_000])
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--bad-every", type=int, default=100, help="one bad row per N (0: none)")
    ap.add_argument("--ingest-only", action="store_true", help="stop after ingest+validation")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="dg-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.one:
        print(json.dumps(run_one(args.rows[0], workdir, args.bad_every, args.ingest_only)))
        return
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    for rows in args.rows:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                "--rows",
                str(rows),
                "--workdir",
                str(workdir),
                "--bad-every",
                str(args.bad_every),
                *(["--ingest-only"] if args.ingest_only else []),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        print(out.stdout.strip().splitlines()[-1], flush=True)


if __name__ == "__main__":
    main()
