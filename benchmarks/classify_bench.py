"""Throughput of the content classifier (batch path) and latency of score_one.

    /tmp/venv/bin/python benchmarks/classify_bench.py [--n 100000] [--workers 2] [--repeat 5]

The prompt mix is the training corpus (attacks and benign look-alikes, English and
Chinese) plus the vendored public prompts, cycled to --n prompts; mean length is printed
because throughput is per character, not per prompt. Prompts longer than the clip length
cost the same as the clip (head + tail), so very long prompts do not slow it further.
Each rate is the median of --repeat runs, and the load average is printed: on a shared
machine single runs vary by 2x.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

from distillguard.content import ElicitationClassifier, trainset

_CLF: ElicitationClassifier | None = None


def _work(prompts: list[str]) -> int:
    global _CLF
    if _CLF is None:
        _CLF = ElicitationClassifier.load_default()
    return int(_CLF.score(prompts).flagged.sum())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--mix",
        choices=["traffic", "corpus"],
        default="traffic",
        help="traffic: benign prompts with 5%% attacks (like real logs); "
        "corpus: the training corpus, about half attacks (worst case for the rules)",
    )
    args = ap.parse_args()

    corpus = trainset.generate()
    if args.mix == "corpus":
        base = [e.text for e in corpus]
    else:
        benign = [e.text for e in corpus if e.label == 0]
        attacks = [e.text for e in corpus if e.label == 1]
        base = benign + attacks[: len(benign) // 19]
    prompts = (base * (args.n // len(base) + 1))[: args.n]
    mean_len = sum(map(len, prompts)) / len(prompts)
    clf = ElicitationClassifier.load_default()
    clf.score(prompts[:1000])  # warm up

    print(f"{args.n} prompts, mean {mean_len:.0f} chars, load average {os.getloadavg()[0]:.2f}")
    rates = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        s = clf.score(prompts)
        rates.append(args.n / (time.perf_counter() - t))
    print(
        f"1 process : {statistics.median(rates):10,.0f} prompts/s median of {args.repeat} "
        f"(min {min(rates):,.0f}, max {max(rates):,.0f}; {int(s.flagged.sum())} flagged)"
    )

    if args.workers > 1:
        step = 10_000
        chunks = [prompts[i : i + step] for i in range(0, len(prompts), step)]
        with ProcessPoolExecutor(args.workers) as pool:
            list(pool.map(_work, chunks[: args.workers]))  # load weights in each worker
            rates = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                flagged = sum(pool.map(_work, chunks))
                rates.append(args.n / (time.perf_counter() - t))
        print(
            f"{args.workers} processes: {statistics.median(rates):10,.0f} prompts/s median of "
            f"{args.repeat} (min {min(rates):,.0f}, max {max(rates):,.0f}; {flagged} flagged)"
        )

    lat = []
    sample = prompts[:2000]
    for p in sample:
        t = time.perf_counter()
        clf.score_one(p)
        lat.append((time.perf_counter() - t) * 1e6)
    lat.sort()
    p99 = lat[int(0.99 * len(lat))]
    print(f"score_one : median {statistics.median(lat):.0f} us, p99 {p99:.0f} us")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
