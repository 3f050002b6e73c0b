"""The gateway: a plain ASGI class for the proxy's hot path, Starlette for the rest.

Per proxied request: limits -> identity -> request fields -> content check -> one state
round trip (rate limit + sums + distinct counts) -> ladder -> forward (or refuse) ->
decision log row. Requests refused before that (shed under overload, over the input
limits) get a log row too, built from what is known without reading the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as StarletteRoute

from distillguard.features import distinct_values
from distillguard.gateway.apis import (
    PASSTHROUGH,
    ROUTES,
    Flavor,
    StreamUsage,
    error_body,
    flavor_of,
    request_fields,
    response_text,
    stream_error_event,
    usage_of,
)
from distillguard.gateway.config import GatewayConfig
from distillguard.gateway.content import (
    ContentCheck,
    ContentResult,
    content_sums,
    load_classifier,
    own_flag,
)
from distillguard.gateway.decision_log import DecisionLog
from distillguard.gateway.degrade import SSEDegrader, degrade_request, degrade_response
from distillguard.gateway.identity import (
    ANONYMOUS,
    FileKeyMap,
    KeyHasher,
    KeyMap,
    RedisKeyMap,
    load_or_create_secret,
    presented_key,
)
from distillguard.gateway.ladder import Decision, Ladder
from distillguard.gateway.limits import RequestRejected, header_bytes, parse_body
from distillguard.gateway.lists import ListWatcher
from distillguard.gateway.metrics import CONTENT_TYPE_LATEST, Metrics
from distillguard.gateway.state import (
    FailoverState,
    LocalState,
    Observation,
    RedisState,
    State,
    StateUnavailable,
    connect_redis,
    contributions,
    now_utc,
)

log = logging.getLogger("distillguard.gateway")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Any
Send = Any

_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "accept-encoding",
        "content-encoding",
    }
)
# uvicorn writes its own; the upstream's copies would be duplicates
_RESPONSE_DROP = _HOP | {"date", "server"}
_MISSING: Any = object()


@dataclass
class Exchange:
    """One request's working data, from arrival to its log row."""

    flavor: Flavor
    endpoint: str
    row: dict[str, Any]
    decision: Decision
    started: float
    content: ContentResult | None = None
    extra_reasons: list[str] = field(default_factory=list)


