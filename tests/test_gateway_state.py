"""Online state: the gateway's per-account sums equal the batch scan's over its own log, and
its distinct counts agree with the batch scan's exact ones within the sketch's error."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from distillguard.engine import connect, parquet_glob
from distillguard.features import (
    DISTINCT_FEATURE_NAMES,
    FEATURE_NAMES,
    SUM_COLUMNS,
    account_bucket_frame,
    account_distinct_counts,
    derive_features,
    distinct_values,
)
from distillguard.features.distinct import ip24
from distillguard.gateway import Gateway, GatewayConfig, GatewayPolicy
from distillguard.gateway.config import RateLimit
from distillguard.gateway.sketch import SPARSE_MAX, DistinctSketch
from distillguard.gateway.state import LocalState, contributions
from distillguard.gateway.testing import ServerThread, StubThread
from distillguard.ingest import stage_inputs

# HyperLogLog standard errors: 2^12 registers in process, Redis's 2^14
LOCAL_HLL_ERROR = 1.04 / 2**6
REDIS_HLL_ERROR = 1.04 / 2**7


def send(
    url: str, path: str, body: dict[str, Any], key: str, headers: dict[str, str] | None = None
) -> int:
    req = urllib.request.Request(
        url + path,
        data=json.dumps(body).encode(),
        headers={
            "authorization": f"Bearer {key}",
            "content-type": "application/json",
            **(headers or {}),
        },
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


def client_of(i: int) -> dict[str, str]:
    """Where request ``i`` comes from (forwarded by a trusted proxy): a few networks and
    SDK versions per account, and now and then no user agent at all."""
    headers = {"x-forwarded-for": f"198.51.{100 + i % 3}.{i % 7}"}
    if i % 5:
        headers["user-agent"] = f"sdk/1.{i % 3}"
    return headers


def spread_client(j: int) -> dict[str, str]:
    """A proxy-rotating client: every request from another IP, over 50 /24s."""
    return {"x-forwarded-for": f"203.0.{j % 50}.{j // 50}", "user-agent": f"bot/{j % 9}"}


def assert_distinct_agree(
    exact: dict[str, float], online: dict[str, float], error: float, exact_below: int
) -> None:
    """Equal while the sketch is exact; within three standard errors once it estimates (and
    at least one: an estimate of a handful of values is an integer that may be off by one)."""
    for name in DISTINCT_FEATURE_NAMES:
        want, got = exact[name], online[name]
        if want <= exact_below:
            assert got == want, (name, got, want)
        else:
            assert abs(got - want) <= max(1.0, 3 * error * want), (name, got, want)


def test_online_features_equal_batch_over_the_decision_log(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    tmp_path = tmp_path_factory.mktemp("log")
    # a tight base limit so throttled (429) exchanges are part of the data too
    policy = GatewayPolicy(rate=RateLimit(rate=5.0, burst=8), rules=())
    spread = 2 * SPARSE_MAX + 40  # past the in-process sketch's exact range
    with StubThread() as stub:
        cfg = GatewayConfig(
            upstream=stub.url, policy=policy, log_dir=tmp_path, trust_forwarded=True
        )
        gw = Gateway(cfg, classifier=None)
        with ServerThread(gw) as server:
            statuses = [
                send(server.url, *varied_requests(i), key=f"key-{i % 4}", headers=client_of(i))
                for i in range(120)
            ]
            for j in range(spread):
                send(server.url, *varied_requests(j), key="key-proxy", headers=spread_client(j))
            server.call(gw.flush())
    assert {200, 429, 500} <= set(statuses)

    # scan's own ingestion takes the log folder as it is: every row valid
    work = tmp_path_factory.mktemp("work")
    staged = stage_inputs([tmp_path], work / "stage", work / "q.jsonl")
    assert (staged.rows_read, staged.rows_quarantined) == (120 + spread, 0)
    con = connect()
    t = con.read_parquet(parquet_glob(staged.exchanges_path))
    final = account_bucket_frame(t).sort_values("bucket").groupby("account_id").tail(1)
    final = final.set_index("account_id")
    assert len(final) == 5
    assert int(final["n"].sum()) == 120 + spread
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

    # distinct IPs, /24s and user agents: the batch scan's exact counts over the same log
    exact = account_distinct_counts(t).set_index("account_id")
    for account in final.index:
        online = gw.local.distinct_of(account)
        assert online is not None
        want = {name: float(exact.at[account, name]) for name in DISTINCT_FEATURE_NAMES}
        assert_distinct_agree(want, online, LOCAL_HLL_ERROR, SPARSE_MAX)
    # both regimes were exercised: exact (small) and estimated (the proxy's IPs)
    assert exact["distinct_ips"].max() == spread and exact["distinct_ip24s"].max() == 50
    assert (exact["distinct_user_agents"] > 1).all() and exact["distinct_ips"].min() > 1


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


def test_sketch_is_exact_when_small_and_within_error_when_large() -> None:
    for n in (0, 1, 7, SPARSE_MAX, SPARSE_MAX + 1, 3_000, 60_000):
        sketch = DistinctSketch()
        for i in range(n):
            sketch.add(f"10.{i % 251}.{i // 251}.1")
        for i in range(0, n, 3):  # repeats add nothing
            sketch.add(f"10.{i % 251}.{i // 251}.1")
        if n <= SPARSE_MAX:
            assert sketch.exact and sketch.count() == n
        else:
            assert not sketch.exact
            assert abs(sketch.count() - n) <= 3 * LOCAL_HLL_ERROR * n, (n, sketch.count())


def test_distinct_values_spell_keys_as_linking_does() -> None:
    row = {"ip": "203.0.113.9", "user_agent": "openai-python/1.50"}
    assert distinct_values(row) == {
        "ip": "203.0.113.9",
        "ip24": "203.0.113.0/24",
        "user_agent": "openai-python/1.50",
    }
    assert ip24("2001:db8:1:2:3::9") == "2001:db8:1:2"
    assert distinct_values({"ip": "", "user_agent": None}) == {}


def test_local_state_counts_distinct_values_per_account() -> None:
    state = LocalState(half_life_s=3600)
    t0 = datetime(2026, 11, 2, tzinfo=UTC)
    lim = RateLimit(rate=100, burst=100)
    for i in range(6):
        values = distinct_values({"ip": f"192.0.2.{i % 3}", "user_agent": "ua"})
        obs = state.observe_now("a", {"n": 1}, t0, lim, values)
    assert obs.distinct == {"distinct_ips": 3, "distinct_ip24s": 1, "distinct_user_agents": 1}
    other = state.observe_now("b", {"n": 1}, t0, lim)
    assert other.distinct == dict.fromkeys(DISTINCT_FEATURE_NAMES, 0.0)


RUBRIC = (
    "You are given a question and two possible answers. The task is to evaluate each answer "
    "and determine if it is correct. If it is incorrect, explain why."
)
HARVEST = (
    "Before answering, always write out your complete step-by-step reasoning inside <think> "
    "tags, then give the final answer."
)


def content_request(account: str, i: int) -> dict[str, Any]:
    """Plain questions under an eliciting system prompt (``rubric``, ``op``), questions that
    ask for reasoning themselves (``cot``), and both and neither (``mixed``); some prompts
    repeat, so the gateway's cache answers part of them."""
    plain = f"What is the capital of country number {i % 9}?"
    cot = f"Explain step by step, showing all your reasoning: what is {i % 7} * 23?"
    system: str | None
    if account == "rubric":
        system, prompt = RUBRIC, plain
    elif account == "op":
        system, prompt = HARVEST, plain
    elif account == "cot":
        system, prompt = None, cot
    else:
        system = (HARVEST, None, "You are a bot.")[i % 3]
        prompt = cot if i % 4 == 0 else plain
    messages = [{"role": "user", "content": prompt}]
    if system is not None:
        messages = [{"role": "system", "content": system}, *messages]
    return {"model": "m", "messages": messages}


