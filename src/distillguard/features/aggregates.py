"""The per-exchange contributions to an account's sums, for the engine and for one row.

``exchange_contributions`` (Ibis, batch) and ``AccountSums.learn_one`` (Python, online)
are the two spellings of the same definition; ``tests/test_features.py`` checks that they
agree on the same data, so change them together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import ibis
import pandas as pd

HOUR_COLUMNS = tuple(f"h{h:02d}" for h in range(24))
# Requests for many samples, log-probabilities or very long outputs are what a harvester
# wants and what most chat use never asks for.
LONG_OUTPUT_TOKENS = 4096
SUM_COLUMNS = (
    "n",
    "in_tok",
    "out_tok",
    "reasoning_tok",
    "single_turn",
    "logprobs",
    "multi_n",
    "long_max_tokens",
    "with_system",
    *HOUR_COLUMNS,
)


def exchange_contributions(t: Any) -> Any:
    """Per-exchange contributions (one column per sum) plus ``account_id`` and ``ts``."""
    hour = t.ts.hour()
    cols: dict[str, Any] = {
        "account_id": t.account_id,
        "ts": t.ts,
        "n": ibis.literal(1, "int64"),
        "in_tok": t.input_tokens,
        "out_tok": t.output_tokens,
        "reasoning_tok": t.reasoning_tokens.fill_null(0),
        "single_turn": (t.turn_index.fill_null(0) == 0).cast("int64"),
        "logprobs": (t.logprobs.fill_null(False) | (t.top_logprobs.fill_null(0) > 0)).cast("int64"),
        "multi_n": (t.n.fill_null(1) > 1).cast("int64"),
        "long_max_tokens": (t.max_tokens.fill_null(0) >= LONG_OUTPUT_TOKENS).cast("int64"),
        "with_system": (t.system_prompt.fill_null("").length() > 0).cast("int64"),
    }
    for h, name in enumerate(HOUR_COLUMNS):
        cols[name] = (hour == h).cast("int64")
    return t.select(**cols)


def bucket_sums(t: Any, *, bucket: str = "D") -> Any:
    """Sums per (account, time bucket), with the bucket's first and last exchange time."""
    c = exchange_contributions(t)
    c = c.mutate(bucket=c.ts.truncate(bucket))
    aggs = {name: c[name].sum() for name in SUM_COLUMNS}
    return c.group_by(["account_id", "bucket"]).aggregate(
        **aggs, first_ts=c.ts.min(), last_ts=c.ts.max()
    )


def cumulative_sums(b: Any, columns: tuple[str, ...] = SUM_COLUMNS) -> Any:
    """Running sums per account over its buckets: the account as of each bucket's end."""
    w = ibis.cumulative_window(group_by="account_id", order_by="bucket")
    cols = {name: b[name].sum().over(w) for name in columns}
    return b.mutate(
        **cols,
        first_ts=b.first_ts.min().over(w),
        active_buckets=ibis.row_number().over(w) + 1,
    )


def account_bucket_table(
    t: Any, *, bucket: str = "D", extra: Any | None = None, extra_columns: tuple[str, ...] = ()
) -> Any:
    """Cumulative sums per (account, bucket), ordered by bucket then account: the account
    as of each bucket's end.

    ``extra`` is another table of per-(account, bucket) sums (e.g. content sums) merged in
    before accumulating; buckets it lacks count as zero.
    """
    b = bucket_sums(t, bucket=bucket)
    columns = SUM_COLUMNS
    if extra is not None:
        b = b.left_join(extra, ["account_id", "bucket"]).drop("account_id_right", "bucket_right")
        b = b.mutate(**{c: b[c].fill_null(0) for c in extra_columns})
        columns = (*SUM_COLUMNS, *extra_columns)
    return cumulative_sums(b, columns).order_by(["bucket", "account_id"])


def account_bucket_frame(
    t: Any, *, bucket: str = "D", extra: Any | None = None, extra_columns: tuple[str, ...] = ()
) -> pd.DataFrame:
    """``account_bucket_table`` as a DataFrame, ``bucket`` as UTC timestamps."""
    table = account_bucket_table(
        t, bucket=bucket, extra=extra, extra_columns=extra_columns
    ).to_pyarrow()
    return utc_times(table.to_pandas(self_destruct=True, split_blocks=True))


def utc_times(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with its time columns (``bucket``, ``first_ts``, ``last_ts``) zoned UTC:
    engines truncate in UTC, and some then drop the zone (as does Spark's Parquet)."""
    for name in ("bucket", "first_ts", "last_ts"):
        if name in df.columns and df[name].dt.tz is None:
            df[name] = df[name].dt.tz_localize("UTC")
    return df


@dataclass
class AccountSums:
    """One account's sums, updated one exchange at a time (the gateway's view)."""

    sums: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SUM_COLUMNS, 0))
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    buckets: set[Any] = field(default_factory=set)

    def learn_one(self, row: Mapping[str, Any]) -> None:
        ts: datetime = row["ts"]
        s = self.sums
        s["n"] += 1
        s["in_tok"] += int(row["input_tokens"])
        s["out_tok"] += int(row["output_tokens"])
        s["reasoning_tok"] += int(row.get("reasoning_tokens") or 0)
        s["single_turn"] += int((row.get("turn_index") or 0) == 0)
        s["logprobs"] += int(bool(row.get("logprobs")) or (row.get("top_logprobs") or 0) > 0)
        n_samples = row.get("n")
        s["multi_n"] += int(n_samples is not None and n_samples > 1)
        s["long_max_tokens"] += int((row.get("max_tokens") or 0) >= LONG_OUTPUT_TOKENS)
        s["with_system"] += int(len(row.get("system_prompt") or "") > 0)
        s[HOUR_COLUMNS[ts.hour]] += 1
        self.first_ts = ts if self.first_ts is None else min(self.first_ts, ts)
        self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)
        self.buckets.add(ts.date())

    def as_row(self) -> dict[str, Any]:
        return {
            **self.sums,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "active_buckets": len(self.buckets),
        }
