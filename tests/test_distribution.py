"""The prompt sketch and the distribution test, on real public prompts shipped in the package
(self-instruct seed tasks, GSM8K, HumanEval, tau-bench: ``content/data/PROVENANCE.md``)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from distillguard.detectors import create
from distillguard.features.content import CONTENT_SUM_COLUMNS
from distillguard.features.derive import derive_features
from distillguard.features.sketch import (
    SKETCH_COLUMNS,
    SKETCH_DIM,
    SKETCH_FEATURES,
    SKETCH_SCALE,
    SKETCH_SQ_COLUMN,
    SKETCH_SQ_FEATURE,
    mmd2_unbiased,
    prompt_sketch,
)


@cache
def pool(name: str) -> tuple[str, ...]:
    text = resources.files("distillguard.content").joinpath(f"data/{name}.jsonl").read_text()
    return tuple(json.loads(line)["prompt"] for line in text.splitlines() if line.strip())


def draw(name: str, n: int, rng: np.random.Generator) -> list[str]:
    p = pool(name)
    return [p[i] for i in rng.integers(0, len(p), n)]


def row(prompts: list[str]) -> dict[str, float]:
    """One account's distribution features, as ``derive`` makes them from the sums."""
    vec, sq = prompt_sketch(prompts)
    n = max(len(prompts), 1)
    out = {
        f: float(v) / (n * SKETCH_SCALE)
        for f, v in zip(SKETCH_FEATURES, vec.sum(axis=0), strict=True)
    }
    out[SKETCH_SQ_FEATURE] = float(sq.sum()) / (n * SKETCH_SCALE**2)
    out["content_sampled"] = float(len(prompts))
    return out


def frame(accounts: dict[str, tuple[str, list[str]]]) -> pd.DataFrame:
    df = pd.DataFrame([row(p) for _, p in accounts.values()], index=list(accounts))
    df["peer_group"] = [g for g, _ in accounts.values()]
    return df


def chat_accounts(
    n: int, rng: np.random.Generator, group: str = "free"
) -> dict[str, tuple[str, list[str]]]:
    return {f"chat{i}": (group, draw("self_instruct", 40, rng)) for i in range(n)}


def batch_tenant(j: int, rng: np.random.Generator) -> list[str]:
    """A narrow, honest batch pipeline: one fixed instruction over varying records."""
    instruction = pool("self_instruct")[(37 * j) % len(pool("self_instruct"))]
    return [f"{instruction}\n\nRecord: {r}" for r in draw("gsm8k", 40, rng)]


# --- the sketch ---------------------------------------------------------------------


def test_sketch_is_unit_norm_and_batch_independent() -> None:
    prompts = [*draw("self_instruct", 30, np.random.default_rng(0)), "", "ab"]
    vec, sq = prompt_sketch(prompts)
    assert vec.shape == (32, SKETCH_DIM)
    norms = np.sqrt(sq[:30]) / SKETCH_SCALE
    assert np.allclose(norms, 1.0, atol=0.01)
    assert not vec[30:].any() and not sq[30:].any()  # no 3-gram: no evidence
    one_by_one = np.concatenate([prompt_sketch([p])[0] for p in prompts])
    assert np.array_equal(vec, one_by_one)


def test_sketch_sums_merge_exactly() -> None:
    prompts = draw("gsm8k", 50, np.random.default_rng(1))
    whole, whole_sq = prompt_sketch(prompts)
    a, a_sq = prompt_sketch(prompts[:20])
    b, b_sq = prompt_sketch(prompts[20:])
    assert np.array_equal(whole.sum(axis=0), a.sum(axis=0) + b.sum(axis=0))
    assert whole_sq.sum() == a_sq.sum() + b_sq.sum()


