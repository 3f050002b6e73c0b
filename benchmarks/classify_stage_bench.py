"""Cost of the scan's classify step per batch, with and without the second look at the
prompts whose request has a system prompt (``ElicitationClassifier.demand``).

    PYTHONPATH=src python benchmarks/classify_stage_bench.py LOG.parquet [--rows 200000]
        [--repeat 5] [--only-system TEXT]

Reads a hash sample of ``--rows`` rows with prompt text from a log (the simulator's
``exchanges.parquet``), and times ``features.content._classify_batch`` on 16,384-row
batches as the scan runs it: ``demand=False`` is the composed score alone (what the
step cost before), ``demand=True`` adds the prompt-alone rescoring of the rows that
elicit and have a system prompt. The two alternate, ``--repeat`` times each, so a shared
machine's load drifts over both alike; medians are printed with the load average.
``--only-system TEXT`` replaces every row's system prompt with TEXT: the worst case, an
account whose every request is rescored (e.g. a grading rubric).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import duckdb
import numpy as np

from distillguard.content import ElicitationClassifier
from distillguard.features.content import _classify_batch, capability_map

BATCH = 16384


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("log")
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only-system", default=None)
    args = ap.parse_args()

    con = duckdb.connect()
    con.execute("SET threads=1")
    total = con.execute(f"select count(*) from read_parquet('{args.log}')").fetchone()
    assert total is not None
    # a hash sample (the same rows every run): md5 of the exchange id under a cut
    frac = min(1.0, 1.2 * args.rows / max(int(total[0]), 1))
    cut = f"{int(frac * 16**8):08x}"
    rows = con.execute(
        f"select prompt, system_prompt from read_parquet('{args.log}') "
        f"where length(prompt) > 0 and left(md5(exchange_id), 8) < '{cut}' limit {args.rows}"
    ).fetchall()
    prompts = [r[0] for r in rows]
    systems = [args.only_system if args.only_system else r[1] for r in rows]
    clf = ElicitationClassifier.load_default()
    cap_map = capability_map(clf)
    batches = [
        (prompts[i : i + BATCH], systems[i : i + BATCH]) for i in range(0, len(prompts), BATCH)
    ]
    _classify_batch(clf, *batches[0], cap_map, False, True)  # warm up

    times: dict[bool, list[float]] = {False: [], True: []}
    rescored = elicit = system_only = 0
    for _ in range(args.repeat):
        for demand in (False, True):
            t = time.perf_counter()
            for p, s in batches:
                cols = _classify_batch(clf, p, s, cap_map, False, demand)
                if demand and not times[True]:
                    e = np.asarray(cols["elicit"])
                    so = np.asarray(cols["sys_elicit"])
                    elicit += int(e.sum())
                    system_only += int(so.sum())
                    has = np.array([bool(x) for x in s])
                    rescored += int(((e + so) > 0)[has].sum())
            times[demand].append(time.perf_counter() - t)
    n = len(prompts)
    with_sys = sum(1 for s in systems if s)
    before, after = statistics.median(times[False]), statistics.median(times[True])
    print(f"{n:,} prompts with text, {with_sys:,} ({with_sys / n:.1%}) with a system prompt")
    print(
        f"rescored alone: {rescored:,} ({rescored / n:.2%}); own demand {elicit:,}, "
        f"system prompt only {system_only:,}"
    )
    print(f"composed only : {n / before:10,.0f} prompts/s (median of {args.repeat})")
    print(f"with demand   : {n / after:10,.0f} prompts/s ({after / before - 1:+.1%})")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
