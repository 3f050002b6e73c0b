"""Features from sums: the same arithmetic for the batch scan and the gateway."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from distillguard.features.aggregates import HOUR_COLUMNS
from distillguard.features.sketch import (
    SKETCH_COLUMNS,
    SKETCH_FEATURES,
    SKETCH_SCALE,
    SKETCH_SQ_COLUMN,
    SKETCH_SQ_FEATURE,
)

FloatArray = np.ndarray[Any, np.dtype[np.float64]]

CONTENT_FEATURE_NAMES = (
    "content_sampled",
    "elicitation_share",
    "system_demand",
    "mean_elicitation",
    "coding_share",
    "math_share",
    "agentic_share",
)
FEATURE_NAMES = (
    "exchanges",
    "rate_per_active_day",
    "hour_entropy",
    "active_hours",
    "single_turn_share",
    "out_in_ratio",
    "mean_output_tokens",
    "reasoning_share",
    "logprobs_share",
    "multi_n_share",
    "long_max_tokens_share",
)


def _arr(x: Any) -> FloatArray:
    return np.asarray(x, dtype=np.float64)


def derive_features(sums: Mapping[str, Any], *, bucket_days: float = 1.0) -> dict[str, FloatArray]:
    """Features for each account from its sums (arrays, or scalars for one account).

    The hour-of-day entropy is independent of time zone (shifting every hour leaves it
    unchanged), which is why it is used rather than "active at night".
    """
    n = _arr(sums["n"])
    safe_n = np.maximum(n, 1.0)
    hours = np.stack([_arr(sums[h]) for h in HOUR_COLUMNS], axis=-1)
    p = hours / np.maximum(hours.sum(axis=-1, keepdims=True), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=-1)
    active_days = np.maximum(_arr(sums["active_buckets"]) * bucket_days, 1.0)
    out_tok = _arr(sums["out_tok"])
    content = _content_features(sums) if "c_n" in sums else {}
    return content | {
        "exchanges": n,
        "rate_per_active_day": n / active_days,
        "hour_entropy": entropy,
        "active_hours": (p >= 0.02).sum(axis=-1).astype(np.float64),
        "single_turn_share": _arr(sums["single_turn"]) / safe_n,
        "out_in_ratio": (out_tok + 1.0) / (_arr(sums["in_tok"]) + 1.0),
        "mean_output_tokens": out_tok / safe_n,
        "reasoning_share": _arr(sums["reasoning_tok"]) / np.maximum(out_tok, 1.0),
        "logprobs_share": _arr(sums["logprobs"]) / safe_n,
        "multi_n_share": _arr(sums["multi_n"]) / safe_n,
        "long_max_tokens_share": _arr(sums["long_max_tokens"]) / safe_n,
    }


def _content_features(sums: Mapping[str, Any]) -> dict[str, FloatArray]:
    sampled = _arr(sums["c_n"])
    safe = np.maximum(sampled, 1.0)
    # The prompt sketch as means over the sampled prompts (a kernel mean embedding); with
    # ``content_sampled`` they give back the sums the distribution test needs.
    sketch: dict[str, FloatArray] = {}
    if SKETCH_SQ_COLUMN in sums:
        for col, feat in zip(SKETCH_COLUMNS, SKETCH_FEATURES, strict=True):
            sketch[feat] = _arr(sums[col]) / (safe * SKETCH_SCALE)
        sketch[SKETCH_SQ_FEATURE] = _arr(sums[SKETCH_SQ_COLUMN]) / (safe * SKETCH_SCALE**2)
    base: dict[str, FloatArray] = {}
    if "c_base_n" in sums:
        base_n = _arr(sums["c_base_n"])
        base["base_sampled"] = base_n
        base["base_elicitation_share"] = _arr(sums["c_base_elicit"]) / np.maximum(base_n, 1.0)
    return (
        sketch
        | base
        | {
            "content_sampled": sampled,
            "elicitation_share": _arr(sums["c_elicit"]) / safe,
            # 1 when the account's system prompt demanded what its prompts did not (one
            # configuration, however many requests carry it); a campaign's pooled row
            # holds how many of its members did (``scan._pooled_scores``).
            "system_demand": (_arr(sums["c_sys_elicit"]) > 0).astype(np.float64)
            if "c_sys_elicit" in sums
            else np.zeros_like(sampled),
            "mean_elicitation": _arr(sums["c_elicit_sum"]) / safe,
            "coding_share": _arr(sums["c_cap_coding"]) / safe,
            "math_share": _arr(sums["c_cap_math"]) / safe,
            "agentic_share": _arr(sums["c_cap_agentic"]) / safe,
        }
    )
