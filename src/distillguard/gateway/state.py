"""Online per-account state: the batch scan's sums, distinct counts, decayed counters and
the GCRA limit.

Each request's contribution comes from ``AccountSums.learn_one`` on that request's log row
(tokens are unknown until the answer, so they arrive later as deltas): the online sums are
the batch sums by construction, and ``tests/test_gateway_state.py`` checks it against
``account_bucket_frame`` over the gateway's own decision log. Distinct IPs, /24s and user
agents (``features.distinct``) are kept in sketches: ``gateway.sketch`` in process, Redis's
own HyperLogLog (PFADD/PFCOUNT) in Redis; both agree with the batch scan's exact counts
within the sketch's error (tested the same way).

In process by default. With Redis, one Lua script per request does the rate limit and
updates the sums in the account's hash, so several gateways share one view; token and
content deltas follow in batched pipelines off the request path.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Protocol

from distillguard.errors import DistillGuardError
from distillguard.features import SUM_COLUMNS, AccountSums
from distillguard.features.distinct import DISTINCT_KEYS, FEATURE_OF
from distillguard.gateway.config import RateLimit
from distillguard.gateway.sketch import DistinctSketch

log = logging.getLogger("distillguard.gateway")

# Decayed request count and decayed count of prompts the classifier flagged, unless only
# their system prompt made them elicit: the account's *recent* behaviour, which the
# all-time sums cannot show.
DECAYED = ("dn", "del")
# The batch scan's content sums, over every prompt the gateway scored (the scan's are over
# a sample): prompts with text scored, their own eliciting demands, and demands that only
# the system prompt made (``features.content``; the content detector counts the latter
# once per account).
CONTENT_FIELDS = ("c_n", "c_elicit", "c_sys_elicit")
READ_FIELDS = (*SUM_COLUMNS, "active_buckets", *DECAYED, *CONTENT_FIELDS)


class StateUnavailable(DistillGuardError):
    """Shared state cannot be reached and the policy says fail closed."""


@dataclass(frozen=True)
class Observation:
    sums: dict[str, float]  # SUM_COLUMNS + active_buckets, as derive_features wants them
    decayed_n: float
    decayed_elicitation: float
    retry_after: float  # seconds until the request would fit the limit; 0 = allowed
    source: str  # "local", "redis" or "fallback"
    # distinct_ips, distinct_ip24s, distinct_user_agents (estimates; exact while small)
    distinct: dict[str, float] = field(default_factory=dict)
    # CONTENT_FIELDS so far (deltas arrive after the prompt is scored)
    content: dict[str, float] = field(default_factory=dict)


def contributions(row: Mapping[str, Any]) -> dict[str, int]:
    """One exchange's additions to the sums, by the batch scan's own definition."""
    one = AccountSums()
    one.learn_one(row)
    return {k: v for k, v in one.sums.items() if v}


class State(Protocol):
    async def observe(
        self,
        account: str,
        contrib: Mapping[str, int],
        ts: datetime,
        limit: RateLimit,
        values: Mapping[str, str] | None = None,
        elicitation: float = 0.0,
    ) -> Observation:
        """Count one request: rate limit, sums (``contrib``), distinct ``values``
        (``features.distinct_values``) and ``elicitation``: 1 when this request's prompt is
        known to be flagged by the classifier, else 0."""
        ...

    def add(self, account: str, deltas: Mapping[str, float]) -> None: ...

    async def flush(self) -> None: ...

    async def close(self) -> None: ...


class _Account:
    __slots__ = ("content", "days", "del_", "dn", "dts", "sketches", "sums", "tat")

    def __init__(self) -> None:
        self.sums: dict[str, float] = dict.fromkeys(SUM_COLUMNS, 0)
        self.content: dict[str, float] = dict.fromkeys(CONTENT_FIELDS, 0)
        # made on first use: most accounts never send a user agent or an IP worth keeping
        self.sketches: dict[str, DistinctSketch] = {}
        self.days: set[date] = set()
        self.tat = 0.0
        self.dts = 0.0
        self.dn = 0.0
        self.del_ = 0.0


class LocalState:
    """Per-process state; the least recently seen accounts are dropped past ``max_accounts``."""

    def __init__(self, half_life_s: float, max_accounts: int = 1_000_000) -> None:
        self._tau = half_life_s / math.log(2)
        self._max = max_accounts
        self._accounts: OrderedDict[str, _Account] = OrderedDict()
        self.source = "local"

    def _get(self, account: str) -> _Account:
        acc = self._accounts.get(account)
        if acc is None:
            acc = self._accounts[account] = _Account()
            if len(self._accounts) > self._max:
                self._accounts.popitem(last=False)
        else:
            self._accounts.move_to_end(account)
        return acc

    def observe_now(
        self,
        account: str,
        contrib: Mapping[str, int],
        ts: datetime,
        limit: RateLimit,
        values: Mapping[str, str] | None = None,
        elicitation: float = 0.0,
    ) -> Observation:
        now = ts.timestamp()
        acc = self._get(account)
        interval = 1.0 / limit.rate
        tat = max(acc.tat, now)
        allow_at = tat + interval - limit.burst * interval
        retry = allow_at - now if now < allow_at else 0.0
        if not retry:
            acc.tat = tat + interval
        factor = math.exp(-(now - acc.dts) / self._tau) if now > acc.dts else 1.0
        acc.dts = max(now, acc.dts)
        acc.dn = acc.dn * factor + 1.0
        acc.del_ = acc.del_ * factor + elicitation
        sums = acc.sums
        for k, v in contrib.items():
            sums[k] += v
        acc.days.add(ts.astimezone(UTC).date())
        sketches = acc.sketches
        if values:
            for key, value in values.items():
                sk = sketches.get(key)
                if sk is None:
                    sk = sketches[key] = DistinctSketch()
                sk.add(value)
        return Observation(
            {**sums, "active_buckets": len(acc.days)},
            acc.dn,
            acc.del_,
            retry,
            self.source,
            _counts(sketches),
            dict(acc.content),
        )

    async def observe(
        self,
        account: str,
        contrib: Mapping[str, int],
        ts: datetime,
        limit: RateLimit,
        values: Mapping[str, str] | None = None,
        elicitation: float = 0.0,
    ) -> Observation:
        return self.observe_now(account, contrib, ts, limit, values, elicitation)

    def add(self, account: str, deltas: Mapping[str, float]) -> None:
        acc = self._accounts.get(account)
        if acc is None:
            return
        for k, v in deltas.items():
            if k == "del":
                acc.del_ += v
            elif k in acc.content:
                acc.content[k] += v
            else:
                acc.sums[k] = acc.sums.get(k, 0) + v

    def sums_of(self, account: str) -> dict[str, float] | None:
        """The account's sums as ``AccountSums.as_row`` gives them (tests, /v1/decide)."""
        acc = self._accounts.get(account)
        if acc is None:
            return None
        return {**acc.sums, "active_buckets": len(acc.days)}

    def distinct_of(self, account: str) -> dict[str, float] | None:
        """The account's distinct counts by feature name (tests, /v1/decide)."""
        acc = self._accounts.get(account)
        return None if acc is None else _counts(acc.sketches)

    def content_of(self, account: str) -> dict[str, float] | None:
        """The account's content sums (``CONTENT_FIELDS``; tests)."""
        acc = self._accounts.get(account)
        return None if acc is None else dict(acc.content)

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        return None


