"""Online state: the gateway's per-account sums equal the batch scan's over its own log."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from distillguard.engine import connect, parquet_glob
from distillguard.features import FEATURE_NAMES, SUM_COLUMNS, account_bucket_frame, derive_features
from distillguard.gateway import Gateway, GatewayConfig, GatewayPolicy
from distillguard.gateway.config import RateLimit
from distillguard.gateway.state import LocalState, contributions
from distillguard.gateway.testing import ServerThread, StubThread
from distillguard.ingest import stage_inputs


def send(url: str, path: str, body: dict[str, Any], key: str) -> int:
    req = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as err:
        err.read()
        return int(err.code)


def varied_requests(i: int) -> tuple[str, dict[str, Any]]:
    """Requests that exercise every sum: turns, system prompts, logprobs, n, long outputs."""
    turns = [{"role": "user", "content": f"q{i}"}]
    if i % 3 == 0:
        turns = [*turns, {"role": "assistant", "content": "a"}, {"role": "user", "content": "b"}]
    if i % 4 == 0:
        return "/v1/messages", {
            "model": "m",
            "max_tokens": 8192 if i % 8 == 0 else 100,
            "system": "be brief" if i % 5 == 0 else None,
            "messages": turns,
        }
    body: dict[str, Any] = {"model": "think" if i % 7 == 0 else "m", "messages": turns}
    if i % 2:
        body["messages"] = [{"role": "system", "content": "You are a bot."}, *turns]
    if i % 5 == 0:
        body["logprobs"] = True
    if i % 6 == 0:
        body["n"] = 3
    if i % 9 == 0:
        body["max_tokens"] = 5000
    if i % 10 == 0:
        body["model"] = "error-500"
    return "/v1/chat/completions", body


def test_online_features_equal_batch_over_the_decision_log(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    tmp_path = tmp_path_factory.mktemp("log")
    # a tight base limit so throttled (429) exchanges are part of the data too
    policy = GatewayPolicy(rate=RateLimit(rate=5.0, burst=8), rules=())
    with StubThread() as stub:
        gw = Gateway(
            GatewayConfig(upstream=stub.url, policy=policy, log_dir=tmp_path), classifier=None
        )
        with ServerThread(gw) as server:
            statuses = [
                send(server.url, *varied_requests(i), key=f"key-{i % 4}") for i in range(120)
            ]
            server.call(gw.flush())
    assert {200, 429, 500} <= set(statuses)

    # scan's own ingestion takes the log folder as it is: every row valid
    work = tmp_path_factory.mktemp("work")
    staged = stage_inputs([tmp_path], work / "stage", work / "q.jsonl")
    assert (staged.rows_read, staged.rows_quarantined) == (120, 0)
    con = connect()
    t = con.read_parquet(parquet_glob(staged.exchanges_path))
    final = account_bucket_frame(t).sort_values("bucket").groupby("account_id").tail(1)
    final = final.set_index("account_id")
    assert len(final) == 4
    assert int(final["n"].sum()) == 120
    batch = derive_features({c: final[c].to_numpy() for c in [*SUM_COLUMNS, "active_buckets"]})
    for i, account in enumerate(final.index):
        online = gw.local.sums_of(account)
        assert online is not None
        for col in [*SUM_COLUMNS, "active_buckets"]:
            assert online[col] == final.at[account, col], (account, col)
        feats = derive_features(online)
        for name in FEATURE_NAMES:
            assert np.isclose(feats[name], batch[name][i]), (account, name)
    # the data exercised the sums this test is about
    assert final["logprobs"].sum() > 0 and final["multi_n"].sum() > 0
    assert final["long_max_tokens"].sum() > 0 and final["reasoning_tok"].sum() > 0
    assert (final["single_turn"] < final["n"]).all()


def test_gcra_allows_burst_then_rate() -> None:
    state = LocalState(half_life_s=3600)
    t0 = datetime(2026, 11, 2, tzinfo=UTC)
    limit = RateLimit(rate=2.0, burst=3)
    got = [state.observe_now("a", {"n": 1}, t0, limit).retry_after for _ in range(4)]
    assert got[:3] == [0.0, 0.0, 0.0] and got[3] == pytest.approx(0.5)
    later = t0 + timedelta(seconds=0.5)
    assert state.observe_now("a", {"n": 1}, later, limit).retry_after == 0.0
    assert state.observe_now("b", {"n": 1}, t0, limit).retry_after == 0.0  # per account


def test_decayed_counts_halve_per_half_life() -> None:
    state = LocalState(half_life_s=60)
    t0 = datetime(2026, 11, 2, tzinfo=UTC)
    lim = RateLimit(rate=100, burst=100)
    for _ in range(10):
        state.observe_now("a", {"n": 1}, t0, lim)
    obs = state.observe_now("a", {"n": 1}, t0 + timedelta(seconds=60), lim)
    assert obs.decayed_n == pytest.approx(10 / 2 + 1)
    assert obs.sums["n"] == 11


def test_contributions_follow_the_batch_definition() -> None:
    row = {
        "ts": datetime(2026, 11, 2, 13, tzinfo=UTC),
        "input_tokens": 0,
        "output_tokens": 0,
        "turn_index": 2,
        "logprobs": None,
        "top_logprobs": 3,
        "n": 2,
        "max_tokens": 4096,
        "system_prompt": "x",
    }
    c = contributions(row)
    assert c == {
        "n": 1,
        "logprobs": 1,
        "multi_n": 1,
        "long_max_tokens": 1,
        "with_system": 1,
        "h13": 1,
    }