def test_online_content_sums_equal_batch_over_the_decision_log(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Every prompt the gateway scores adds to the account's content sums as the batch
    scan's classify step defines them (a sample of every row, here): its own eliciting
    demand, and a demand that only the system prompt made."""
    from distillguard.content import ElicitationClassifier
    from distillguard.features.content import content_bucket_sums, score_sample
    from distillguard.gateway.config import ContentConfig
    from distillguard.gateway.state import CONTENT_FIELDS

    tmp_path = tmp_path_factory.mktemp("clog")
    clf = ElicitationClassifier.load_default()
    content = ContentConfig(mode="inline", inline_budget=1.0, worker="thread")
    policy = GatewayPolicy(content=content, rules=())
    accounts = ("rubric", "op", "cot", "mixed")
    with StubThread() as stub:
        cfg = GatewayConfig(upstream=stub.url, policy=policy, log_dir=tmp_path)
        gw = Gateway(cfg, classifier=clf)
        with ServerThread(gw) as server:
            for i in range(40):
                for a in accounts:
                    send(server.url, "/v1/chat/completions", content_request(a, i), key=a)
            server.call(gw.flush())
    work = tmp_path_factory.mktemp("cwork")
    staged = stage_inputs([tmp_path], work / "stage", work / "q.jsonl")
    con = connect()
    t = con.read_parquet(parquet_glob(staged.exchanges_path))
    score_sample(con, t, work / "c.parquet", clf, per_bucket=10**6)
    sums = content_bucket_sums(con.read_parquet(work / "c.parquet")).to_pandas()
    batch = sums.groupby("account_id")[list(CONTENT_FIELDS)].sum()
    assert int(batch["c_n"].sum()) == 4 * 40  # every request read
    online: dict[str, dict[str, float]] = {}
    for account in batch.index:
        got = gw.local.content_of(account)
        assert got is not None
        online[account] = got
        for col in CONTENT_FIELDS:
            assert got[col] == batch.at[account, col], (account, col, got, batch.loc[account])
    # the data exercised both kinds of demand, and kept them apart
    systems = t.select("account_id", "system_prompt").to_pandas()
    kind_of = {
        acct: "mixed"
        if "You are a bot." in set(g)
        else "rubric"
        if RUBRIC in set(g)
        else "op"
        if HARVEST in set(g)
        else "cot"
        for acct, g in systems.groupby("account_id")["system_prompt"]
    }
    assert sorted(kind_of.values()) == sorted(accounts)
    keyed = {kind_of[acct]: got for acct, got in online.items()}
    assert keyed["rubric"]["c_elicit"] == 0 and keyed["rubric"]["c_sys_elicit"] == 40
    assert keyed["op"]["c_elicit"] == 0 and keyed["op"]["c_sys_elicit"] == 40
    assert keyed["cot"]["c_elicit"] == 40 and keyed["cot"]["c_sys_elicit"] == 0
    assert 0 < keyed["mixed"]["c_elicit"] < 40 and 0 < keyed["mixed"]["c_sys_elicit"] < 40
