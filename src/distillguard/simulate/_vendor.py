"""Rebuild the vendored data subsets under ``simulate/data`` from ``shared/data``.

A maintainer tool, never imported at run time: users' clones do not have the shared
folder, so the simulator reads only the small derived files this writes. Run it as
``python -m distillguard.simulate._vendor /path/to/shared/data``.
"""

from __future__ import annotations

import ast
import gzip
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

OUT = Path(__file__).parent / "data"
N_Q = 256  # quantile points kept per length distribution: plenty for sampling, tiny on disk


def _jsonl(path: Path) -> list[dict[str, object]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def _common_affix(texts: list[str]) -> tuple[str, str]:
    # Character-wise on purpose: template frames are literal text around the slot.
    prefix = os.path.commonprefix(texts)  # noqa: RUF071
    suffix = os.path.commonprefix([t[::-1] for t in texts])[::-1]  # noqa: RUF071
    return prefix, suffix


def _t0_frames(folder: Path) -> list[dict[str, str]]:
    # Only the promptsource template frame (Apache-2.0) is kept; the wrapped third-party
    # dataset text is not, because its licences vary. The simulator fills the slot itself.
    frames = []
    for path in sorted(folder.glob("*.jsonl")):
        prompts = [str(r["prompt"]) for r in _jsonl(path)[:300]]
        prefix, suffix = _common_affix(prompts)
        if len(prefix.strip()) + len(suffix.strip()) >= 12:
            frames.append({"name": path.stem, "prefix": prefix, "suffix": suffix})
    return frames


def _prompts(data: Path) -> dict[str, object]:
    seed = []
    for r in _jsonl(data / "self_instruct" / "seed_tasks.jsonl"):
        inst = r["instances"][0] if r.get("instances") else {"input": ""}  # type: ignore[index]
        seed.append({"instruction": r["instruction"], "input": inst["input"]})
    user = []
    for r in _jsonl(data / "self_instruct" / "user_oriented_instructions.jsonl"):
        inst = r["instances"][0] if r.get("instances") else {"input": ""}  # type: ignore[index]
        user.append(
            {"app": r["motivation_app"], "instruction": r["instruction"], "input": inst["input"]}
        )
    gsm = [str(r["question"]) for r in _jsonl(data / "gsm8k" / "test.jsonl")]
    gsm += [str(r["question"]) for r in _jsonl(data / "gsm8k" / "train.jsonl")[:1500]]
    math = [str(r["question"]) for r in _jsonl(data / "math500" / "test.jsonl")]
    humaneval = [str(r["prompt"]) for r in _jsonl(data / "humaneval" / "HumanEval.jsonl.gz")]
    tau = [
        {"env": r["env"], "instruction": r["instruction"]}
        for r in _jsonl(data / "tau_bench" / "tau_bench_user_instructions.jsonl")
    ]
    roles = {
        "user": (data / "camel" / "user_roles.txt").read_text().split("\n"),
        "assistant": (data / "camel" / "assistant_roles.txt").read_text().split("\n"),
    }
    roles = {k: [x.split(".", 1)[-1].strip() for x in v if x.strip()] for k, v in roles.items()}
    return {
        "seed_tasks": seed,
        "user_oriented": user,
        "gsm8k": gsm,
        "math": math,
        "humaneval": humaneval,
        "tau_bench": tau,
        "t0_frames": _t0_frames(data / "self_instruct" / "t0_batch_templates"),
        "camel_roles": roles,
    }


def _q(values: np.ndarray) -> np.ndarray:
    return np.quantile(values.astype(np.float64), np.linspace(0, 1, N_Q)).astype(np.float32)


def _mixture_quantiles(dists: list[dict[float, float]]) -> np.ndarray:
    merged: dict[float, float] = {}
    for d in dists:
        for k, p in d.items():
            merged[float(k)] = merged.get(float(k), 0.0) + float(p)
    keys = np.array(sorted(merged))
    cdf = np.cumsum([merged[k] for k in keys])
    cdf /= cdf[-1]
    picked: np.ndarray = keys[np.searchsorted(cdf, np.linspace(0, 1, N_Q)).clip(0, len(keys) - 1)]
    return picked.astype(np.float32)


def _lengths(data: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for name in ("conv", "code"):
        d = pd.read_csv(data / "azure_llm_2023" / f"AzureLLMInferenceTrace_{name}.csv")
        out[f"azure_{name}_in"] = _q(d.ContextTokens.to_numpy())
        out[f"azure_{name}_out"] = _q(d.GeneratedTokens.to_numpy())
        ts = pd.to_datetime(d.TIMESTAMP).to_numpy().astype("int64") / 1e9
        gaps = np.diff(np.sort(ts))
        out[f"azure_{name}_stats"] = np.array(
            [gaps.std() / gaps.mean(), len(d) / (ts.max() - ts.min())], dtype=np.float32
        )
    for name in ("conversation", "synthetic"):
        d = pd.read_json(data / "mooncake" / f"{name}_trace.jsonl", lines=True)
        out[f"mooncake_{name}_in"] = _q(d.input_length.to_numpy())
        out[f"mooncake_{name}_out"] = _q(d.output_length.to_numpy())
    outs, ins = [], []
    for path in sorted((data / "servegen" / "reason" / "deepseek-r1").glob("chunk-*-dataset.json")):
        for window in json.loads(path.read_text()).values():
            outs.append(ast.literal_eval(window["output_tokens"]))
            ins.append(ast.literal_eval(window["input_tokens"]))
    out["r1_out"] = _mixture_quantiles(outs)
    out["r1_in"] = _mixture_quantiles(ins)
    return out


def _servegen(data: Path) -> dict[str, np.ndarray]:
    # Per client: hourly mean rate (req/s) and hourly rate-weighted inter-arrival CV over
    # the 14 traced days. Hourly rather than 10-minute windows keeps this under 1 MB.
    rates, cvs, tiers = [], [], []
    for tier_i, tier in enumerate(("m-large", "m-mid", "m-small")):
        for path in sorted((data / "servegen" / "language" / tier).glob("chunk-*-trace.csv")):
            d = pd.read_csv(path, header=None, usecols=[0, 1, 2]).to_numpy()
            if len(d) < 2016:
                continue
            r = d[:2016, 1].reshape(336, 6)
            c = d[:2016, 2].reshape(336, 6)
            hr = r.mean(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                hc = np.where(r.sum(axis=1) > 0, (r * c).sum(axis=1) / r.sum(axis=1), 0.0)
            rates.append(hr)
            cvs.append(hc)
            tiers.append(tier_i)
    return {
        "rate": np.array(rates, dtype=np.float32),
        "cv": np.array(cvs, dtype=np.float16),
        "tier": np.array(tiers, dtype=np.int8),
    }


def build(data: Path) -> None:
    OUT.mkdir(exist_ok=True)
    with gzip.open(OUT / "prompts.json.gz", "wt", encoding="utf-8") as fh:
        json.dump(_prompts(data), fh, ensure_ascii=False)
    np.savez_compressed(OUT / "lengths.npz", **_lengths(data))  # type: ignore[arg-type]
    np.savez_compressed(OUT / "servegen_clients.npz", **_servegen(data))  # type: ignore[arg-type]


if __name__ == "__main__":
    build(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data"))