class Gateway:
    """ASGI app. ``classifier`` and ``redis`` may be injected (tests); by default they come
    from the package and from ``config.state_url``."""

    def __init__(
        self, config: GatewayConfig, *, classifier: Any = _MISSING, redis: Any = None
    ) -> None:
        self.config = config
        pol = config.policy
        self.policy = pol
        self.metrics = Metrics()
        self.ladder = Ladder(pol)
        clf = load_classifier() if classifier is _MISSING and pol.content.mode != "off" else None
        if classifier is not _MISSING:
            clf = classifier
        self.content = ContentCheck(pol.content, clf)
        self.content.sink = self._content_scored
        self.lists = ListWatcher(config.scan_dir, pol.lists.reload_s)
        self.log = DecisionLog(config.log_dir, config.instance, pol.log.flush_s, pol.log.max_rows)
        self._redis = redis
        self.local = LocalState(pol.content.half_life_s)
        self.state: State = self.local
        self.hasher: KeyHasher | None = None
        self.keymap: KeyMap | None = None
        self.session: aiohttp.ClientSession | None = None
        self.inflight = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._upstream = config.upstream_base
        self.started = False
        self.loop: asyncio.AbstractEventLoop | None = None
        # a random per-process prefix and a counter: unique across instances and restarts,
        # without a system call per request (uuid4 costs one)
        self._id_prefix = f"dg{secrets.token_hex(6)}-"
        self._ids = itertools.count()
        self._admin = Starlette(
            routes=[
                StarletteRoute("/healthz", self._healthz, methods=["GET"]),
                StarletteRoute("/metrics", self._metrics, methods=["GET"]),
                StarletteRoute("/v1/decide", self._decide, methods=["POST"]),
            ]
        )
        m = self.metrics
        m.gauge("distillguard_state_fallback", "1 while shared state is lost", self._fallback)
        m.gauge("distillguard_listed_accounts", "Accounts on scan lists", self._listed)
        m.gauge("distillguard_log_pending_rows", "Decision-log rows not yet written", self._pend)
        m.gauge("distillguard_content_dropped", "Prompts left unscored", self._dropped)
        m.gauge(
            "distillguard_content_scored_inline",
            "Prompts scored on the request path (the rest: cache hits or the async worker)",
            self._scored_inline,
        )

    def _fallback(self) -> float:
        return float(isinstance(self.state, FailoverState) and self.state.degraded)

    def _listed(self) -> float:
        return float(len(self.lists.lists.accounts))

    def _pend(self) -> float:
        return float(self.log.pending)

    def _dropped(self) -> float:
        return float(self.content.dropped)

    def _scored_inline(self) -> float:
        return float(self.content.scored_inline)

    # -- lifecycle -------------------------------------------------------------------------

    async def startup(self) -> None:
        cfg, pol = self.config, self.policy
        secret = cfg.key_secret
        if cfg.state_url is not None and self._redis is None:
            self._redis = connect_redis(cfg.state_url, pol.state.redis_timeout_ms)
        if self._redis is not None:
            redis_state = RedisState(
                self._redis, pol.content.half_life_s, pol.state.account_ttl_days
            )
            self.state = FailoverState(
                redis_state,
                self.local,
                fail_open=pol.state.fail == "open",
                retry_s=pol.state.retry_s,
            )
            if not secret:
                # instances sharing state must hash keys alike, so the secret is shared too
                await self._redis.set("dg:secret", secrets.token_bytes(32), nx=True)
                secret = await self._redis.get("dg:secret")
        if not secret and cfg.log_dir is not None:
            secret = load_or_create_secret(cfg.log_dir / ".key_secret")
        if not secret:
            log.warning("no key secret and no log dir: account ids change on restart")
            secret = secrets.token_bytes(32)
        self.hasher = KeyHasher(secret)
        if cfg.key_map == "redis":
            if self._redis is None:
                from distillguard.errors import ConfigError

                raise ConfigError("--key-map redis needs --state redis://...")
            self.keymap = RedisKeyMap(self._redis)
        elif cfg.key_map is not None:
            from pathlib import Path

            self.keymap = FileKeyMap(Path(cfg.key_map), self.hasher)
        self.lists.check()
        lim = pol.limits
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=lim.max_inflight, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(
                total=None, connect=lim.connect_timeout_s, sock_read=lim.upstream_timeout_s
            ),
            auto_decompress=True,
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )
        loop = self.loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self.log.run())]
        if self.content.enabled and self.policy.content.mode in ("async", "inline"):
            # inline mode needs it too, for what arrives past its time budget; the worker
            # process itself starts on its first batch
            self.content.start_worker()
            self._tasks.append(loop.create_task(self.content.run()))
        if cfg.scan_dir is not None:
            self._tasks.append(loop.create_task(self.lists.run()))
        self.started = True

    async def shutdown(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.content.drain()
        self.content.stop_worker()
        with contextlib.suppress(Exception):
            await self.state.flush()
        await self.log.flush()
        await self.state.close()
        if self.session is not None:
            await self.session.close()
        self.started = False

    async def flush(self) -> None:
        """Score queued prompts, push state deltas and write the log now (tests, shutdown)."""
        await self.content.drain()
        await self.state.flush()
        await self.log.flush()

    # -- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            return
        path: str = scope["path"]
        route = ROUTES.get(path)
        if route is None and not path.startswith(PASSTHROUGH):
            await self._admin(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        flavor = flavor_of(path, headers)
        # an exchange (logged) rather than a pass-through call (model list, token count)
        exchange = route is not None and scope["method"] == "POST"
        if header_bytes(scope["headers"]) > self.policy.limits.max_header_bytes:
            self.metrics.rejected.labels("headers").inc()
            await _refuse(send, flavor, 431, "headers_too_large", "request headers too large")
            if route is not None and exchange:
                why = "limits: headers_too_large"
                self._log_refused(scope, headers, route.endpoint, 431, "rejected", why)
            return
        if self.inflight >= self.policy.limits.max_inflight:
            # Past capacity: refuse at once rather than queue without bound.
            self.metrics.shed.inc()
            await _refuse(send, flavor, 503, "overloaded", "gateway at capacity", retry=1.0)
            if route is not None and exchange:
                why = f"overload: {self.inflight} in flight"
                self._log_refused(scope, headers, route.endpoint, 503, "shed", why)
            return
        self.inflight += 1
        self.metrics.inflight.inc()
        try:
            if route is None or not exchange:
                await self._passthrough(scope, receive, send, headers, flavor)
            else:
                await self._exchange(scope, receive, send, headers, route.endpoint, flavor)
        finally:
            self.inflight -= 1
            self.metrics.inflight.dec()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as err:
                    await send({"type": "lifespan.startup.failed", "message": str(err)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _read_body(self, receive: Receive, headers: dict[str, str]) -> bytes:
        limit = self.policy.limits.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise RequestRejected(413, "body_too_large", f"request body over {limit} bytes")
        chunks = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise RequestRejected(400, "client_disconnected", "client went away")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RequestRejected(413, "body_too_large", f"request body over {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _identity(self, headers: dict[str, str]) -> tuple[str | None, str]:
        assert self.hasher is not None
        key = presented_key(headers)
        if key is None:
            return None, ANONYMOUS
        kid = self.hasher.key_id(key)
        return kid, kid

    def _client_ip(self, scope: Scope, headers: dict[str, str]) -> str | None:
        if self.config.trust_forwarded:
            fwd = headers.get("x-forwarded-for")
            if fwd:
                return fwd.split(",")[0].strip()
        client = scope.get("client")
        return str(client[0]) if client else None

    def _log_refused(
        self,
        scope: Scope,
        headers: dict[str, str],
        endpoint: str,
        status: int,
        decision: str,
        reason: str,
    ) -> None:
        """The log row of a proxied request refused before the policy saw it.

        Shedding must stay cheap, so nothing here reads the body or waits: the key's HMAC
        (microseconds), a key-map lookup only if it is in memory, the headers' own fields.
        """
        if not self.log.enabled or self.hasher is None:
            return
        key_id, account = self._identity(headers)
        if key_id is not None and self.keymap is not None:
            account = self.keymap.account_cached(key_id) or account
        ip = self._client_ip(scope, headers)
        self._refused_row(
            endpoint, status, decision, reason, key_id, account, ip, headers.get("user-agent")
        )

    def _row(
        self,
        ts: datetime,
        account: str,
        key_id: str | None,
        endpoint: str,
        ip: str | None,
        user_agent: str | None,
        fields: dict[str, Any],
    ) -> dict[str, Any]:
        """A decision-log row in the §1 schema, before the answer's tokens are known."""
        return {
            "exchange_id": f"{self._id_prefix}{next(self._ids):x}",
            "ts": ts,
            "account_id": account,
            "input_tokens": 0,
            "output_tokens": 0,
            "api_key_id": key_id,
            "endpoint": endpoint,
            "ip": ip,
            "user_agent": user_agent,
            **fields,
        }

    def _refused_row(
        self,
        endpoint: str,
        status: int,
        decision: str,
        reason: str,
        key_id: str | None,
        account: str,
        ip: str | None,
        user_agent: str | None,
        fields: dict[str, Any] | None = None,
    ) -> None:
        """A log row without a decision by the ladder; ``fields`` are the request's own
        (``request_fields``) when its body was read, else model and prompt are unknown."""
        if not self.log.enabled:
            return
        known = {"model": "unknown", "prompt": "", **(fields or {})}
        row = self._row(now_utc(), account, key_id, endpoint, ip, user_agent, known)
        row |= {"status": status, "decision": decision, "reasons": [reason]}
        self.log.append(row)
        self.metrics.count_request(endpoint, decision)

    async def evaluate(
        self,
        endpoint: str,
        body: dict[str, Any],
        key_id: str | None,
        account: str,
        ip: str | None,
        user_agent: str | None,
    ) -> tuple[dict[str, Any], Decision, ContentResult | None, Observation]:
        """The decision for one request, with its log row (tokens not yet known) and the
        account's state as this request left it."""
        ts: datetime = now_utc()
        fields = request_fields(endpoint, body)
        row = self._row(ts, account, key_id, endpoint, ip, user_agent, fields)
        listing = self.lists.lists.get(account)
        content = self.content.check(account, fields["prompt"], fields["system_prompt"])
        limit = self.ladder.rate_limit(account, listing)
        obs = await self.state.observe(
            account,
            contributions(row),
            ts,
            limit,
            distinct_values(row),
            1.0 if content is not None and own_flag(content) else 0.0,
        )
        if content is not None:
            self.state.add(account, content_sums(content))
        decision = self.ladder.decide(account, listing, obs, content)
        if obs.source == "fallback":
            decision = Decision(
                decision.action,
                decision.score,
                (*decision.reasons, "state: local fallback"),
                decision.retry_after,
            )
        return row, decision, content, obs

    def _content_scored(self, account: str, result: ContentResult) -> None:
        deltas = content_sums(result)
        if own_flag(result):  # the share counts the prompts' own flags
            deltas["del"] = 1.0
        self.state.add(account, deltas)

    def _finish(
        self,
        ex: Exchange,
        status: int,
        inp: int,
        out: int,
        reasoning: int | None,
        text: str | None,
    ) -> None:
        row = ex.row
        row["status"] = status
        row["input_tokens"] = inp
        row["output_tokens"] = out
        row["reasoning_tokens"] = reasoning
        row["latency_ms"] = (time.perf_counter() - ex.started) * 1000.0
        cap = self.policy.log.max_response_chars
        row["response_text"] = text[:cap] if text is not None and cap else None
        row["decision"] = ex.decision.action
        row["reasons"] = [*ex.decision.reasons, *ex.extra_reasons]
        deltas = {"in_tok": inp, "out_tok": out, "reasoning_tok": reasoning or 0}
        if any(deltas.values()):
            self.state.add(row["account_id"], deltas)
        self.log.append(row)
        self.metrics.count_request(ex.endpoint, ex.decision.action)
        self.metrics.latency.labels(ex.endpoint).observe(row["latency_ms"] / 1000.0)

    async def _exchange(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        endpoint: str,
        flavor: Flavor,
    ) -> None:
        started = time.perf_counter()
        try:
            raw = await self._read_body(receive, headers)
            body = parse_body(raw, self.policy.limits.max_json_depth)
        except RequestRejected as err:
            self.metrics.rejected.labels(err.code).inc()
            await _refuse(send, flavor, err.status, err.code, err.message)
            self._log_refused(
                scope, headers, endpoint, err.status, "rejected", f"limits: {err.code}"
            )
            return
        key_id, account = self._identity(headers)
        if key_id is not None and self.keymap is not None:
            try:
                mapped = await self.keymap.account_of(key_id)
            except Exception:
                mapped = None  # a lost key map falls back to the key's own identity
            if mapped is not None:
                account = mapped
        try:
            row, decision, content, _ = await self.evaluate(
                endpoint,
                body,
                key_id,
                account,
                self._client_ip(scope, headers),
                headers.get("user-agent"),
            )
        except StateUnavailable as err:
            await _refuse(send, flavor, 503, "state_unavailable", str(err), retry=1.0)
            self._refused_row(
                endpoint,
                503,
                "shed",
                "state: unavailable (fail closed)",
                key_id,
                account,
                self._client_ip(scope, headers),
                headers.get("user-agent"),
                request_fields(endpoint, body),
            )
            return
        ex = Exchange(flavor, endpoint, row, decision, started, content)
        action = decision.action
        if action == "throttle":
            retry = max(decision.retry_after, 0.001)
            await _refuse(send, flavor, 429, "rate_limited", "rate limit exceeded", retry=retry)
            self._finish(ex, 429, 0, 0, None, None)
            return
        if action in ("verify", "block"):
            code = "verification_required" if action == "verify" else "account_blocked"
            message = (
                "account verification required before further use"
                if action == "verify"
                else "this account is blocked"
            )
            await _refuse(send, flavor, 403, code, message)
            self._finish(ex, 403, 0, 0, None, None)
            return
        degrade = action == "degrade"
        if degrade:
            body = degrade_request(endpoint, body, self.policy.degrade)
            raw = orjson.dumps(body)
        await self._forward(scope, receive, send, headers, raw, ex, degrade)

    def _upstream_headers(self, headers: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in headers.items() if k not in _HOP}

    def _url(self, scope: Scope) -> str:
        qs: bytes = scope.get("query_string", b"")
        url: str = self._upstream + scope["path"]
        return url + "?" + qs.decode("latin-1") if qs else url

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        raw: bytes,
        ex: Exchange,
        degrade: bool,
    ) -> None:
        assert self.session is not None
        try:
            resp = await self.session.request(
                "POST", self._url(scope), data=raw, headers=self._upstream_headers(headers)
            )
        except (TimeoutError, aiohttp.ServerTimeoutError):
            self.metrics.upstream_errors.labels("timeout").inc()
            ex.extra_reasons.append("upstream: timeout")
            await _refuse(send, ex.flavor, 504, "upstream_timeout", "upstream timed out")
            self._finish(ex, 504, 0, 0, None, None)
            return
        except aiohttp.ClientError as err:
            self.metrics.upstream_errors.labels("connect").inc()
            ex.extra_reasons.append("upstream: unreachable")
            await _refuse(send, ex.flavor, 502, "upstream_unreachable", f"upstream: {err}")
            self._finish(ex, 502, 0, 0, None, None)
            return
        async with resp:
            out_headers = [
                (k.encode("latin-1"), v.encode("latin-1"))
                for k, v in resp.headers.items()
                if k.lower() not in _RESPONSE_DROP
            ]
            ctype = resp.headers.get("content-type", "")
            if ctype.startswith("text/event-stream"):
                await self._stream(send, resp, out_headers, ex, degrade)
                return
            try:
                data = await resp.read()
            except (TimeoutError, aiohttp.ClientError):
                self.metrics.upstream_errors.labels("cut").inc()
                ex.extra_reasons.append("upstream: body cut")
                await _refuse(send, ex.flavor, 502, "upstream_cut", "upstream response was cut")
                self._finish(ex, 502, 0, 0, None, None)
                return
            text = None
            usage = None
            if ctype.startswith("application/json") and data:
                try:
                    parsed = orjson.loads(data)
                except orjson.JSONDecodeError:
                    parsed = None
                if parsed is not None:
                    usage = usage_of(parsed)
                    if resp.status < 400:
                        if degrade:
                            parsed = degrade_response(ex.endpoint, parsed)
                            data = orjson.dumps(parsed)
                        text = response_text(ex.endpoint, parsed)
            out_headers.append((b"content-length", str(len(data)).encode()))
            await send(
                {"type": "http.response.start", "status": resp.status, "headers": out_headers}
            )
            await send({"type": "http.response.body", "body": data})
            if usage is not None:
                self._finish(
                    ex,
                    resp.status,
                    usage.input_tokens,
                    usage.output_tokens,
                    usage.reasoning_tokens,
                    text,
                )
            else:
                self._finish(ex, resp.status, 0, 0, None, text)

    async def _stream(
        self,
        send: Send,
        resp: aiohttp.ClientResponse,
        out_headers: list[tuple[bytes, bytes]],
        ex: Exchange,
        degrade: bool,
    ) -> None:
        await send({"type": "http.response.start", "status": resp.status, "headers": out_headers})
        tap = StreamUsage()
        rewriter = SSEDegrader(ex.endpoint) if degrade else None
        events = 0
        cut = False
        client_gone = False
        try:
            async for chunk in resp.content.iter_any():
                tap.feed(chunk)
                events += chunk.count(b"data:")
                if rewriter is not None:
                    chunk = rewriter.feed(chunk)
                    if not chunk:
                        continue
                try:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                except OSError:
                    client_gone = True
                    break
        except (TimeoutError, aiohttp.ClientError):
            cut = True
        tail = rewriter.close() if rewriter is not None else b""
        if cut:
            self.metrics.upstream_errors.labels("cut").inc()
            ex.extra_reasons.append("upstream: stream cut")
            tail += stream_error_event(ex.flavor, "upstream stream ended before completion")
        if client_gone:
            ex.extra_reasons.append("client: disconnected")
        else:
            with contextlib.suppress(OSError):
                await send({"type": "http.response.body", "body": tail, "more_body": False})
        u = tap.usage
        out = u.output_tokens
        if not out and resp.status < 400:
            # no usage in the stream (OpenAI sends it only on request): one event ~ one token
            out = max(events - 2, 0)
        self._finish(ex, resp.status, u.input_tokens, out, u.reasoning_tokens, None)

    async def _passthrough(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str], flavor: Flavor
    ) -> None:
        assert self.session is not None
        try:
            raw = await self._read_body(receive, headers)
        except RequestRejected as err:
            await _refuse(send, flavor, err.status, err.code, err.message)
            return
        try:
            async with self.session.request(
                scope["method"],
                self._url(scope),
                data=raw or None,
                headers=self._upstream_headers(headers),
            ) as resp:
                data = await resp.read()
                out_headers = [
                    (k.encode("latin-1"), v.encode("latin-1"))
                    for k, v in resp.headers.items()
                    if k.lower() not in _RESPONSE_DROP
                ]
                out_headers.append((b"content-length", str(len(data)).encode()))
                await send(
                    {"type": "http.response.start", "status": resp.status, "headers": out_headers}
                )
                await send({"type": "http.response.body", "body": data})
        except (TimeoutError, aiohttp.ClientError) as err:
            self.metrics.upstream_errors.labels("connect").inc()
            await _refuse(send, flavor, 502, "upstream_unreachable", f"upstream: {err}")

    # -- admin routes (Starlette) ----------------------------------------------------------

    async def _healthz(self, request: Request) -> Response:
        degraded = isinstance(self.state, FailoverState) and self.state.degraded
        return JSONResponse(
            {
                "status": "degraded" if degraded else "ok",
                "inflight": self.inflight,
                "state": "fallback" if degraded else type(self.state).__name__,
                "lists_version": self.lists.lists.version,
                "log_pending": self.log.pending,
            }
        )

    async def _metrics(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def _decide(self, request: Request) -> Response:
        token = self.config.decide_token
        if token is not None:
            if request.headers.get("authorization", "") != f"Bearer {token}":
                return JSONResponse({"error": "unauthorized"}, status_code=401)
        elif request.client is None or request.client.host not in ("127.0.0.1", "::1"):
            # without a token, only callers on this machine may ask (accounts must not be able
            # to probe their own standing)
            return JSONResponse({"error": "forbidden: set --decide-token"}, status_code=403)
        try:
            raw = await request.body()
            if len(raw) > self.policy.limits.max_body_bytes:
                raise RequestRejected(413, "body_too_large", "body too large")
            body = parse_body(raw, self.policy.limits.max_json_depth)
        except RequestRejected as err:
            return JSONResponse({"error": err.message, "code": err.code}, status_code=err.status)
        account = body.get("account_id")
        req = body.get("request", {})
        if not isinstance(account, str) or not account or not isinstance(req, dict):
            return JSONResponse(
                {"error": "need account_id (string) and request (object)", "code": "invalid"},
                status_code=400,
            )
        endpoint = body.get("endpoint") or ("responses" if "input" in req else "chat.completions")
        if endpoint not in {r.endpoint for r in ROUTES.values()}:
            return JSONResponse({"error": "unknown endpoint", "code": "invalid"}, status_code=400)
        ip, ua = body.get("ip"), body.get("user_agent")
        ip = ip if isinstance(ip, str) else None
        ua = ua if isinstance(ua, str) else None
        try:
            row, decision, content, obs = await self.evaluate(endpoint, req, None, account, ip, ua)
        except StateUnavailable as err:
            fields = request_fields(endpoint, req)
            why = "state: unavailable (fail closed)"
            self._refused_row(endpoint, 503, "shed", why, None, account, ip, ua, fields)
            return JSONResponse({"error": str(err), "code": "state_unavailable"}, status_code=503)
        ex = Exchange("openai", endpoint, row, decision, time.perf_counter(), content)
        status = {"throttle": 429, "verify": 403, "block": 403}.get(decision.action, 200)
        self._finish(ex, status, 0, 0, None, None)
        action = "allow" if decision.action == "watch" else decision.action
        reply: dict[str, Any] = {
            "action": action,
            "score": round(decision.score, 4),
            "reasons": list(decision.reasons),
        }
        if decision.retry_after:
            reply["retry_after"] = round(decision.retry_after, 3)
        # what the caller's own gateway may want to show or log beside the action; the
        # distinct counts are estimates (exact while small), so they are rounded
        reply["account"] = {
            "exchanges": int(obs.sums["n"]),
            **{k: round(v) for k, v in obs.distinct.items()},
        }
        return JSONResponse(reply)


async def _refuse(
    send: Send, flavor: Flavor, status: int, code: str, message: str, retry: float | None = None
) -> None:
    body = error_body(flavor, status, code, message)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-distillguard-code", code.encode()),
    ]
    if retry is not None:
        # whole seconds per RFC 9110; the SDKs also read the precise value in ms
        headers.append((b"retry-after", str(max(1, int(retry + 0.999))).encode()))
        headers.append((b"retry-after-ms", str(int(retry * 1000)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def build_app(config: GatewayConfig, **kwargs: Any) -> Gateway:
    return Gateway(config, **kwargs)
