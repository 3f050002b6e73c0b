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
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from distillguard import prompt_edges
from distillguard.content.model import LEXICAL_SIGNAL
from distillguard.engine import iter_batches, stable_hash
from distillguard.features.sketch import SKETCH_COLUMNS, SKETCH_SQ_COLUMN, prompt_sketch

# Capabilities a harvester targets; each gets a running count per account.
TRACKED_CAPABILITIES = ("coding", "math", "agentic")
CONTENT_SUM_COLUMNS = (
    "c_n",
    "c_elicit",
    "c_elicit_sum",
    *(f"c_cap_{c}" for c in TRACKED_CAPABILITIES),
    "c_cap_other",
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
    t: Any, *, per_bucket: int, bucket: str = "D", sizes: pd.DataFrame | None = None
) -> Any:
    """About ``per_bucket`` prompts with text per (account, bucket), all of them where there
    are no more: each row is kept when its exchange id's digest falls under its bucket's
    cut (``per_bucket / n`` of the digest range). A threshold rather than a ranking, so the
    log is never sorted; the chosen rows' prompts are joined back afterwards."""
    sizes = bucket_sizes(t, bucket) if sizes is None else sizes
    n = sizes["n"].to_numpy(dtype=np.int64)
    over = n > per_bucket
    # 'g' sorts after every hex digit: the whole bucket is kept
    cuts = np.full(len(n), "g", dtype=object)
    scaled = (per_bucket * 16**_DIGITS) // np.maximum(n[over], 1)
    cuts[over] = [f"{int(c):0{_DIGITS}x}" for c in scaled]
    m = ibis.memtable(
        pd.DataFrame({"account_id": sizes["account_id"], "b": sizes["b"], "cut": cuts})
    )
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
    chosen = j.filter(j.h < j.cut).select("exchange_id", "account_id", "conversation_id", "bucket")
    return chosen.join(t.select("exchange_id", "prompt", "system_prompt"), "exchange_id")


_DIGITS = 12  # of the md5 digest compared: 48 bits, ample for any bucket's size


def _classify_batch(
    classifier: Any,
    prompts: list[str | None],
    system_prompts: list[str | None],
    rule_bits: np.int64,
    cap_map: np.ndarray[Any, np.dtype[np.int8]],
    sketch: bool,
) -> dict[str, pa.Array]:
    """The classified columns of one batch (run here or in a worker process)."""
    s = classifier.score(prompts, system_prompts)
    cols = {
        "elicitation": pa.array(s.elicitation, pa.float32()),
        # Counted for an account only when a named rule backs the flag: the n-gram model
        # alone also fires on honest templates and system prompts ("label only, no
        # explanation"), and one template repeated 10,000 times is one mistake, not
        # 10,000 pieces of evidence.
        "elicit": pa.array((s.flagged & ((s.signals & rule_bits) != 0)).astype(np.int64)),
        "cap": pa.array(cap_map[s.capability.astype(np.int64)], pa.int8()),
    }
    if sketch:
        vec, sq = prompt_sketch(prompts)
        for j, name in enumerate(SKETCH_COLUMNS):
            cols[name] = pa.array(vec[:, j], pa.int32())
        cols[SKETCH_SQ_COLUMN] = pa.array(sq, pa.int64())
    return cols


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
) -> int:
    """Classify ``expr``'s prompts in Arrow batches; write ``keep`` columns plus
    ``elicitation``, ``elicit`` and ``cap`` (index into TRACKED_CAPABILITIES, or "other"),
    and with ``sketch`` each prompt's quantised sketch (``features.sketch``).

    With an ``executor`` (worker processes) up to ``ahead`` batches are classified at once;
    they are written in order either way.
    """
    names = classifier.capability_names
    cap_map = np.array(
        [
            TRACKED_CAPABILITIES.index(n)
            if n in TRACKED_CAPABILITIES
            else len(TRACKED_CAPABILITIES)
            for n in names
        ],
        dtype=np.int8,
    )
    rule_bits = np.int64(
        sum(
            1 << i
            for i, name in enumerate(classifier.signal_names)
            if name != LEXICAL_SIGNAL and not name.startswith("context:")
        )
    )
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
                rule_bits,
                cap_map,
                sketch,
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
        empty["elicit"] = pa.array([], pa.int64())
        empty["cap"] = pa.array([], pa.int8())
        if sketch:
            empty |= {name: pa.array([], pa.int32()) for name in SKETCH_COLUMNS}
            empty[SKETCH_SQ_COLUMN] = pa.array([], pa.int64())
        pq.write_table(pa.table(empty), out_path)
    return done


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
) -> int:
    """Classify the sampled prompts into ``out_path`` (one row per sampled exchange), with
    each prompt's sketch if ``sketch``."""
    expr = content_sample(t, per_bucket=per_bucket, bucket=bucket, sizes=sizes)
    return classify_to_parquet(
        con,
        expr,
        out_path,
        classifier,
        keep=("exchange_id", "account_id", "conversation_id", "bucket"),
        progress=progress,
        sketch=sketch,
        executor=executor,
    )


def content_bucket_sums(scored: Any) -> Any:
    aggs: dict[str, Any] = {
        "c_n": scored.count(),
        "c_elicit": scored.elicit.sum(),
        "c_elicit_sum": scored.elicitation.cast("float64").sum(),
    }
    for i, name in enumerate(TRACKED_CAPABILITIES):
        aggs[f"c_cap_{name}"] = (scored.cap == i).cast("int64").sum()
    aggs["c_cap_other"] = (scored.cap == len(TRACKED_CAPABILITIES)).cast("int64").sum()
    for name in SKETCH_SUM_COLUMNS:
        if name in scored.columns:
            aggs[name] = scored[name].cast("int64").sum()
    return scored.group_by(["account_id", "bucket"]).aggregate(**aggs)
