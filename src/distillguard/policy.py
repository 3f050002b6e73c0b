"""Policies as validated data (TOML): which detectors, their weights, thresholds, linking."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from distillguard.errors import ConfigError
from distillguard.linking import LinkingConfig

# Daily checkpoints: "as of" features use whole days, so rates stay per day.
_CHECKPOINTS = {"1d": "D"}
LINK_KEYS = (
    "payment_fingerprint",
    "ip",
    "ip24",
    "asn",
    "user_agent",
    "system_prompt_hash",
    "prompt_prefix",
    "prompt_suffix",
    "release_reaction",
    "timing_sync",
)
DEFAULT_LINK_KEYS = {
    "payment_fingerprint": 5.0,
    "ip": 1.0,
    "ip24": 0.6,
    "asn": 0.15,
    "user_agent": 0.3,
    "system_prompt_hash": 1.0,
    "prompt_prefix": 0.5,
    "prompt_suffix": 0.5,
    "release_reaction": 1.0,
    "timing_sync": 3.0,
}


@dataclass(frozen=True)
class DetectorSpec:
    name: str
    weight: float
    params: dict[str, Any]
    # Weight when scoring a linked campaign's pooled traffic: coordination already rules
    # out the lone heavy customer, so a usage shape can count for more there.
    campaign_weight: float = 1.0


@dataclass(frozen=True)
class Policy:
    threshold: float = 0.5
    checkpoint: str = "1d"
    memory_limit: str = "2GB"
    content_per_bucket: int = 64
    content_max_prompts: int = 300_000
    content_followup_max_prompts: int = 3_000_000
    exchange_content_limit: int = 1_000_000
    detectors: tuple[DetectorSpec, ...] = ()
    linking: LinkingConfig = field(default_factory=lambda: LinkingConfig(dict(DEFAULT_LINK_KEYS)))
    source: str = "<default>"
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def _expect(table: dict[str, Any], allowed: set[str], where: str, source: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(
                f"unknown key '{key}' in [{where}] (allowed: {', '.join(sorted(allowed))})",
                source=source,
            )


def _num(value: Any, where: str, source: str, *, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ConfigError(f"{where} must be a number in [{lo}, {hi}], got {value!r}", source=source)
    return float(value)


def parse_policy(data: dict[str, Any], source: str = "<policy>") -> Policy:
    from distillguard.detectors import DETECTORS

    _expect(data, {"scan", "detectors", "linking", "gateway"}, "top level", source)
    scan = data.get("scan", {})
    _expect(
        scan,
        {
            "threshold",
            "checkpoint",
            "memory_limit",
            "content_per_bucket",
            "content_max_prompts",
            "content_followup_max_prompts",
            "exchange_content_limit",
        },
        "scan",
        source,
    )
    threshold = _num(scan.get("threshold", 0.5), "scan.threshold", source, lo=0.0, hi=1.0)
    checkpoint = str(scan.get("checkpoint", "1d"))
    if checkpoint not in _CHECKPOINTS:
        raise ConfigError(
            f"scan.checkpoint must be one of {sorted(_CHECKPOINTS)}, got {checkpoint!r}",
            source=source,
        )
    specs = []
    for name, table in data.get("detectors", {}).items():
        if name not in DETECTORS:
            raise ConfigError(
                f"unknown detector '{name}' (known: {', '.join(sorted(DETECTORS))})", source=source
            )
        _expect(table, {"weight", "campaign_weight", "params"}, f"detectors.{name}", source)
        weight = _num(table.get("weight", 1.0), f"detectors.{name}.weight", source, lo=0.0, hi=1.0)
        campaign_weight = _num(
            table.get("campaign_weight", weight),
            f"detectors.{name}.campaign_weight",
            source,
            lo=0.0,
            hi=1.0,
        )
        params = dict(table.get("params", {}))
        try:
            DETECTORS[name](**params)
        except TypeError as err:
            raise ConfigError(f"detectors.{name}.params: {err}", source=source) from None
        specs.append(DetectorSpec(name, weight, params, campaign_weight))
    if not specs:
        raise ConfigError("policy enables no detector", source=source)
    link = _parse_linking(data.get("linking", {}), source)

    def count(key: str, default: int, lo: float, hi: float) -> int:
        return int(_num(scan.get(key, default), f"scan.{key}", source, lo=lo, hi=hi))

    return Policy(
        threshold=threshold,
        checkpoint=checkpoint,
        memory_limit=str(scan.get("memory_limit", "2GB")),
        exchange_content_limit=count("exchange_content_limit", 1_000_000, 0, 1e12),
        content_max_prompts=count("content_max_prompts", 300_000, 1, 1e12),
        content_per_bucket=count("content_per_bucket", 64, 1, 1e6),
        content_followup_max_prompts=count("content_followup_max_prompts", 3_000_000, 0, 1e12),
        detectors=tuple(specs),
        linking=link,
        source=source,
        raw=data,
    )


def _parse_linking(table: dict[str, Any], source: str) -> LinkingConfig:
    numbers = {
        "candidate_threshold": (0.0, 1.0),
        "edge_weight": (0.0, 1e6),
        "key_cap": (0.0, 1e6),
        "max_key_accounts": (2, 1e9),
        "min_campaign_accounts": (2, 1e9),
        "member_damping": (0.0, 1.0),
        "lift_floor": (0.0, 1.0),
        "resolution": (0.0, 1e3),
        "template_min_prompts": (2, 1e9),
        "template_sample_rows": (1000, 1e12),
        "pair_limit": (2, 1e6),
        "value_spread": (1.0, 1e9),
        "max_values_per_key": (1, 1e6),
        "weak_edge_weight": (0.0, 1e6),
        "sync_bucket_seconds": (1, 3600),
        "sync_min_z": (0.0, 1e6),
        "sync_min_cells": (1, 1e9),
        "sync_max_hours": (1, 1e9),
        "sync_max_pairs": (0, 1e9),
        "release_min_delay_hours": (0.0, 1e6),
        "release_window_hours": (1, 1e6),
        "release_horizon_hours": (0.0, 1e6),
        "mix_max_p": (0.0, 1.0),
        "mix_min_distance": (0.0, 1.0),
        "crowd_min_flagged": (0.0, 1.0),
        "crowd_neighbours": (1, 1e4),
        "crowd_min_values": (1, 1e6),
        "crowd_split_rounds": (0, 100),
        "crowd_join_quantile": (0.0, 1.0),
        "crowd_join_min_z": (-1e3, 1e3),
        "crowd_min_similarity": (-1.0, 1.0),
        "crowd_dim": (8, 1e5),
        "crowd_resolution": (0.0, 1e3),
        "crowd_merge_similarity": (-1.0, 1.0),
        "crowd_volume_ratio": (1.0, 1e6),
        "crowd_volume_sigmas": (0.0, 1e3),
        "crowd_read": (0, 1e6),
        "crowd_reread_p": (0.0, 1.0),
    }
    _expect(table, {"keys", *numbers}, "linking", source)
    keys = table.get("keys", DEFAULT_LINK_KEYS)
    if not isinstance(keys, dict) or not keys:
        raise ConfigError("linking.keys must be a table of key = weight", source=source)
    for key, weight in keys.items():
        if key not in LINK_KEYS:
            raise ConfigError(
                f"linking.keys: unknown key '{key}' (known: {', '.join(LINK_KEYS)})", source=source
            )
        _num(weight, f"linking.keys.{key}", source, lo=0.0, hi=100.0)
    values: dict[str, Any] = {}
    for name, (lo, hi) in numbers.items():
        if name in table:
            v = _num(table[name], f"linking.{name}", source, lo=lo, hi=hi)
            integral = (
                "max_key_accounts",
                "min_campaign_accounts",
                "template_min_prompts",
                "template_sample_rows",
                "pair_limit",
                "max_values_per_key",
                "sync_bucket_seconds",
                "sync_min_cells",
                "crowd_neighbours",
                "crowd_min_values",
                "crowd_split_rounds",
                "crowd_dim",
                "sync_max_hours",
                "sync_max_pairs",
                "release_window_hours",
            )
            if name in integral and v != int(v):
                raise ConfigError(
                    f"linking.{name} must be a whole number, got {v!r}", source=source
                )
            values[name] = int(v) if name in integral else v
    # Buckets must tile the hour: synchrony is judged against chance within each hour.
    bucket = values.get("sync_bucket_seconds", LinkingConfig.sync_bucket_seconds)
    if 3600 % bucket:
        raise ConfigError(
            f"linking.sync_bucket_seconds must divide 3600 (an hour), got {bucket}", source=source
        )
    return LinkingConfig(keys={k: float(w) for k, w in keys.items()}, **values)


def read_policy_toml(path: str | Path | None, packaged: str) -> tuple[dict[str, Any], str]:
    """(parsed TOML, its name for messages) of ``path``, or of the packaged ``packaged``."""
    if path is None:
        text = resources.files("distillguard.policies").joinpath(packaged).read_text()
        source = packaged
    else:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"cannot read policy: {err.strerror}", source=str(path)) from None
        source = str(path)
    try:
        return tomllib.loads(text), source
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"invalid TOML: {err}", source=source) from None


def load_policy(path: str | Path | None = None) -> Policy:
    """The policy at ``path``, or the packaged default."""
    data, source = read_policy_toml(path, "default.toml")
    return parse_policy(data, source)


def bucket_unit(policy: Policy) -> str:
    return _CHECKPOINTS[policy.checkpoint]