def _counts(sketches: Mapping[str, DistinctSketch]) -> dict[str, float]:
    out = {}
    for key in DISTINCT_KEYS:
        sk = sketches.get(key)
        out[FEATURE_OF[key]] = sk.count() if sk is not None else 0.0
    return out


# KEYS: the account's hash, then one HyperLogLog per distinct key (DISTINCT_KEYS order).
# ARGV: now, day, interval, burst, tau, ttl, elicitation, one value per HyperLogLog ("" when
# the request has none), then (sum, increment) pairs.
_LUA = """
local k = KEYS[1]
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[3])
local burst = tonumber(ARGV[4])
local tau = tonumber(ARGV[5])
local ttl = tonumber(ARGV[6])
local nsk = #KEYS - 1
local v = redis.call('HMGET', k, 'tat', 'dts', 'dn', 'del')
local tat = tonumber(v[1]) or now
if tat < now then tat = now end
local retry = 0
local allow_at = tat + interval - burst * interval
if now < allow_at then retry = allow_at - now else tat = tat + interval end
local dts = tonumber(v[2]) or now
local f = 1
if now > dts then f = math.exp(-(now - dts) / tau) else now = dts end
local dn = (tonumber(v[3]) or 0) * f + 1
local del = (tonumber(v[4]) or 0) * f + tonumber(ARGV[7])
redis.call('HSET', k, 'tat', string.format('%.6f', tat), 'dts', string.format('%.6f', now),
  'dn', string.format('%.12g', dn), 'del', string.format('%.12g', del))
for i = 8 + nsk, #ARGV, 2 do redis.call('HINCRBY', k, ARGV[i], ARGV[i + 1]) end
if redis.call('HSETNX', k, 'b:' .. ARGV[2], 1) == 1 then
  redis.call('HINCRBY', k, 'active_buckets', 1)
end
if ttl > 0 then redis.call('EXPIRE', k, ttl) end
local counts = {}
for i = 1, nsk do
  local hk = KEYS[i + 1]
  if ARGV[7 + i] ~= '' then
    redis.call('PFADD', hk, ARGV[7 + i])
    if ttl > 0 then redis.call('EXPIRE', hk, ttl) end
  end
  counts[i] = redis.call('PFCOUNT', hk)
end
return {string.format('%.6f', retry), redis.call('HMGET', k, FIELDS), counts}
""".replace("FIELDS", ", ".join(f"'{f}'" for f in READ_FIELDS))


