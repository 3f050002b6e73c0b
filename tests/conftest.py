"""Common fixtures: small exchange logs written on the fly (nothing read from outside the repo)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

T0 = datetime(2026, 11, 2, tzinfo=UTC)


def row(i: int, **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "exchange_id": f"ex-{i}",
        "ts": (T0 + timedelta(minutes=i)).isoformat().replace("+00:00", "Z"),
        "account_id": f"acct-{i % 7}",
        "model": "model-a",
        "prompt": f"question number {i}",
        "input_tokens": 10 + i % 50,
        "output_tokens": 100 + i % 70,
    }
    base.update(over)
    return base


def write_jsonl(path: Path, rows: Iterable[dict[str, Any] | bytes | str]) -> Path:
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as fh:
        for r in rows:
            if isinstance(r, dict):
                try:
                    fh.write(orjson.dumps(r) + b"\n")
                except TypeError:  # an int over 64 bits, which only the stdlib writes
                    fh.write(json.dumps(r).encode() + b"\n")
            elif isinstance(r, str):
                fh.write(r.encode() + b"\n")
            else:
                fh.write(r + b"\n")
    return path


def traffic(
    seed: int = 0, *, benign: int = 60, attackers: int = 8, days: int = 4
) -> list[dict[str, Any]]:
    """Benign accounts with human rhythms, plus a group of coordinated harvesters.

    The harvesters are round-the-clock, single-turn, long-output, share a payment
    fingerprint and a /24: obvious on purpose, since this fixture tests the plumbing, not
    the detectors' limits (the simulator does that).
    """
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    i = 0
    for a in range(benign):
        tz = int(rng.integers(0, 24))
        for d in range(days):
            for _ in range(int(rng.integers(3, 30))):
                hour = (tz + int(rng.integers(8, 18))) % 24
                ts = T0 + timedelta(days=d, hours=hour, minutes=int(rng.integers(0, 60)))
                conv_turn = int(rng.integers(0, 4))
                rows.append(
                    {
                        "exchange_id": f"b{i}",
                        "ts": ts.isoformat(),
                        "account_id": f"u{a}",
                        "model": "model-a",
                        "prompt": f"help me with task {int(rng.integers(0, 10**6))}",
                        "input_tokens": int(rng.integers(200, 2000)),
                        "output_tokens": int(rng.integers(50, 600)),
                        "turn_index": conv_turn,
                        "ip": f"10.{a}.{int(rng.integers(0, 255))}.{int(rng.integers(1, 255))}",
                        "user_agent": "Mozilla/5.0",
                        "payment_fingerprint": f"card-{a}",
                    }
                )
                i += 1
    for a in range(attackers):
        for d in range(days):
            for _ in range(120):
                ts = T0 + timedelta(days=d, seconds=int(rng.integers(0, 86400)))
                rows.append(
                    {
                        "exchange_id": f"x{i}",
                        "ts": ts.isoformat(),
                        "account_id": f"h{a}",
                        "model": "model-a",
                        "prompt": "Solve and show all reasoning steps before the final "
                        f"answer. Problem {int(rng.integers(0, 10**6))}: a train leaves at "
                        f"{int(rng.integers(1, 12))} pm; when does it arrive?",
                        "input_tokens": int(rng.integers(60, 120)),
                        "output_tokens": int(rng.integers(3000, 6000)),
                        "turn_index": 0,
                        "max_tokens": 8192,
                        "ip": f"203.0.113.{int(rng.integers(1, 255))}",
                        "user_agent": "python-httpx/0.27",
                        "payment_fingerprint": "card-shared",
                    }
                )
                i += 1
    rng.shuffle(rows)  # type: ignore[arg-type]
    return rows


@pytest.fixture
def small_log(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "traffic.jsonl", traffic())
