"""``scan``: ingest -> account sums -> detectors -> linking -> outputs (CONTRACT §2)."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import ibis
import ibis.selectors as sel
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute
import pyarrow.dataset

from distillguard import __version__, prompt_edges
from distillguard.detectors import DetectorOutput, create
from distillguard.detectors.base import ALL_PEERS, excess_z
from distillguard.engine import (
    EngineConfig,
    connect,
    engine_name,
    hash_sample,
    materialise,
    parquet_glob,
    write_parquet,
)
from distillguard.features import (
    CONTENT_SUM_COLUMNS,
    SUM_COLUMNS,
    account_bucket_table,
    derive_features,
    utc_times,
)
from distillguard.features.content import (
    CAPABILITY_COLUMNS,
    SKETCH_SUM_COLUMNS,
    TRACKED_CAPABILITIES,
    Followup,
    bucket_sizes,
    classify_to_parquet,
    content_bucket_sums,
    per_bucket_for_budget,
    score_sample,
)
from distillguard.ingest import StageResult, stage_inputs
from distillguard.ingest.sources import expand_inputs
from distillguard.ingest.stage import DEFAULT_MAX_LINE_BYTES, PARALLEL_MIN_BYTES, start_pool
from distillguard.linking import (
    TEMPLATE_MIN_PROMPT,
    Campaign,
    account_values,
    crowd_joiners,
    crowd_profiles,
    crowd_values,
    group_crowds,
    link_accounts,
    log_volume,
    mixes_differ,
    pair_evidence,
    shared_values,
    synchrony_candidates,
    timing_synchrony,
    volume_centres,
    volumes_differ,
)
from distillguard.policy import Policy, bucket_unit, load_policy
from distillguard.progress import NullReporter, Reporter, StageTimer


@dataclass
class ScanResult:
    out_dir: Path
    summary: dict[str, Any]
    accounts: pd.DataFrame
    campaigns: list[Campaign] = field(default_factory=list)


def _combine(outputs: list[DetectorOutput], weights: list[float]) -> np.ndarray[Any, Any]:
    """Noisy-OR: independent pieces of evidence each get a chance to flag."""
    keep = np.ones_like(outputs[0].score)
    for out, w in zip(outputs, weights, strict=True):
        keep *= 1.0 - w * out.score
    return 1.0 - keep


def _latest_rows(days: Any) -> pd.DataFrame:
    """Each account's latest cumulative row (its sums over the whole log), by account."""
    newest = days.group_by("account_id").aggregate(bucket=days.bucket.max())
    rows = days.join(newest, ["account_id", "bucket"]).order_by("account_id")
    return utc_times(rows.to_pyarrow().to_pandas())


def _followup(pol: Policy) -> Followup | None:
    """The content sample's second read (``features.content.followup_quota``): accounts
    whose eliciting share so far is above the lowest bar the content detector can set."""
    spec = next((d for d in pol.detectors if d.name == "content"), None)
    if spec is None or pol.content_followup_max_prompts <= 0:
        return None
    rate = float(spec.params.get("min_rate", 0.02))
    return Followup(pol.content_per_bucket, rate, pol.content_followup_max_prompts)


def _peer_groups(accounts: pd.DataFrame | None, ids: pd.Index) -> pd.Series:
    if accounts is None or "tier" not in accounts.columns:
        return pd.Series(ALL_PEERS, index=ids)
    tiers = accounts.set_index("account_id")["tier"]
    return tiers.reindex(ids).fillna(ALL_PEERS).astype(str)


def _sum_columns(sums: pd.DataFrame) -> list[str]:
    sketch = [c for c in SKETCH_SUM_COLUMNS if c in sums.columns]
    return [*SUM_COLUMNS, *CONTENT_SUM_COLUMNS, *sketch]


def _features(sums: pd.DataFrame, peers: pd.Series) -> pd.DataFrame:
    cols = {name: sums[name].to_numpy() for name in _sum_columns(sums)}
    cols["active_buckets"] = sums["active_buckets"].to_numpy()
    feats = pd.DataFrame(derive_features(cols), index=sums["account_id"].to_numpy())
    feats.index.name = "account_id"
    feats["peer_group"] = peers.reindex(feats.index).fillna(ALL_PEERS).to_numpy()
    if "accounts" in sums.columns:  # a campaign's pooled row: how many accounts it holds
        feats["accounts"] = sums["accounts"].to_numpy(dtype=np.float64)
    if "system_demand" in sums.columns:
        # ... and how many of them have a system prompt that asks for training data (an
        # account's configuration counts once; a linked group's, once per member)
        feats["system_demand"] = sums["system_demand"].to_numpy(dtype=np.float64)
    return feats


