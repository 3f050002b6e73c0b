"""The online elicitation check, kept inside the latency budget.

The classifier (``distillguard.content``) is imported lazily and tolerated missing or with
another API. By default (``mode = "async"``) prompts are scored in micro-batches off the
request path, in a worker process, and the result feeds the account's recent elicitation
share for its next requests. ``mode = "inline"`` scores the current request's prompt with
``score_one`` before the decision, so its own score counts for it: 75-140 us per prompt
alone, about 0.2 ms inside the gateway (where its tables and the proxy's share the CPU
caches), +0.3 ms p50 added latency in process as measured (benchmarks/gateway). Inline
scoring may take ``inline_budget`` of the event loop's time (10% by default, measured per
second of wall time); past that, new prompts go to the async path, so a saturated gateway
gives at most that share of its throughput to the classifier. Either way a repeated
prompt (templated harvesting repeats a lot) is answered from a cache at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import xxhash

from distillguard.gateway.config import ContentConfig

log = logging.getLogger("distillguard.gateway")


@dataclass(frozen=True)
class ContentResult:
    elicitation: float
    flagged: bool
    signals: tuple[str, ...]
    # The batch scan's per-exchange bits (``ElicitationClassifier.demand``): the prompt's own
    # rule-backed demand, and a demand that only the system prompt makes (the account's
    # configuration: one piece of evidence, not one per request). A classifier without
    # ``demand`` leaves both False.
    elicit: bool = False
    system_only: bool = False


Sink = Callable[[str, ContentResult], None]


def own_flag(result: ContentResult) -> bool:
    """Whether a flagged prompt is this request's own evidence: not when only its system
    prompt (the account's configuration) made it elicit."""
    return result.flagged and not result.system_only


def content_sums(result: ContentResult) -> dict[str, float]:
    """One scored prompt's additions to the account's content sums, by the batch scan's
    definitions (``features.content``: ``c_n``, ``c_elicit``, ``c_sys_elicit``)."""
    return {"c_n": 1, "c_elicit": int(result.elicit), "c_sys_elicit": int(result.system_only)}


def load_classifier() -> Any | None:
    """The packaged classifier, or None when the content module is absent or incompatible."""
    try:
        from distillguard.content import ElicitationClassifier
    except ImportError:
        log.warning("content: distillguard.content not available; elicitation check off")
        return None
    try:
        return ElicitationClassifier.load_default()
    except Exception as err:
        log.warning("content: cannot load the classifier (%s); elicitation check off", err)
        return None


def _score_with(clf: Any, prompts: list[str], systems: list[str | None]) -> list[ContentResult]:
    scores = clf.score(prompts, systems)
    n = len(prompts)
    own, sys_only = [False] * n, [False] * n
    if callable(getattr(clf, "demand", None)):
        e, s = clf.demand(prompts, systems, scores)
        own, sys_only = [bool(x) for x in e], [bool(x) for x in s]
    out = []
    for j in range(n):
        sig = scores.signals_of(j) if hasattr(scores, "signals_of") else []
        out.append(
            ContentResult(
                float(scores.elicitation[j]),
                bool(scores.flagged[j]),
                tuple(sig),
                own[j],
                sys_only[j],
            )
        )
    return out


_WORKER_CLF: Any = None


def _worker_init(clf: Any) -> None:
    global _WORKER_CLF
    _WORKER_CLF = clf
    with contextlib.suppress(Exception):  # load the weights now, not on the first batch
        clf.score(["warm up"], None)


def _worker_ready() -> bool:
    return _WORKER_CLF is not None


def _worker_score(prompts: list[str], systems: list[str | None]) -> list[ContentResult]:
    return _score_with(_WORKER_CLF, prompts, systems)


def _result(score: Any, demand: tuple[bool, bool] = (False, False)) -> ContentResult:
    return ContentResult(
        float(getattr(score, "elicitation", 0.0)),
        bool(getattr(score, "flagged", False)),
        tuple(getattr(score, "signals", ()) or ()),
        *demand,
    )


class ContentCheck:
    def __init__(
        self,
        config: ContentConfig,
        classifier: Any | None,
        batch: int = 64,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.config = config
        self._clock = clock
        # inline scoring time spent in the current one-second window
        self._window = 0.0
        self._spent = 0.0
        self.clf = classifier if config.mode != "off" else None
        self._cache: OrderedDict[int, ContentResult] = OrderedDict()
        self._queue: list[tuple[int, str, str | None, str]] = []
        self._batch = batch
        self._wake = asyncio.Event()
        self.sink: Sink | None = None
        self.scored = 0
        self.scored_inline = 0
        self.dropped = 0
        self._batch_api = self.clf is not None and callable(getattr(self.clf, "score", None))
        self._pool: Any = None

    @property
    def enabled(self) -> bool:
        return self.clf is not None

    def _key(self, prompt: str, system: str | None) -> tuple[int, str, str | None]:
        prompt = prompt[: self.config.max_chars]
        system = system[: self.config.max_chars] if system else None
        h = xxhash.xxh3_64_intdigest((prompt + "\x00" + (system or "")).encode())
        return h, prompt, system

    def _remember(self, h: int, result: ContentResult) -> None:
        if self.config.cache_size <= 0:
            return
        self._cache[h] = result
        if len(self._cache) > self.config.cache_size:
            self._cache.popitem(last=False)

    def _inline_allowed(self) -> bool:
        now = self._clock()
        if now - self._window >= 1.0:
            self._window = now
            self._spent = 0.0
        return self._spent < self.config.inline_budget

    def check(self, account: str, prompt: str, system: str | None) -> ContentResult | None:
        """The score now if it is cached or the mode is inline (within its time budget);
        else queue it for the worker."""
        if self.clf is None or not prompt:
            return None
        h, prompt, system = self._key(prompt, system)
        hit = self._cache.get(h)
        if hit is not None:
            self._cache.move_to_end(h)
            return hit
        inline = self.config.mode == "inline" and self._inline_allowed()
        if inline or not self._batch_api:
            t0 = self._clock()
            one = self.clf.score_one(prompt, system)
            demand = getattr(self.clf, "demand_one", None)
            result = _result(
                one, demand(prompt, system, one) if callable(demand) else (False, False)
            )
            self._spent += self._clock() - t0
            self.scored += 1
            self.scored_inline += 1
            self._remember(h, result)
            return result
        # A flood of new prompts past what the scorer keeps up with is not allowed to grow
        # memory: the excess goes unscored (and is counted).
        if len(self._queue) >= 50 * self._batch:
            self.dropped += 1
            return None
        self._queue.append((h, prompt, system, account))
        if len(self._queue) >= self._batch:
            self._wake.set()
        return None

    def _score_batch(self, items: list[tuple[int, str, str | None, str]]) -> list[ContentResult]:
        assert self.clf is not None
        return _score_with(self.clf, [i[1] for i in items], [i[2] for i in items])

    def start_worker(self) -> None:
        """Score in a separate process: batch scoring holds the GIL for milliseconds at a
        time, which in a thread would stall the event loop and show in the p99 latency."""
        if self.clf is None or self.config.worker != "process" or self._pool is not None:
            return
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # spawn, not fork: the parent runs threads (uvicorn, aiohttp resolvers)
        self._pool = ProcessPoolExecutor(
            max_workers=1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_worker_init,
            initargs=(self.clf,),
        )
        # Start it now: spawning, pickling the classifier over and loading it cost about a
        # second of CPU, which must not land on live traffic when the first batch comes
        # (in inline mode that is the first time the budget runs out, mid-traffic).
        self._pool.submit(_worker_ready)

    def stop_worker(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    async def _score(self, items: list[tuple[int, str, str | None, str]]) -> list[ContentResult]:
        if self._pool is not None:
            try:
                prompts = [i[1] for i in items]
                systems = [i[2] for i in items]
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._pool, _worker_score, prompts, systems)
            except Exception as err:  # a dead worker: carry on in a thread
                log.warning("content: worker process failed (%s); scoring in a thread", err)
                self._pool = None
        return await asyncio.to_thread(self._score_batch, items)

    async def drain(self) -> None:
        """Score everything queued now (used by the loop below and by tests)."""
        while self._queue:
            items, self._queue = self._queue[: self._batch * 4], self._queue[self._batch * 4 :]
            try:
                results = await self._score(items)
            except Exception as err:
                log.warning("content: batch scoring failed: %s", err)
                continue
            self.scored += len(items)
            for (h, _p, _s, account), result in zip(items, results, strict=True):
                self._remember(h, result)
                if self.sink is not None:
                    self.sink(account, result)

    async def run(self, interval_s: float = 0.05) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=interval_s)
            self._wake.clear()
            await self.drain()
