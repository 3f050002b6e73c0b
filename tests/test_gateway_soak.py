"""A bounded soak on loopback: fixed request count, every detector on, 32 connections.

Memory must level off (no per-request growth) and every request must have its
decision-log row, also under overload, where most requests are shed.
"""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
from collections import Counter
from dataclasses import replace
from pathlib import Path

import aiohttp
import orjson
import pyarrow.parquet as pq

from distillguard.gateway import Gateway, GatewayConfig, load_gateway_policy
from distillguard.gateway.config import RateLimit
from distillguard.gateway.testing import ServerThread, StubThread

CONNECTIONS = 32
WARMUP = 900
MEASURED = 1800


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


HARVESTERS = 5  # of 50 keys


def prompt(i: int) -> str:
    if i % 50 < HARVESTERS:
        return f"Think step by step and show all your reasoning, then write 10 more examples {i}"
    return f"Suggest a name for a small bakery on street number {i}"


async def load(url: str, start: int, count: int) -> dict[tuple[bool, int], int]:
    statuses: dict[tuple[bool, int], int] = {}
    queue = iter(range(start, start + count))
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for i in queue:
                stream = i % 3 == 0
                body = {
                    "model": "m",
                    "stream": stream,
                    # new prompt text every time: the content cache cannot hide the scorer
                    "messages": [{"role": "user", "content": prompt(i)}],
                }
                headers = {"authorization": f"Bearer key-{i % 50}"}
                async with session.post(
                    url + "/v1/chat/completions", data=orjson.dumps(body), headers=headers
                ) as resp:
                    await resp.read()
                    k = (i % 50 < HARVESTERS, resp.status)
                    statuses[k] = statuses.get(k, 0) + 1

        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    return statuses


def test_soak_no_memory_growth_no_lost_rows(tmp_path: Path) -> None:
    # the packaged policy (content check, rules, limits) with a content cache small enough to
    # be full after warm-up: a bounded cache filling up is not a leak
    policy = load_gateway_policy()
    policy = replace(policy, content=replace(policy.content, cache_size=256))
    with StubThread() as stub:
        gw = Gateway(GatewayConfig(upstream=stub.url, policy=policy, log_dir=tmp_path))
        with ServerThread(gw) as server:
            first = asyncio.run(load(server.url, 0, WARMUP))
            server.call(gw.flush())
            gc.collect()
            before = rss_mb()
            # traced from here: what the first half leaves alive (caches turning over) is
            # the baseline, and the second half must not add to it
            tracemalloc.start()
            t0 = time.monotonic()
            second = asyncio.run(load(server.url, WARMUP, MEASURED // 2))
            server.call(gw.flush())
            gc.collect()
            heap_before = tracemalloc.get_traced_memory()[0]
            third = asyncio.run(load(server.url, WARMUP + MEASURED // 2, MEASURED // 2))
            elapsed = time.monotonic() - t0
            server.call(gw.flush())
            gc.collect()
            heap_after = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            after = rss_mb()
            scored = gw.content.scored
    # everyone else untouched
    assert not any(
        harvest is False and status != 200 for harvest, status in {**first, **second, **third}
    )
    table = pq.read_table(sorted(tmp_path.glob("exchanges-*.parquet")))
    assert table.num_rows == WARMUP + MEASURED
    decisions = {
        (p.startswith("Think"), d)
        for p, d in zip(table["prompt"].to_pylist(), table["decision"].to_pylist(), strict=True)
    }
    assert {d for h, d in decisions if not h} == {"allow"}
    # the harvesting accounts climbed the ladder once their elicitation share was known
    assert {d for h, d in decisions if h} & {"throttle", "verify", "degrade", "block"}
    assert scored + gw.content.dropped >= WARMUP + MEASURED - 1  # every prompt seen by the check
    # Python objects: a per-request leak of even 200 bytes would show as 180 KB
    assert heap_after - heap_before < 128 * 1024, (heap_before, heap_after)
    # the process as a whole (allocator arenas, Arrow's pool) levels off too: RSS moves by a
    # few MB either way between runs, so only growth past that is a failure
    assert after - before < 24.0, (before, after)
    assert elapsed < 30


OVERLOAD_REQUESTS = 1500
OVERLOAD_INFLIGHT = 4
TOO_BIG = 20_000


async def overload(url: str) -> Counter[tuple[int, str]]:
    """32 connections against a gateway that takes 4 at a time; some bodies too large.
    Returns (status, x-distillguard-code) per request as the clients saw them."""
    seen: Counter[tuple[int, str]] = Counter()
    queue = iter(range(OVERLOAD_REQUESTS))
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            for i in queue:
                text = "x" * TOO_BIG if i % 97 == 0 else prompt(i)
                body = {
                    "model": "m",
                    "stream": i % 3 == 0,
                    "messages": [{"role": "user", "content": text}],
                }
                headers = {"authorization": f"Bearer key-{i % 50}"}
                async with session.post(
                    url + "/v1/chat/completions", data=orjson.dumps(body), headers=headers
                ) as resp:
                    await resp.read()
                    seen[(resp.status, resp.headers.get("x-distillguard-code", ""))] += 1

        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
    return seen


def test_overload_soak_logs_every_request_sent(tmp_path: Path) -> None:
    policy = load_gateway_policy()
    policy = replace(
        policy,
        rate=RateLimit(rate=1e6, burst=10**6),  # what is refused here is refused for capacity
        limits=replace(policy.limits, max_inflight=OVERLOAD_INFLIGHT, max_body_bytes=TOO_BIG),
    )
    with StubThread() as stub:
        gw = Gateway(GatewayConfig(upstream=stub.url, policy=policy, log_dir=tmp_path))
        with ServerThread(gw) as server:
            seen = asyncio.run(overload(server.url))
            deadline = time.monotonic() + 10
            while gw.inflight and time.monotonic() < deadline:  # last rows are appended
                time.sleep(0.01)
            server.call(gw.flush())
            shed_metric = gw.metrics.registry.get_sample_value("distillguard_shed_total")
    sent = sum(seen.values())
    assert sent == OVERLOAD_REQUESTS
    table = pq.read_table(sorted(tmp_path.glob("exchanges-*.parquet")))
    # requests sent == decision-log rows, status by status
    assert table.num_rows == sent
    logged = Counter(table["status"].to_pylist())
    assert logged == Counter(status for status, _ in seen.elements())
    decisions = Counter(
        zip(table["status"].to_pylist(), table["decision"].to_pylist(), strict=True)
    )
    shed = seen[(503, "overloaded")]
    assert shed > OVERLOAD_REQUESTS // 10  # the load did overload the gateway
    assert decisions[(503, "shed")] == shed == shed_metric
    assert decisions[(413, "rejected")] == seen[(413, "body_too_large")] > 0
    served = [d for (status, d), n in decisions.items() if status == 200]
    assert served and set(served) <= {"allow", "watch", "degrade"}
