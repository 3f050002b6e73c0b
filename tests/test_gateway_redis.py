"""Shared state through Redis: two gateways, one view; Redis lost mid-traffic.

Each test starts its own redis-server on a free loopback port. Without redis-server these
tests fail with the install instruction (``.ci/run`` installs it; so does the README).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from distillguard.engine import connect
from distillguard.features import SUM_COLUMNS, account_bucket_frame, account_distinct_counts
from distillguard.gateway import Gateway, GatewayConfig, GatewayPolicy
from distillguard.gateway.config import RateLimit, StateConfig
from distillguard.gateway.state import RedisState
from distillguard.gateway.testing import RedisServer, ServerThread, StubThread
from tests.test_gateway_state import (
    REDIS_HLL_ERROR,
    assert_distinct_agree,
    client_of,
    send,
    spread_client,
    varied_requests,
)

SECRET = b"0123456789abcdef-test-secret"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    if not RedisServer.available():
        pytest.fail("redis-server is not installed: apt-get install redis-server (see .ci/run)")
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def stub() -> Iterator[StubThread]:
    with StubThread() as s:
        yield s


def _gateway(stub: StubThread, redis: RedisServer, log_dir: Path, **policy: object) -> Gateway:
    pol = GatewayPolicy(**policy)  # type: ignore[arg-type]
    cfg = GatewayConfig(
        upstream=stub.url,
        policy=pol,
        state_url=redis.url,
        key_secret=SECRET,
        log_dir=log_dir,
        instance=log_dir.name,
        trust_forwarded=True,
    )
    return Gateway(cfg, classifier=None)


def test_two_instances_share_limits_and_sums(
    stub: StubThread, redis_server: RedisServer, tmp_path: Path
) -> None:
    # burst 6 shared by both instances: the 7th request within the burst is refused by
    # whichever instance gets it
    pol = {"rate": RateLimit(rate=0.01, burst=6), "rules": ()}
    a = _gateway(stub, redis_server, tmp_path / "a", **pol)
    b = _gateway(stub, redis_server, tmp_path / "b", **pol)
    with ServerThread(a) as sa, ServerThread(b) as sb:
        got = [
            send((sa if i % 2 else sb).url, *varied_requests(i + 1), key="k1", headers=client_of(i))
            for i in range(9)
        ]
        assert got[:6].count(429) == 0, got
        assert got[6:] == [429, 429, 429]
        for i in range(20):  # another account, through both
            send((sa if i % 2 else sb).url, *varied_requests(i), key="k2", headers=client_of(i))
        for j in range(300):  # a proxy-rotating one: Redis's HLL past its sparse encoding
            gw_url = (sa if j % 2 else sb).url
            send(gw_url, *varied_requests(j), key="k3", headers=spread_client(j))
        sa.call(a.flush())
        sb.call(b.flush())
        shared = sa.call(_sums(a))
        distinct = sb.call(_distinct(b, list(shared)))
    con = connect()
    t = con.read_parquet([str(p) for p in tmp_path.glob("*/exchanges-*.parquet")])
    final = account_bucket_frame(t).sort_values("bucket").groupby("account_id").tail(1)
    final = final.set_index("account_id")
    assert sorted(final["n"].tolist()) == [9, 20, 300]
    for account, sums in shared.items():
        for col in [*SUM_COLUMNS, "active_buckets"]:
            assert sums[col] == final.at[account, col], (account, col)
    # distinct counts: Redis's HyperLogLogs against the exact batch counts over both logs
    exact = account_distinct_counts(t).set_index("account_id")
    assert exact["distinct_ips"].max() == 300
    for account, online in distinct.items():
        want = {name: float(exact.at[account, name]) for name in online}
        assert_distinct_agree(want, online, REDIS_HLL_ERROR, exact_below=0)


async def _distinct(gw: Gateway, accounts: list[str]) -> dict[str, dict[str, float]]:
    primary = getattr(gw.state, "primary", None)
    assert isinstance(primary, RedisState)
    return {account: await primary.distinct_of(account) for account in accounts}


async def _sums(gw: Gateway) -> dict[str, dict[str, float]]:
    primary = getattr(gw.state, "primary", None)
    assert isinstance(primary, RedisState)
    out = {}
    keys = [k async for k in primary.redis.scan_iter(match="dg:a:*")]
    for key in keys:
        account = key.decode()[5:]
        sums = await primary.sums_of(account)
        assert sums is not None
        out[account] = sums
    return out


def test_redis_lost_fails_open_with_local_limits(
    stub: StubThread, redis_server: RedisServer, tmp_path: Path
) -> None:
    gw = _gateway(stub, redis_server, tmp_path / "open", rules=())
    with ServerThread(gw) as server:
        assert send(server.url, *varied_requests(1), key="k") == 200
        redis_server.stop()
        statuses = [send(server.url, *varied_requests(1), key="k") for _ in range(5)]
        assert statuses == [200] * 5
        server.call(gw.flush())
        assert gw.metrics.render().find(b"distillguard_state_fallback 1.0") >= 0
    rows = [r for f in (tmp_path / "open").glob("*.parquet") for r in _rows(f)]
    assert len(rows) == 6
    assert sum("state: local fallback" in r["reasons"] for r in rows) == 5


def test_redis_lost_fails_closed_when_configured(
    stub: StubThread, redis_server: RedisServer, tmp_path: Path
) -> None:
    gw = _gateway(stub, redis_server, tmp_path / "closed", state=StateConfig(fail="closed"))
    with ServerThread(gw) as server:
        assert send(server.url, *varied_requests(1), key="k") == 200
        redis_server.stop()
        assert send(server.url, *varied_requests(1), key="k") == 503
        redis_server.start()  # back: served again once the retry interval has passed
        import time

        time.sleep(gw.policy.state.retry_s + 0.2)
        assert send(server.url, *varied_requests(1), key="k") == 200
        server.call(gw.flush())
    # the refused request is in the log too, with the request's own fields
    rows = [r for f in (tmp_path / "closed").glob("*.parquet") for r in _rows(f)]
    assert sorted((r["status"], r["decision"]) for r in rows) == [
        (200, "allow"),
        (200, "allow"),
        (503, "shed"),
    ]
    (shed,) = [r for r in rows if r["decision"] == "shed"]
    assert shed["reasons"] == ["state: unavailable (fail closed)"]
    assert shed["prompt"] == "q1" and shed["api_key_id"] == shed["account_id"]


def _rows(path: Path) -> list[dict[str, object]]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def test_redis_key_map(stub: StubThread, redis_server: RedisServer, tmp_path: Path) -> None:
    from dataclasses import replace

    import redis

    from distillguard.gateway.identity import KeyHasher

    r = redis.Redis.from_url(redis_server.url)
    r.hset("dg:keymap", KeyHasher(SECRET).key_id("sk-mapped"), "billing-42")
    gw = _gateway(stub, redis_server, tmp_path / "km", rules=())
    gw.config = replace(gw.config, key_map="redis")
    with ServerThread(gw) as server:
        assert send(server.url, *varied_requests(1), key="sk-mapped") == 200
        assert send(server.url, *varied_requests(1), key="sk-unmapped") == 200
        server.call(gw.flush())
    rows = [row for f in (tmp_path / "km").glob("*.parquet") for row in _rows(f)]
    accounts = sorted(str(row["account_id"]) for row in rows)
    assert accounts[0] == "billing-42" and accounts[1].startswith("k_")
    assert r.exists("dg:a:billing-42")
    r.close()
