"""The full-scale benchmark: ``simulate --scale full`` (the 28.8M-exchange hydra campaign in
about 5x as much benign traffic), then ``scan`` on DuckDB, on this machine.

    python benchmarks/full_scale.py --sim /data/full               # simulate if missing, scan
    python benchmarks/full_scale.py --sim /data/full --evaluate    # and score against truth

Simulation and scan each run in a child process, so each one's peak RSS is its own (the
scan's includes DuckDB, which runs inside it, and any worker it starts). Prints the wall
time, exchanges/s, peak RSS, the time per scan stage (from ``summary.json``) as Markdown
for the README, and writes everything as JSON next to the scan.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_CHILD = """
import json, resource, sys, time
from pathlib import Path
t0 = time.perf_counter()
job, sim, out, seed = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
result_path = Path(sys.argv[5])
if job == "simulate":
    from distillguard.simulate import simulate
    result = simulate(sim, seed=seed, scale="full")
else:
    from distillguard.scan import run_scan
    from distillguard.progress import NullReporter
    class Printer(NullReporter):
        def stage(self, name, total=None):
            with open("/proc/self/status") as fh:
                now = next(int(x.split()[1]) for x in fh if x.startswith("VmRSS")) // 1024
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
            print(f"  [{time.perf_counter() - t0:7.1f} s] {name} (RSS {now:,} MB, peak so far "
                  f"{peak:,} MB)", file=sys.stderr, flush=True)
    scanned = run_scan([sim / "exchanges.parquet"], out, accounts=sim / "accounts.parquet",
                       reporter=Printer())
    result = scanned.summary
    result["wall_s"] = round(time.perf_counter() - t0, 1)
def peak():
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, kids) / 1024)
result.setdefault("wall_s", round(time.perf_counter() - t0, 1))
result["peak_rss_mb"] = peak()  # the scan's (or simulation's), before any evaluation
if job == "scan+evaluate":
    from distillguard.evaluate import evaluate
    result["evaluation"] = evaluate(out, sim)
    result["evaluate_peak_rss_mb"] = peak()
result_path.write_text(json.dumps(result, default=str))
"""


def child(job: str, sim: Path, out: Path, seed: int) -> dict[str, Any]:
    # The result goes through a file: what the child's libraries print (the engine's progress
    # bars among them) reaches the log unparsed.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "result.json"
        subprocess.run(
            [sys.executable, "-c", _CHILD, job, str(sim), str(out), str(seed), str(path)],
            check=True,
        )
        result: dict[str, Any] = json.loads(path.read_text())
    return result


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--sim", type=Path, required=True, help="simulated scenario folder")
    ap.add_argument("--out", type=Path, default=None, help="scan output (default: SIM/../scan)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--evaluate", action="store_true", help="also score the scan against truth")
    args = ap.parse_args()
    out = args.out or args.sim.parent / "scan"
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"machine: {machine}", flush=True)
    report: dict[str, Any] = {"machine": machine, "date": time.strftime("%Y-%m-%d")}
    if not (args.sim / "exchanges.parquet").exists():
        print("simulating (full scale) ...", flush=True)
        report["simulate"] = child("simulate", args.sim, out, args.seed)
        sim = report["simulate"]
        print(f"simulated {sim['rows']:,} rows in {sim['wall_s']:,.0f} s", flush=True)
    print("scanning ...", flush=True)
    scan = child("scan+evaluate" if args.evaluate else "scan", args.sim, out, args.seed)
    report["scan"] = scan
    rows, wall = scan["rows_read"], scan["wall_s"]
    size_gb = (args.sim / "exchanges.parquet").stat().st_size / 1e9
    head = "exchanges | input | accounts | flagged | campaigns | wall | exchanges/s | peak RSS"
    print(f"\n| {head} |\n|" + "---|" * 8)
    print(
        f"| {rows:,} | {size_gb:.1f} GB Parquet | {scan['accounts']:,} | "
        f"{scan['flagged_accounts']:,} | {scan['campaigns']:,} | {wall / 60:.1f} min | "
        f"{rows / wall:,.0f} | {scan['peak_rss_mb'] / 1024:.2f} GB |"
    )
    print("\n| stage | seconds | share |\n|---|---|---|")
    stages: dict[str, float] = scan.get("stage_seconds", {})
    for name, seconds in stages.items():
        print(f"| {name} | {seconds:,.1f} | {seconds / wall:.0%} |")
    ev = scan.get("evaluation")
    if ev:
        o = ev["overall_excluding_gray"]
        print(f"\nprecision {o['precision']}, recall {o['recall']}, FPR {o['fpr']}")
        for name, m in ev["populations"].items():
            rate = m["recall"] if m["label"] == "attack" else m["fpr"]
            print(f"  {name:24s} {'recall' if m['label'] == 'attack' else 'FPR'} {rate}")
    (out / "benchmark.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nfull results: {out / 'benchmark.json'}")


if __name__ == "__main__":
    main()
