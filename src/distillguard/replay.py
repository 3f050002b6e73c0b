"""What a policy would have done to past traffic: who is throttled or blocked, when, and
which legitimate accounts would have been hit along the way.

The replay runs the scan with the policy, then puts its results through the gateway's own
code, read-only: :func:`distillguard.gateway.lists.read_scan_dir` makes the lists the
gateway would load, and :class:`distillguard.gateway.ladder.Ladder` decides each listed
account's action from its listing exactly as ``serve`` does (rungs from the policy's
``[gateway]`` table, or the packaged ``gateway.toml`` when it has none; ``allow_accounts``
never climb). A listing takes effect at the account's ``first_flagged_at``, when a daily
scan would first have listed it; exchanges before it pass. An account at the throttle rung
is served within the suspect rate limit (GCRA, as the gateway applies it) and throttled
beyond it.

What is *not* replayed: the gateway's online signals (each request's own elicitation score,
the decayed account share, the profile rules), which can act before the next daily scan.
The replay is therefore the batch-list half of enforcement: a lower bound on actions.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from distillguard.errors import InputError
from distillguard.gateway.config import ACTIONS, RANK, GatewayPolicy, RateLimit
from distillguard.policy import Policy, load_policy
from distillguard.progress import Reporter

HIT_ACTIONS = ("throttle", "verify", "degrade", "block")  # a customer notices these


@dataclass
class ReplayResult:
    accounts: pd.DataFrame  # one row per listed account
    exchanges: pd.DataFrame  # exchanges that got an action other than allow
    collateral: pd.DataFrame  # hit accounts that are benign (truth) or allow-listed
    scan_dir: Path
    gateway_source: str


def gateway_policy(pol: Policy) -> GatewayPolicy:
    from distillguard.gateway.config import load_gateway_policy, parse_gateway

    if "gateway" in pol.raw:
        return parse_gateway(pol.raw["gateway"], pol.source)
    return load_gateway_policy()


def gcra_allowed(ts_s: np.ndarray[Any, Any], limit: RateLimit) -> np.ndarray[Any, Any]:
    """Which requests (sorted epoch seconds) a GCRA limiter admits; refused ones cost nothing."""
    period = 1.0 / limit.rate
    tolerance = (limit.burst - 1) * period
    tat = -np.inf
    out = np.zeros(len(ts_s), dtype=bool)
    for i, t in enumerate(ts_s):
        if tat - t <= tolerance:
            out[i] = True
            tat = max(tat, t) + period
    return out


def read_account_set(path: Path) -> set[str]:
    """Account ids from a text file (one per line), a JSON list, or a Parquet/JSONL table."""
    try:
        if path.suffix == ".parquet":
            return set(pd.read_parquet(path, columns=["account_id"])["account_id"].astype(str))
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError, KeyError) as err:
        raise InputError(f"cannot read account list: {err}", source=str(path)) from None
    stripped = text.strip()
    if stripped.startswith("["):
        import json

        try:
            return {str(x) for x in json.loads(stripped)}
        except ValueError as err:
            raise InputError(f"not a JSON list: {err}", source=str(path)) from None
    if stripped.startswith("{"):
        import json

        out = set()
        for i, line in enumerate(stripped.splitlines(), start=1):
            try:
                out.add(str(json.loads(line)["account_id"]))
            except (ValueError, KeyError):
                raise InputError(
                    "JSONL line without account_id", source=str(path), line=i
                ) from None
        return out
    return {ln.strip() for ln in stripped.splitlines() if ln.strip() and not ln.startswith("#")}


def read_truth(path: Path) -> pd.Series:
    """``label`` by account from a truth table (Parquet or JSONL; a folder: its
    ``truth_accounts.parquet``, as ``simulate`` writes it)."""
    if path.is_dir():
        path = path / "truth_accounts.parquet"
    try:
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_json(path, lines=True)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot read truth: {err}", source=str(path)) from None
    if not {"account_id", "label"} <= set(df.columns):
        raise InputError("truth needs columns account_id and label", source=str(path))
    return df.set_index(df["account_id"].astype(str))["label"].astype(str)


def _exchange_times(
    inputs: Sequence[str | Path], work: Path, listed: list[str], accounts: str | Path | None
) -> pd.DataFrame:
    import ibis

    from distillguard.engine import EngineConfig, connect, parquet_glob
    from distillguard.ingest import stage_inputs

    staged = stage_inputs(list(inputs), work, work / "quarantine.jsonl", accounts=accounts)
    con = connect(EngineConfig(temp_dir=work / "spill"))
    t = con.read_parquet(parquet_glob(staged.exchanges_path))
    keep = ibis.memtable(pd.DataFrame({"account_id": pd.Series(listed, dtype=str)}))
    rows = t.semi_join(keep, "account_id").select("exchange_id", "account_id", "ts")
    df: pd.DataFrame = rows.to_pyarrow().to_pandas()
    con.disconnect()
    df["ts"] = pd.to_datetime(df["ts"], utc=True)
    return df.sort_values(["account_id", "ts"], kind="stable", ignore_index=True)


def replay(
    inputs: Sequence[str | Path],
    out_dir: Path,
    *,
    policy: str | Path | None = None,
    accounts: str | Path | None = None,
    truth: Path | None = None,
    allow: Path | None = None,
    reporter: Reporter | None = None,
) -> ReplayResult:
    """Replay ``policy`` over ``inputs``; writes Parquet results into ``out_dir``."""
    from distillguard.gateway.ladder import Ladder
    from distillguard.gateway.lists import read_scan_dir
    from distillguard.scan import run_scan

    pol = load_policy(policy)
    gw = gateway_policy(pol)
    labels = read_truth(truth) if truth is not None else None
    allowed_set = read_account_set(allow) if allow is not None else set()
    out_dir.mkdir(parents=True, exist_ok=True)
    scan_dir = out_dir / "scan"
    scan = run_scan(list(inputs), scan_dir, accounts=accounts, policy=pol, reporter=reporter)
    lists = read_scan_dir(scan_dir)
    ladder = Ladder(gw)
    table = scan.accounts.set_index(scan.accounts["account_id"].astype(str))
    data_end = pd.to_datetime(table["last_ts"], utc=True).max() if "last_ts" in table else None

    listed = sorted(lists.accounts)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".replay-") as tmp:
        ex = _exchange_times(inputs, Path(tmp), listed, accounts)
    groups = dict(tuple(ex.groupby("account_id", sort=False))) if len(ex) else {}

    acc_rows: list[dict[str, Any]] = []
    ex_parts: list[pd.DataFrame] = []
    for acc in listed:
        listing = lists.accounts[acc]
        decision = ladder.decide(acc, listing, None, None)
        at = table["first_flagged_at"].get(acc) if acc in table.index else None
        listed_at = pd.Timestamp(at) if at is not None and not pd.isna(at) else data_end
        rows = groups.get(acc, pd.DataFrame(columns=["exchange_id", "account_id", "ts"]))
        after = (
            (rows["ts"] >= listed_at).to_numpy()
            if listed_at is not None
            else np.ones(len(rows), dtype=bool)
        )
        action = np.full(len(rows), "allow", dtype=object)
        action[after] = decision.action
        limit = ladder.rate_limit(acc, listing)
        if decision.action == "watch" and limit is gw.suspect_rate and after.any():
            epoch = pd.Timestamp(0, tz="UTC")
            secs = (rows["ts"][after] - epoch).dt.total_seconds().to_numpy()
            ok = gcra_allowed(secs, limit)
            sub = action[after]
            sub[~ok] = "throttle"
            action[after] = sub
        row: dict[str, Any] = {
            "account_id": acc,
            "action": max(set(action.tolist()) | {"allow"}, key=RANK.__getitem__),
            "ladder_action": decision.action,
            "listed_at": listed_at,
            "score": float(listing.score),
            "campaign_id": listing.campaign_id,
            "exchanges": len(rows),
            "exchanges_after_listing": int(after.sum()),
            "reasons": list(decision.reasons),
        }
        for a in ACTIONS[1:]:
            mask = action == a
            row[f"{a}_exchanges"] = int(mask.sum())
            row[f"first_{a}_at"] = rows["ts"][mask].min() if mask.any() else pd.NaT
        acc_rows.append(row)
        hit = action != "allow"
        if hit.any():
            part = rows.loc[hit, ["exchange_id", "account_id", "ts"]].copy()
            part["action"] = action[hit]
            ex_parts.append(part)
    cols = [
        "account_id",
        "action",
        "ladder_action",
        "listed_at",
        "score",
        "campaign_id",
        "exchanges",
        "exchanges_after_listing",
        "reasons",
    ]
    for a in ACTIONS[1:]:
        cols += [f"{a}_exchanges", f"first_{a}_at"]
    acc_df = pd.DataFrame(acc_rows, columns=cols)
    for c in ("listed_at", *(f"first_{a}_at" for a in ACTIONS[1:])):
        acc_df[c] = pd.to_datetime(acc_df[c], utc=True)
    acc_df["truth_label"] = (
        acc_df["account_id"].map(labels) if labels is not None else pd.Series(None, dtype=object)
    )
    acc_df["allow_listed"] = acc_df["account_id"].isin(allowed_set)
    is_hit = acc_df["action"].isin(HIT_ACTIONS)
    benign = acc_df["truth_label"].eq("benign")
    acc_df["collateral"] = is_hit & (benign | acc_df["allow_listed"])
    acc_df["collateral_reason"] = [
        None
        if not c
        else ("benign and allow-listed" if b and a else "benign (truth)" if b else "allow-listed")
        for c, b, a in zip(acc_df["collateral"], benign, acc_df["allow_listed"], strict=True)
    ]
    ex_df = (
        pd.concat(ex_parts, ignore_index=True)
        if ex_parts
        else pd.DataFrame(
            {
                "exchange_id": pd.Series(dtype=str),
                "account_id": pd.Series(dtype=str),
                "ts": pd.Series(dtype="datetime64[us, UTC]"),
                "action": pd.Series(dtype=str),
            }
        )
    )
    acc_df.to_parquet(out_dir / "replay_accounts.parquet", index=False)
    ex_df.to_parquet(out_dir / "replay_exchanges.parquet", index=False)
    collateral = acc_df[acc_df["collateral"]].reset_index(drop=True)
    return ReplayResult(acc_df, ex_df, collateral, scan_dir, gw.source)


def summary_rows(result: ReplayResult) -> list[tuple[str, int, int, int]]:
    """(action, accounts whose highest action it is, exchanges, collateral accounts)."""
    a = result.accounts
    out: list[tuple[str, int, int, int]] = []
    for action in ACTIONS[1:]:
        mine = a[a["action"] == action]
        n_ex = int(a[f"{action}_exchanges"].sum()) if len(a) else 0
        out.append((action, len(mine), n_ex, int(mine["collateral"].sum())))
    return out
