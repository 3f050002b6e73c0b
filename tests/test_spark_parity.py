"""``scan --engine spark`` gives the same accounts and campaigns as DuckDB on the same data.

Every columnar stage after ingestion is one Ibis definition run on either engine; this
runs both on a small simulated log and compares the outputs, plus the engine-sensitive
expressions (hash sampling, link-key string functions) on crafted rows. Spark runs in
process (``local[2]``, Java 17+): if it cannot start, these tests fail rather than skip,
since a silent skip would let the two engines drift apart unnoticed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from distillguard.engine import EngineConfig, connect, hash_sample, is_spark
from distillguard.features.content import content_sample
from distillguard.linking import SYNC_KEY, key_columns, shared_values, timing_synchrony
from distillguard.policy import DEFAULT_LINK_KEYS, load_policy
from distillguard.scan import run_scan
from distillguard.simulate import simulate

pytestmark = pytest.mark.slow

SPARK = EngineConfig(engine="spark", spark_master="local[2]")
TOL = 1e-9


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("spark_sim")
    simulate(root, scale="tiny", seed=3)
    return root


@pytest.fixture(scope="module")
def scans(sim: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("spark_scans")
    # A low limit makes the flagged accounts' exchange sample (a hash sample) bite here.
    pol = replace(load_policy(), exchange_content_limit=2_000)
    out = {}
    for name, engine in (("duckdb", EngineConfig()), ("spark", SPARK)):
        out[name] = root / name
        run_scan(
            [sim / "exchanges.parquet"],
            out[name],
            accounts=sim / "accounts.parquet",
            policy=pol,
            engine=engine,
        )
    return out


def _accounts(d: Path) -> pd.DataFrame:
    df = pd.read_parquet(d / "accounts.parquet")
    return df.sort_values("account_id", ignore_index=True)


def _campaigns(d: Path) -> pd.DataFrame:
    df = pd.read_parquet(d / "campaigns.parquet")
    return df.sort_values("campaign_id", ignore_index=True)


def test_summary_names_the_engine(scans: dict[str, Path]) -> None:
    for name, d in scans.items():
        assert json.loads((d / "summary.json").read_text())["engine"] == name


def test_same_accounts(scans: dict[str, Path]) -> None:
    a, b = _accounts(scans["duckdb"]), _accounts(scans["spark"])
    assert a["account_id"].tolist() == b["account_id"].tolist()
    assert a["flagged"].sum() > 0, "the data must flag someone for the comparison to mean much"
    assert a["flagged"].tolist() == b["flagged"].tolist()
    assert a["campaign_id"].fillna("").tolist() == b["campaign_id"].fillna("").tolist()
    np.testing.assert_allclose(a["score"], b["score"], rtol=0, atol=TOL)
    assert a["exchanges"].tolist() == b["exchanges"].tolist()
    assert a["first_flagged_at"].equals(b["first_flagged_at"])
    assert [list(r) for r in a["reasons"]] == [list(r) for r in b["reasons"]]


def test_same_campaigns(scans: dict[str, Path]) -> None:
    a, b = _campaigns(scans["duckdb"]), _campaigns(scans["spark"])
    assert len(a) > 0, "the data must hold a campaign for the comparison to mean much"
    assert a["campaign_id"].tolist() == b["campaign_id"].tolist()
    for col in ("account_ids", "indicators", "capabilities"):
        assert [list(x) for x in a[col]] == [list(x) for x in b[col]], col
    for col in ("accounts", "exchanges", "first_seen", "last_seen", "summary"):
        assert a[col].tolist() == b[col].tolist(), col
    np.testing.assert_allclose(a["score"], b["score"], rtol=0, atol=TOL)


def test_same_exchange_scores(scans: dict[str, Path]) -> None:
    # The contract promises one row per valid exchange, in no particular order.
    a = pq.read_table(scans["duckdb"] / "exchanges_scored.parquet").sort_by("exchange_id")
    b = pq.read_table(scans["spark"] / "exchanges_scored.parquet").sort_by("exchange_id")
    # Spark reads every Parquet column as nullable, so only names and types can match.
    assert [(f.name, f.type) for f in a.schema] == [(f.name, f.type) for f in b.schema]
    assert a.column("exchange_id").to_pylist() == b.column("exchange_id").to_pylist()
    assert a.column("account_id").to_pylist() == b.column("account_id").to_pylist()
    np.testing.assert_allclose(
        a.column("score").to_numpy(), b.column("score").to_numpy(), rtol=0, atol=TOL
    )


# -- the engine-sensitive expressions, on both engines side by side -------------------------


@pytest.fixture(scope="module")
def engines(sim: Path) -> Iterator[dict[str, tuple[Any, Any, Any]]]:
    out = {}
    for name, cfg in (("duckdb", EngineConfig()), ("spark", SPARK)):
        con = connect(cfg)
        t = con.read_parquet(sim / "exchanges.parquet")
        if t.ts.type().timezone is None:
            t = t.mutate(ts=t.ts.cast(ibis.dtype("timestamp('UTC')")))
        out[name] = (con, t, con.read_parquet(sim / "accounts.parquet"))
    assert is_spark(out["spark"][0]) and not is_spark(out["duckdb"][0])
    yield out
    for con, _, _ in out.values():
        con.disconnect()


def _both(engines: dict[str, tuple[Any, Any, Any]], build: Any, sort: list[str]) -> list[Any]:
    frames = []
    for con, t, acc in engines.values():
        df = con.to_pyarrow(build(t, acc)).to_pandas()
        frames.append(df.sort_values(sort, ignore_index=True))
    return frames


def test_content_sample_picks_the_same_rows(engines: dict[str, tuple[Any, Any, Any]]) -> None:
    a, b = _both(
        engines,
        lambda t, _: content_sample(t, per_bucket=3).select("exchange_id", "bucket"),
        ["exchange_id"],
    )
    assert 0 < len(a) < engines["duckdb"][1].count().execute()
    pd.testing.assert_frame_equal(a, b)


def test_hash_sample_picks_the_same_rows(engines: dict[str, tuple[Any, Any, Any]]) -> None:
    total = int(engines["duckdb"][1].count().execute())
    a, b = _both(
        engines,
        lambda t, _: t.filter(hash_sample(t.exchange_id, 1_000, total)).select("exchange_id"),
        ["exchange_id"],
    )
    assert 700 < len(a) < 1_300  # about keep of total
    pd.testing.assert_frame_equal(a, b)


def test_shared_values_agree(engines: dict[str, tuple[Any, Any, Any]]) -> None:
    cfg = load_policy().linking
    frames = []
    for _con, t, acc in engines.values():
        everyone = t.select("account_id").distinct().to_pyarrow().column(0).to_pylist()
        sv = shared_values(t, acc, [str(a) for a in everyone], cfg)
        frames.append(sv.sort_values(["account_id", "key", "value"], ignore_index=True))
    a, b = frames
    assert len(a) > 0 and set(a["key"]) >= {"ip", "prompt_prefix"}
    pd.testing.assert_frame_equal(a, b, check_dtype=False)


def test_link_keys_on_awkward_strings(engines: dict[str, tuple[Any, Any, Any]]) -> None:
    """IPv6, whitespace of every kind (vertical tab included), accents, CJK and emoji."""
    wrap = " ".join(["word"] * 12)
    prompts = [
        f"Ünïcödé\tprompt\u000b{wrap} 12345 ✓ 漢字 🙂 tail",
        f"{wrap}\n\n  spaced\r\nout  99 times\f end",
        "short",
        f"🙂🙂 {wrap} {wrap} ÀÉÎ 42",
    ]
    rows = pd.DataFrame(
        {
            "i": range(4),
            "account_id": ["a", "b", "c", "d"],
            "ip": ["2001:db8:0:1:2:3:4:5", "::1", "10.1.2.3", "192.168.0.255"],
            "prompt": prompts,
            "system_prompt": ["You are a careful assistant ✓", None, "short", "Système: réponds"],
            "user_agent": ["ua/1", "ua/2", None, ""],
            "asn": [1, 2, None, 4],
        }
    )
    mem = ibis.memtable(rows)
    keys = tuple(k for k in DEFAULT_LINK_KEYS if k != "payment_fingerprint")
    out = []
    for con, _, _ in engines.values():
        expr = mem.select("i", **key_columns(mem, keys)).order_by("i")
        out.append(con.to_pyarrow(expr).to_pandas())
    pd.testing.assert_frame_equal(out[0], out[1])
    assert out[0]["ip24"].tolist()[:3] == ["2001:db8:0:1", "::1", "10.1.2.0/24"]


def test_timing_synchrony_agrees(engines: dict[str, tuple[Any, Any, Any]]) -> None:
    # Thresholds off and fewer hours than the log holds, so the hour sample and every pair's
    # observed and expected overlap are compared, not only the few significant ones.
    # Synchrony is off in the default policy: given its weight here.
    base = load_policy().linking
    cfg = replace(
        base,
        keys={**base.keys, SYNC_KEY: 3.0},
        sync_min_z=-1e6,
        sync_min_cells=1,
        sync_max_hours=48,
    )
    t0 = engines["duckdb"][1]
    ids = sorted(str(a) for a in t0.select("account_id").distinct().to_pyarrow().column(0))[:40]
    pairs = pd.DataFrame([(a, b) for a in ids for b in ids if a < b], columns=["a", "b"])
    frames = [
        timing_synchrony(t, pairs, cfg).sort_values(["a", "b"], ignore_index=True)
        for _, t, _ in engines.values()
    ]
    a, b = frames
    assert len(a) > 50 and (a["observed"] > 0).any()
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
