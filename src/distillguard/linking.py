"""Link suspicious accounts into campaigns through what they share.

Candidates (accounts whose own score reaches ``candidate_threshold``) become nodes. Two
candidates gain evidence for every identifier they share: a payment fingerprint, an IP
or /24, an ASN, a user agent, a system prompt, a prompt template (normalised first or
last 40 characters of long prompts, which is where wrappers and slot-filled templates
show). Each shared value counts ``weight / log2(1 + accounts sharing it)``, computed over
*all* accounts (a payment instrument counts its full weight however many accounts share
it), and values shared by more than ``max_key_accounts`` count nothing: a
university NAT, a cloud region, the official SDK's user agent or a famous benchmark
question are infrastructure, not evidence of common control. A pair whose evidence
reaches ``edge_weight`` is an edge; Leiden (CPM) communities of at least
``min_campaign_accounts`` are campaigns, and an account left in a smaller group joins the
community it has the most edge weight to. Templates are public, shared by unrelated actors:
a pair that is an edge only thanks to them is not one when the two accounts harvest
different capability mixes (``mixes_differ``).

Two further kinds of evidence are not shared identifiers. *Timing synchrony*
(SynchroTrap-style): accounts driven by one orchestrator act in the same few minutes,
more often than their own hour-by-hour activity predicts by chance (``timing_synchrony``).
*Reaction to a model release*: a model first seen well after the log starts is a release,
and accounts whose first use of it falls in the same few hours share a value
(``release_reaction``), weak on its own since honest early adopters react fast too.

A campaign's evidence is stronger than any member's: ``1 - prod(1 - damping * score)``
over its members, which lifts the low-volume members that a per-account view misses.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import ibis
import igraph as ig
import numpy as np
import pandas as pd
import pyarrow.compute as pc

from distillguard import prompt_edges
from distillguard.engine import (
    hash_sample,
    materialise,
    parquet_glob,
    stable_hash,
    write_parquet,
)

TEMPLATE_MIN_PROMPT = 60  # shorter prompts are whole questions, not template plus slot
TEMPLATE_KEYS = ("prompt_prefix", "prompt_suffix")
RELEASE_KEY = "release_reaction"
SYNC_KEY = "timing_sync"
# Keys that are not a column of one exchange: computed over an account's whole traffic.
DERIVED_KEYS = (RELEASE_KEY, SYNC_KEY)
# The raw column each key is cut from (the key's own name unless listed), and the keys read
# together in one pass over the log.
_RAW_COLUMN = {"ip24": "ip", "system_prompt_hash": "system_prompt"}
_NETWORK_KEYS = ("ip", "ip24", "asn", "user_agent")


@dataclass(frozen=True)
class LinkingConfig:
    keys: dict[str, float]
    candidate_threshold: float = 0.3
    edge_weight: float = 1.0
    key_cap: float = 3.0  # one key type contributes at most key_cap * its weight per pair
    max_key_accounts: int = 200
    min_campaign_accounts: int = 3
    member_damping: float = 0.5
    lift_floor: float = 0.2
    resolution: float = 0.1
    template_min_prompts: int = 5
    template_sample_rows: int = 2_000_000
    pair_limit: int = 64
    value_spread: float = 200.0
    max_values_per_key: int = 64
    weak_edge_weight: float = 1.5
    flat_keys: tuple[str, ...] = ("payment_fingerprint",)
    sync_bucket_seconds: int = 120
    sync_min_z: float = 5.0
    sync_min_cells: int = 10
    sync_max_hours: int = 1008
    sync_max_pairs: int = 50_000
    release_min_delay_hours: float = 24.0
    release_window_hours: int = 6
    release_horizon_hours: float = 72.0
    mix_max_p: float = 1e-4
    mix_min_distance: float = 0.05
    crowd_min_flagged: float = 0.5
    crowd_neighbours: int = 15
    crowd_min_similarity: float = 0.5
    crowd_min_values: int = 3
    crowd_dim: int = 256
    crowd_resolution: float = 1.0
    crowd_merge_similarity: float = 0.7
    crowd_split_rounds: int = 4
    crowd_join_quantile: float = 0.1
    crowd_join_min_z: float = 0.0
    crowd_volume_ratio: float = 3.0
    crowd_volume_sigmas: float = 3.0
    crowd_read: int = 200
    crowd_reread_p: float = 0.01


@dataclass
class Campaign:
    campaign_id: str
    account_ids: list[str]
    score: float = 0.0
    shared: dict[str, list[str]] = field(default_factory=dict)  # key -> strongest values
    degree: dict[str, int] = field(default_factory=dict)  # member -> members it is linked to


DIGITS_AND_SPACES = ("0123456789\t\n\f\r", "0000000000    ")


def _normalised(expr: Any) -> Any:
    # Slot-filled numbers and line breaks vary around one template: every digit becomes 0 and
    # every tab or line break a space. Character for character (no regex): this runs on
    # every long prompt of the log, and both engines translate identically.
    return expr.lower().translate(*DIGITS_AND_SPACES)


def key_columns(t: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    """Ibis expressions for each link key, from the exchange table."""
    exprs: dict[str, Any] = {}
    for key in keys:
        if key in DERIVED_KEYS:
            continue
        if key == "ip24":
            # IPv4 /24; IPv6 cut to its first four groups (a /64, one customer's range)
            ip = t.ip
            exprs[key] = ibis.cases(
                (ip.contains(":"), ip.split(":")[0:4].join(":")),
                else_=ip.re_replace(r"\.\d+$", ".0/24"),
            )
        elif key == "system_prompt_hash":
            sp = t.system_prompt
            exprs[key] = ibis.cases(
                (sp.length() >= 20, stable_hash(sp).left(16)), else_=ibis.null("string")
            )
        elif key in TEMPLATE_KEYS:
            exprs[key] = ibis.cases(
                (prompt_edges.chars(t) >= TEMPLATE_MIN_PROMPT, _template(t, key)),
                else_=ibis.null("string"),
            )
        else:
            exprs[key] = t[key].cast("string")
    return exprs


def shared_values(
    t: Any,
    accounts_table: Any | None,
    candidates: list[str],
    cfg: LinkingConfig,
    work: Path | None = None,
    values: Any | None = None,
) -> pd.DataFrame:
    """(account_id, key, value, accounts) for candidates' values shared by 2..max accounts.

    Popularity is counted over every account in the engine; only the candidates' rows of
    the usable values come back to Python, so this stays small on big logs. ``values``
    is ``account_values`` when already computed (the scan also hands it to
    ``crowd_values``); with a ``work`` folder intermediate tables are written there.
    """
    kv = account_values(t, accounts_table, cfg, work) if values is None else values
    if kv is None or not candidates:
        return pd.DataFrame(columns=["account_id", "key", "value", "accounts", "held"])
    con = ibis.get_backend(t)
    # kv holds each (account, key, value) once, so counting rows counts distinct accounts
    # (or values) without a distinct aggregate, which the engine cannot spill.
    pop = kv.group_by(["key", "value"]).aggregate(accounts=kv.count())
    usable = pop.filter((pop.accounts >= 2) & (pop.accounts <= cfg.max_key_accounts))
    spread = kv.group_by(["account_id", "key"]).aggregate(held=kv.count())
    cand = ibis.memtable(pd.DataFrame({"account_id": candidates}))
    rows = kv.join(usable, ["key", "value"]).join(cand, "account_id")
    if work is not None:
        # Written before joining ``spread``: in one query the engine's join order joins
        # ``usable`` to ``spread`` on the key alone (key = key on both sides), billions of
        # rows on a big log.
        rows = materialise(con, rows, work / "link_hits.parquet")
    rows = rows.join(spread, ["account_id", "key"])
    if work is not None:  # read twice below
        rows = materialise(con, rows, work / "link_rows.parquet")
    # An account's identity on a key is the values it uses most: keeping its top few bounds
    # the graph by accounts, not by log size (a proxy account's 10,000th IP adds nothing).
    # Only accounts holding more values than that need ranking (the window is the one step
    # here that holds a partition in memory).
    cols = ["account_id", "key", "value", "accounts", "held"]
    few = rows.filter(rows.held <= cfg.max_values_per_key).select(*cols)
    many = rows.filter(rows.held > cfg.max_values_per_key)
    top = ibis.window(
        group_by=[many.account_id, many.key], order_by=[ibis.desc(many.uses), many.value]
    )
    many = many.mutate(rank=ibis.row_number().over(top))
    many = many.filter(many["rank"] < cfg.max_values_per_key).select(*cols)
    df: pd.DataFrame = few.union(many).to_pyarrow().to_pandas()
    return df


def account_values(
    t: Any,
    accounts_table: Any | None,
    cfg: LinkingConfig,
    work: Path | None = None,
    flagged: set[str] | frozenset[str] = frozenset(),
) -> Any | None:
    """(account_id, key, value, uses) for every key, one row per account and value (None
    when there is no key), templates held mostly by ``flagged`` accounts included however
    widely (``_template_uses``). With a ``work`` folder each key's part is written there
    and the table read back from the files."""
    folder = work / "link_values" if work is not None else None
    con = ibis.get_backend(t)
    # Each expression is one key's (account_id, key, value, uses), already one row per value.
    parts: list[Any] = []
    if RELEASE_KEY in cfg.keys:
        parts.append(release_reactions(t, cfg))
    plain = [k for k in cfg.keys if k not in TEMPLATE_KEYS and k not in DERIVED_KEYS]
    network = [k for k in plain if k in _NETWORK_KEYS]
    passes = ([network] if network else []) + [[k] for k in plain if k not in _NETWORK_KEYS]
    if work is not None:
        work.mkdir(parents=True, exist_ok=True)
    for i, keys in enumerate(passes):
        # The log is grouped once per pass, on the raw columns; each key's values are then
        # cut from that much smaller table (an IP's /24 from the account's IPs, a system
        # prompt hashed once per account, not once per exchange).
        columns = sorted({_RAW_COLUMN.get(k, k) for k in keys})
        base = t.group_by(["account_id", *columns]).aggregate(uses=t.count())
        if work is not None:
            base = materialise(con, base, work / f"link_source_{i}.parquet")
        for key, expr in key_columns(base, tuple(keys)).items():
            part = base.select(
                account_id=base.account_id, key=ibis.literal(key), value=expr, uses=base.uses
            )
            part = part.filter(part.value.notnull() & (part.value != ""))
            if key == "payment_fingerprint" and accounts_table is not None:
                # A payment instrument can come from the log and from the accounts table.
                part = part.union(_account_payments(accounts_table))
            parts.append(
                part.group_by(["account_id", "key", "value"]).aggregate(uses=part.uses.sum())
            )
    parts += _template_uses(t, [k for k in TEMPLATE_KEYS if k in cfg.keys], cfg, flagged)
    if not parts:
        return None
    parts = [p.select("account_id", "key", "value", "uses") for p in parts]
    if folder is not None:
        # Each key's values written on their own: one aggregation at a time stays within the
        # engine's memory limit on a big log (all at once did not), and the steps below
        # read these files (three times: a shared subquery the engine would hold in memory).
        folder.mkdir(parents=True, exist_ok=True)
        for i, part in enumerate(parts):
            write_parquet(con, part, folder / f"{i:02d}.parquet")
        return con.read_parquet(parquet_glob(folder))
    return ibis.union(*parts, distinct=False)


def _account_payments(a: Any) -> Any:
    return a.select(
        account_id=a.account_id,
        key=ibis.literal("payment_fingerprint"),
        value=a.payment_fingerprint.cast("string"),
        uses=ibis.literal(1, "int64"),
    ).filter(a.payment_fingerprint.notnull())


def _accounts_per_value(seen: pd.DataFrame, key: str, fraction: float) -> pd.Series:
    """How many accounts use each value of ``key``, estimated from ``seen``, a sample of
    about ``fraction`` of the log's rows (counted exactly when ``fraction`` is 1).

    A sample sees a campaign's wrapper several times in each of its accounts but an
    everyday phrasing about once in each of thousands, so the accounts it saw undercount
    the second by far. With ``f1``/``f2`` the accounts seen once/twice, an account's
    expected sightings are about ``2 f2 / f1`` (Poisson), so each is seen with probability
    ``1 - exp(-2 f2 / f1)``, and never less than ``fraction`` (it used the value at least
    once); the estimate is the accounts seen divided by that.
    """
    per = seen.groupby([key, "account_id"]).size()
    k = per.groupby(level=0).size().astype(float)
    if fraction >= 1.0:
        return k
    f1 = (per == 1).groupby(level=0).sum().astype(float)
    f2 = (per == 2).groupby(level=0).sum().astype(float)
    with np.errstate(divide="ignore"):
        rate = np.where(f1 > 0, 2.0 * f2 / f1, np.inf)
    seen_p = np.maximum(1.0 - np.exp(-rate), fraction)
    return k / seen_p


def _template(t: Any, key: str) -> Any:
    """A template key's value: the prompt's normalised first or last characters."""
    edge = prompt_edges.head(t) if key == "prompt_prefix" else prompt_edges.tail(t)
    return _normalised(edge)


def _template_uses(
    t: Any,
    keys: list[str],
    cfg: LinkingConfig,
    flagged: set[str] | frozenset[str] = frozenset(),
) -> list[Any]:
    """(account_id, key, value, uses) for each prompt template key in ``keys``.

    A template is a prefix (or suffix) around many *different* prompts: the first words of
    one popular question, asked by several people, are not a template. Which values are
    templates is decided on a hash sample of about ``template_sample_rows`` exchanges (a
    wrapper that matters is used thousands of times, so the sample sees it; counting
    distinct prompts over a whole big log is what does not fit in memory); every row
    carrying one of them then counts, over the whole log. A value used by more than
    ``max_key_accounts`` accounts (estimated from the sample) is everyone's phrasing and
    would count nothing between pairs: it is left out here, before it multiplies into a row
    per account that uses it (25M rows on the full-scale simulation), unless at least
    ``crowd_min_flagged`` of the accounts the sample saw using it are ``flagged``: then it
    may be a big campaign's wrapper (``crowd_values``), counted in the same pass.
    """
    if not keys:
        return []
    seen, fraction = _template_sample(t, keys, cfg)
    parts = []
    for key in keys:
        size = _templates(seen, key, fraction, cfg)
        keep = size <= cfg.max_key_accounts
        if flagged:
            holders = seen[[key, "account_id"]].drop_duplicates()
            share = holders["account_id"].isin(flagged).groupby(holders[key]).mean()
            share.index = share.index.astype(str)
            keep |= share.reindex(size.index).fillna(0.0) >= cfg.crowd_min_flagged
        parts.append(_uses_of(t, key, pd.DataFrame({"value": size.index[keep.to_numpy()]})))
    return parts


def _template_sample(t: Any, keys: list[str], cfg: LinkingConfig) -> tuple[pd.DataFrame, float]:
    """The long prompts of a hash sample of about ``template_sample_rows`` exchanges: each
    one's account, length, raw edges and ``keys`` values; and the sampled fraction."""
    # The row count, not the long prompts' count: it comes from the files' metadata, while
    # counting long prompts would read every prompt's length once more.
    total = int(t.count().execute())
    sample = t.filter(hash_sample(t.exchange_id, cfg.template_sample_rows, total))
    sample = sample.filter(prompt_edges.chars(sample) >= TEMPLATE_MIN_PROMPT)
    # One pass over the log for every key's sample (the hash is most of its cost); the
    # sample is small and comes back to Python.
    seen = (
        sample.select(
            "account_id",
            n=prompt_edges.chars(sample),
            head=prompt_edges.head(sample),
            tail=prompt_edges.tail(sample),
            **{k: _template(sample, k) for k in keys},
        )
        .to_pyarrow()
        .to_pandas()
    )
    return seen, min(1.0, cfg.template_sample_rows / max(total, 1))


