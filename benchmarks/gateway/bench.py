"""Gateway overhead: added latency (p50/p99, JSON and SSE) and throughput at 32 connections.

    python benchmarks/gateway/bench.py [--state redis] [--content-mode async] \
        [--requests 2000] [--seconds 10]

Starts the stub upstream and ``distillguard serve`` (packaged policy: content check,
profile rules, rate limits, decision log) as separate processes on loopback, then measures
the same requests sent to the stub directly and through the gateway. Every prompt is new,
so the content check's cache never hides the classifier.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from distillguard.gateway.testing import RedisServer, free_port


def wait_port(url: str, timeout: float = 20) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=0.5).read()
            return
        except Exception:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


def body(i: int, stream: bool) -> bytes:
    prompt = f"Summarise the plot of book number {i} in two sentences."
    return json.dumps(
        {"model": "m", "stream": stream, "messages": [{"role": "user", "content": prompt}]}
    ).encode()


async def latencies(url: str, n: int, stream: bool, offset: int) -> list[float]:
    out = []
    async with aiohttp.ClientSession() as s:
        for i in range(n):
            data = body(offset + i, stream)
            t0 = time.perf_counter()
            async with s.post(
                url + "/v1/chat/completions",
                data=data,
                headers={"authorization": f"Bearer k{i % 20}"},
            ) as r:
                await r.read()
                assert r.status == 200, r.status
            out.append((time.perf_counter() - t0) * 1000)
    return out


async def throughput(url: str, seconds: float, conns: int, offset: int) -> tuple[float, int]:
    done = 0
    errors = 0
    stop = time.monotonic() + seconds
    counter = iter(range(offset, offset + 10**9))
    connector = aiohttp.TCPConnector(limit=conns)
    async with aiohttp.ClientSession(connector=connector) as s:

        async def worker() -> None:
            nonlocal done, errors
            while time.monotonic() < stop:
                i = next(counter)
                async with s.post(
                    url + "/v1/chat/completions",
                    data=body(i, False),
                    headers={"authorization": f"Bearer k{i % 200}"},
                ) as r:
                    await r.read()
                    if r.status == 200:
                        done += 1
                    else:
                        errors += 1

        t0 = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(conns)))
        elapsed = time.monotonic() - t0
    return done / elapsed, errors


def cpu_seconds(pid: int) -> dict[int, float]:
    """CPU time (user + system) of a process and of each of its descendants, by pid."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, float] = {}
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rpartition(")")[2].split()
            out[p] = (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return out


def scraped(url: str) -> dict[str, float]:
    """The gateway's own counts of what it did (content scored inline, shed, fallback)."""
    import urllib.request

    text = urllib.request.urlopen(url, timeout=5).read().decode()
    wanted = ("distillguard_content_", "distillguard_shed_total", "distillguard_state_fallback")
    out = {}
    for line in text.splitlines():
        if line.startswith(wanted):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--state", choices=["local", "redis"], default="local")
    ap.add_argument(
        "--content-mode",
        choices=["inline", "async"],
        default=None,
        help="override the packaged policy's [gateway.content] mode",
    )
    ap.add_argument(
        "--inline-budget",
        type=float,
        default=None,
        help="override [gateway.content] inline_budget (1.0: every new prompt scored inline)",
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dg-bench-"))
    procs: list[subprocess.Popen[bytes]] = []
    redis = None
    try:
        sp, gp = free_port(), free_port()
        procs.append(
            subprocess.Popen([sys.executable, "-m", "distillguard.gateway.stub", "--port", str(sp)])
        )
        stub = f"http://127.0.0.1:{sp}"
        wait_port(stub + "/v1/models")
        # a permissive rate limit: this measures cost, not the limiter refusing the load
        policy = tmp / "policy.toml"
        text = (Path(__file__).parents[2] / "src/distillguard/policies/gateway.toml").read_text()
        text = text.replace("rate = 50.0\nburst = 100", "rate = 1e6\nburst = 1000000")
        if args.content_mode is not None:
            text = re.sub(r'(?m)^mode = "\w+"', f'mode = "{args.content_mode}"', text)
        if args.inline_budget is not None:
            text = text.replace("inline_budget = 0.1", f"inline_budget = {args.inline_budget}")
        policy.write_text(text)
        cmd = [
            sys.executable,
            "-c",
            "from distillguard.cli import main; main()",
            "serve",
            "--upstream",
            stub + "/v1",
            "--port",
            str(gp),
            "--log-dir",
            str(tmp / "log"),
            "--policy",
            str(policy),
            "--scan-dir",
            str(tmp / "scan"),
        ]
        (tmp / "scan").mkdir()
        if args.state == "redis":
            redis = RedisServer(tmp)
            redis.start()
            cmd += ["--state", redis.url]
        procs.append(subprocess.Popen(cmd, env={**os.environ, "PYTHONWARNINGS": "ignore"}))
        gw = f"http://127.0.0.1:{gp}"
        wait_port(gw + "/healthz")
        n = args.requests
        res: dict[str, Any] = {
            "state": args.state,
            "content_mode": args.content_mode or "policy",
            "inline_budget": args.inline_budget,
        }
        load_before = os.getloadavg()
        gw_pid = procs[-1].pid
        for kind, stream in (("json", False), ("sse", True)):
            asyncio.run(latencies(gw, 200, stream, 10**7))  # warm-up
            direct = asyncio.run(latencies(stub, n, stream, 0))
            cpu_before = cpu_seconds(gw_pid)
            # new prompts in each phase: the content cache must not hide the classifier
            via = asyncio.run(latencies(gw, n, stream, (3 if stream else 2) * 10**7))
            cpu_after = cpu_seconds(gw_pid)
            res[kind] = {
                "direct_p50_ms": round(statistics.median(direct), 3),
                "direct_p99_ms": round(pct(direct, 0.99), 3),
                "gateway_p50_ms": round(statistics.median(via), 3),
                "gateway_p99_ms": round(pct(via, 0.99), 3),
                "added_p50_ms": round(statistics.median(via) - statistics.median(direct), 3),
                "added_p99_ms": round(pct(via, 0.99) - pct(direct, 0.99), 3),
                # the gateway process's own CPU per request: on an idle machine the added
                # latency is about this plus one loopback hop; other jobs cannot inflate it
                "gateway_cpu_us_per_request": round(
                    (cpu_after.get(gw_pid, 0.0) - cpu_before.get(gw_pid, 0.0)) / n * 1e6
                ),
            }
        rps_stub, _ = asyncio.run(throughput(stub, args.seconds, args.connections, 4 * 10**7))
        cpu_before = cpu_seconds(gw_pid)
        t0 = time.monotonic()
        rps_gw, errors = asyncio.run(throughput(gw, args.seconds, args.connections, 5 * 10**7))
        handled = rps_gw * (time.monotonic() - t0) + errors
        cpu_after = cpu_seconds(gw_pid)
        spent = {p: t - cpu_before.get(p, 0.0) for p, t in cpu_after.items()}
        # CPU per request is what a loaded, shared machine distorts least: the gateway's
        # own process (one core) could serve 1e6 / main_us requests per second
        main_us = spent.pop(gw_pid, 0.0) / max(handled, 1) * 1e6
        res["throughput"] = {
            "connections": args.connections,
            "stub_rps": round(rps_stub),
            "gateway_rps": round(rps_gw),
            "gateway_errors": errors,
            "gateway_cpu_us_per_request": round(main_us),
            "content_worker_cpu_us_per_request": round(sum(spent.values()) / max(handled, 1) * 1e6),
            "gateway_rps_per_core_from_cpu": round(1e6 / max(main_us, 1e-9)),
        }
        res["gateway_metrics"] = scraped(gw + "/metrics")
        res["machine"] = {
            "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        }
        text = json.dumps(res, indent=2)
        print(text)
        if args.out:
            args.out.write_text(text + "\n")
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
        if redis is not None:
            redis.stop()


if __name__ == "__main__":
    main()
