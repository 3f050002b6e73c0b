"""Account features, defined once as mergeable aggregates.

Every feature is a function of per-account *sums* (counts, token totals, an hour-of-day
histogram). Sums merge across time buckets, so the batch scan gets features "as of" any
checkpoint with a cumulative window, and the gateway keeps the same sums online per
account. ``derive`` turns sums into features for both. Distinct values (IPs, /24s, user
agents) are not sums: the batch scan counts them exactly, the gateway with sketches
(``distinct``).
"""

from distillguard.features.aggregates import (
    HOUR_COLUMNS,
    SUM_COLUMNS,
    AccountSums,
    account_bucket_frame,
    account_bucket_table,
    bucket_sums,
    cumulative_sums,
    exchange_contributions,
    utc_times,
)
from distillguard.features.content import CONTENT_SUM_COLUMNS
from distillguard.features.derive import CONTENT_FEATURE_NAMES, FEATURE_NAMES, derive_features
from distillguard.features.distinct import (
    DISTINCT_FEATURE_NAMES,
    DISTINCT_KEYS,
    account_distinct_counts,
    distinct_values,
)

__all__ = [
    "CONTENT_FEATURE_NAMES",
    "CONTENT_SUM_COLUMNS",
    "DISTINCT_FEATURE_NAMES",
    "DISTINCT_KEYS",
    "FEATURE_NAMES",
    "HOUR_COLUMNS",
    "SUM_COLUMNS",
    "AccountSums",
    "account_bucket_frame",
    "account_bucket_table",
    "account_distinct_counts",
    "bucket_sums",
    "cumulative_sums",
    "derive_features",
    "distinct_values",
    "exchange_contributions",
    "utc_times",
]