def run_scan(
    inputs: list[str | Path],
    out_dir: Path,
    *,
    accounts: str | Path | None = None,
    policy: Policy | None = None,
    reporter: Reporter | None = None,
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    show_prompts: bool = False,
    raw_ids: bool = False,
    engine: EngineConfig | None = None,
    workers: int | None = None,
    parallel_min_bytes: int = PARALLEL_MIN_BYTES,
) -> ScanResult:
    """Scan exchange logs and write every output of CONTRACT §2 into ``out_dir``.

    Ingestion and prompt classification use ``workers`` processes (default: one per core)
    when the logs reach ``parallel_min_bytes``; every columnar stage runs on
    ``engine`` (DuckDB in process by default), whose memory limit is the policy's.
    """
    n = workers if workers is not None else (os.cpu_count() or 1)
    size = sum(s.path.stat().st_size for s in expand_inputs(inputs))
    # Started first, before this process has threads of its own (see ``start_pool``).
    pool = start_pool(n) if n > 1 and size >= parallel_min_bytes else None
    try:
        return _scan(
            inputs,
            out_dir,
            accounts=accounts,
            policy=policy,
            reporter=reporter,
            max_line_bytes=max_line_bytes,
            show_prompts=show_prompts,
            raw_ids=raw_ids,
            engine=engine,
            pool=pool,
        )
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _scan(
    inputs: list[str | Path],
    out_dir: Path,
    *,
    accounts: str | Path | None,
    policy: Policy | None,
    reporter: Reporter | None,
    max_line_bytes: int,
    show_prompts: bool,
    raw_ids: bool,
    engine: EngineConfig | None,
    pool: Executor | None,
) -> ScanResult:
    from distillguard.outputs import write_outputs

    started = time.perf_counter()
    rep = StageTimer(reporter or NullReporter())
    pol = policy or load_policy()
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / ".work"

    rep.stage("ingest and validate", total=1.0)
    staged: StageResult = stage_inputs(
        inputs,
        work,
        out_dir / "quarantine.jsonl",
        accounts=accounts,
        max_line_bytes=max_line_bytes,
        progress=lambda done, total: rep.advance(done / total),
        memory_limit=pol.memory_limit,
        executor=pool,
    )
    rep.log(
        f"{staged.rows_read:,} rows read, {staged.rows_valid:,} valid, "
        f"{staged.rows_quarantined:,} quarantined"
    )

    engine_cfg = replace(
        engine or EngineConfig(),
        memory_limit=pol.memory_limit,
        temp_dir=(engine.temp_dir if engine else None) or work / "spill",
    )
    con = connect(engine_cfg)
    t = con.read_parquet(parquet_glob(staged.exchanges_path), table_name="exchanges")
    if t.ts.type().timezone is None:
        # Spark reads the staged UTC time stamps as zone-less (in its UTC session): say they
        # are UTC, so every time that comes back is zoned as it is from DuckDB.
        t = t.mutate(ts=t.ts.cast(ibis.dtype("timestamp('UTC')")))
    acc_t = (
        con.read_parquet(staged.accounts_path, table_name="accounts")
        if staged.accounts_path
        else None
    )
    accounts_df = acc_t.to_pyarrow().to_pandas() if acc_t is not None else None

    unit = bucket_unit(pol)
    rep.stage("classify prompts (per-account sample)", total=None)
    from distillguard.content import ElicitationClassifier

    classifier = ElicitationClassifier.load_default()
    content_path = work / "content.parquet"
    sizes = bucket_sizes(t, unit)
    per_bucket = per_bucket_for_budget(
        sizes, per_bucket=pol.content_per_bucket, budget=pol.content_max_prompts
    )
    sketch = any(spec.name == "distribution" for spec in pol.detectors)
    classified = score_sample(
        con,
        t,
        content_path,
        classifier,
        per_bucket=per_bucket,
        bucket=unit,
        sizes=sizes,
        sketch=sketch,
        executor=pool,
        followup=_followup(pol),
    )
    rep.log(f"{classified:,} prompts classified")
    content = content_bucket_sums(con.read_parquet(content_path))

    rep.stage("account features", total=None)
    extra_columns = (*CONTENT_SUM_COLUMNS, *(SKETCH_SUM_COLUMNS if sketch else ()))
    # Accounts x days rows (gigabytes at full scale): kept on disk, ordered by day, and read
    # a day at a time by the replays; only each account's latest row is held.
    days_path = work / "account_days.parquet"
    write_parquet(
        con,
        account_bucket_table(t, bucket=unit, extra=content, extra_columns=extra_columns),
        days_path,
    )
    last = _latest_rows(con.read_parquet(days_path))
    ids = pd.Index(last["account_id"].to_numpy())
    peers = _peer_groups(accounts_df, ids)
    X = _features(last, peers)
    last_ts = last.set_index("account_id")["last_ts"]

    rep.stage("detectors", total=float(len(pol.detectors)))
    outputs: list[DetectorOutput] = []
    fitted = []
    for i, spec in enumerate(pol.detectors):
        det = create(spec.name, spec.params).fit(X)
        fitted.append(det)
        outputs.append(det.score(X))
        rep.advance(i + 1)
    weights = [s.weight for s in pol.detectors]
    score = _combine(outputs, weights) if outputs else np.zeros(len(X))
    flagged = score >= pol.threshold

    days = _DailyReplay(days_path, peers, pol)
    first_flagged = _first_flagged(days, pol, weights, flagged, X.index, rep)
    data_end = last["last_ts"].max() if len(last) else pd.NaT
    if len(last):
        # A checkpoint's end can fall after the last log line; and an account that only the
        # full data flags was flagged when the data ended.
        first_flagged = first_flagged.where(
            first_flagged.isna() | (first_flagged <= data_end), data_end
        )
        missing = first_flagged.isna() & pd.Series(flagged, index=X.index)
        first_flagged[missing] = data_end

    _return_freed_memory()
    rep.stage("linking", total=None)
    cfg = pol.linking
    own = pd.Series(score, index=X.index.astype(str))
    candidates = [str(a) for a in own.index[own >= cfg.candidate_threshold]]
    campaigns: list[Campaign] = []
    if len(candidates) >= cfg.min_campaign_accounts:
        self_flagged = {str(a) for a in own.index[own >= pol.threshold]}
        values = account_values(t, acc_t, cfg, work, self_flagged)
        sv = shared_values(t, acc_t, candidates, cfg, work, values)
        pairs = pair_evidence(sv, cfg, prune=True)
        sync = timing_synchrony(t, synchrony_candidates(pairs, cfg, self_flagged), cfg)
        if len(sync):
            pairs = pd.concat([pairs, sync[["a", "b", "key", "w"]]], ignore_index=True)
        rep.log(f"{len(pairs):,} pair-evidence rows, {len(sync):,} synchronised pairs")
        mix = last.set_index("account_id")[list(CAPABILITY_COLUMNS)]
        mix.index = mix.index.astype(str)
        linked = link_accounts(sv, own, cfg, self_flagged, pairs=pairs, mix=mix)
        crowd = crowd_values(values, self_flagged, cfg, work)
        profiles = crowd_profiles(crowd, cfg) if crowd is not None else None
        volume = pd.Series(X["rate_per_active_day"].to_numpy(), index=own.index)

        reread_ids: list[str] = []

        def reread(ids: list[str]) -> pd.DataFrame:
            reread_ids.extend(ids)
            return _reread_content(con, t, classifier, ids, cfg.crowd_read, work, pool)

        grouped = group_crowds(linked, crowd, self_flagged, own, cfg, mix, profiles, volume, reread)
        joined = _crowd_joiners(crowd, grouped, last, mix, volume, pol, profiles, reread)
        rep.log(
            f"{len(grouped):,} campaigns after grouping by crowd values; "
            f"{len(joined):,} accounts join one on them and their own prompts; "
            f"{len(reread_ids):,} accounts' prompts read again for these tests"
        )
        linked = _consistent_members(grouped, last, cfg.min_campaign_accounts)
        # A campaign is judged like one account made of all its members' traffic, against
        # the accounts' baselines: 25 exchanges a day each is thin evidence, 500 is not.
        pooled = _pooled_scores(
            linked, last.set_index("account_id"), fitted, [s.campaign_weight for s in pol.detectors]
        )
        for c, p in zip(linked, pooled, strict=True):
            c.score = p
        campaigns = [c for c in linked if c.score >= pol.threshold]

    campaign_found = _campaign_found_at(campaigns, days, pol)
    reasons = _reasons(outputs, [s.name for s in pol.detectors], flagged)
    final = np.clip(score, 0.0, 1.0)
    final_flag = flagged.copy()
    campaign_of: list[str | None] = [None] * len(X)
    position = {str(acc): i for i, acc in enumerate(X.index)}
    first_day = last.set_index("account_id")["first_ts"].reindex(X.index).dt.floor("D")
    for c in campaigns:
        rows = [position[a] for a in c.account_ids]
        own_times = first_flagged.iloc[[r for r in rows if flagged[r]]]
        detected = min(
            own_times.min() if len(own_times) else data_end,
            campaign_found.get(c.campaign_id, data_end),
        )
        shared = ", ".join(c.shared) or "infrastructure"
        for row in rows:
            campaign_of[row] = c.campaign_id
            reasons[row].insert(
                0,
                f"member of campaign {c.campaign_id}: {len(c.account_ids)} accounts sharing "
                f"{shared} (campaign score {c.score:.2f})",
            )
            if score[row] < cfg.lift_floor:
                continue
            final[row] = max(final[row], c.score)
            alone = pd.Timestamp(first_flagged.iloc[row]) if final_flag[row] else None
            first_flagged.iloc[row] = _member_found_at(
                alone, detected, pd.Timestamp(first_day.iloc[row])
            )
            final_flag[row] = True
    table = pd.DataFrame(
        {
            "account_id": X.index.astype(str),
            "score": final,
            "flagged": final_flag,
            "campaign_id": pd.Series(campaign_of, dtype=object),
            "exchanges": X["exchanges"].to_numpy().astype(np.int64),
            "first_flagged_at": first_flagged.reindex(X.index).to_numpy(),
            "reasons": reasons,
            "last_ts": last_ts.reindex(X.index).to_numpy(),
        }
    )

    summary = {
        "rows_read": staged.rows_read,
        "rows_valid": staged.rows_valid,
        "rows_quarantined": staged.rows_quarantined,
        "duplicates": staged.duplicates,
        "accounts_table_rows_read": staged.accounts_rows_read,
        "accounts_table_rows_quarantined": staged.accounts_rows_quarantined,
        "accounts": len(table),
        "flagged_accounts": int(final_flag.sum()),
        "campaigns": len(campaigns),
        "elapsed_s": 0.0,
        "engine": engine_name(con),
        "version": __version__,
        "policy": pol.source,
        "sources": staged.sources,
        "stage_seconds": rep.timings,
    }
    _return_freed_memory()
    rep.stage("score exchanges in flagged accounts", total=None)
    exchange_scores = _exchange_scores(
        con, t, table, classifier, work, pol.exchange_content_limit, pool
    )
    rep.stage("write outputs", total=None)
    write_outputs(
        out_dir,
        con,
        t,
        table,
        campaigns,
        summary,
        exchange_scores,
        capabilities=_capability_mix(campaigns, last),
        threshold=pol.threshold,
        show_prompts=show_prompts,
        raw_ids=raw_ids,
    )
    con.disconnect()
    rep.close()
    summary["elapsed_s"] = round(time.perf_counter() - started, 3)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    _cleanup(work)
    return ScanResult(out_dir, summary, table, campaigns)


