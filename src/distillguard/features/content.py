"""Content sums: what each account's prompts try to obtain, on a bounded sample.

Classifying every prompt of a 100M-row log would dominate the scan, and an account's
share of elicitation prompts is well estimated from a sample: about ``per_bucket`` prompts
with text (a turn that only carries tool results has none) per account and day, chosen by
a hash of the exchange id (deterministic, and the same rows whichever engine runs it).
Accounts with little traffic are classified in full.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from distillguard import prompt_edges
from distillguard.detectors.base import excess_z
from distillguard.engine import concat_parquet, iter_batches, stable_hash
from distillguard.features.sketch import SKETCH_COLUMNS, SKETCH_SQ_COLUMN, prompt_sketch

# Capabilities a harvester targets; each gets a running count per account.
TRACKED_CAPABILITIES = ("coding", "math", "agentic")
# Their content sums' columns, in ``cap`` code order ("other" last).
CAPABILITY_COLUMNS = (*(f"c_cap_{c}" for c in TRACKED_CAPABILITIES), "c_cap_other")
CONTENT_SUM_COLUMNS = (
    "c_n",
    "c_elicit",
    "c_elicit_sum",
    # Sampled exchanges whose demand came from the system prompt alone (``c_elicit`` does
    # not count them): evidence about the account's configuration, which the content
    # detector counts once per account however many requests carry it.
    "c_sys_elicit",
    *CAPABILITY_COLUMNS,
    # The first, uniform read only (``followup_quota`` reads suspicious accounts further):
    # peer baselines are fitted on these, which the second read's selection cannot bias.
    "c_base_n",
    "c_base_elicit",
)
# Summed only when the policy runs the distribution test (it costs about what classifying
# the sample does).
SKETCH_SUM_COLUMNS = (*SKETCH_COLUMNS, SKETCH_SQ_COLUMN)


def _with_text(t: Any) -> Any:
    # Turns that only carry tool results have no prompt text: nothing to classify, and
    # counting them would dilute an agent harvester's eliciting share with empty turns.
    return t.filter(prompt_edges.chars(t) > 0)


def bucket_sizes(t: Any, bucket: str = "D") -> pd.DataFrame:
    """Prompts with text per (account, bucket): ``account_id``, ``b`` (the bucket's start
    in epoch seconds) and ``n``. One row per active account-bucket, so it fits in memory."""
    f = _with_text(t)
    c = f.select("account_id", b=_bucket_key(f.ts, bucket))
    sizes: pd.DataFrame = (
        c.group_by(["account_id", "b"]).aggregate(n=c.count()).to_pyarrow().to_pandas()
    )
    return sizes


def _bucket_key(ts: Any, bucket: str) -> Any:
    return ts.truncate(bucket).epoch_seconds().floor().cast("int64")


def per_bucket_for_budget(sizes: pd.DataFrame, *, per_bucket: int, budget: int) -> int:
    """The largest per-(account, day) sample size <= ``per_bucket`` whose total stays within
    ``budget`` prompts (at least 2, so every active account-day keeps some evidence)."""
    n = sizes["n"].to_numpy(dtype=np.int64)
    k = per_bucket
    while k > 2 and int(np.minimum(n, k).sum()) > budget:
        k = max(2, k * 3 // 4)
    return k


def content_sample(
    t: Any,
    *,
    per_bucket: int | np.ndarray[Any, Any],
    bucket: str = "D",
    sizes: pd.DataFrame | None = None,
    after: int | np.ndarray[Any, Any] | None = None,
) -> Any:
    """About ``per_bucket`` prompts with text per (account, bucket), all of them where there
    are no more: each row is kept when its exchange id's digest falls under its bucket's
    cut (``per_bucket / n`` of the digest range). A threshold rather than a ranking, so the
    log is never sorted; the chosen rows' prompts are joined back afterwards.

    ``per_bucket`` is one number or one per row of ``sizes``. With ``after`` (likewise),
    only the rows a sample of ``per_bucket`` adds to one of ``after`` are chosen: the cuts
    are nested, so a follow-up sample never repeats a row already read."""
    sizes = bucket_sizes(t, bucket) if sizes is None else sizes
    n = sizes["n"].to_numpy(dtype=np.int64)
    hi = _cuts(n, np.broadcast_to(np.asarray(per_bucket, dtype=np.int64), n.shape))
    frame = pd.DataFrame({"account_id": sizes["account_id"], "b": sizes["b"], "cut": hi})
    if after is not None:
        lo = _cuts(n, np.broadcast_to(np.asarray(after, dtype=np.int64), n.shape))
        frame["lo"] = lo
        frame = frame[frame["lo"] < frame["cut"]]
    m = ibis.memtable(frame.reset_index(drop=True))
    f = _with_text(t)
    c = f.select(
        "exchange_id",
        "account_id",
        "conversation_id",
        b=_bucket_key(f.ts, bucket),
        bucket=f.ts.truncate(bucket),
        h=stable_hash(f.exchange_id).left(_DIGITS),
    )
    j = c.join(m, ["account_id", "b"])
    keep = j.h < j.cut
    if after is not None:
        keep &= j.h >= j.lo
    chosen = j.filter(keep).select(
        "exchange_id",
        "account_id",
        "conversation_id",
        "bucket",
        base=ibis.literal(1 if after is None else 0, "int64"),
    )
    return chosen.join(t.select("exchange_id", "prompt", "system_prompt"), "exchange_id")


def _cuts(n: np.ndarray[Any, Any], k: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """Each bucket's digest cut for a sample of ``k`` of its ``n`` rows ('g', which sorts
    after every hex digit, keeps the whole bucket; '' keeps nothing)."""
    cuts = np.full(len(n), "g", dtype=object)
    over = n > k
    scaled = (k[over] * 16**_DIGITS) // np.maximum(n[over], 1)
    cuts[over] = [f"{int(c):0{_DIGITS}x}" if c > 0 else "" for c in scaled]
    out: np.ndarray[Any, Any] = cuts
    return out


def followup_quota(
    sizes: pd.DataFrame,
    first: pd.DataFrame,
    *,
    base: int,
    per_bucket: int,
    rate: float,
    z_range: tuple[float, float],
    budget: int,
) -> np.ndarray[Any, Any]:
    """Per row of ``sizes``: how many prompts to read of that (account, bucket) in all.

    ``first`` holds what a first sample of ``base`` per bucket found (``account_id``,
    ``b``, ``c_n`` read, ``c_elicit`` eliciting). Evidence about an account grows with the
    square root of what is read of it, and most accounts need little: one whose eliciting
    share is no higher than ``rate`` (the lowest bar any peer group can have) cannot be
    flagged on content, one far above it is decided already. The undecided ones, whose
    share *so far* (their first sample up to and including that bucket: a daily job has
    that bucket's data, never a later one's) is above ``rate`` by a binomial z within
    ``z_range``, are read up to ``per_bucket`` a bucket instead, fewer if that would add
    more than ``budget`` prompts (at least ``base``)."""
    n = sizes["n"].to_numpy(dtype=np.int64)
    quota = np.minimum(n, base)
    if per_bucket <= base or budget <= 0 or sizes.empty:
        return np.asarray(quota, dtype=np.int64)
    got = first.groupby(["account_id", "b"], sort=False)[["c_n", "c_elicit"]].sum()
    keys = pd.MultiIndex.from_arrays([sizes["account_id"], sizes["b"]])
    read = got.reindex(keys).fillna(0.0)
    order = np.lexsort((sizes["b"].to_numpy(), sizes["account_id"].to_numpy()))
    acct = sizes["account_id"].to_numpy()[order]
    cn = pd.Series(read["c_n"].to_numpy()[order]).groupby(acct, sort=False).cumsum()
    ck = pd.Series(read["c_elicit"].to_numpy()[order]).groupby(acct, sort=False).cumsum()
    cn_a, ck_a = cn.to_numpy(dtype=float), ck.to_numpy(dtype=float)
    z = excess_z(ck_a, cn_a, rate)
    follow = np.zeros(len(n), dtype=bool)
    follow[order] = (z >= z_range[0]) & (z < z_range[1])
    k = per_bucket
    while k > base:
        extra = int((np.minimum(n[follow], k) - quota[follow]).sum())
        if extra <= budget:
            break
        k = max(base, k * 3 // 4)
    out: np.ndarray[Any, Any] = np.where(follow, np.minimum(n, max(k, base)), quota)
    return out


_DIGITS = 12  # of the md5 digest compared: 48 bits, ample for any bucket's size


def _classify_batch(
    classifier: Any,
    prompts: list[str | None],
    system_prompts: list[str | None],
    cap_map: np.ndarray[Any, np.dtype[np.int8]],
    sketch: bool,
    demand: bool = True,
) -> dict[str, pa.Array]:
    """The classified columns of one batch (run here or in a worker process)."""
    s = classifier.score(prompts, system_prompts)
    # Counted for an account only when a named rule backs the flag: the n-gram model alone
    # also fires on honest templates and system prompts ("label only, no explanation"), and
    # one template repeated 10,000 times is one mistake, not 10,000 pieces of evidence.
    # Likewise a demand made by the system prompt alone (the app's configuration, the same
    # on every request) is kept apart: ``sys_elicit``, which the content detector counts
    # once per account, not once per request.
    cols = {"elicitation": pa.array(s.elicitation, pa.float32())}
    if demand:
        elicit, sys_elicit = classifier.demand(prompts, system_prompts, s)
        cols["elicit"] = pa.array(elicit.astype(np.int64))
        cols["sys_elicit"] = pa.array(sys_elicit.astype(np.int64))
    cols["cap"] = pa.array(cap_map[s.capability.astype(np.int64)], pa.int8())
    if sketch:
        vec, sq = prompt_sketch(prompts)
        for j, name in enumerate(SKETCH_COLUMNS):
            cols[name] = pa.array(vec[:, j], pa.int32())
        cols[SKETCH_SQ_COLUMN] = pa.array(sq, pa.int64())
    return cols


def capability_map(classifier: Any) -> np.ndarray[Any, np.dtype[np.int8]]:
    """The ``cap`` code of each of the classifier's capability labels: its index in
    TRACKED_CAPABILITIES, or "other" (the next code)."""
    tracked = len(TRACKED_CAPABILITIES)
    return np.array(
        [
            TRACKED_CAPABILITIES.index(n) if n in TRACKED_CAPABILITIES else tracked
            for n in classifier.capability_names
        ],
        dtype=np.int8,
    )


def classify_to_parquet(
    con: Any,
    expr: Any,
    out_path: Path,
    classifier: Any,
    *,
    keep: tuple[str, ...],
    progress: Callable[[int], None] | None = None,
    sketch: bool = False,
    executor: Executor | None = None,
    ahead: int = 4,
    demand: bool = True,
) -> int:
    """Classify ``expr``'s prompts in Arrow batches; write ``keep`` columns plus
    ``elicitation``, ``elicit``, ``sys_elicit`` (``ElicitationClassifier.demand``) and
    ``cap`` (index into TRACKED_CAPABILITIES, or "other"), and with ``sketch`` each
    prompt's quantised sketch (``features.sketch``). Without ``demand`` (only the scores
    are wanted) ``elicit`` and ``sys_elicit`` are left out, and with them the second look
    at the prompts of requests with a system prompt.

    With an ``executor`` (worker processes) up to ``ahead`` batches are classified at once;
    they are written in order either way.
    """
    cap_map = capability_map(classifier)
    writer: pq.ParquetWriter | None = None
    done = 0
    pending: deque[tuple[dict[str, pa.Array], Future[dict[str, pa.Array]]]] = deque()

    def write(kept: dict[str, pa.Array], classified: dict[str, pa.Array]) -> None:
        nonlocal writer, done
        table = pa.table(kept | classified)
        if writer is None:
            writer = pq.ParquetWriter(out_path, table.schema)
        writer.write_table(table)
        done += table.num_rows
        if progress is not None:
            progress(done)

    try:
        for batch in iter_batches(con, expr, rows=16384):
            kept = {name: batch.column(name) for name in keep}
            args = (
                classifier,
                batch.column("prompt").to_pylist(),
                batch.column("system_prompt").to_pylist(),
                cap_map,
                sketch,
                demand,
            )
            if executor is None:
                write(kept, _classify_batch(*args))
                continue
            pending.append((kept, executor.submit(_classify_batch, *args)))
            if len(pending) >= ahead:
                k, f = pending.popleft()
                write(k, f.result())
        while pending:
            k, f = pending.popleft()
            write(k, f.result())
    finally:
        for _, f in pending:
            f.cancel()
        if writer is not None:
            writer.close()
    if writer is None:  # nothing to classify: still leave a readable, empty file
        types = expr.schema().to_pyarrow()
        empty = {name: pa.array([], types.field(name).type) for name in keep}
        empty["elicitation"] = pa.array([], pa.float32())
        if demand:
            empty["elicit"] = pa.array([], pa.int64())
            empty["sys_elicit"] = pa.array([], pa.int64())
        empty["cap"] = pa.array([], pa.int8())
        if sketch:
            empty |= {name: pa.array([], pa.int32()) for name in SKETCH_COLUMNS}
            empty[SKETCH_SQ_COLUMN] = pa.array([], pa.int64())
        pq.write_table(pa.table(empty), out_path)
    return done


@dataclass(frozen=True)
class Followup:
    """A second, targeted read of the accounts a thin first sample leaves undecided (see
    ``followup_quota``): up to ``per_bucket`` prompts per bucket for accounts whose
    eliciting share so far is above ``rate`` by a binomial z within ``z_range``, at most
    ``budget`` more prompts in all."""

    per_bucket: int
    rate: float
    budget: int
    z_range: tuple[float, float] = (1.0, 8.0)


def score_sample(
    con: Any,
    t: Any,
    out_path: Path,
    classifier: Any,
    *,
    per_bucket: int,
    bucket: str = "D",
    sizes: pd.DataFrame | None = None,
    progress: Callable[[int], None] | None = None,
    sketch: bool = False,
    executor: Executor | None = None,
    followup: Followup | None = None,
) -> int:
    """Classify the sampled prompts into ``out_path`` (one row per sampled exchange), with
    each prompt's sketch if ``sketch``. With ``followup``, a first sample of
    ``per_bucket`` per bucket decides which accounts are read further (``followup_quota``);
    both reads land in ``out_path``."""
    keep = ("exchange_id", "account_id", "conversation_id", "bucket", "base")

    def classify(expr: Any, path: Path) -> int:
        return classify_to_parquet(
            con,
            expr,
            path,
            classifier,
            keep=keep,
            progress=progress,
            sketch=sketch,
            executor=executor,
        )

    sizes = bucket_sizes(t, bucket) if sizes is None else sizes
    first_expr = content_sample(t, per_bucket=per_bucket, bucket=bucket, sizes=sizes)
    if followup is None or followup.per_bucket <= per_bucket:
        return classify(first_expr, out_path)
    parts = [out_path.with_name(f"{out_path.stem}.{i}.parquet") for i in (1, 2)]
    done = classify(first_expr, parts[0])
    s = con.read_parquet(parts[0])
    first = (
        s.group_by(["account_id", _bucket_key(s.bucket, bucket).name("b")])
        .aggregate(c_n=s.count(), c_elicit=s.elicit.sum())
        .to_pyarrow()
        .to_pandas()
    )
    quota = followup_quota(
        sizes,
        first,
        base=per_bucket,
        per_bucket=followup.per_bucket,
        rate=followup.rate,
        z_range=followup.z_range,
        budget=followup.budget,
    )
    more = content_sample(t, per_bucket=quota, bucket=bucket, sizes=sizes, after=per_bucket)
    done += classify(more, parts[1])
    concat_parquet(parts, out_path)
    return done


def content_bucket_sums(scored: Any) -> Any:
    aggs: dict[str, Any] = {
        "c_n": scored.count(),
        "c_elicit": scored.elicit.sum(),
        "c_elicit_sum": scored.elicitation.cast("float64").sum(),
        "c_sys_elicit": scored.sys_elicit.sum(),
    }
    for i, name in enumerate(TRACKED_CAPABILITIES):
        aggs[f"c_cap_{name}"] = (scored.cap == i).cast("int64").sum()
    aggs["c_cap_other"] = (scored.cap == len(TRACKED_CAPABILITIES)).cast("int64").sum()
    base = scored.base if "base" in scored.columns else ibis.literal(1, "int64")
    aggs["c_base_n"] = base.sum()
    aggs["c_base_elicit"] = (scored.elicit * base).sum()
    for name in SKETCH_SUM_COLUMNS:
        if name in scored.columns:
            aggs[name] = scored[name].cast("int64").sum()
    return scored.group_by(["account_id", "bucket"]).aggregate(**aggs)
