"""Prometheus metrics, in a registry owned by one gateway (several can live in one process)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "distillguard_requests",
            "Exchanges handled, by endpoint and decision",
            ["endpoint", "decision"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "distillguard_upstream_errors",
            "Upstream failures: timeout, connect, cut stream",
            ["kind"],
            registry=r,
        )
        self.shed = Counter(
            "distillguard_shed", "Requests refused because the gateway was at capacity", registry=r
        )
        self.rejected = Counter(
            "distillguard_rejected", "Requests refused by input limits", ["reason"], registry=r
        )
        self.latency = Histogram(
            "distillguard_request_seconds",
            "Time from request to the last response byte",
            ["endpoint"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.inflight = Gauge("distillguard_inflight", "Requests in progress", registry=r)
        self._request_children: dict[tuple[str, str], Counter] = {}

    def count_request(self, endpoint: str, decision: str) -> None:
        """``requests{endpoint, decision}`` + 1, with the labelled child kept: resolving
        labels costs microseconds, which the shed path is meant not to spend."""
        child = self._request_children.get((endpoint, decision))
        if child is None:
            child = self._request_children[(endpoint, decision)] = self.requests.labels(
                endpoint, decision
            )
        child.inc()

    def gauge(self, name: str, doc: str, fn: Callable[[], float]) -> None:
        """A gauge read at scrape time (state fallback, list sizes, log backlog)."""
        Gauge(name, doc, registry=self.registry).set_function(fn)

    def render(self) -> bytes:
        return generate_latest(self.registry)
