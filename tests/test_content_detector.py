"""The content detector's peer bar: robust to harvesters among the peers, including a peer
group they have filled."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from distillguard.detectors import create
from distillguard.detectors.base import ALL_PEERS


def _accounts(group: str, n: int, share: float, rng: np.random.Generator) -> pd.DataFrame:
    sampled = rng.integers(150, 300, n).astype(float)
    hits = rng.binomial(sampled.astype(int), share)
    return pd.DataFrame(
        {
            "content_sampled": sampled,
            "elicitation_share": hits / sampled,
            "peer_group": group,
        }
    )


def test_a_tier_filled_by_harvesters_does_not_set_its_own_bar() -> None:
    rng = np.random.default_rng(3)
    parts = {
        "honest_free": _accounts("free", 300, 0.004, rng),
        "honest_startup": _accounts("startup", 12, 0.004, rng),
        "harvest_startup": _accounts("startup", 36, 0.15, rng),
    }
    X = pd.concat(parts.values(), ignore_index=True)
    X.index = pd.Index([f"a{i}" for i in range(len(X))], name="account_id")
    kind = np.concatenate([[k] * len(v) for k, v in parts.items()])
    det = create("content").fit(X)
    score = det.score(X).score
    # the harvesters are three quarters of their tier: its median + 2 deviations is theirs
    assert det.rates_["startup"] <= det.rates_[ALL_PEERS] < 0.05
    assert (score[kind == "harvest_startup"] >= 0.5).all()
    assert (score[kind != "harvest_startup"] < 0.5).all()


def test_a_stricter_tier_keeps_its_own_bar() -> None:
    rng = np.random.default_rng(4)
    X = pd.concat(
        [_accounts("free", 200, 0.03, rng), _accounts("enterprise", 60, 0.0, rng)],
        ignore_index=True,
    )
    X.index = pd.Index([f"a{i}" for i in range(len(X))], name="account_id")
    det = create("content").fit(X)
    assert det.rates_["enterprise"] < det.rates_[ALL_PEERS]


def test_a_system_prompts_demand_counts_once_per_account_and_per_member() -> None:
    rng = np.random.default_rng(5)
    X = _accounts("free", 300, 0.004, rng)
    X["system_demand"] = 0.0
    # an app whose system prompt is a rubric: none of its own prompts elicit
    app = pd.DataFrame(
        {"content_sampled": [90.0], "elicitation_share": [0.0], "peer_group": "free"}
    )
    app["system_demand"] = 1.0
    # a harvester asking in its prompts (and in its system prompt too)
    harvester = app.assign(elicitation_share=0.15)
    X = pd.concat([X, app, harvester], ignore_index=True)
    X.index = pd.Index([f"a{i}" for i in range(len(X))], name="account_id")
    det = create("content", {"system_z": 2.0}).fit(X)
    out = det.score(X)
    app_i, harv_i = len(X) - 2, len(X) - 1
    assert out.raw[app_i] == pytest.approx(2.0)  # one configuration, one bounded piece
    assert out.score[app_i] < 0.05
    assert out.score[harv_i] >= 0.5
    assert any("system prompt" in r for r in out.reasons[harv_i])
    # counted per request, the same app would have been flagged
    per_request = X.iloc[[app_i]].assign(elicitation_share=1.0, system_demand=0.0)
    assert det.score(per_request).score[0] >= 0.5
    # a campaign's pooled row: one configuration per member, combined as z-scores
    pooled = pd.DataFrame(
        {
            "content_sampled": [90.0 * m for m in (1, 3, 7)],
            "elicitation_share": 0.0,
            "peer_group": ALL_PEERS,
            "system_demand": [1.0, 3.0, 7.0],
        },
        index=pd.Index(["c1", "c3", "c7"], name="account_id"),
    )
    raw = det.score(pooled).raw
    assert raw == pytest.approx(2.0 * np.sqrt([1.0, 3.0, 7.0]))
    assert det.score(pooled).score[2] >= 0.5 > det.score(pooled).score[1]
    # the weight is the policy's: 0 ignores the system prompt
    assert (create("content", {"system_z": 0.0}).fit(X).score(pooled).raw == 0).all()


def test_system_z_must_not_be_negative() -> None:
    from distillguard.errors import ConfigError

    with pytest.raises(ConfigError, match="system_z"):
        create("content", {"system_z": -1.0})
