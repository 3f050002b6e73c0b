"""Tests for ``distillguard evaluate`` and the naive baseline, on tiny hand-made fixtures."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from distillguard.baselines import naive_volume_baseline
from distillguard.cli import app
from distillguard.errors import DistillGuardError
from distillguard.evaluate import auc, evaluate
from distillguard.schema import EXCHANGE_COLUMNS, TS_TYPE, arrow_schema

T0 = datetime(2026, 3, 2, tzinfo=UTC)


def _exchanges(rows: list[tuple[str, str, int, bool]]) -> tuple[pa.Table, pa.Table]:
    """rows: (exchange_id, account_id, minutes after T0, is_attack)."""
    n = len(rows)
    cols: dict[str, Any] = {c.name: pa.nulls(n, c.arrow_type) for c in EXCHANGE_COLUMNS}
    cols["exchange_id"] = pa.array([r[0] for r in rows])
    cols["account_id"] = pa.array([r[1] for r in rows])
    cols["ts"] = pa.array([T0 + timedelta(minutes=r[2]) for r in rows], type=TS_TYPE)
    cols["model"] = pa.array(["m"] * n)
    cols["prompt"] = pa.array(["p"] * n)
    cols["input_tokens"] = pa.array([10] * n, type=pa.int64())
    cols["output_tokens"] = pa.array([10] * n, type=pa.int64())
    ex = pa.table(cols, schema=arrow_schema(EXCHANGE_COLUMNS))
    truth = pa.table({"exchange_id": [r[0] for r in rows], "is_attack": [r[3] for r in rows]})
    return ex, truth


@pytest.fixture()
def truth_dir(tmp_path: Path) -> Path:
    d = tmp_path / "truth"
    d.mkdir()
    accounts = [
        ("b1", "benign", "chat", None),
        ("b2", "benign", "chat", None),
        ("b3", "benign", "enterprise_batch", None),
        ("g1", "benign", "gray_synthetic", None),
        ("a1", "attack", "hydra", "c1"),
        ("a2", "attack", "hydra", "c1"),
        ("a3", "attack", "hydra", "c1"),
        ("d1", "attack", "deepseek_like", "c2"),
    ]
    pq.write_table(
        pa.table(
            {
                "account_id": [a[0] for a in accounts],
                "label": [a[1] for a in accounts],
                "population": [a[2] for a in accounts],
                "campaign_id": [a[3] for a in accounts],
            }
        ),
        d / "truth_accounts.parquet",
    )
    rows: list[tuple[str, str, int, bool]] = []
    for i in range(10):
        rows.append((f"a1-{i}", "a1", 60 * i, i % 3 != 0))  # mixed: 4 relayed, 6 harvested
        rows.append((f"a2-{i}", "a2", 60 * i + 5, True))
        rows.append((f"a3-{i}", "a3", 60 * i + 7, True))
        rows.append((f"d1-{i}", "d1", 60 * i + 9, True))
        rows.append((f"b1-{i}", "b1", 60 * i + 1, False))
    rows += [(f"b3-{i}", "b3", i, False) for i in range(1500)]
    ex, truth = _exchanges(rows)
    pq.write_table(ex, d / "exchanges.parquet")
    pq.write_table(truth, d / "truth_exchanges.parquet")
    return d


def _scan(
    d: Path, rows: list[tuple[str, float, bool, str | None, int | None]], scored: bool = False
) -> Path:
    """rows: (account_id, score, flagged, campaign_id, first_flagged minutes after T0 or None)."""
    d.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        pa.table(
            {
                "account_id": pa.array([r[0] for r in rows], pa.string()),
                "score": pa.array([r[1] for r in rows], pa.float64()),
                "flagged": pa.array([r[2] for r in rows], pa.bool_()),
                "campaign_id": pa.array([r[3] for r in rows], pa.string()),
                "exchanges": pa.array([1] * len(rows), pa.int64()),
                "first_flagged_at": pa.array(
                    [None if r[4] is None else T0 + timedelta(minutes=r[4]) for r in rows], TS_TYPE
                ),
                "reasons": pa.array([[] for _ in rows], pa.list_(pa.string())),
            }
        ),
        d / "accounts.parquet",
    )
    if scored:
        ids = [f"a1-{i}" for i in range(10)]
        # Perfect ranking inside the mixed account: harvested exchanges score higher.
        scores = [0.9 if i % 3 != 0 else 0.1 for i in range(10)]
        pq.write_table(
            pa.table({"exchange_id": ids, "account_id": ["a1"] * 10, "score": scores}),
            d / "exchanges_scored.parquet",
        )
    return d


def test_metrics_on_a_known_confusion(tmp_path: Path, truth_dir: Path) -> None:
    scan = _scan(
        tmp_path / "scan",
        [
            ("a1", 0.9, True, "P1", 125),
            ("a2", 0.8, True, "P1", 240),
            ("b1", 0.7, True, "P1", 300),
            ("b2", 0.1, False, None, None),
            ("b3", 0.2, False, None, None),
            ("d1", 0.3, False, None, None),
            ("ghost", 0.5, True, None, 10),  # not in truth: reported, not counted
            # a3 and g1 are missing from the scan: they count as not flagged.
        ],
        scored=True,
    )
    ev = evaluate(scan, truth_dir)
    o = ev["overall"]
    assert (o["tp"], o["fp"], o["fn"], o["tn"]) == (2, 1, 2, 3)
    assert o["precision"] == pytest.approx(2 / 3)
    assert o["recall"] == pytest.approx(0.5)
    assert o["fpr"] == pytest.approx(0.25)
    assert ev["overall_excluding_gray"]["fpr"] == pytest.approx(1 / 3)
    assert ev["populations"]["chat"]["fpr"] == pytest.approx(0.5)
    assert ev["populations"]["hydra"]["recall"] == pytest.approx(2 / 3)
    assert ev["accounts_missing_from_scan"] == 2 and ev["scan_accounts_not_in_truth"] == 1
    c1 = ev["campaigns"]["c1"]
    assert c1["recall"] == pytest.approx(2 / 3)
    assert c1["linking_completeness"] == 1.0
    assert c1["purity"] == pytest.approx(2 / 3)  # b1 was linked into the same campaign
    # The first harvested exchange is a2's at 5 min; detection at 125 min.
    assert c1["time_to_detection_h"] == pytest.approx(120 / 60)
    # Harvested by c1 before 02:05: a1 at 60 and 120 min, a2 at 5 and 65, a3 at 7 and 67.
    assert c1["harvested_before_detection"] == 6
    # Per account: a1 before 125 min -> 2; a2 before 240 -> 5, 65, 125, 185 = 4; a3 unflagged -> 10.
    assert c1["harvested_before_account_flag"] == 16
    assert ev["campaigns"]["c2"]["recall"] == 0.0 and ev["campaigns"]["c2"]["detected_at"] is None
    assert ev["linking"]["purity"] == pytest.approx(2 / 3)
    assert ev["mixed_accounts"]["accounts"] == 1
    assert ev["mixed_accounts"]["auc"] == 1.0
    written = json.loads((scan / "evaluation.json").read_text())
    assert written["overall"]["tp"] == 2


def test_scan_with_nothing_flagged_and_no_optional_columns(tmp_path: Path, truth_dir: Path) -> None:
    scan = tmp_path / "scan"
    scan.mkdir()
    pq.write_table(
        pa.table({"account_id": ["a1", "b1"], "flagged": [False, False]}), scan / "accounts.parquet"
    )
    ev = evaluate(scan, truth_dir)
    assert ev["overall"]["precision"] is None
    assert ev["overall"]["recall"] == 0.0 and ev["overall"]["fpr"] == 0.0
    assert ev["campaigns"]["c1"]["linking_completeness"] is None
    assert ev["campaigns"]["c1"]["harvested_before_detection"] == 26  # every harvested exchange
    assert ev["linking"]["predicted_campaigns"] == 0
    assert ev["mixed_accounts"]["auc"] is None


def test_missing_scan_is_a_clear_error(tmp_path: Path, truth_dir: Path) -> None:
    with pytest.raises(DistillGuardError, match="missing file"):
        evaluate(tmp_path / "nope", truth_dir)


def test_auc_matches_pairwise_definition() -> None:
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 5, 60).astype(np.float64)  # many ties
    labels = rng.random(60) < 0.4
    pos, neg = scores[labels], scores[~labels]
    brute = np.mean([1.0 if p > q else 0.5 if p == q else 0.0 for p, q in product(pos, neg)])
    assert auc(scores, labels) == pytest.approx(brute)
    assert auc(scores, np.zeros(60, dtype=bool)) is None


def test_naive_baseline_flags_volume_and_feeds_evaluate(tmp_path: Path, truth_dir: Path) -> None:
    out = tmp_path / "base"
    summary = naive_volume_baseline(truth_dir / "exchanges.parquet", out, max_daily=1000)
    assert summary["flagged_accounts"] == 1
    acc = {r["account_id"]: r for r in pq.read_table(out / "accounts.parquet").to_pylist()}
    assert acc["b3"]["flagged"] and acc["b3"]["reasons"][0].startswith("daily_volume")
    # The 1001st exchange of the day (minute 1000) is when the rule would have fired.
    assert acc["b3"]["first_flagged_at"] == T0 + timedelta(minutes=1000)
    assert not acc["a1"]["flagged"] and acc["a1"]["campaign_id"] is None
    assert (
        0.0 <= min(r["score"] for r in acc.values()) <= max(r["score"] for r in acc.values()) <= 1.0
    )
    ev = evaluate(out, truth_dir)
    assert ev["populations"]["enterprise_batch"]["fpr"] == 1.0
    assert ev["overall"]["recall"] == 0.0


def test_evaluate_cli_prints_table_and_fails_cleanly(tmp_path: Path, truth_dir: Path) -> None:
    scan = _scan(tmp_path / "scan", [("a1", 0.9, True, "P1", 125)])
    runner = CliRunner()
    ok = runner.invoke(app, ["evaluate", "--scan", str(scan), "--truth", str(truth_dir)])
    assert ok.exit_code == 0, ok.output
    assert "Per campaign" in ok.output and "hydra" in ok.output
    bad = runner.invoke(
        app, ["evaluate", "--scan", str(tmp_path / "missing"), "--truth", str(truth_dir)]
    )
    assert bad.exit_code == 2