def test_mmd_is_unbiased_for_one_distribution_and_large_for_two() -> None:
    def sums(prompts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        v, q = prompt_sketch(prompts)
        return (
            v.sum(axis=0)[None, :] / SKETCH_SCALE,
            np.array([q.sum() / SKETCH_SCALE**2]),
            np.array([float(len(prompts))]),
        )

    rng = np.random.default_rng(2)
    same = [
        float(
            mmd2_unbiased(
                *sums(draw("self_instruct", 40, rng)), *sums(draw("self_instruct", 40, rng))
            )[0]
        )
        for _ in range(20)
    ]
    other = float(
        mmd2_unbiased(*sums(draw("self_instruct", 40, rng)), *sums(draw("humaneval", 40, rng)))[0]
    )
    # Unbiased: two samples of one distribution average about zero, either sign.
    assert abs(np.mean(same)) < 3 * np.std(same) / np.sqrt(len(same)) + 1e-4
    assert min(same) < 0 < max(same)
    assert other > 5 * max(same)


def test_derive_turns_sketch_sums_into_means() -> None:
    prompts = draw("tau_bench", 12, np.random.default_rng(3))
    vec, sq = prompt_sketch(prompts)
    sums: dict[str, float] = dict.fromkeys(CONTENT_SUM_COLUMNS, 0.0)
    sums |= {c: float(v) for c, v in zip(SKETCH_COLUMNS, vec.sum(axis=0), strict=True)}
    sums[SKETCH_SQ_COLUMN] = float(sq.sum())
    sums["c_n"] = 12.0
    base = {"n": 12, "active_buckets": 1, "in_tok": 1, "out_tok": 1, "reasoning_tok": 0}
    base |= dict.fromkeys(("single_turn", "logprobs", "multi_n", "long_max_tokens"), 0)
    base |= {f"h{h:02d}": 0 for h in range(24)}
    f = derive_features(base | sums)
    assert np.isclose(float(f[SKETCH_FEATURES[3]]), vec[:, 3].sum() / (12 * SKETCH_SCALE))
    assert np.isclose(float(f[SKETCH_SQ_FEATURE]), 1.0, atol=0.01)


# --- the detector -------------------------------------------------------------------


def test_account_from_another_distribution_is_above_its_peers_bar() -> None:
    rng = np.random.default_rng(10)
    accounts = chat_accounts(60, rng)
    accounts["odd"] = ("free", draw("humaneval", 40, rng))
    X = frame(accounts)
    out = create("distribution").fit(X).score(X)
    odd = X.index.get_loc("odd")
    assert out.raw[odd] > 1.0 and out.score[odd] > 0.5
    assert "prompts unlike its peers'" in out.reasons[odd][0]
    # the bar is the benign-vs-benign comparison itself: few peers are above it
    assert (out.raw[:60] > 1.0).mean() <= 0.05


def test_narrow_batch_tenant_is_not_unusual_among_its_peers() -> None:
    """Like with like: a batch tenant is narrow, but so is every batch tenant."""
    rng = np.random.default_rng(11)
    accounts = chat_accounts(60, rng)
    accounts |= {f"tenant{j}": ("enterprise", batch_tenant(j, rng)) for j in range(40)}
    X = frame(accounts)
    det = create("distribution", {"min_peers": 30}).fit(X)
    new = {f"new{j}": ("enterprise", batch_tenant(100 + j, rng)) for j in range(5)}
    among_peers = det.score(frame(new)).raw
    assert (among_peers < 1.0).all(), among_peers
    # The same tenants measured against chat users (one global pool) would all stand out.
    against_chat = create("distribution").fit(frame(chat_accounts(60, rng))).score(frame(new)).raw
    assert (against_chat > 1.0).all(), against_chat


def test_campaign_pooled_prompts_beat_random_groups_of_as_many_accounts() -> None:
    rng = np.random.default_rng(12)
    accounts = chat_accounts(80, rng)
    accounts |= {f"tenant{j}": ("free", batch_tenant(j, rng)) for j in range(10)}
    X = frame(accounts)
    det = create("distribution").fit(X)

    def pooled(prompts: list[list[str]], name: str) -> pd.DataFrame:
        df = frame({name: ("__all__", [p for ps in prompts for p in ps])})
        df["accounts"] = float(len(prompts))
        return df

    # Eight accounts fed by one pipeline, each thin (15 prompts: below one account's
    # evidence floor), together unlike the population.
    harvest = [draw("gsm8k", 8, rng) + draw("humaneval", 7, rng) for _ in range(8)]
    assert det.score(frame({f"h{i}": ("free", p) for i, p in enumerate(harvest)})).raw.max() == 0.0
    camp = det.score(pooled(harvest, "campaign"))
    assert camp.raw[0] > 1.0 and "random groups of 8 accounts" in camp.reasons[0][0]
    honest = [accounts[f"chat{i}"][1] for i in rng.choice(80, 8, replace=False)]
    assert det.score(pooled(honest, "group")).raw[0] < 1.0


def test_too_few_prompts_say_nothing() -> None:
    rng = np.random.default_rng(13)
    accounts = chat_accounts(40, rng)
    accounts["thin"] = ("free", draw("humaneval", 5, rng))
    X = frame(accounts)
    out = create("distribution").fit(X).score(X)
    assert out.raw[X.index.get_loc("thin")] == 0.0


@pytest.mark.parametrize("group", ["free", "__all__"])
def test_an_account_is_left_out_of_its_own_reference(group: str) -> None:
    """With itself in the reference a large account would hide its own difference."""
    rng = np.random.default_rng(14)
    accounts = chat_accounts(40, rng, group)
    accounts["big"] = (group, draw("humaneval", 160, rng) * 10)
    X = frame(accounts)
    det = create("distribution", {"min_peers": 10}).fit(X)
    inside = det.score(X).raw[X.index.get_loc("big")]
    unseen = det.score(X.loc[["big"]].rename(index={"big": "someone_else"})).raw[0]
    assert inside > unseen > 0.0


def test_scan_with_the_distribution_test_enabled(tmp_path: Path) -> None:
    """Off by default; a policy that lists it gets the sketch summed through the scan and
    the detector's scores, and the default policy's results are unchanged by it."""
    import tomllib

    import distillguard.policy
    from distillguard.policy import load_policy, parse_policy
    from distillguard.scan import run_scan
    from tests.conftest import traffic, write_jsonl

    log = write_jsonl(tmp_path / "traffic.jsonl", traffic(seed=2))
    default = load_policy()
    assert "distribution" not in {d.name for d in default.detectors}
    text = (Path(distillguard.policy.__file__).parent / "policies" / "default.toml").read_text()
    data = tomllib.loads(text)

    def accounts(policy: Any, name: str) -> pd.DataFrame:
        out = run_scan([log], tmp_path / name, policy=policy).accounts
        return out.set_index("account_id").sort_index()

    plain = accounts(default, "plain")
    runs = {}
    for weight in (0.0, 1.0):
        data["detectors"]["distribution"] = {"weight": weight, "campaign_weight": 0.0}
        runs[weight] = accounts(parse_policy(data, "t"), f"w{weight}")
    # weight 0: the same accounts flagged with the same scores
    assert plain["flagged"].tolist() == runs[0.0]["flagged"].tolist()
    assert np.allclose(plain["score"], runs[0.0]["score"])
    # with weight, its scores (from the sketch sums the scan carried) move the accounts'
    assert not np.allclose(plain["score"], runs[1.0]["score"])
