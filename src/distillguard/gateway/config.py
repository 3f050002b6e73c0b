"""The gateway's configuration: the `[gateway]` policy table plus the command-line options.

Everything the gateway does is decided by one frozen ``GatewayConfig`` passed in at build
time (Starlette style); nothing is read from globals or the environment after that.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from distillguard.errors import ConfigError
from distillguard.features import DISTINCT_FEATURE_NAMES, FEATURE_NAMES

Action = Literal["allow", "watch", "throttle", "verify", "degrade", "block"]
ACTIONS: tuple[Action, ...] = ("allow", "watch", "throttle", "verify", "degrade", "block")
RANK: dict[str, int] = {a: i for i, a in enumerate(ACTIONS)}


@dataclass(frozen=True)
class Ladder:
    watch: float = 0.3
    throttle: float = 0.5
    verify: float = 0.7
    degrade: float = 0.8
    block: float = 0.97
    allow_accounts: tuple[str, ...] = ()


@dataclass(frozen=True)
class RateLimit:
    rate: float = 50.0
    burst: int = 100


@dataclass(frozen=True)
class ContentConfig:
    mode: Literal["async", "inline", "off"] = "async"
    worker: Literal["process", "thread"] = "process"
    # inline mode: the share of the event loop's time (per second) that inline scoring may
    # take; past it, new prompts go to the async worker (scored for the account's next
    # requests), so a saturated gateway loses at most this share of its throughput to it
    inline_budget: float = 0.1
    max_chars: int = 2000
    cache_size: int = 8192
    request_weight: float = 0.35
    account_weight: float = 0.9
    account_min_requests: float = 10.0
    half_life_s: float = 3600.0
    # weight of an account whose system prompt asks for training data when its prompts do
    # not: its configuration, one fixed piece of evidence however many requests carry it
    system_weight: float = 0.1


@dataclass(frozen=True)
class ListConfig:
    flagged: Action = "watch"
    campaign: Action = "degrade"
    reload_s: float = 2.0


@dataclass(frozen=True)
class DegradeConfig:
    max_tokens: int = 1024
    n: int = 1


# What a profile rule may test: the batch scan's features plus the distinct counts.
RULE_FEATURES = (*FEATURE_NAMES, *DISTINCT_FEATURE_NAMES)


@dataclass(frozen=True)
class Rule:
    feature: str
    min: float
    min_exchanges: float = 20.0
    weight: float = 0.3
    # True: the rule adds its weight only when the other evidence (scan lists, content)
    # already reaches the watch rung, so a usage shape alone (a reseller, a heavy honest
    # customer) never moves an account; it can only strengthen what content already shows.
    corroborating: bool = False


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 8_000_000
    max_json_depth: int = 64
    max_header_bytes: int = 32768
    max_inflight: int = 512
    connect_timeout_s: float = 5.0
    upstream_timeout_s: float = 600.0


@dataclass(frozen=True)
class StateConfig:
    fail: Literal["open", "closed"] = "open"
    redis_timeout_ms: float = 100.0
    retry_s: float = 1.0
    account_ttl_days: float = 90.0


@dataclass(frozen=True)
class LogConfig:
    flush_s: float = 10.0
    max_rows: int = 50000
    max_response_chars: int = 8000


@dataclass(frozen=True)
class GatewayPolicy:
    """The `[gateway]` table of a policy file, validated."""

    ladder: Ladder = Ladder()
    rate: RateLimit = RateLimit()
    suspect_rate: RateLimit = RateLimit(rate=0.5, burst=5)
    content: ContentConfig = ContentConfig()
    lists: ListConfig = ListConfig()
    degrade: DegradeConfig = DegradeConfig()
    rules: tuple[Rule, ...] = ()
    limits: Limits = Limits()
    state: StateConfig = StateConfig()
    log: LogConfig = LogConfig()
    source: str = "<default>"


@dataclass(frozen=True)
class GatewayConfig:
    """Everything one gateway instance needs; built by ``serve`` or by a test."""

    upstream: str
    policy: GatewayPolicy = field(default_factory=GatewayPolicy)
    state_url: str | None = None  # None: in-process state; "redis://...": shared
    key_map: str | None = None  # a JSON file {key: account}, or "redis" for the dg:keymap hash
    key_secret: bytes = b""  # HMAC key for api_key_id and key-derived accounts
    scan_dir: Path | None = None
    log_dir: Path | None = None  # None: no decision log
    decide_token: str | None = None  # None: /v1/decide answers loopback clients only
    trust_forwarded: bool = False  # take the client IP from X-Forwarded-For
    instance: str = "gw"

    @property
    def upstream_base(self) -> str:
        """The upstream base URL without a trailing ``/v1`` (paths keep their own)."""
        base = self.upstream.rstrip("/")
        return base[:-3] if base.endswith("/v1") else base


def _expect(table: Any, allowed: set[str], where: str, source: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise ConfigError(f"[{where}] must be a table", source=source)
    for key in table:
        if key not in allowed:
            raise ConfigError(
                f"unknown key '{key}' in [{where}] (allowed: {', '.join(sorted(allowed))})",
                source=source,
            )
    return table


def _number(value: Any, where: str, source: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ConfigError(f"{where} must be a number in [{lo}, {hi}], got {value!r}", source=source)
    return float(value)


def _build(cls: Any, table: Any, where: str, source: str, **bounds: tuple[float, float]) -> Any:
    """A dataclass from a table: known keys only, numbers in their bounds, enums checked."""
    names = {f.name for f in fields(cls)}
    data = _expect(table, names, where, source)
    default = cls() if cls is not Rule else None
    out: dict[str, Any] = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        kind = type(getattr(default, f.name)) if default is not None else None
        if f.name in bounds:
            lo, hi = bounds[f.name]
            num = _number(value, f"{where}.{f.name}", source, lo, hi)
            value = int(num) if kind is int else num
        elif kind is tuple:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{where}.{f.name} must be a list of strings", source=source)
            value = tuple(value)
        out[f.name] = value
    return cls(**out) if default is None else replace(default, **out)


def _choice(value: Any, allowed: tuple[str, ...], where: str, source: str) -> None:
    if value not in allowed:
        raise ConfigError(f"{where} must be one of {list(allowed)}, got {value!r}", source=source)


def parse_gateway(data: Any, source: str = "<policy>") -> GatewayPolicy:
    """Validate a `[gateway]` table (the table itself, not the whole file)."""
    keys = {"ladder", "rate", "suspect_rate", "content", "lists", "degrade", "rules"}
    keys |= {"limits", "state", "log"}
    table = _expect(data, keys, "gateway", source)
    unit = (0.0, 1.1)
    ladder = _build(
        Ladder,
        table.get("ladder", {}),
        "gateway.ladder",
        source,
        watch=unit,
        throttle=unit,
        verify=unit,
        degrade=unit,
        block=unit,
    )
    rate_bounds = {"rate": (1e-6, 1e9), "burst": (1, 1e9)}
    rate = _build(RateLimit, table.get("rate", {}), "gateway.rate", source, **rate_bounds)
    suspect = _build(
        RateLimit,
        table.get("suspect_rate", {"rate": 0.5, "burst": 5}),
        "gateway.suspect_rate",
        source,
        **rate_bounds,
    )
    content = _build(
        ContentConfig,
        table.get("content", {}),
        "gateway.content",
        source,
        max_chars=(16, 1e7),
        inline_budget=(0, 1),
        cache_size=(0, 1e8),
        request_weight=(0, 1),
        account_weight=(0, 1),
        account_min_requests=(0, 1e9),
        half_life_s=(1, 1e9),
        system_weight=(0, 1),
    )
    _choice(content.mode, ("async", "inline", "off"), "gateway.content.mode", source)
    _choice(content.worker, ("process", "thread"), "gateway.content.worker", source)
    lists = _build(
        ListConfig, table.get("lists", {}), "gateway.lists", source, reload_s=(0.05, 1e6)
    )
    _choice(lists.flagged, ACTIONS, "gateway.lists.flagged", source)
    _choice(lists.campaign, ACTIONS, "gateway.lists.campaign", source)
    degrade = _build(
        DegradeConfig,
        table.get("degrade", {}),
        "gateway.degrade",
        source,
        max_tokens=(1, 1e9),
        n=(1, 1e6),
    )
    rules = []
    raw_rules = table.get("rules", [])
    if not isinstance(raw_rules, list):
        raise ConfigError("[[gateway.rules]] must be an array of tables", source=source)
    for i, raw in enumerate(raw_rules):
        where = f"gateway.rules[{i}]"
        if not isinstance(raw, dict) or "feature" not in raw or "min" not in raw:
            raise ConfigError(f"{where} needs 'feature' and 'min'", source=source)
        rule = _build(
            Rule, raw, where, source, min=(-1e12, 1e12), min_exchanges=(0, 1e12), weight=(0, 1)
        )
        _choice(rule.feature, RULE_FEATURES, f"{where}.feature", source)
        if not isinstance(rule.corroborating, bool):
            raise ConfigError(f"{where}.corroborating must be true or false", source=source)
        rules.append(rule)
    limits = _build(
        Limits,
        table.get("limits", {}),
        "gateway.limits",
        source,
        max_body_bytes=(64, 1e10),
        max_json_depth=(2, 10000),
        max_header_bytes=(256, 1e7),
        max_inflight=(1, 1e7),
        connect_timeout_s=(0.001, 1e6),
        upstream_timeout_s=(0.001, 1e6),
    )
    state = _build(
        StateConfig,
        table.get("state", {}),
        "gateway.state",
        source,
        redis_timeout_ms=(1, 1e6),
        retry_s=(0.01, 1e6),
        account_ttl_days=(0, 1e5),
    )
    _choice(state.fail, ("open", "closed"), "gateway.state.fail", source)
    log = _build(
        LogConfig,
        table.get("log", {}),
        "gateway.log",
        source,
        flush_s=(0.01, 1e6),
        max_rows=(1, 1e9),
        max_response_chars=(0, 1e9),
    )
    return GatewayPolicy(
        ladder=ladder,
        rate=rate,
        suspect_rate=suspect,
        content=content,
        lists=lists,
        degrade=degrade,
        rules=tuple(rules),
        limits=limits,
        state=state,
        log=log,
        source=source,
    )


def load_gateway_policy(path: str | Path | None = None) -> GatewayPolicy:
    """The `[gateway]` table of ``path``, or the packaged ``gateway.toml``."""
    from distillguard.policy import read_policy_toml

    data, source = read_policy_toml(path, "gateway.toml")
    if "gateway" not in data:
        raise ConfigError("no [gateway] table", source=source)
    return parse_gateway(data["gateway"], source)
