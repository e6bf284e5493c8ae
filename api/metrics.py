"""Prometheus metrics of one app (its own registry, so several apps in one process stay apart).

Requests by route template and status, request latency by route, the engine's per-stage
latency, micro-batch sizes, and the active index's size and age (read when scraped).
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE  # noqa: N811 (the exposition's media type)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
CLIENT_CLOSED = 499  # nginx's status for a request whose client closed the connection before the answer


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("s2m_http_requests_total", "HTTP requests by route and status", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram("s2m_http_request_seconds", "HTTP request latency by route", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.stage_seconds = Histogram("s2m_search_stage_seconds", "search pipeline latency by stage (a batch's time)",
                                       ["stage"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("s2m_search_batch_size", "searches per micro-batch", buckets=BATCH_BUCKETS,
                                    registry=self.registry)
        self.index_size = Gauge("s2m_index_vectors", "vectors in the active index build", registry=self.registry)
        self.index_age = Gauge("s2m_index_age_seconds", "age of the active index build", registry=self.registry)

    def watch_index(self, engine: Any) -> None:
        """Read the engine's current build whenever the gauges are scraped."""
        self.index_size.set_function(lambda: engine.build.ntotal)
        self.index_age.set_function(lambda: time.time() - engine.build.created_at.timestamp())

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


__all__ = ["CONTENT_TYPE", "Metrics"]


class RequestMetricsMiddleware:
    """Pure ASGI: counts each HTTP request by route template and status and times it."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = CLIENT_CLOSED  # no answer started: the client went away first (a fault answers its own 500)

        async def sent(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.requests.labels(method=scope["method"], route=route, status=str(status)).inc()
            self.metrics.latency.labels(route=route).observe(time.perf_counter() - started)