def _num(raw: Any) -> float:
    if raw is None:
        return 0.0
    return float(raw)


class RedisState:
    """State in Redis: hash ``dg:a:<account>`` per account, one script call per request."""

    def __init__(
        self, redis: Any, half_life_s: float, ttl_days: float, flush_s: float = 0.02
    ) -> None:
        self.redis = redis
        self._tau = half_life_s / math.log(2)
        self._ttl = int(ttl_days * 86400)
        self._script = redis.register_script(_LUA)
        self._pending: dict[str, dict[str, float]] = {}
        self._flush_s = flush_s
        self._task: asyncio.Task[None] | None = None
        self.source = "redis"

    @staticmethod
    def key(account: str) -> str:
        return "dg:a:" + account

    @staticmethod
    def sketch_keys(account: str) -> list[str]:
        """The account's HyperLogLogs. The key name comes before the account id, so no
        account id (which may contain ':') can name another account's keys."""
        return [f"dg:d:{key}:{account}" for key in DISTINCT_KEYS]

    async def observe(
        self,
        account: str,
        contrib: Mapping[str, int],
        ts: datetime,
        limit: RateLimit,
        values: Mapping[str, str] | None = None,
        elicitation: float = 0.0,
    ) -> Observation:
        args: list[Any] = [
            f"{ts.timestamp():.6f}",
            ts.astimezone(UTC).strftime("%Y%m%d"),
            repr(1.0 / limit.rate),
            limit.burst,
            repr(self._tau),
            self._ttl,
            repr(float(elicitation)),
        ]
        vals = values or {}
        args += [vals.get(key, "") for key in DISTINCT_KEYS]
        for k, v in contrib.items():
            args += (k, v)
        keys = [self.key(account), *self.sketch_keys(account)]
        retry, values_read, counts = await self._script(keys=keys, args=args)
        got = dict(zip(READ_FIELDS, (_num(x) for x in values_read), strict=True))
        sums = {k: got[k] for k in (*SUM_COLUMNS, "active_buckets")}
        distinct = {FEATURE_OF[k]: float(c) for k, c in zip(DISTINCT_KEYS, counts, strict=True)}
        content = {k: got[k] for k in CONTENT_FIELDS}
        return Observation(
            sums, got["dn"], got["del"], float(retry), self.source, distinct, content
        )

    def add(self, account: str, deltas: Mapping[str, float]) -> None:
        slot = self._pending.setdefault(account, {})
        for k, v in deltas.items():
            slot[k] = slot.get(k, 0) + v
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._later())

    async def _later(self) -> None:
        await asyncio.sleep(self._flush_s)
        try:
            await self.flush()
        except Exception as err:  # deltas are best effort: the request was already answered
            log.warning("state: dropped token/content deltas: %s", err)

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        if not pending:
            return
        pipe = self.redis.pipeline(transaction=False)
        for account, deltas in pending.items():
            key = self.key(account)
            for k, v in deltas.items():
                if k == "del":
                    pipe.hincrbyfloat(key, k, v)
                else:
                    pipe.hincrby(key, k, int(v))
        await pipe.execute()

    async def sums_of(self, account: str) -> dict[str, float] | None:
        values = await self.redis.hmget(self.key(account), list(READ_FIELDS))
        if all(v is None for v in values):
            return None
        got = dict(zip(READ_FIELDS, (_num(x) for x in values), strict=True))
        return {k: got[k] for k in (*SUM_COLUMNS, "active_buckets")}

    async def distinct_of(self, account: str) -> dict[str, float]:
        pipe = self.redis.pipeline(transaction=False)
        for key in self.sketch_keys(account):
            pipe.pfcount(key)
        counts = await pipe.execute()
        return {FEATURE_OF[k]: float(c) for k, c in zip(DISTINCT_KEYS, counts, strict=True)}

    async def close(self) -> None:
        try:
            await self.flush()
        except Exception as err:
            log.warning("state: dropped deltas at shutdown: %s", err)
        await self.redis.aclose()


