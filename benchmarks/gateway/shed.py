"""What a shed request costs the gateway, with and without its decision-log row.

    python benchmarks/gateway/shed.py [--requests 50000]

Calls the ASGI app directly (no sockets, no client) with the gateway held at capacity, so
every call takes the shed path: the 503, the metric and, with a log directory, the row
(key HMAC, row dict, append; Parquet is written later, off the request path). Reports
microseconds per shed request, median of five rounds, and what writing the rows to
Parquet costs per row (in the log's writer thread, not on the request path).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from distillguard.gateway import Gateway, GatewayConfig, GatewayPolicy

SCOPE: dict[str, Any] = {
    "type": "http",
    "method": "POST",
    "path": "/v1/chat/completions",
    "query_string": b"",
    "client": ("127.0.0.1", 50000),
    "headers": [
        (b"host", b"gateway"),
        (b"authorization", b"Bearer sk-benchmark-key-0123456789"),
        (b"content-type", b"application/json"),
        (b"user-agent", b"OpenAI/Python 1.50.0"),
        (b"content-length", b"120"),
    ],
}


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"{}", "more_body": False}


async def _send(message: dict[str, Any]) -> None:
    return None


async def per_request_us(log_dir: Path | None, n: int) -> tuple[float, float]:
    cfg = GatewayConfig(
        upstream="http://127.0.0.1:9", policy=GatewayPolicy(), log_dir=log_dir, key_secret=b"s" * 32
    )
    gw = Gateway(cfg, classifier=None)
    await gw.startup()
    try:
        gw.inflight = gw.policy.limits.max_inflight  # at capacity: every call is shed
        rounds = []
        writes = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(n):
                await gw(SCOPE, _receive, _send)
            rounds.append((time.perf_counter() - t0) / n * 1e6)
            t0 = time.perf_counter()
            await gw.log.flush()  # between rounds, as the periodic flush would
            writes.append((time.perf_counter() - t0) / n * 1e6)
        gw.inflight = 0
        return statistics.median(rounds), statistics.median(writes)
    finally:
        await gw.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=50_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dg-shed-") as tmp:
        logged, write = asyncio.run(per_request_us(Path(tmp), args.requests))
    unlogged, _ = asyncio.run(per_request_us(None, args.requests))
    print(
        json.dumps(
            {
                "shed_us_per_request_logged": round(logged, 2),
                "shed_us_per_request_not_logged": round(unlogged, 2),
                "log_write_us_per_row": round(write, 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
