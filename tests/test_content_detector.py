"""The content detector's peer bar: robust to harvesters among the peers, including a peer
group they have filled."""

from __future__ import annotations

import numpy as np
import pandas as pd

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
