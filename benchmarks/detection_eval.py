"""Detection quality over several simulator seeds: simulate -> scan -> evaluate.

    python benchmarks/detection_eval.py --seeds 0 1 2 --scale default
    python benchmarks/detection_eval.py --seeds 0 --orchestrated 0.5   # synchronised campaigns

Nothing here is learned from the simulator (detectors fit peer baselines on the scanned
traffic itself; the prompt classifier is trained on its own corpus), so every seed is
held-out data. Prints per-population FPR/recall, per-campaign recall, linking and time to
detection, and the mean over seeds; writes the JSON next to the runs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any


def run(seed: int, scale: str, root: Path, orchestrated: float = 0.0) -> dict[str, Any]:
    from distillguard.evaluate import evaluate
    from distillguard.scan import run_scan
    from distillguard.simulate import simulate
    from distillguard.simulate.config import Scenario, default_campaigns

    scenario = None
    if orchestrated > 0:
        camps = tuple(replace(c, orchestrated=orchestrated) for c in default_campaigns())
        scenario = Scenario(campaigns=camps)
    sim, out = root / f"sim-{seed}", root / f"scan-{seed}"
    t0 = time.perf_counter()
    simulate(sim, seed=seed, scale=scale, scenario=scenario)
    t1 = time.perf_counter()
    run_scan([sim / "exchanges.parquet"], out, accounts=sim / "accounts.parquet")
    t2 = time.perf_counter()
    ev = evaluate(out, sim)
    ev["timing"] = {"simulate_s": round(t1 - t0, 1), "scan_s": round(t2 - t1, 1)}
    return ev


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--scale", default="default")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument(
        "--orchestrated",
        type=float,
        default=0.0,
        help="share of every campaign's sessions sent at shared dispatch moments (default 0)",
    )
    args = ap.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="dg-eval-"))
    results = {seed: run(seed, args.scale, root, args.orchestrated) for seed in args.seeds}
    pops = sorted({p for ev in results.values() for p in ev["populations"]})
    print(
        f"{'population':18s} "
        + " ".join(f"seed {s:>3}" for s in args.seeds)
        + "   (FPR for benign, recall for attack)"
    )
    for p in pops:
        cells = []
        for ev in results.values():
            m = ev["populations"].get(p)
            v = None if m is None else (m["recall"] if m["label"] == "attack" else m["fpr"])
            cells.append("   -    " if v is None else f"{100 * v:7.2f}%")
        print(f"{p:18s} " + " ".join(cells))
    camps = sorted({c for ev in results.values() for c in ev["campaigns"]})
    print(f"\n{'campaign':18s} recall / linking / detect h, per seed")
    for c in camps:
        cells = []
        for ev in results.values():
            m = ev["campaigns"].get(c, {})
            recall = 100 * (m.get("recall") or 0)
            link = 100 * (m.get("linking_completeness") or 0)
            ttd = m.get("time_to_detection_h") or float("nan")
            cells.append(f"{recall:5.1f}% {link:5.1f}% {ttd:6.1f}")
        print(f"{c:18s} " + " | ".join(cells))
    for seed, ev in results.items():
        o = ev["overall_excluding_gray"]
        print(
            f"seed {seed}: precision {o['precision']}, recall {o['recall']}, FPR {o['fpr']}, "
            f"mixed-account exchange AUC {ev.get('mixed_accounts', {}).get('auc')}, {ev['timing']}"
        )
    (root / "detection_eval.json").write_text(json.dumps(results, indent=2, default=str))
    print(f"\nfull results: {root / 'detection_eval.json'}")


if __name__ == "__main__":
    main()