def _templates(seen: pd.DataFrame, key: str, fraction: float, cfg: LinkingConfig) -> pd.Series:
    """The values of ``key`` in the sample that are templates, and how many accounts use
    each (estimated, ``_accounts_per_value``)."""
    # Different prompts around one prefix differ at their other end or in length; the
    # same question asked again does not.
    other = "tail" if key == "prompt_prefix" else "head"
    variety = seen.drop_duplicates([key, other, "n"]).groupby(key).size()
    crowd = _accounts_per_value(seen, key, fraction).reindex(variety.index)
    out: pd.Series = crowd[variety >= cfg.template_min_prompts]
    out.index = out.index.astype(str)
    return out


def _uses_of(t: Any, key: str, values: pd.DataFrame) -> Any:
    """(account_id, key, value, uses) of the template ``values`` (a frame with a ``value``
    column) over the whole log."""
    # The few templates are a table of their own: joined as a subquery of the same log,
    # the engine would materialise every long prompt's edge first to serve both sides.
    templates = ibis.memtable(values[["value"]], schema={"value": "string"})
    long = t.filter(prompt_edges.chars(t) >= TEMPLATE_MIN_PROMPT)
    rows = long.select(account_id=long.account_id, value=_template(long, key))
    used = rows.semi_join(templates, "value")
    return (
        used.group_by(["account_id", "value"])
        .aggregate(key=ibis.literal(key), uses=used.count())
        .select("account_id", "key", "value", "uses")
    )