class FailoverState:
    """Redis first; when it is unreachable, fail open onto per-process state and limits, or
    fail closed (``StateUnavailable``), and try Redis again after ``retry_s``."""

    def __init__(
        self, primary: RedisState, fallback: LocalState, *, fail_open: bool, retry_s: float
    ) -> None:
        self.primary = primary
        self.fallback = fallback
        self.fallback.source = "fallback"
        self._open = fail_open
        self._retry_s = retry_s
        self._down_until = 0.0
        self.failures = 0

    @property
    def degraded(self) -> bool:
        return self._down_until > time.monotonic()

    def _down(self, err: BaseException) -> None:
        self.failures += 1
        if not self.degraded:
            log.warning("state: redis unreachable (%s); failing %s", err, self._mode)
        self._down_until = time.monotonic() + self._retry_s

    @property
    def _mode(self) -> str:
        return "open (local limits)" if self._open else "closed"

    async def observe(
        self,
        account: str,
        contrib: Mapping[str, int],
        ts: datetime,
        limit: RateLimit,
        values: Mapping[str, str] | None = None,
        elicitation: float = 0.0,
    ) -> Observation:
        if not self.degraded:
            try:
                return await self.primary.observe(account, contrib, ts, limit, values, elicitation)
            except (OSError, ConnectionError, TimeoutError) as err:
                self._down(err)
            except Exception as err:
                if not _is_redis_error(err):
                    raise
                self._down(err)
        if not self._open:
            raise StateUnavailable("shared state (redis) is unreachable")
        return self.fallback.observe_now(account, contrib, ts, limit, values, elicitation)

    def add(self, account: str, deltas: Mapping[str, float]) -> None:
        if self.degraded:
            self.fallback.add(account, deltas)
        else:
            self.primary.add(account, deltas)

    async def flush(self) -> None:
        try:
            await self.primary.flush()
        except Exception as err:
            if not _is_redis_error(err) and not isinstance(err, OSError | TimeoutError):
                raise
            self._down(err)

    async def close(self) -> None:
        await self.primary.close()


def _is_redis_error(err: BaseException) -> bool:
    from redis.exceptions import RedisError

    return isinstance(err, RedisError)


def connect_redis(url: str, timeout_ms: float) -> Any:
    """An asyncio Redis client with short timeouts: a slow Redis must not hold requests."""
    import redis.asyncio as aioredis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    timeout = timeout_ms / 1000.0
    # No client-side retries: the failover above decides what a lost Redis means.
    return aioredis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry_on_timeout=False,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )


def now_utc() -> datetime:
    return datetime.now(UTC)