def _exchange_scores(
    con: Any,
    t: Any,
    table: pd.DataFrame,
    classifier: Any,
    work: Path,
    limit: int,
    pool: Executor | None = None,
) -> list[Any]:
    """Which exchanges inside an account look like harvesting (CONTRACT §2).

    A proxy or reseller account relays real users' requests beside harvested ones, so the
    account's score is spread over its exchanges by what each one asks for. Exchanges in
    the content sample are classified already; every other exchange of a flagged account
    is classified now (up to ``limit``, a hash sample beyond). A conversation counts as
    eliciting if any of its turns does (tool-result turns carry no text of their own);
    unclassified exchanges take their account's mean. The rest of the evidence is how long
    the answer and the prompt are against the account's own (their mid-ranks, at the
    resolution of quarter-octave length bins) and, inside flagged accounts, a repeated
    wrapper. Rows come out in no particular order.

    Everything per account or conversation is aggregated first (on the classified rows, a
    histogram, the flagged accounts' repeated wrappers) and written to ``work``; the log
    is then read once more per share of the accounts (one expression each) and joined to
    those tables. Never a sort, and never a derived table of the log used twice in one
    query, which the engine would hold in memory whole.
    """
    acc = table[["account_id", "score"]].rename(columns={"score": "account_score"})
    flagged = ibis.memtable(table.loc[table["flagged"], ["account_id"]])
    cols = ("exchange_id", "account_id", "conversation_id")
    sampled = con.read_parquet(work / "content.parquet")
    sub = t.semi_join(flagged, "account_id").anti_join(sampled, "exchange_id")
    total = int(sub.count().execute())
    if total > limit:
        sub = sub.filter(hash_sample(sub.exchange_id, limit, total))
    path = work / "exchange_content.parquet"
    classify_to_parquet(
        con,
        sub.select(*cols, "prompt", "system_prompt"),
        path,
        classifier,
        keep=cols,
        executor=pool,
        demand=False,
    )
    # Every account's sampled exchanges were classified already; flagged accounts' rest now.
    both = sampled.select(*cols, "elicitation").union(
        con.read_parquet(path).select(*cols, "elicitation")
    )
    ec = materialise(con, both, work / "exchange_elicitation.parquet")
    convs = (
        ec.filter(ec.conversation_id.notnull())
        .group_by(["account_id", "conversation_id"])
        .aggregate(conv_max=ec.elicitation.max())
    )
    accts = ec.group_by("account_id").aggregate(acct_mean=ec.elicitation.mean())
    # Harvested answers are the long ones, measured against the account's own traffic: the
    # mid-rank of the answer's length bin (a quarter octave) among the account's answers.
    # So are harvested prompts (a question wrapped in instructions against a person's own
    # words): the same mid-rank among the account's prompts with text. A turn without text
    # (a tool result) says nothing either way and counts 0.5.
    ends = _prompt_ends(t)
    hists = {}
    for name, column in (("longer", "bin"), ("wordier", "pbin")):
        rows = ends.filter(ends[column].notnull())
        hist = rows.group_by(["account_id", rows[column].name("bin")]).aggregate(n=rows.count())
        hists[name] = _mid_rank(materialise(con, hist, work / f"length_bins_{name}.parquet"), name)
    answers, prompts = hists["longer"], hists["wordier"].rename(pbin="bin")
    wrappers = _repeated_wrappers(con, t.semi_join(flagged, "account_id"), work)
    opening = wrappers.filter(wrappers.side == "opening").select(
        "account_id", opening="edge", open_hit=ibis.literal(1.0)
    )
    closing = wrappers.filter(wrappers.side == "closing").select(
        "account_id", closing="edge", close_hit=ibis.literal(1.0)
    )
    per_account = ibis.memtable(acc).left_join(accts, "account_id").select(~sel.endswith("_right"))
    tables = [
        (per_account, ["account_id"]),
        (ec.select("account_id", "exchange_id", "elicitation"), ["account_id", "exchange_id"]),
        (convs, ["account_id", "conversation_id"]),
        (answers, ["account_id", "bin"]),
        (prompts, ["account_id", "pbin"]),
        (opening, ["account_id", "opening"]),
        (closing, ["account_id", "closing"]),
    ]
    # Every joined table is held in memory while the log streams past; past the engine's
    # memory it would spill the log's rows too (tens of gigabytes at full scale). So the
    # accounts are split into shares whose tables fit, each share one pass over the log.
    rows = len(acc) + sum(int(right.count().execute()) for right, _ in tables[1:])
    shares = max(1, -(-rows // _JOIN_ROWS_PER_SHARE))
    return [_score_share(ends, tables, i, shares) for i in range(shares)]


# Rows of joined tables per share: about a gigabyte of hash tables (measured on the full-scale
# simulation, where the whole of them spilled 20 GB at a 2 GB memory limit).
_JOIN_ROWS_PER_SHARE = 6_000_000


def _score_share(ends: Any, tables: list[tuple[Any, list[str]]], share: int, shares: int) -> Any:
    """The exchange scores of one share of the accounts (see ``_exchange_scores``)."""

    def mine(x: Any) -> Any:
        if shares == 1:
            return x
        # The engine's own hash: which share an account falls in only has to agree between
        # the log and the tables of one engine.
        return x.filter((x.account_id.hash() % shares + shares) % shares == share)

    # Left joins only, each probed by the log's rows in this order: with inner joins on the
    # account the engine may reorder them and join two per-account tables to each other on
    # the account alone. Every row has its account and its answer's bin, so nothing is lost.
    j = mine(ends)
    for right, on in tables:
        j = j.left_join(mine(right), on).select(~sel.endswith("_right"))
    repeated = ibis.greatest(j.open_hit.fill_null(0.0), j.close_hit.fill_null(0.0))
    # A conversation counts as eliciting if any of its turns does (tool-result turns carry
    # no text of their own); an exchange nobody classified takes its account's mean.
    e = ibis.greatest(j.elicitation, j.conv_max).fill_null(j.acct_mean).fill_null(1.0)
    evidence = (
        e.cast("float64")
        + j.longer.cast("float64")
        + j.wordier.cast("float64").fill_null(0.5)
        + repeated
    ) / 4.0
    return j.select("exchange_id", "account_id", score=j.account_score * (0.5 + 0.5 * evidence))


def _prompt_ends(rows: Any) -> Any:
    """The exchange columns scoring needs: the answer's length bin, the prompt's (null for a
    turn without text), and a long prompt's first and last 40 characters (``opening``,
    ``closing``; null for short prompts)."""
    chars = prompt_edges.chars(rows).fill_null(0)
    long = chars >= TEMPLATE_MIN_PROMPT
    null = ibis.null("string")
    return rows.select(
        "exchange_id",
        "account_id",
        "conversation_id",
        bin=_length_bin(rows.output_tokens),
        pbin=ibis.cases((chars > 0, _length_bin(chars)), else_=ibis.null("int64")),
        opening=ibis.cases((long, prompt_edges.head(rows)), else_=null),
        closing=ibis.cases((long, prompt_edges.tail(rows)), else_=null),
    )


def _repeated_wrappers(con: Any, rows: Any, work: Path, times: int = 3) -> Any:
    """(account_id, side, edge): the openings and closings of long prompts that at least
    ``times`` of the account's prompts share. Harvesters wrap each question in a few fixed
    instructions; the people a proxy relays each write their own. Each side is counted on
    its own pass and written to ``work``."""
    folder = work / "wrappers"
    folder.mkdir(exist_ok=True)
    for side in ("opening", "closing"):
        ends = _prompt_ends(rows)
        ends = ends.filter(ends[side].notnull())
        counts = ends.group_by(["account_id", ends[side].name("edge")]).aggregate(n=ends.count())
        counts = counts.filter(counts.n >= times).select(
            "account_id", side=ibis.literal(side), edge="edge"
        )
        write_parquet(con, counts, folder / f"{side}.parquet")
    return con.read_parquet(parquet_glob(folder))


def _mid_rank(hist: Any, name: str) -> Any:
    """Per (account, bin) of ``hist`` (columns ``account_id``, ``bin``, ``n``): ``name``,
    the bin's mid-rank among the account's rows, in [0, 1] (0 where the account has one
    row). Only the small per-account histogram is ordered, never the rows."""
    below = hist.n.sum().over(
        ibis.window(group_by=hist.account_id, order_by=hist.bin, preceding=None, following=0)
    )
    size = hist.n.sum().over(ibis.window(group_by=hist.account_id))
    rank = ibis.cases((size > 1, (below - hist.n + (hist.n - 1) / 2.0) / (size - 1)), else_=0.0)
    return hist.mutate(**{name: rank}).select("account_id", "bin", name)


def _length_bin(tokens: Any) -> Any:
    return (tokens.cast("float64") + 1.0).log2().mul(4).floor().cast("int64")


def _member_found_at(own: pd.Timestamp | None, campaign: Any, first_day: pd.Timestamp) -> Any:
    """When a campaign member counts as found: when its own evidence flagged it (``own``,
    None if it never did) or when its campaign was, whichever came first. Linking is not
    replayed per checkpoint, so the campaign's time counts no earlier than the end of the
    member's own first day."""
    via_campaign = max(campaign, first_day + timedelta(days=1))
    return via_campaign if own is None else min(own, via_campaign)


def _reread_content(
    con: Any,
    t: Any,
    classifier: Any,
    ids: list[str],
    per_account: int,
    work: Path,
    pool: Executor | None = None,
) -> pd.DataFrame:
    """(account_id, c_n, c_elicit, c_cap_*): up to ``per_account`` of each of ``ids``'
    prompts with text (the first by a hash of the exchange id, so a deterministic sample),
    classified now: how many of them elicit (``ElicitationClassifier.demand``) and how many
    ask for each capability, as the content sums count them."""
    caps = list(CAPABILITY_COLUMNS)
    if not ids or per_account <= 0:
        return pd.DataFrame(columns=["account_id", "c_n", "c_elicit", *caps])
    who = ibis.memtable(pd.DataFrame({"account_id": ids}))
    rows = t.semi_join(who, "account_id")
    rows = rows.filter(rows.prompt.notnull() & (rows.prompt.length() > 0))
    order = ibis.row_number().over(group_by=rows.account_id, order_by=rows.exchange_id.hash())
    rows = rows.mutate(pick=order)
    cols = ("exchange_id", "account_id")
    prompts = rows.filter(rows.pick < per_account).select(*cols, "prompt", "system_prompt")
    path = work / "reread_content.parquet"
    classify_to_parquet(con, prompts, path, classifier, keep=cols, executor=pool)
    got = pd.read_parquet(path, columns=["account_id", "elicit", "cap"])
    per_cap = pd.crosstab(got["account_id"], got["cap"]).reindex(
        columns=range(len(caps)), fill_value=0
    )
    per_cap.columns = pd.Index(caps)
    sums = got.groupby("account_id")["elicit"].agg(c_n="size", c_elicit="sum")
    out: pd.DataFrame = sums.join(per_cap).reset_index()
    return out


def _crowd_joiners(
    crowd: Any | None,
    campaigns: list[Campaign],
    last: pd.DataFrame,
    mix: pd.DataFrame,
    volume: pd.Series,
    pol: Policy,
    profiles: tuple[pd.Index, np.ndarray] | None = None,
    reread: Callable[[list[str]], pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Accounts added to the campaign whose crowd profile theirs is like (``crowd_joiners``)
    when their own prompts back it: eliciting at least at the lowest bar the content
    detector can set (binomial z >= ``crowd_join_min_z`` against it: a harvester sampled
    too thinly to pass its peers' bar, not an honest account on a proxy's ISP, whose share
    is a fraction of that) and a capability mix and volume (exchanges per active day) that
    do not differ from the campaign's (``mixes_differ``, ``volumes_differ``). A candidate
    whose first sample falls short of the bar is judged on a second, bigger read of its
    prompts instead when ``reread`` (ids -> ``account_id``, ``c_n``, ``c_elicit``) gives
    more: at 2 prompts a day, a harvester eliciting in 10% of them shows 0 or 1 in two
    weeks about a quarter of the time. Added in place (linked to nobody: ``degree`` 0, so
    ``_consistent_members`` checks them too); returned."""
    cfg = pol.linking
    cand = crowd_joiners(crowd, campaigns, cfg, profiles)
    if cand.empty:
        return cand
    spec = next((d for d in pol.detectors if d.name == "content"), None)
    rate = float(spec.params.get("min_rate", 0.02)) if spec is not None else 0.02
    sums = last.set_index("account_id").reindex(cand["account_id"])
    k = sums["c_elicit"].fillna(0.0).to_numpy(dtype=float)
    n = sums["c_n"].fillna(0.0).to_numpy(dtype=float)

    z = excess_z(k, n, rate)
    by_id = {c.campaign_id: c for c in campaigns}
    mixes = {
        c: mix.reindex(by_id[c].account_ids).fillna(0.0).sum().to_numpy(dtype=float)
        for c in pd.unique(cand["campaign_id"])
    }
    pooled = np.array([mixes[c] for c in cand["campaign_id"]])
    own = mix.reindex(cand["account_id"]).fillna(0.0).to_numpy(dtype=float)
    members = [(a, c) for c in mixes for a in by_id[c].account_ids]
    centre, spread = volume_centres(
        log_volume(volume, [a for a, _ in members]), np.array([c for _, c in members])
    )
    far = volumes_differ(
        log_volume(volume, cand["account_id"]),
        centre.reindex(cand["campaign_id"]).to_numpy(),
        spread.reindex(cand["campaign_id"]).to_numpy(),
        cfg,
    )
    alike = ~mixes_differ(own, pooled, cfg) & ~far
    short = alike & (z < cfg.crowd_join_min_z)
    if reread is not None and short.any():
        again = reread(cand["account_id"][short].tolist()).set_index("account_id")
        again = again.reindex(cand["account_id"]).fillna(0.0)
        n2 = again["c_n"].to_numpy(dtype=float)
        better = short & (n2 > n)
        k = np.where(better, again["c_elicit"].to_numpy(dtype=float), k)
        n = np.where(better, n2, n)
        z = excess_z(k, n, rate)
    ok = (z >= cfg.crowd_join_min_z) & alike
    joined: pd.DataFrame = cand[ok].reset_index(drop=True)
    for campaign_id, ids in joined.groupby("campaign_id")["account_id"]:
        c = by_id[str(campaign_id)]
        c.account_ids = sorted({*c.account_ids, *map(str, ids)})
        c.degree.update({str(a): 0 for a in ids})
    return joined


def _consistent_members(
    campaigns: list[Campaign],
    last: pd.DataFrame,
    min_accounts: int,
    z_floor: float = -2.33,
    embedded: float = 0.2,
) -> list[Campaign]:
    """Drop loosely linked members whose own prompts contradict their campaign's.

    Shared infrastructure is noisy (residential proxies reuse real customers' home IPs).
    A member linked to at least ``embedded`` of its campaign (and to 2+ members) stays on
    that evidence; a loosely linked one stays only if its share of eliciting prompts is
    not significantly below the campaign's pooled share (one-sided binomial, normal
    approximation, z >= -2.33, i.e. p >= 0.01).
    """
    sums = last.set_index("account_id")
    kept = []
    for c in campaigns:
        k = sums.loc[c.account_ids, "c_elicit"].to_numpy(dtype=float)
        n = sums.loc[c.account_ids, "c_n"].to_numpy(dtype=float)
        p = min(max(k.sum() / max(n.sum(), 1.0), 1e-3), 1 - 1e-3)
        z = (k + 0.5 - n * p) / np.sqrt(np.maximum(n * p * (1 - p), 1e-9))
        need = max(2, embedded * (len(c.account_ids) - 1))
        members = [
            a
            for a, zi in zip(c.account_ids, z, strict=True)
            if zi >= z_floor or c.degree.get(a, 0) >= need
        ]
        if len(members) >= min_accounts:
            c.account_ids = members
            kept.append(c)
    return kept


def _campaign_found_at(
    campaigns: list[Campaign], days: _DailyReplay, pol: Policy
) -> dict[str, pd.Timestamp]:
    """When a daily job would first have scored each campaign over the threshold.

    At each day's end the members' pooled sums so far are scored against that day's
    baselines, as for single accounts. The membership itself is the final one (linking is
    not replayed per day).
    """
    found: dict[str, pd.Timestamp] = {}
    if not campaigns:
        return found
    members = pd.Index(sorted({a for c in campaigns for a in c.account_ids}))
    weights = [s.campaign_weight for s in pol.detectors]
    upto: pd.DataFrame | None = None  # each member's latest row so far
    for day_end, rows, _, fitted in days:
        todo = [c for c in campaigns if c.campaign_id not in found]
        if not todo:
            break
        today = rows.loc[rows.index.isin(members)]
        upto = (
            today if upto is None else pd.concat([upto.drop(today.index, errors="ignore"), today])
        )
        for c, score in zip(todo, _pooled_scores(todo, upto, fitted, weights), strict=True):
            if score >= pol.threshold:
                found[c.campaign_id] = day_end
    return found


def _capability_mix(campaigns: list[Campaign], last: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Sampled prompts per capability, per campaign (from the members' content sums)."""
    sums = last.set_index("account_id")
    cols = dict(zip(CAPABILITY_COLUMNS, (*TRACKED_CAPABILITIES, "other"), strict=True))
    return {
        c.campaign_id: {name: int(sums.loc[c.account_ids, col].sum()) for col, name in cols.items()}
        for c in campaigns
    }


def _pooled_scores(
    campaigns: list[Campaign], sums: pd.DataFrame, fitted: list[Any], weights: list[float]
) -> list[float]:
    """Each campaign scored as one account made of its members' summed traffic.

    ``sums`` holds the members' sums indexed by account; a member missing from it (not yet
    active at a checkpoint) counts as zero.
    """
    if not campaigns:
        return []
    cols = [*_sum_columns(sums), "active_buckets"]
    pooled = pd.DataFrame(
        [sums.reindex(c.account_ids)[cols].fillna(0).sum() for c in campaigns], columns=cols
    )
    pooled["account_id"] = [c.campaign_id for c in campaigns]
    pooled["accounts"] = [len(c.account_ids) for c in campaigns]
    demand = sums["c_sys_elicit"] > 0
    pooled["system_demand"] = [
        int(demand.reindex(c.account_ids, fill_value=False).sum()) for c in campaigns
    ]
    X = _features(pooled, pd.Series(dtype=object))
    outs = [det.score(X, explain=False) for det in fitted]
    return [float(x) for x in _combine(outs, weights)]


def _reasons(
    outputs: list[DetectorOutput], names: list[str], flagged: np.ndarray[Any, Any]
) -> list[list[str]]:
    n = len(flagged)
    out: list[list[str]] = []
    for i in range(n):
        ranked = sorted(range(len(outputs)), key=lambda j: -outputs[j].score[i])
        rs = [r for j in ranked for r in outputs[j].reasons[i]]
        if flagged[i] and not rs:
            best = ranked[0]
            rs = [f"{names[best]} score {outputs[best].score[i]:.2f}"]
        out.append(rs)
    return out


class _DailyReplay:
    """Each day's end as a daily batch job would have seen it: the accounts active that day
    with their sums so far, and the detectors fitted on them (so no later data leaks in).

    The account-day sums stay in their Parquet file (ordered by day, so a day is a few
    row groups) and each day is read when asked for: at full scale they are gigabytes. The
    fitted detectors (a few baselines each) are kept for the account replay and the
    campaign replay alike.
    """

    def __init__(self, path: Path, peers: pd.Series, pol: Policy) -> None:
        self._data = pa.dataset.dataset(path)
        self._peers = peers
        self._pol = pol
        self._fitted: dict[Any, list[Any]] = {}
        self._type = self._data.schema.field("bucket").type
        buckets = self._data.to_table(columns=["bucket"]).column("bucket")
        self._days = sorted(pa.compute.unique(buckets).to_pylist())
        self.count = len(self._days)

    def rows(self, day: Any) -> pd.DataFrame:
        """The sums so far of the accounts active on ``day``, indexed by account (the row
        groups of other days are skipped on their statistics)."""
        table = self._data.to_table(filter=pa.dataset.field("bucket") == pa.scalar(day, self._type))
        return utc_times(table.to_pandas()).set_index("account_id", drop=False)

    def __iter__(self) -> Iterator[tuple[pd.Timestamp, pd.DataFrame, pd.DataFrame, list[Any]]]:
        """Each day: its end, its rows, their features and that day's fitted detectors."""
        for day in self._days:
            rows = self.rows(day)
            X = _features(rows, self._peers)
            if day not in self._fitted:
                self._fitted[day] = [create(s.name, s.params).fit(X) for s in self._pol.detectors]
            start = pd.Timestamp(day)
            start = start.tz_localize("UTC") if start.tz is None else start
            yield start + timedelta(days=1), rows, X, self._fitted[day]


def _first_flagged(
    days: _DailyReplay,
    pol: Policy,
    weights: list[float],
    final_flagged: np.ndarray[Any, Any],
    ids: pd.Index,
    rep: Reporter,
) -> pd.Series:
    """When a daily job would first have flagged each account, using only data up to then:
    at each day's end, the accounts active that day, on their sums so far, against that
    day's baselines."""
    result = pd.Series(pd.NaT, index=ids, dtype="datetime64[us, UTC]")
    todo = set(ids[final_flagged])
    if not todo or not days.count:
        return result
    rep.stage("replay checkpoints (first_flagged_at)", total=float(days.count))
    for k, (day_end, _, X, fitted) in enumerate(days):
        score = _combine([d.score(X, explain=False) for d in fitted], weights)
        new = [a for a in X.index[score >= pol.threshold] if a in todo]
        if new:
            result.loc[new] = day_end
            todo.difference_update(new)
        rep.advance(k + 1)
        if not todo:
            break
    return result


def _return_freed_memory() -> None:
    # Arrow's allocator and glibc's heap keep the pages of the big intermediate tables
    # freed so far (1.2 GB after the account features at full scale); handing them back
    # keeps the resident size to what the scan still holds.
    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to hand back
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _cleanup(work: Path) -> None:
    import shutil

    shutil.rmtree(work, ignore_errors=True)