def _epoch_floor(ts: Any) -> Any:
    # Whole seconds since the epoch, truncated: DuckDB's epoch is fractional and its cast to
    # an integer rounds, Spark's truncates, so both floor first and agree on bucket edges.
    return ts.epoch_seconds().floor().cast("int64")


def release_reactions(t: Any, cfg: LinkingConfig) -> Any:
    """(account_id, key, value, uses): when each account first used each released model.

    A model first seen ``release_min_delay_hours`` after the log starts is a release (one
    in use from the start is not: the log merely began). An account's first use of it
    within ``release_horizon_hours`` falls in two windows of ``release_window_hours``
    offset by half a window, so two accounts reacting within half a window of each other
    always share a value, wherever the window edges fall. Popularity discounts the values
    like any other: the crowd of honest early adopters shares them too.
    """
    # One pass over the log: a model's release is its earliest first use by any account.
    use = t.group_by(["account_id", "model"]).aggregate(first_use=_epoch_floor(t.ts).min())
    first = use.group_by("model").aggregate(released=use.first_use.min())
    first = first.mutate(log_start=first.released.min().over(ibis.window()))
    releases = first.filter(
        first.released - first.log_start >= int(cfg.release_min_delay_hours * 3600)
    ).select("model", "released")
    r = use.join(releases, "model")
    r = r.mutate(delay=r.first_use - r.released)
    r = r.filter(r.delay <= int(cfg.release_horizon_hours * 3600))
    width_h = int(cfg.release_window_hours)
    parts = []
    for offset_h in sorted({0, width_h // 2}):
        k = ((r.delay + offset_h * 3600) // (width_h * 3600)).cast("int64")
        start_h = k * width_h - offset_h
        value = r.model.concat(
            ibis.literal(" first used "),
            start_h.cast("string"),
            ibis.literal(" to "),
            (start_h + width_h).cast("string"),
            ibis.literal(" h after its release"),
        )
        parts.append(
            r.select(
                account_id=r.account_id,
                key=ibis.literal(RELEASE_KEY),
                value=value,
                uses=ibis.literal(1, "int64"),
            )
        )
    return ibis.union(*parts, distinct=True)


def timing_synchrony(t: Any, pairs: pd.DataFrame, cfg: LinkingConfig) -> pd.DataFrame:
    """(a, b, key, w, observed, expected, z, sync) for pairs acting in the same minutes.

    SynchroTrap (Cao et al., CCS 2014) compares accounts' sets of (action, time bucket);
    here the action is the model and the bucket ``sync_bucket_seconds`` long. Raw overlap
    is what everyone's daily cycle, a time zone or a busy hour gives too, so it is judged
    against chance *within each hour*: each account keeps its own number of active buckets
    in that hour (its diurnal pattern, its sessions, its rate), placed by the population's
    profile of where in the hour activity falls (a top-of-the-hour cron spike raises it for
    everyone). Expected overlap is then ``sum over shared hours of min(ka * kb * Q, ka, kb)``
    with ``Q`` the sum of that profile's squared shares; ``sync`` is the excess over chance
    as a share of the most it could be, and counts ``weight * sync`` when the excess is
    significant (``z >= sync_min_z``) and made of at least ``sync_min_cells`` buckets.

    Only ``pairs`` (candidates already sharing some value, within the pair limits) are
    compared, and at most ``sync_max_hours`` hours (the same hash sample of hours for every
    account), so the work is bounded by pairs x sampled buckets, never by all pairs.
    """
    cols = ["a", "b", "key", "w", "observed", "expected", "z", "sync"]
    weight = cfg.keys.get(SYNC_KEY, 0.0)
    if pairs.empty or weight <= 0:
        return pd.DataFrame(columns=cols)
    width = cfg.sync_bucket_seconds
    per_hour = 3600 // width
    e = _epoch_floor(t.ts)
    cells = t.select(account_id=t.account_id, model=t.model, bucket=e // width).distinct()
    cells = cells.mutate(hour=cells.bucket // per_hour, pos=cells.bucket % per_hour)
    span = cells.aggregate(lo=cells.hour.min(), hi=cells.hour.max()).to_pyarrow().to_pylist()[0]
    hours = 0 if span["lo"] is None else int(span["hi"]) - int(span["lo"]) + 1
    if hours > cfg.sync_max_hours:
        cells = cells.filter(hash_sample(cells.hour.cast("string"), cfg.sync_max_hours, hours))
    # Where in the hour the whole population acts, pooled over every hour: a synchronised
    # group moves its bursts around the clock, a cron spike stays at the same minute.
    profile = cells.group_by("pos").aggregate(n=cells.count()).to_pyarrow().to_pandas()
    shares = profile["n"].to_numpy(dtype=float)
    q = float(np.sum((shares / max(shares.sum(), 1.0)) ** 2)) if len(shares) else 1.0
    uniq = pairs[["a", "b"]].drop_duplicates()
    pm = ibis.memtable(uniq.reset_index(drop=True))
    ids = ibis.memtable(
        pd.DataFrame({"account_id": pd.unique(uniq[["a", "b"]].to_numpy().ravel())})
    )
    mine = cells.semi_join(ids, "account_id")
    k = mine.group_by(["account_id", "model", "hour"]).aggregate(k=mine.count())
    ka = k.select(a=k.account_id, model=k.model, hour=k.hour, ka=k.k)
    kb = k.select(b=k.account_id, model_b=k.model, hour_b=k.hour, kb=k.k)
    j = pm.join(ka, "a")
    j = j.join(kb, (j.b == kb.b) & (j.model == kb.model_b) & (j.hour == kb.hour_b))
    chance = ibis.least(j.ka.cast("float64") * j.kb.cast("float64") * q, j.ka, j.kb)
    exp = j.group_by(["a", "b"]).aggregate(expected=chance.sum(), na=j.ka.sum(), nb=j.kb.sum())
    ca = mine.select(a=mine.account_id, model=mine.model, bucket=mine.bucket)
    cb = mine.select(b=mine.account_id, model_b=mine.model, bucket_b=mine.bucket)
    o = pm.join(ca, "a")
    o = o.join(cb, (o.b == cb.b) & (o.model == cb.model_b) & (o.bucket == cb.bucket_b))
    obs = o.group_by(["a", "b"]).aggregate(observed=o.count())
    res = exp.left_join(obs, (exp.a == obs.a) & (exp.b == obs.b)).select(
        exp.a, exp.b, exp.expected, exp.na, exp.nb, observed=obs.observed.fill_null(0)
    )
    df = res.to_pyarrow().to_pandas()
    if df.empty:
        return pd.DataFrame(columns=cols)
    observed = df["observed"].to_numpy(dtype=float)
    expected = df["expected"].to_numpy(dtype=float)
    excess = observed - expected
    room = np.minimum(df["na"].to_numpy(dtype=float), df["nb"].to_numpy(dtype=float)) - expected
    sync = np.clip(np.divide(excess, room, out=np.zeros_like(excess), where=room > 0), 0.0, 1.0)
    # Poisson null; the +1 keeps pairs whose chance overlap is tiny from looking significant
    # on a handful of buckets.
    z = excess / np.sqrt(expected + 1.0)
    keep = (z >= cfg.sync_min_z) & (observed >= cfg.sync_min_cells) & (sync > 0)
    out = pd.DataFrame(
        {
            "a": df["a"].to_numpy(),
            "b": df["b"].to_numpy(),
            "key": SYNC_KEY,
            "w": weight * sync,
            "observed": observed,
            "expected": expected,
            "z": z,
            "sync": sync,
        }
    )
    kept: pd.DataFrame = out[keep].reset_index(drop=True)
    return kept


def pair_evidence(sv: pd.DataFrame, cfg: LinkingConfig, *, prune: bool = False) -> pd.DataFrame:
    """(a, b, key, w): the evidence each key gives each pair of candidates sharing values,
    one row per pair and key (a < b).

    Values held by at most ``pair_limit`` candidates give all their pairs; more widely
    held ones (worth little each) are chained (a, b), (b, c), ... in id order, so memory
    stays linear in the number of (account, value) rows. Pairs are formed on integer codes
    and summed one key at a time: on a big log they run to tens of millions. With
    ``prune``, only pairs whose capped evidence could make an edge are kept (most pairs
    share one /24 or one busy address and nothing else).
    """
    # An account spread over thousands of values (a reseller's end-user IPs) overlaps with
    # anyone by chance: each side's share of a value is discounted by sqrt(held / spread).
    # Popularity discounts what infrastructure shares (a NAT address, an SDK's user agent);
    # a payment instrument shared by more accounts is more suspicious, not less.
    idf = np.where(sv["key"].isin(cfg.flat_keys), 1.0, np.log2(1.0 + sv["accounts"].astype(float)))
    base: np.ndarray[Any, Any] = (sv["key"].map(cfg.keys) / idf).to_numpy(dtype=np.float64)
    damp = np.sqrt(np.maximum(1.0, sv["held"].to_numpy(dtype=np.float64) / cfg.value_spread))
    # Sorted codes: a < b between codes is a < b between the ids.
    account, names = pd.factorize(sv["account_id"], sort=True)
    width = max(len(names), 1)
    keys = sv["key"].to_numpy()
    values = sv["value"].to_numpy()
    parts: dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = {}
    for key in pd.unique(keys):
        rows = np.flatnonzero(keys == key)
        pair, w = _key_pairs(account[rows], values[rows], base[rows], damp[rows], width, cfg)
        if len(pair):
            parts[str(key)] = (pair, w)
    if prune and parts:
        # Each key counts at most key_cap x its weight (as in ``_edge_parts``); a pair short
        # of the weakest edge even with a fully synchronised timing is no edge.
        floor = min(cfg.edge_weight, cfg.weak_edge_weight) - cfg.keys.get(SYNC_KEY, 0.0)
        every = np.concatenate([pair for pair, _ in parts.values()])
        capped = np.concatenate(
            [np.minimum(w, cfg.keys[k] * cfg.key_cap) for k, (_, w) in parts.items()]
        )
        unique, inverse = np.unique(every, return_inverse=True)
        strong = unique[np.bincount(inverse, weights=capped) >= floor]
        del every, capped, unique, inverse
        parts = {
            k: (pair[keep], w[keep])
            for k, (pair, w) in parts.items()
            for keep in [np.isin(pair, strong, assume_unique=True)]
        }
    pair = np.concatenate([np.zeros(0, np.int64), *(p for p, _ in parts.values())])
    counts = [len(p) for p, _ in parts.values()]
    names = np.asarray(names, dtype=object)
    return pd.DataFrame(
        {
            "a": names[pair // width],
            "b": names[pair % width],
            "key": np.repeat(np.array(list(parts), dtype=object), counts),
            "w": np.concatenate([np.zeros(0), *(w for _, w in parts.values())]),
        }
    )


def _key_pairs(
    account: np.ndarray[Any, Any],
    values: np.ndarray[Any, Any],
    base: np.ndarray[Any, Any],
    damp: np.ndarray[Any, Any],
    width: int,
    cfg: LinkingConfig,
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """One key's pairs as codes ``a * width + b`` (a < b) and their summed evidence."""
    value = pd.factorize(values)[0]
    order = np.lexsort((account, value))
    account, value, base, damp = account[order], value[order], base[order], damp[order]
    starts = np.flatnonzero(np.r_[True, value[1:] != value[:-1]])
    held = np.diff(np.r_[starts, len(value)])
    left: list[np.ndarray[Any, Any]] = []
    right: list[np.ndarray[Any, Any]] = []
    # Every pair of a value's holders, for all values held by k accounts at once.
    for k in np.unique(held[(held >= 2) & (held <= cfg.pair_limit)]):
        i, j = np.triu_indices(int(k), 1)
        first = starts[held == k][:, None]
        left.append((first + i).ravel())
        right.append((first + j).ravel())
    # Neighbours in id order for the more widely held values.
    chained = np.flatnonzero(np.repeat(held > cfg.pair_limit, held))
    chained = chained[:-1][value[chained[:-1]] == value[chained[1:]]]
    left.append(chained)
    right.append(chained + 1)
    i, j = np.concatenate(left), np.concatenate(right)
    distinct = account[i] < account[j]  # an account listed twice for a value is no pair
    i, j = i[distinct], j[distinct]
    w = base[i] / (damp[i] * damp[j])
    unique, inverse = np.unique(
        account[i].astype(np.int64) * width + account[j], return_inverse=True
    )
    return unique, np.bincount(inverse, weights=w, minlength=len(unique))


def edge_weights(pairs: pd.DataFrame, cfg: LinkingConfig) -> pd.DataFrame:
    """(a, b, w): each pair's evidence, each key capped at ``key_cap`` x its weight."""
    return _edge_parts(pairs, cfg)[["a", "b", "w"]]


def _edge_parts(pairs: pd.DataFrame, cfg: LinkingConfig) -> pd.DataFrame:
    """(a, b, w, template): each pair's capped evidence, and how much of it is templates."""
    per_key = pairs.groupby(["a", "b", "key"], sort=False)["w"].sum().reset_index()
    per_key["w"] = np.minimum(per_key["w"], per_key["key"].map(cfg.keys) * cfg.key_cap)
    per_key["template"] = per_key["w"].where(per_key["key"].isin(TEMPLATE_KEYS), 0.0)
    out: pd.DataFrame = per_key.groupby(["a", "b"], sort=False)[["w", "template"]].sum()
    return out.reset_index()


def _chi2_critical(df: int, p: float) -> float:
    """The chi-square statistic with ``df`` degrees of freedom whose upper tail is ``p``."""

    def tail(x: float) -> float:
        # Regularised upper incomplete gamma Q(df / 2, x / 2), closed form for whole df.
        h = x / 2.0
        if df % 2 == 0:
            return math.exp(-h) * sum(h**k / math.factorial(k) for k in range(df // 2))
        term, total = math.sqrt(h / math.pi) * 2.0, 0.0
        for k in range(1, (df + 1) // 2):
            total += term
            term *= h / (k + 0.5)
        return math.erfc(math.sqrt(h)) + math.exp(-h) * total

    lo, hi = 0.0, 1.0
    while tail(hi) > p:
        hi *= 2.0
    for _ in range(60):
        mid = (lo + hi) / 2.0
        lo, hi = (mid, hi) if tail(mid) > p else (lo, mid)
    return hi


def mixes_differ(a: np.ndarray, b: np.ndarray, cfg: LinkingConfig) -> np.ndarray:
    """Whether two accounts' counts per category (rows of ``a`` and ``b``) differ.

    Both a chi-square test of homogeneity (``p < mix_max_p``: few prompts prove nothing) and
    a total-variation distance of at least ``mix_min_distance`` (on a big log any small
    drift is significant) are required.
    """
    a, b = a.astype(float), b.astype(float)
    na, nb = a.sum(axis=1, keepdims=True), b.sum(axis=1, keepdims=True)
    total = a + b
    ea = total * na / np.maximum(na + nb, 1.0)
    eb = total * nb / np.maximum(na + nb, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        x2 = np.where(ea > 0, (a - ea) ** 2 / ea, 0.0) + np.where(eb > 0, (b - eb) ** 2 / eb, 0.0)
        dist = 0.5 * np.abs(a / na - b / nb).sum(axis=1)
    # Categories neither account used carry no degree of freedom.
    df = (total > 0).sum(axis=1) - 1
    crit = np.array([np.inf] + [_chi2_critical(d, cfg.mix_max_p) for d in range(1, a.shape[1])])
    differ = (x2.sum(axis=1) >= crit[np.maximum(df, 0)]) & (dist >= cfg.mix_min_distance)
    return np.asarray(differ & (na[:, 0] > 0) & (nb[:, 0] > 0))


def synchrony_candidates(
    pairs: pd.DataFrame, cfg: LinkingConfig, flagged: set[str] | frozenset[str] = frozenset()
) -> pd.DataFrame:
    """(a, b) pairs for which synchrony could decide the edge.

    A pair whose other evidence falls short of its threshold by more than a fully
    synchronised pair adds is not worth comparing: this keeps the timing comparison to a
    fraction of the (already bounded) pairs; at most ``sync_max_pairs`` of them.
    """
    weight = cfg.keys.get(SYNC_KEY, 0.0)
    if pairs.empty or weight <= 0:
        return pd.DataFrame(columns=["a", "b"])
    edges = edge_weights(pairs[pairs["key"] != SYNC_KEY], cfg)
    both = edges["a"].isin(flagged) & edges["b"].isin(flagged)
    need = np.where(both, cfg.weak_edge_weight, cfg.edge_weight) - weight
    edges = edges[edges["w"] >= need]
    if len(edges) > cfg.sync_max_pairs:
        # The join costs pairs x active buckets: past the cap, the pairs with the most other
        # evidence are compared (a 78-student NAT sharing many addresses gives 3,000 pairs
        # per site, which would otherwise fill the spill disk on a 5M-row log).
        edges = edges.sort_values(["w", "a", "b"], ascending=[False, True, True])
        edges = edges.head(cfg.sync_max_pairs)
    return edges[["a", "b"]].reset_index(drop=True)


def _with_stragglers(
    ends: tuple[np.ndarray, np.ndarray], weight: np.ndarray, membership: np.ndarray, min_size: int
) -> list[list[int]]:
    """Communities of at least ``min_size``; an account left in a smaller one joins the
    community it has the most edge weight to.

    CPM asks a newcomer for more evidence the bigger the community (``resolution`` per
    member): an account with two full edges into a 50-account campaign stays out, though
    its edges passed the same thresholds as the members'.
    """
    size = np.bincount(membership)
    final = membership.copy()
    a, b = ends
    both = pd.DataFrame(
        {
            "v": np.concatenate([a, b]),
            "c": np.concatenate([membership[b], membership[a]]),
            "w": np.concatenate([weight, weight]),
        }
    )
    both = both[(size[membership[both["v"]]] < min_size) & (size[both["c"]] >= min_size)]
    if len(both):
        towards = both.groupby(["v", "c"], as_index=False)["w"].sum()
        best = towards.sort_values(["v", "w", "c"], ascending=[True, False, True])
        best = best.drop_duplicates("v")
        final[best["v"].to_numpy()] = best["c"].to_numpy()
    order = np.argsort(final, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(final[order])) + 1)
    return [[int(v) for v in g] for g in groups if len(g) >= min_size]


def link_accounts(
    sv: pd.DataFrame,
    scores: pd.Series,
    cfg: LinkingConfig,
    flagged: set[str] | frozenset[str] = frozenset(),
    *,
    pairs: pd.DataFrame | None = None,
    mix: pd.DataFrame | None = None,
) -> list[Campaign]:
    """Campaigns among the candidates in ``sv``, scored from their members' ``scores``.

    Two accounts that are both ``flagged`` on their own evidence are linked on weaker shared
    evidence (``weak_edge_weight``): that only groups what is already caught, while lifting
    an account that its own traffic does not flag needs a full-strength edge.

    ``pairs`` is the pair evidence when already computed (``pair_evidence`` plus, say,
    ``timing_synchrony`` rows); by default it is ``pair_evidence(sv, cfg)``.

    ``mix`` (one row per account: sampled prompts per capability) is what each account
    harvests. Prompt templates are public, shared by unrelated actors: a pair that is an
    edge only thanks to shared templates is not one when the two accounts' mixes differ
    (``mixes_differ``); infrastructure is not overruled.
    """
    if sv.empty:
        return []
    if pairs is None:
        pairs = pair_evidence(sv, cfg, prune=True)
    if pairs.empty:
        return []
    edges = _edge_parts(pairs, cfg)
    both_flagged = edges["a"].isin(flagged) & edges["b"].isin(flagged)
    need = np.where(both_flagged, cfg.weak_edge_weight, cfg.edge_weight)
    w = edges["w"].to_numpy()
    keep = w >= need
    check = keep & (w - edges["template"].to_numpy() < need)
    if mix is not None and check.any():
        sub = edges[check]
        counts = mix.reindex(pd.unique(sub[["a", "b"]].to_numpy().ravel())).fillna(0.0)
        keep[check] = ~mixes_differ(
            counts.loc[sub["a"]].to_numpy(), counts.loc[sub["b"]].to_numpy(), cfg
        )
    edges = edges[keep]
    if edges.empty:
        return []
    names = sorted(set(edges["a"]) | set(edges["b"]))
    index = {n: i for i, n in enumerate(names)}
    graph = ig.Graph(
        n=len(names),
        edges=list(zip(edges["a"].map(index), edges["b"].map(index), strict=True)),
    )
    graph.es["weight"] = edges["w"].to_numpy().tolist()
    # CPM rather than modularity: modularity always splits a lone dense component (one
    # campaign) in two, while CPM keeps any group whose internal evidence per pair exceeds
    # ``resolution`` and separates groups joined by a few weak bridges.
    parts = graph.community_leiden(
        objective_function="CPM", weights="weight", resolution=cfg.resolution, n_iterations=-1
    )
    campaigns = []
    ends = (edges["a"].map(index).to_numpy(), edges["b"].map(index).to_numpy())
    communities = _with_stragglers(
        ends,
        edges["w"].to_numpy(),
        np.asarray(parts.membership, dtype=np.int64),
        cfg.min_campaign_accounts,
    )
    for members_idx in communities:
        member_set = set(members_idx)
        degree = {
            names[i]: sum(1 for nb in graph.neighbors(i) if nb in member_set) for i in members_idx
        }
        member_ids = sorted(names[i] for i in members_idx)
        member_scores = scores.reindex(member_ids).fillna(0.0).to_numpy()
        score = 1.0 - float(np.prod(1.0 - cfg.member_damping * member_scores))
        inside = sv[sv["account_id"].isin(member_ids)]
        counts = inside.groupby(["key", "value"]).size().reset_index(name="n")
        counts = counts[counts["n"] >= 2].sort_values("n", ascending=False, kind="stable")
        shared: dict[str, list[str]] = {}
        for key, value in zip(counts["key"], counts["value"], strict=True):
            if len(shared.setdefault(str(key), [])) < 10:
                shared[str(key)].append(str(value))
        synced = pairs[
            (pairs["key"] == SYNC_KEY) & pairs["a"].isin(member_ids) & pairs["b"].isin(member_ids)
        ]
        if len(synced):
            shared[SYNC_KEY] = [f"{len(synced)} member pairs active in the same minutes"]
        shared = {k: v for k, v in sorted(shared.items()) if v}
        digest = hashlib.sha256("\n".join(member_ids).encode()).hexdigest()[:12]
        campaigns.append(Campaign(f"C-{digest}", member_ids, score, shared, degree))
    campaigns.sort(key=lambda c: (-c.score, -len(c.account_ids)))
    return campaigns


def crowd_values(
    values: Any | None,
    flagged: set[str] | frozenset[str],
    cfg: LinkingConfig,
    work: Path | None = None,
) -> Any | None:
    """(account_id, key, value, uses, accounts), an engine table: *crowd* values, held by
    more than ``max_key_accounts`` accounts, at least ``crowd_min_flagged`` of them
    ``flagged``, and every account that holds them (None if there are none to judge).
    ``values`` is ``account_values`` computed with the same ``flagged``, so that the wide
    templates a flagged majority uses are in it (``_template_uses``).

    ``pair_evidence`` ignores a value held that widely: a NAT, an SDK's user agent, an
    everyday phrasing. But a campaign of thousands of accounts makes its own wrappers and
    proxy ranges that popular, and what tells the two apart is who holds them: the
    public's values are held mostly by accounts nothing flags. On a big log these are
    tens of millions of rows: they stay in the engine (written to ``work`` if given), and
    only per-account profiles (``crowd_profiles``) come to Python.
    """
    if values is None or not flagged:
        return None
    kv = values
    con = ibis.get_backend(kv)
    fl = ibis.memtable(pd.DataFrame({"account_id": sorted(flagged), "f": 1}))
    # Timing is not identity: only a campaign's accounts that adopted a release share its
    # reaction, so as a profile it would split a campaign into adopters and the rest.
    kv = kv.filter(~kv.key.isin(list(DERIVED_KEYS)))
    held = kv.left_join(fl, "account_id").select(kv.key, kv.value, f=ibis._.f.fill_null(0))
    pop = held.group_by(["key", "value"]).aggregate(accounts=held.count(), flagged=held.f.sum())
    popular = (pop.accounts > cfg.max_key_accounts) & (
        pop.flagged >= cfg.crowd_min_flagged * pop.accounts
    )
    rows = kv.join(pop.filter(popular), ["key", "value"])
    crowd = rows.select(
        "account_id", "key", "value", uses=rows.uses.cast("int64"), accounts=rows.accounts
    )
    if work is not None:
        crowd = materialise(con, crowd, work / "crowd_values.parquet")
    return crowd


def crowd_profiles(
    crowd: Any, cfg: LinkingConfig, accounts: set[str] | frozenset[str] | None = None
) -> tuple[pd.Index, np.ndarray]:
    """Each account's use of its crowd values (``crowd_min_values`` of them at least; of
    ``accounts`` only, if given) as a unit vector: per key, its share of uses on each
    value (L2-normalised, times the square root of the key's weight), folded by feature
    hashing into ``crowd_dim`` dimensions (inner products are kept in expectation, and
    memory stays accounts x dim however many values there are). Summed in the engine:
    only accounts x dim numbers come back."""
    keys = [k for k, w in cfg.keys.items() if w > 0]
    c = crowd.filter(crowd.key.isin(keys))
    if accounts is not None:
        c = c.semi_join(ibis.memtable(pd.DataFrame({"account_id": sorted(accounts)})), "account_id")
    # One value everyone flagged uses (the most common elicitation suffix) makes every
    # profile alike: an account is compared on a few of its own at least.
    n = c.group_by("account_id").aggregate(n=c.count())
    c = c.semi_join(n.filter(n.n >= cfg.crowd_min_values), "account_id")
    values = c.select("key", "value").distinct().to_pyarrow().to_pandas()
    if values.empty:
        return pd.Index([], dtype=object), np.zeros((0, cfg.crowd_dim), dtype=np.float32)
    digest = pd.util.hash_pandas_object(
        values["key"].astype(str) + "\x00" + values["value"].astype(str), index=False
    ).to_numpy(dtype=np.uint64)
    values["col"] = (digest % np.uint64(cfg.crowd_dim)).astype(np.int64)
    sign = np.where((digest >> np.uint64(32)) & np.uint64(1), 1.0, -1.0)
    values["w"] = sign * np.sqrt(values["key"].map(cfg.keys).to_numpy(dtype=np.float64))
    dims = ibis.memtable(values)
    uses = c.uses.cast("float64")
    ss = c.group_by(["account_id", "key"]).aggregate(ss=(uses * uses).sum())
    j = c.join(ss, ["account_id", "key"]).join(dims, ["key", "value"])
    x = j.w * j.uses.cast("float64") / j.ss.sqrt()
    table = j.group_by(["account_id", "col"]).aggregate(x=x.sum()).to_pyarrow()
    account = pc.dictionary_encode(table.column("account_id")).combine_chunks()
    ids = pd.Index(account.dictionary.to_pylist(), dtype=object)
    out = np.zeros((len(ids), cfg.crowd_dim), dtype=np.float32)
    out[account.indices.to_numpy(), table.column("col").to_numpy()] = table.column("x").to_numpy()
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    order = np.argsort(ids.to_numpy(dtype=str), kind="stable")  # engine order varies
    return ids[order], out[order]


def crowd_neighbours(vectors: np.ndarray, cfg: LinkingConfig, block: int = 2048) -> pd.DataFrame:
    """(i, j, s): each row's ``crowd_neighbours`` most similar other rows with cosine
    ``s >= crowd_min_similarity`` (i < j, each pair once), in blocks of rows so that
    memory is ``block`` x rows."""
    n = len(vectors)
    k = min(cfg.crowd_neighbours, n - 1)
    parts = []
    for lo in range(0, n if k > 0 else 0, block):
        sims = vectors[lo : lo + block] @ vectors.T
        rows = np.arange(lo, min(lo + block, n))
        sims[rows - lo, rows] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        s = np.take_along_axis(sims, top, axis=1)
        i = np.repeat(rows, k)
        keep = s.ravel() >= cfg.crowd_min_similarity
        parts.append((i[keep], top.ravel()[keep], s.ravel()[keep]))
    if not parts:
        return pd.DataFrame(
            {"i": np.zeros(0, np.int64), "j": np.zeros(0, np.int64), "s": np.zeros(0)}
        )
    i, j, s = (np.concatenate(p) for p in zip(*parts, strict=True))
    edges = pd.DataFrame({"i": np.minimum(i, j), "j": np.maximum(i, j), "s": s})
    return edges.drop_duplicates(["i", "j"]).reset_index(drop=True)


def group_crowds(
    campaigns: list[Campaign],
    crowd: Any | None,
    flagged: set[str] | frozenset[str],
    scores: pd.Series,
    cfg: LinkingConfig,
    mix: pd.DataFrame | None = None,
    profiles: tuple[pd.Index, np.ndarray] | None = None,
    volume: pd.Series | None = None,
    reread: Callable[[list[str]], pd.DataFrame] | None = None,
) -> list[Campaign]:
    """Campaigns grouped further by what their flagged accounts hold in crowds
    (``profiles``: ``crowd_profiles`` of ``crowd`` when already computed; ``volume``: each
    account's exchanges per active day; ``reread``: ids -> a bigger read of their prompts,
    with ``mix``'s columns).

    A value held by thousands of accounts would be a clique of millions of pairs, and CPM
    asks a community of thousands for evidence between most of its pairs: the pair graph
    cannot hold a campaign that large. So the flagged accounts' crowd values
    (``crowd_values``) are compared as profiles instead: each account is joined to its most
    similar ones (``crowd_neighbours``), and every existing campaign is one unit. A group
    is then checked like a pair linked by templates alone: a unit (a lone account, or a
    campaign) whose capability mix differs from the rest of its group (``mixes_differ``)
    is taken out, and so is one whose volume differs from the group's (``volumes_differ``):
    two operators paraphrasing the same public wrappers through the same proxy provider
    hold the same crowd values, but each one's scheduler drives its own accounts alike.
    An account alone whose sample is too thin for its mix test to decide is read again
    first (``_read_undecided``). The ones taken out are grouped among themselves and
    checked again. Groups alike in profile, mix and volume are merged (``_merge_alike``).
    It groups the ``flagged`` accounts and lifts nobody.
    """
    if crowd is None:
        return campaigns
    if profiles is None:
        ids, vectors = crowd_profiles(crowd, cfg, flagged)
    else:
        own = profiles[0].isin(list(flagged))
        ids, vectors = profiles[0][own], profiles[1][own]
    if len(ids) == 0:
        return campaigns
    edges = crowd_neighbours(vectors, cfg)
    names = sorted(set(ids) | {a for c in campaigns for a in c.account_ids})
    index = {a: i for i, a in enumerate(names)}
    pos = np.array([index[a] for a in ids], dtype=np.int64)
    ea, eb = pos[edges["i"].to_numpy()], pos[edges["j"].to_numpy()]
    # Units: every existing campaign, and every other account on its own.
    unit = np.arange(len(names))
    for n, c in enumerate(campaigns):
        unit[[index[a] for a in c.account_ids]] = len(names) + n
    unit = pd.factorize(unit)[0]
    ew = edges["s"].to_numpy(dtype=np.float64)
    groups = _unit_groups(unit, ea, eb, ew, np.ones(len(names), dtype=bool), cfg.crowd_resolution)
    counts = None if mix is None else mix.reindex(names).fillna(0.0).to_numpy(dtype=float)
    if mix is not None and counts is not None and reread is not None:
        counts = _read_undecided(counts, unit, groups, names, list(mix.columns), reread, cfg)
    logv = None if volume is None else log_volume(volume, names)
    if counts is not None or logv is not None:
        # Without a mix, one empty category: no unit's mix can differ.
        tally = np.zeros((len(names), 1)) if counts is None else counts
        per_unit, unit_group = _by_unit(tally, unit, groups)
        unit_volume = None
        if logv is not None:
            unit_volume = pd.Series(logv).groupby(unit).median().to_numpy()
        # The units taken out are grouped among themselves and checked again: a few rounds
        # peel a group of three campaigns one at a time.
        for _ in range(cfg.crowd_split_rounds):
            unit_group[unit] = groups
            out = _unlike_their_group(per_unit, unit_group, cfg, unit_volume)
            if not out.any():
                break
            regroup = _unit_groups(unit, ea, eb, ew, out[unit], cfg.crowd_resolution)
            groups = np.where(out[unit], groups.max() + 1 + regroup, groups)
    groups = _merge_alike(groups, pos, vectors, counts, cfg, logv)
    old_of = {n: c for n, c in enumerate(campaigns)}
    unit_campaign = {
        int(unit[index[c.account_ids[0]]]): n for n, c in old_of.items() if c.account_ids
    }
    by_group = _crowd_indicators(crowd, names, groups, cfg.min_campaign_accounts)
    result = []
    order = np.argsort(groups, kind="stable")
    for members in np.split(order, np.flatnonzero(np.diff(groups[order])) + 1):
        if len(members) < cfg.min_campaign_accounts:
            continue
        units = set(unit[members].tolist())
        olds = [old_of[unit_campaign[u]] for u in sorted(units) if u in unit_campaign]
        if len(olds) == 1 and len(units) == 1:
            result.append(olds[0])
            continue
        mine = by_group.get(int(groups[members[0]]), _NO_INDICATORS)
        result.append(_grouped_campaign(members, names, olds, mine, scores, ea, eb, cfg))
    result.sort(key=lambda c: (-c.score, -len(c.account_ids)))
    return result


_NO_INDICATORS = pd.DataFrame(columns=["key", "value", "accounts", "n"])


def _crowd_indicators(
    crowd: Any, names: list[str], groups: np.ndarray, min_accounts: int
) -> dict[int, pd.DataFrame]:
    """Per group (of ``min_accounts`` or more), the crowd values most of its members hold:
    (key, value, accounts, n), at most 10 per key, most held first. Counted in the engine
    for all groups at once."""
    size = np.bincount(groups)
    big = size[groups] >= min_accounts
    members = pd.DataFrame(
        {"account_id": np.asarray(names, dtype=object)[big], "group": groups[big]}
    )
    if members.empty:
        return {}
    gm = ibis.memtable(members)
    j = crowd.join(gm, "account_id")
    held = j.group_by(["group", "key", "value", "accounts"]).aggregate(n=j.count())
    df = held.to_pyarrow().to_pandas()
    df = df.sort_values(["group", "n", "key", "value"], ascending=[True, False, True, True])
    return {int(g): v.groupby("key").head(10) for g, v in df.groupby("group", sort=False)}


def log_volume(volume: pd.Series, ids: Any) -> np.ndarray:
    """Natural log of each of ``ids``' exchanges per active day (NaN where unknown)."""
    v = volume.reindex(ids).to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        out: np.ndarray = np.where(v > 0, np.log(v), np.nan)
    return out


def volume_centres(logv: np.ndarray, group: np.ndarray) -> tuple[pd.Series, pd.Series]:
    """Per group: the median log volume and its robust spread (1.4826 x the median
    absolute deviation, a standard deviation were it normal), NaN ignored."""
    s = pd.Series(logv)
    centre = s.groupby(group).median()
    spread = (s - centre.reindex(group).to_numpy()).abs().groupby(group).median() * 1.4826
    return centre, spread


def volumes_differ(
    x: np.ndarray, centre: np.ndarray, spread: np.ndarray, cfg: LinkingConfig
) -> np.ndarray:
    """Whether log volumes ``x`` differ from a group's ``centre``: by a factor of more than
    ``crowd_volume_ratio`` and by more than ``crowd_volume_sigmas`` times the group's
    ``spread``, so that a campaign whose operator spreads its accounts' volumes wide is not
    split on them. Nothing known (NaN) never differs."""
    bar = np.maximum(np.log(cfg.crowd_volume_ratio), cfg.crowd_volume_sigmas * spread)
    with np.errstate(invalid="ignore"):
        return np.asarray(np.abs(x - centre) > bar)


def _by_unit(
    counts: np.ndarray, unit: np.ndarray, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per unit: the sum of its accounts' ``counts``, and its group (``groups`` per
    account)."""
    per_unit = np.zeros((int(unit.max()) + 1, counts.shape[1]))
    np.add.at(per_unit, unit, counts)
    unit_group = np.zeros(len(per_unit), dtype=np.int64)
    unit_group[unit] = groups
    return per_unit, unit_group


def _read_undecided(
    counts: np.ndarray,
    unit: np.ndarray,
    groups: np.ndarray,
    names: list[str],
    columns: list[str],
    reread: Callable[[list[str]], pd.DataFrame],
    cfg: LinkingConfig,
) -> np.ndarray:
    """``counts`` (capability counts per account, ``columns``) with those of the accounts
    alone in their unit whose mix test is undecided (differing from their group's at
    ``crowd_reread_p`` but not at ``mix_max_p``) replaced by a bigger read's (``reread``).

    A small campaign's accounts with 60 prompts sampled each, among a big campaign's
    group whose mix is 20 points away, are a chi-square p of about 0.004 from it: too thin
    to take out, while 200 prompts are conclusive either way."""
    per_unit, unit_group = _by_unit(counts, unit, groups)
    loose = _unlike_their_group(per_unit, unit_group, replace(cfg, mix_max_p=cfg.crowd_reread_p))
    undecided = (loose & ~_unlike_their_group(per_unit, unit_group, cfg))[unit]
    idx = np.flatnonzero(undecided & (np.bincount(unit)[unit] == 1))
    if len(idx) == 0:
        return counts
    ids = [names[i] for i in idx]
    read = reread(ids).set_index("account_id").reindex(index=ids, columns=columns)
    fresh = read.fillna(0.0).to_numpy(dtype=float)
    better = fresh.sum(axis=1) > counts[idx].sum(axis=1)
    out = counts.copy()
    out[idx[better]] = fresh[better]
    return out


def _unlike_their_group(
    per_unit: np.ndarray,
    unit_group: np.ndarray,
    cfg: LinkingConfig,
    unit_volume: np.ndarray | None = None,
) -> np.ndarray:
    """Whether each unit's capability counts differ (``mixes_differ``) from the rest of its
    group's, the rest taken at its units' median shares: two campaigns of similar size in
    one group would each differ from a pooled mix, while the median is the majority's. Or
    whether its log volume (``unit_volume``, its members' median) differs from its units'
    median (``volumes_differ``)."""
    total = per_unit.sum(axis=1, keepdims=True)
    share = pd.DataFrame(per_unit / np.maximum(total, 1.0))
    median = share[total[:, 0] > 0].groupby(unit_group[total[:, 0] > 0]).median()
    median = median.div(median.sum(axis=1).replace(0.0, 1.0), axis=0)
    sizes = np.bincount(unit_group)
    pooled = np.bincount(unit_group, weights=total[:, 0])
    test = (sizes[unit_group] > 1) & (total[:, 0] > 0)
    out = np.zeros(len(per_unit), dtype=bool)
    rest = pooled[unit_group[test]] - total[test, 0]
    reference = median.loc[unit_group[test]].to_numpy() * rest[:, None]
    out[test] = mixes_differ(per_unit[test], reference, cfg)
    if unit_volume is not None:
        centre, spread = volume_centres(unit_volume, unit_group)
        far = volumes_differ(
            unit_volume,
            centre.reindex(unit_group).to_numpy(),
            spread.reindex(unit_group).to_numpy(),
            cfg,
        )
        out |= (sizes[unit_group] > 1) & far
    return out


def _merge_alike(
    groups: np.ndarray,
    pos: np.ndarray,
    vectors: np.ndarray,
    counts: np.ndarray | None,
    cfg: LinkingConfig,
    logv: np.ndarray | None = None,
) -> np.ndarray:
    """Groups merged when their members' mean crowd profiles have a cosine of at least
    ``crowd_merge_similarity``, their pooled capability mixes do not differ and neither
    do their median log volumes (``logv`` per account; ``volumes_differ``, at the wider
    group's spread).

    Modularity splits one big campaign along its own seams (accounts sharing one proxy
    range, one sign-up batch): each piece is a community, but the pieces' pooled profiles
    are nearly the same, which two different operators' are not. A lone account (one the
    split took out with no like account among the others taken out) is merged only with
    the group most like it of those it agrees with, so that it cannot bridge two.
    """
    sums = np.zeros((int(groups.max()) + 1, vectors.shape[1]))
    np.add.at(sums, groups[pos], vectors)
    size = np.bincount(groups[pos], minlength=len(sums))
    have, multi = np.flatnonzero(size >= 1), np.flatnonzero(size >= 2)
    if len(multi) == 0 or len(have) < 2:
        return groups
    norm = np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    direction = (sums / norm).astype(np.float32)
    parts = []
    for start in range(0, len(have), 4096):  # bounded memory whatever the number of groups
        rows = have[start : start + 4096]
        sim = direction[rows] @ direction[multi].T
        sim[rows[:, None] == multi[None, :]] = -1.0
        r, c = np.nonzero(sim >= cfg.crowd_merge_similarity)
        parts.append(pd.DataFrame({"i": rows[r], "j": multi[c], "s": sim[r, c]}))
    pairs = pd.concat(parts, ignore_index=True)
    i, j = pairs["i"].to_numpy(), pairs["j"].to_numpy()
    alike = np.ones(len(pairs), dtype=bool)
    if counts is not None and len(i):
        mixes = np.zeros((len(sums), counts.shape[1]))
        np.add.at(mixes, groups, counts)
        alike &= ~mixes_differ(mixes[i], mixes[j], cfg)
    if logv is not None and len(i):
        centre, spread = volume_centres(logv, groups)
        c = centre.reindex(range(len(sums))).to_numpy()
        sp = spread.reindex(range(len(sums))).to_numpy()
        alike &= ~volumes_differ(c[i], c[j], np.fmax(sp[i], sp[j]), cfg)
    pairs = pairs[alike]
    lone = size[pairs["i"].to_numpy()] == 1
    best = pairs[lone].sort_values("s", ascending=False).drop_duplicates("i")
    pairs = pd.concat([pairs[~lone], best])
    i, j = pairs["i"].to_numpy(), pairs["j"].to_numpy()
    graph = ig.Graph(n=len(sums), edges=np.column_stack([i, j]).tolist())
    merged = np.asarray(graph.connected_components().membership, dtype=np.int64)
    out: np.ndarray = merged[groups]
    return out


def _unit_groups(
    unit: np.ndarray,
    ea: np.ndarray,
    eb: np.ndarray,
    w: np.ndarray,
    among: np.ndarray,
    resolution: float = 1.0,
) -> np.ndarray:
    """A group number per account: Leiden (modularity) communities of the units (``unit``
    index per account) of the accounts in ``among`` (a mask), over the account edges
    (``ea``, ``eb``, weight ``w``) summed per pair of units; every other unit alone.

    Modularity rather than CPM: a neighbour graph gives each account about the same number
    of edges whatever its campaign's size, so no density bar fits campaigns of 10 and of
    10,000 accounts; modularity judges a group against what its members' degrees predict.
    It also does not chain: one account similar to two campaigns does not merge them.
    """
    keep = among[ea] & among[eb] & (unit[ea] != unit[eb])
    ua, ub = np.minimum(unit[ea[keep]], unit[eb[keep]]), np.maximum(unit[ea[keep]], unit[eb[keep]])
    n = int(unit.max()) + 1
    pair, inverse = np.unique(ua * n + ub, return_inverse=True)
    weight = np.bincount(inverse, weights=w[keep], minlength=len(pair))
    graph = ig.Graph(n=n, edges=np.column_stack([pair // n, pair % n]).tolist())
    parts = graph.community_leiden(
        objective_function="modularity",
        weights=weight.tolist(),
        resolution=resolution,
        n_iterations=-1,
    )
    membership = np.asarray(parts.membership, dtype=np.int64)
    out: np.ndarray = membership[unit]
    return out


def _grouped_campaign(
    members: np.ndarray,
    names: list[str],
    olds: list[Campaign],
    held: pd.DataFrame,
    scores: pd.Series,
    ea: np.ndarray,
    eb: np.ndarray,
    cfg: LinkingConfig,
) -> Campaign:
    """One campaign of ``members`` (indices into ``names``): the old campaigns' indicators
    and degrees, and the crowd values most of its members hold (``held``: key, value,
    accounts, n, most held first)."""
    member_ids = sorted(names[i] for i in members)
    inside = np.zeros(len(names), dtype=bool)
    inside[members] = True
    both = inside[ea] & inside[eb]
    degree = np.bincount(np.concatenate([ea[both], eb[both]]), minlength=len(names))
    linked = {names[i]: int(degree[i]) for i in members}
    shared: dict[str, list[str]] = {}
    for c in olds:
        for a, d in c.degree.items():
            linked[a] = linked.get(a, 0) + d
        for k, vs in c.shared.items():
            have = shared.setdefault(k, [])
            have += [v for v in vs if v not in have][: 10 - len(have)]
    # Crowd values are indicators like any other (raw, so that ``key:value`` is what the
    # STIX export hashes and another provider can match), after the pairs' own.
    for key, value in held[["key", "value"]].itertuples(index=False):
        have = shared.setdefault(str(key), [])
        if len(have) < 10 and str(value) not in have:
            have.append(str(value))
    member_scores = scores.reindex(member_ids).fillna(0.0).to_numpy()
    digest = hashlib.sha256("\n".join(member_ids).encode()).hexdigest()[:12]
    return Campaign(
        f"C-{digest}",
        member_ids,
        1.0 - float(np.prod(1.0 - cfg.member_damping * member_scores)),
        dict(sorted(shared.items())),
        linked,
    )


def crowd_joiners(
    crowd: Any | None,
    campaigns: list[Campaign],
    cfg: LinkingConfig,
    profiles: tuple[pd.Index, np.ndarray] | None = None,
) -> pd.DataFrame:
    """(account_id, campaign_id, similarity): accounts in no campaign whose crowd profile
    is like one campaign's (the most similar if several): its cosine with the members'
    mean profile is at least what the members' own are at their ``crowd_join_quantile``
    (and ``crowd_min_similarity``). A campaign that paraphrases widely has members less
    alike than one that reuses three wrappers; each is its own baseline. ``profiles``:
    ``crowd_profiles`` of ``crowd`` when already computed.

    This is only where a campaign might lift an account: its own prompts must back it
    (``scan`` asks for eliciting at least at the lowest content bar's rate and the same
    capability mix), since an honest customer of the proxy provider's ISP holds some of
    the same values.
    """
    cols = ["account_id", "campaign_id", "similarity"]
    if crowd is None:
        return pd.DataFrame(columns=cols)
    ids, vectors = crowd_profiles(crowd, cfg) if profiles is None else profiles
    member = {a: n for n, c in enumerate(campaigns) for a in c.account_ids}
    rows = ids.get_indexer(pd.Index(list(member)))
    known = rows >= 0
    if len(ids) == 0 or not known.any():
        return pd.DataFrame(columns=cols)
    owner = np.array(list(member.values()))[known]
    sums = np.zeros((len(campaigns), vectors.shape[1]))
    np.add.at(sums, owner, vectors[rows[known]])
    enough = np.bincount(owner, minlength=len(campaigns)) >= cfg.min_campaign_accounts
    centre = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    centre[~enough] = 0.0
    own = np.sum(vectors[rows[known]] * centre[owner], axis=1)
    bar = np.full(len(campaigns), np.inf)
    for n in np.flatnonzero(enough):
        bar[n] = np.quantile(own[owner == n], cfg.crowd_join_quantile)
    bar = np.maximum(bar, cfg.crowd_min_similarity)
    free = np.flatnonzero(~ids.isin(list(member)))
    if len(free) == 0:
        return pd.DataFrame(columns=cols)
    sims = vectors[free] @ centre.T.astype(np.float32)
    best = sims.argmax(axis=1)
    top = sims[np.arange(len(free)), best]
    ok = top >= bar[best]
    return pd.DataFrame(
        {
            "account_id": ids[free[ok]].to_numpy(),
            "campaign_id": [campaigns[b].campaign_id for b in best[ok]],
            "similarity": top[ok].astype(float),
        }
    )
