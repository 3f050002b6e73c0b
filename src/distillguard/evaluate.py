"""Score a scan against simulated ground truth (CONTRACT §4).

``evaluate(scan_dir, truth_dir)`` joins the scan's ``accounts.parquet`` (and, when
present, ``exchanges_scored.parquet``) with ``truth_accounts.parquet``,
``truth_exchanges.parquet`` and ``exchanges.parquet`` from the simulator, writes
``scan_dir/evaluation.json`` and returns the same dictionary. Accounts the scan did not
report count as not flagged with score 0; null ``campaign_id`` means "not linked".
The heavy joins run in DuckDB so full-scale truth (hundreds of millions of rows) fits.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt

from distillguard.errors import DistillGuardError

GRAY = "gray_synthetic"


def _need(path: Path) -> str:
    if not path.exists():
        raise DistillGuardError("missing file", source=str(path))
    return str(path).replace("'", "''")


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


def auc(scores: npt.NDArray[np.float64], labels: npt.NDArray[np.bool_]) -> float | None:
    """ROC AUC by the rank-sum formula, ties counted half; None if one class is absent."""
    pos = int(labels.sum())
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    s = scores[order]
    ranks = np.empty(len(s), dtype=np.float64)
    # Average ranks over tied runs.
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
    ends = np.r_[starts[1:], len(s)]
    avg = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(avg, ends - starts)
    return float((ranks[labels].sum() - pos * (pos + 1) / 2.0) / (pos * neg))


def _confusion(rows: list[tuple[str, bool]]) -> dict[str, Any]:
    tp = sum(1 for lab, f in rows if lab == "attack" and f)
    fn = sum(1 for lab, f in rows if lab == "attack" and not f)
    fp = sum(1 for lab, f in rows if lab != "attack" and f)
    tn = sum(1 for lab, f in rows if lab != "attack" and not f)
    return {
        "accounts": len(rows),
        "attack_accounts": tp + fn,
        "flagged": tp + fp,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "fpr": _ratio(fp, fp + tn),
    }


def evaluate(scan_dir: Path, truth_dir: Path) -> dict[str, Any]:
    """Compute the evaluation, write ``scan_dir/evaluation.json`` and return it."""
    scan_dir, truth_dir = Path(scan_dir), Path(truth_dir)
    con = duckdb.connect()
    con.execute("SET threads TO 2")
    scan_acc = _need(scan_dir / "accounts.parquet")
    truth_acc = _need(truth_dir / "truth_accounts.parquet")
    con.execute(f"CREATE VIEW scan AS SELECT * FROM read_parquet('{scan_acc}')")
    cols = {r[0] for r in con.execute("DESCRIBE scan").fetchall()}
    missing = {"account_id", "flagged"} - cols
    if missing:
        raise DistillGuardError(
            f"scan accounts.parquet lacks columns {sorted(missing)}", source=scan_acc
        )
    score = (
        "coalesce(s.score, 0.0)"
        if "score" in cols
        else "CAST(coalesce(s.flagged, false) AS DOUBLE)"
    )
    camp = "s.campaign_id" if "campaign_id" in cols else "CAST(NULL AS VARCHAR)"
    ffa = "s.first_flagged_at" if "first_flagged_at" in cols else "CAST(NULL AS TIMESTAMPTZ)"
    con.execute(f"""
        CREATE TABLE acc AS
        SELECT t.account_id, t.label, t.population, t.campaign_id AS true_campaign,
               coalesce(s.flagged, false) AS flagged, {score} AS score,
               {camp} AS pred_campaign, {ffa} AS first_flagged_at,
               s.account_id IS NOT NULL AS in_scan
        FROM read_parquet('{truth_acc}') t LEFT JOIN scan s USING (account_id)
    """)
    unknown = con.execute(
        "SELECT count(*) FROM scan WHERE account_id NOT IN "
        f"(SELECT account_id FROM read_parquet('{truth_acc}'))"
    ).fetchone()
    rows = con.execute(
        "SELECT label, population, true_campaign, flagged, score, pred_campaign, in_scan FROM acc"
    ).fetchall()
    overall = _confusion([(r[0], bool(r[3])) for r in rows])
    overall["auc"] = auc(
        np.array([r[4] for r in rows], dtype=np.float64), np.array([r[0] == "attack" for r in rows])
    )
    no_gray = _confusion([(r[0], bool(r[3])) for r in rows if r[1] != GRAY])
    populations: dict[str, Any] = {}
    for pop in sorted({r[1] for r in rows}):
        sub = [(r[0], bool(r[3])) for r in rows if r[1] == pop]
        populations[pop] = _confusion(sub)
        populations[pop]["label"] = sub[0][0]
    result: dict[str, Any] = {
        "overall": overall,
        "overall_excluding_gray": no_gray,
        "gray_synthetic": populations.get(GRAY),
        "populations": populations,
        "campaigns": _campaigns(con, rows, truth_dir),
        "linking": _linking_purity(rows),
        "mixed_accounts": _mixed(con, scan_dir, truth_dir),
        "accounts_missing_from_scan": sum(1 for r in rows if not r[6]),
        "scan_accounts_not_in_truth": int(unknown[0]) if unknown else 0,
    }
    result = _clean(result)
    (scan_dir / "evaluation.json").write_text(
        json.dumps(result, indent=2, default=str), encoding="utf-8"
    )
    return result


def _campaigns(
    con: duckdb.DuckDBPyConnection, rows: list[tuple[Any, ...]], truth_dir: Path
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    camp_rows: dict[str, list[tuple[Any, ...]]] = {}
    for r in rows:
        if r[2] is not None:
            camp_rows.setdefault(r[2], []).append(r)
    # Predicted campaign sizes over all scanned accounts, for purity.
    pred_members: dict[str, list[str]] = {}
    for r in rows:
        if r[5] is not None:
            pred_members.setdefault(r[5], []).append(r[2] if r[2] is not None else "benign")
    timing = _timing(con, truth_dir) if camp_rows else {}
    for cid, members in sorted(camp_rows.items()):
        flagged = [r for r in members if r[3]]
        counts: dict[str, int] = {}
        for r in flagged:
            if r[5] is not None:
                counts[r[5]] = counts.get(r[5], 0) + 1
        largest = max(counts.items(), key=lambda kv: (kv[1], kv[0])) if counts else None
        completeness = (
            (largest[1] if largest else (1 if flagged else 0)) / len(flagged) if flagged else None
        )
        purity = None
        if largest:
            mem = pred_members[largest[0]]
            purity = sum(1 for m in mem if m == cid) / len(mem)
        entry: dict[str, Any] = {
            "population": members[0][1],
            "accounts": len(members),
            "flagged": len(flagged),
            "recall": len(flagged) / len(members),
            "linking_completeness": completeness,
            "largest_predicted_campaign": largest[0] if largest else None,
            "purity": purity,
        }
        entry.update(timing.get(cid, {}))
        out[cid] = entry
    return out


def _timing(con: duckdb.DuckDBPyConnection, truth_dir: Path) -> dict[str, dict[str, Any]]:
    """Time to detection and exchanges harvested before detection, per campaign."""
    ex = _need(truth_dir / "exchanges.parquet")
    tex = _need(truth_dir / "truth_exchanges.parquet")
    # Only attack accounts' exchanges are needed: filter before the join.
    con.execute(f"""
        CREATE TABLE cex AS
        SELECT e.account_id, e.ts, coalesce(t.is_attack, false) AS is_attack, a.true_campaign,
               a.first_flagged_at
        FROM read_parquet('{ex}') e
        JOIN (SELECT account_id, true_campaign, first_flagged_at, flagged FROM acc
              WHERE true_campaign IS NOT NULL) a
          USING (account_id)
        LEFT JOIN read_parquet('{tex}') t USING (exchange_id)
    """)
    res = con.execute("""
        WITH det AS (
            SELECT true_campaign, min(first_flagged_at) AS detected_at
            FROM acc WHERE true_campaign IS NOT NULL AND flagged GROUP BY 1
        )
        SELECT c.true_campaign,
               count(*) AS exchanges,
               sum(is_attack::INT) AS attack_exchanges,
               epoch_us(min(ts) FILTER (WHERE is_attack)) AS first_attack,
               epoch_us(max(ts)) AS last_seen,
               epoch_us(any_value(d.detected_at)) AS detected_at,
               sum((is_attack AND (d.detected_at IS NULL OR ts < d.detected_at))::INT)
                   AS before_detection,
               sum((is_attack AND (c.first_flagged_at IS NULL OR ts < c.first_flagged_at))::INT)
                   AS before_ban
        FROM cex c LEFT JOIN det d USING (true_campaign)
        GROUP BY 1
    """).fetchall()
    out: dict[str, dict[str, Any]] = {}
    for cid, n, n_att, first, _last, detected, before, before_ban in res:
        ttd = None
        if detected is not None and first is not None:
            ttd = max(0.0, (detected - first) / 3.6e9)
        out[cid] = {
            "exchanges": int(n),
            "attack_exchanges": int(n_att or 0),
            "first_attack_at": _iso(first),
            "detected_at": _iso(detected),
            "time_to_detection_h": ttd,
            "harvested_before_detection": int(before or 0),
            "harvested_before_account_flag": int(before_ban or 0),
            "harvested_before_account_flag_share": _ratio(int(before_ban or 0), int(n_att or 0)),
        }
    return out


def _iso(us: int | None) -> str | None:
    if us is None:
        return None
    return datetime.fromtimestamp(us / 1e6, tz=UTC).isoformat()


def _linking_purity(rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    groups: dict[str, list[str]] = {}
    for r in rows:
        if r[5] is not None:
            groups.setdefault(r[5], []).append(r[2] if r[2] is not None else "benign")
    if not groups:
        return {"predicted_campaigns": 0, "purity": None, "benign_accounts_in_campaigns": 0}
    total = sum(len(v) for v in groups.values())
    majority = sum(max(v.count(x) for x in set(v)) for v in groups.values())
    return {
        "predicted_campaigns": len(groups),
        "purity": majority / total,
        "benign_accounts_in_campaigns": sum(v.count("benign") for v in groups.values()),
    }


def _mixed(con: duckdb.DuckDBPyConnection, scan_dir: Path, truth_dir: Path) -> dict[str, Any]:
    """Exchange-level AUC inside accounts that mix harvesting with genuine traffic."""
    scored = scan_dir / "exchanges_scored.parquet"
    tex = _need(truth_dir / "truth_exchanges.parquet")
    ex = _need(truth_dir / "exchanges.parquet")
    con.execute(f"""
        CREATE TABLE mixed_ex AS
        SELECT e.exchange_id, e.account_id, t.is_attack
        FROM read_parquet('{ex}') e JOIN read_parquet('{tex}') t USING (exchange_id)
        WHERE e.account_id IN (SELECT account_id FROM acc WHERE label = 'attack')
    """)
    con.execute("""
        CREATE TABLE mixed_acc AS SELECT account_id FROM mixed_ex
        GROUP BY 1 HAVING bool_or(is_attack) AND bool_or(NOT is_attack)
    """)
    n_acc = con.execute("SELECT count(*) FROM mixed_acc").fetchone()
    out: dict[str, Any] = {
        "accounts": int(n_acc[0]) if n_acc else 0,
        "auc": None,
        "mean_account_auc": None,
    }
    if not scored.exists() or out["accounts"] == 0:
        out["note"] = (
            "no exchanges_scored.parquet in scan" if not scored.exists() else "no mixed accounts"
        )
        return out
    data = con.execute(f"""
        SELECT m.account_id, m.is_attack, coalesce(s.score, 0.0)
        FROM mixed_ex m JOIN mixed_acc USING (account_id)
        LEFT JOIN read_parquet('{_need(scored)}') s USING (exchange_id)
        ORDER BY m.account_id
    """).fetchnumpy()
    labels = np.asarray(data["is_attack"], dtype=bool)
    scores = np.asarray(data[list(data)[2]], dtype=np.float64)
    accts = np.asarray(data["account_id"])
    out["exchanges"] = len(labels)
    out["auc"] = auc(scores, labels)
    per: list[float] = []
    bounds = np.flatnonzero(accts[1:] != accts[:-1]) + 1
    for idx in np.split(np.arange(len(accts)), bounds):
        a = auc(scores[idx], labels[idx])
        if a is not None:
            per.append(a)
    out["mean_account_auc"] = float(np.mean(per)) if per else None
    return out


def _clean(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and (math.isnan(obj) or math.isinf(obj)):
        return None
    return obj


def _fmt(x: Any, pct: bool = True) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{100 * x:.1f}%" if pct else f"{x:.1f}"
    return str(x)


def evaluation_table(ev: dict[str, Any]) -> Any:
    """The evaluation as Rich renderables (overall, per population, per campaign)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    o = ev["overall"]
    head = Table(title="Overall (accounts)", show_header=True)
    head.add_column("", justify="right", no_wrap=True)
    for col in ("accounts", "attack", "flagged", "prec.", "recall", "FPR", "AUC"):
        head.add_column(col, justify="right")
    for name, m in (("all", o), ("excl. gray", ev["overall_excluding_gray"])):
        auc_cell = f"{o['auc']:.3f}" if name == "all" and o.get("auc") is not None else "-"
        head.add_row(
            name,
            str(m["accounts"]),
            str(m["attack_accounts"]),
            str(m["flagged"]),
            _fmt(m["precision"]),
            _fmt(m["recall"]),
            _fmt(m["fpr"]),
            auc_cell,
        )
    pops = Table(title="Per population", show_header=True)
    for col in ("population", "label", "accounts", "flagged", "recall / FPR"):
        pops.add_column(col, justify="right")
    for name, m in ev["populations"].items():
        rate = m["recall"] if m["label"] == "attack" else m["fpr"]
        pops.add_row(name, m["label"], str(m["accounts"]), str(m["flagged"]), _fmt(rate))
    camps = Table(title="Per campaign", show_header=True)
    # Short headers so the table fits an 80-column terminal without truncating ids.
    width = max([len(c) for c in ev["campaigns"]] + [8])
    camps.add_column("campaign", justify="right", no_wrap=True, min_width=width)
    for col in ("acct", "recall", "link", "purity", "TTD h", "pre-detect", "pre-flag"):
        camps.add_column(col, justify="right")
    camps.caption = (
        "link: share of flagged accounts in the largest predicted campaign; TTD: time to "
        "detection; pre-detect: harvested exchanges before detection; pre-flag: share "
        "harvested before each account was flagged"
    )
    for cid, m in ev["campaigns"].items():
        camps.add_row(
            cid,
            str(m["accounts"]),
            _fmt(m["recall"]),
            _fmt(m["linking_completeness"]),
            _fmt(m["purity"]),
            _fmt(m.get("time_to_detection_h"), pct=False),
            str(m.get("harvested_before_detection", "-")),
            _fmt(m.get("harvested_before_account_flag_share")),
        )
    mixed = ev["mixed_accounts"]
    mix_auc = "-" if mixed.get("auc") is None else f"{mixed['auc']:.3f}"
    note = f"Mixed accounts: {mixed['accounts']}, exchange-level AUC {mix_auc}"
    return Group(head, pops, camps, Text(note))
