"""Content sums: what each account's prompts try to obtain, on a bounded sample.

Classifying every prompt of a 100M-row log would dominate the scan, and an account's
share of elicitation prompts is well estimated from a sample: up to ``per_bucket`` prompts
per account and day, chosen by a hash of the exchange id (deterministic, and the same
rows whichever engine runs it). Accounts with little traffic are classified in full.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from distillguard.engine import iter_batches

# Capabilities a harvester targets; each gets a running count per account.
TRACKED_CAPABILITIES = ("coding", "math", "agentic")
CONTENT_SUM_COLUMNS = (
    "c_n",
    "c_elicit",
    "c_elicit_sum",
    *(f"c_cap_{c}" for c in TRACKED_CAPABILITIES),
    "c_cap_other",
)


def content_sample(t: Any, *, per_bucket: int, bucket: str = "D") -> Any:
    c = t.select("exchange_id", "account_id", "ts", "prompt", "system_prompt")
    c = c.mutate(bucket=c.ts.truncate(bucket), h=c.exchange_id.hash())
    w = ibis.window(group_by=[c.account_id, c.bucket], order_by=[c.h, c.exchange_id])
    ranked = c.mutate(rank=ibis.row_number().over(w))
    return ranked.filter(ranked["rank"] < per_bucket).select(
        "exchange_id", "account_id", "bucket", "prompt", "system_prompt"
    )


def score_sample(
    con: Any,
    t: Any,
    out_path: Path,
    classifier: Any,
    *,
    per_bucket: int,
    bucket: str = "D",
    progress: Callable[[int], None] | None = None,
) -> int:
    """Classify the sampled prompts; write (exchange_id, account_id, bucket, elicitation,
    elicit, capability) to ``out_path``. Returns the number of prompts classified."""
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
    schema = pa.schema(
        [
            pa.field("exchange_id", pa.string()),
            pa.field("account_id", pa.string()),
            pa.field("bucket", pa.timestamp("us")),
            pa.field("elicitation", pa.float32()),
            pa.field("elicit", pa.int64()),
            pa.field("cap", pa.int8()),
        ]
    )
    done = 0
    with pq.ParquetWriter(out_path, schema) as writer:
        for batch in iter_batches(
            con, content_sample(t, per_bucket=per_bucket, bucket=bucket), rows=16384
        ):
            prompts = batch.column("prompt").to_pylist()
            systems = batch.column("system_prompt").to_pylist()
            s = classifier.score(prompts, systems)
            writer.write_table(
                pa.table(
                    {
                        "exchange_id": batch.column("exchange_id"),
                        "account_id": batch.column("account_id"),
                        "bucket": batch.column("bucket").cast(pa.timestamp("us")),
                        "elicitation": pa.array(s.elicitation, pa.float32()),
                        "elicit": pa.array(s.flagged.astype(np.int64)),
                        "cap": pa.array(cap_map[s.capability.astype(np.int64)], pa.int8()),
                    },
                    schema=schema,
                )
            )
            done += batch.num_rows
            if progress is not None:
                progress(done)
    return done


def content_bucket_sums(scored: Any) -> Any:
    aggs: dict[str, Any] = {
        "c_n": scored.count(),
        "c_elicit": scored.elicit.sum(),
        "c_elicit_sum": scored.elicitation.cast("float64").sum(),
    }
    for i, name in enumerate(TRACKED_CAPABILITIES):
        aggs[f"c_cap_{name}"] = (scored.cap == i).cast("int64").sum()
    aggs["c_cap_other"] = (scored.cap == len(TRACKED_CAPABILITIES)).cast("int64").sum()
    return scored.group_by(["account_id", "bucket"]).aggregate(**aggs)
