"""The batch (Ibis) and online (per-row) spellings of the account sums must agree."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from distillguard.engine import connect
from distillguard.features import (
    FEATURE_NAMES,
    SUM_COLUMNS,
    AccountSums,
    account_bucket_frame,
    derive_features,
)
from distillguard.ingest import stage_inputs
from tests.conftest import traffic, write_jsonl


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("feat")
    rows = traffic(seed=3, benign=15, attackers=3, days=3)
    for i, r in enumerate(rows[:200]):  # optional fields present on some rows only
        r.update(
            {
                "logprobs": i % 3 == 0,
                "n": 1 + i % 4,
                "max_tokens": 512 * (i % 10),
                "reasoning_tokens": i,
                "system_prompt": "You are a helpful bot." if i % 2 else None,
            }
        )
    path = write_jsonl(tmp / "t.jsonl", rows)
    return stage_inputs([path], tmp / "work", tmp / "q.jsonl").exchanges_path


def test_batch_and_online_sums_agree(staged: Path) -> None:
    con = connect()
    t = con.read_parquet(staged)
    cum = account_bucket_frame(t)
    final = cum.sort_values("bucket").groupby("account_id").tail(1).set_index("account_id")

    online: dict[str, AccountSums] = {}
    table = pq.read_table(staged).sort_by("ts").to_pylist()
    for r in table:
        online.setdefault(r["account_id"], AccountSums()).learn_one(r)

    assert set(online) == set(final.index)
    for acc, state in online.items():
        got = state.as_row()
        for col in SUM_COLUMNS:
            assert got[col] == final.at[acc, col], (acc, col)
        assert got["active_buckets"] == final.at[acc, "active_buckets"]
        assert got["first_ts"] == final.at[acc, "first_ts"].to_pydatetime()

    batch_feats = derive_features(
        {c: final[c].to_numpy() for c in [*SUM_COLUMNS, "active_buckets"]}
    )
    for i, acc in enumerate(final.index):
        one = derive_features(online[acc].as_row())
        for name in FEATURE_NAMES:
            assert np.isclose(one[name], batch_feats[name][i]), (acc, name)


def test_cumulative_sums_only_use_the_past(staged: Path) -> None:
    con = connect()
    t = con.read_parquet(staged)
    cum = account_bucket_frame(t)
    raw = pq.read_table(staged).to_pandas()
    raw["day"] = raw["ts"].dt.floor("D")
    for _, r in cum.sample(10, random_state=0).iterrows():
        upto = raw[(raw.account_id == r.account_id) & (raw.day <= r.bucket)]
        assert r.n == len(upto)
        assert r.out_tok == upto.output_tokens.sum()


def test_hour_entropy_is_time_zone_free() -> None:
    hist = {f"h{h:02d}": (10 if 9 <= h <= 17 else 0) for h in range(24)}
    shifted = {f"h{(h + 7) % 24:02d}": v for h, v in enumerate(hist.values())}
    base = {
        "n": 90,
        "in_tok": 1,
        "out_tok": 1,
        "reasoning_tok": 0,
        "single_turn": 0,
        "logprobs": 0,
        "multi_n": 0,
        "long_max_tokens": 0,
        "with_system": 0,
        "active_buckets": 3,
    }
    a = derive_features({**base, **hist})
    b = derive_features({**base, **shifted})
    assert a["hour_entropy"] == pytest.approx(b["hour_entropy"]) == pytest.approx(np.log2(9))
    flat = derive_features({**base, **{f"h{h:02d}": 5 for h in range(24)}})
    assert flat["hour_entropy"] == pytest.approx(np.log2(24))
    assert pd.notna(a["rate_per_active_day"]) and a["rate_per_active_day"] == 30
