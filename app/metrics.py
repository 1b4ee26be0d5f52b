"""Prometheus metrics (prometheus-client) and the ``/metrics`` endpoint that serves them.

What is counted, and where (each a bounded set of label values, never a user, an id or a raw
path):

- requests: ``prompthub_http_requests_total{method,route,status}`` and the latency histogram
  ``prompthub_http_request_duration_seconds{method,route}``, from an ``after_request`` hook. The
  route is the URL rule (``/api/turns/<int:turn_id>/events``), ``<unmatched>`` for a URL no rule
  has; a method outside the usual set is ``OTHER``. For a streamed reply the duration is the
  time to the response headers, as in the access log; the reply's own timings are below.
- turns, once each, never per delta (the stream's hot path stays as it was): started
  (``start``, once a turn's rows are committed), finished by outcome (``services._finish``:
  ``complete``, ``incomplete``, ``stopped``, ``error``; the lease sweep adds ``interrupted``),
  time to first token by provider, duration by outcome; live turns of this process and open
  readers of turn events (gauges).
- providers: every failed attempt by provider and kind, and the fallbacks among them (the
  chain's ``observe`` callback, ``app/llm.py``).
- background work, counted when a scrape asks: PDF extractions waiting and running (from the
  rows), jobs waiting in the queue (``app/jobs.py``); the reply spool (replies waiting for the
  database).

Under gunicorn every worker is a process of its own: ``gunicorn.conf.py`` gives each node a
``PROMETHEUS_MULTIPROC_DIR``, emptied when the server starts, where prometheus-client keeps
each process's values in memory-mapped files; a scrape answered by any worker adds up every
worker's (``MultiProcessCollector``), and gauges drop a worker's share when it exits
(``child_exit`` hook, ``livesum``). Without that directory (``make run``, tests) the values
live in this process.

``/metrics`` is off (404, as if absent) until ``METRICS_TOKEN`` is set; then it answers a
request with ``Authorization: Bearer <METRICS_TOKEN>`` (compared in constant time) and 401 to
anything else, a user's API token included. It is not rate-limited (a scraper must never be
refused) and not under ``/api/`` (no session, no CSRF, not in the API document).
"""

from __future__ import annotations

import hmac
import time

from flask import Flask, Response, abort, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily

from app.observability import ENVIRON_STARTED

# No ``*_created`` series: gunicorn's multi-process mode has none, so neither has ``make run``.
disable_created_metrics()

UNMATCHED = "<unmatched>"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUESTS = Counter(
    "prompthub_http_requests",
    "HTTP requests answered, by method, route (URL rule) and status.",
    ["method", "route", "status"],
)
REQUEST_SECONDS = Histogram(
    "prompthub_http_request_duration_seconds",
    "Time to the response headers, by method and route (URL rule).",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
TURNS_STARTED = Counter("prompthub_turns_started", "Chat turns started (a reply row written).")
TURNS_FINISHED = Counter(
    "prompthub_turns_finished",
    "Chat turns finished, by outcome: complete, incomplete, stopped, error, interrupted.",
    ["outcome"],
)
TTFT_SECONDS = Histogram(
    "prompthub_turn_first_token_seconds",
    "Time from the start of a turn to its first text, by the provider that answered.",
    ["provider"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 20, 30, 60),
)
TURN_SECONDS = Histogram(
    "prompthub_turn_duration_seconds",
    "Time from the start of a turn to its stored end, by outcome.",
    ["outcome"],
    buckets=(0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300),
)
PROVIDER_ERRORS = Counter(
    "prompthub_provider_errors",
    "Failed provider attempts, by provider and kind (unavailable, timeout, rate_limited, ...).",
    ["provider", "kind"],
)
PROVIDER_FALLBACKS = Counter(
    "prompthub_provider_fallbacks",
    "Turns the chain moved on from a provider to the next, by the provider left and why.",
    ["provider", "kind"],
)
TURNS_LIVE = Gauge(
    "prompthub_turns_live",
    "Turns generating now (the broker's open turns).",
    multiprocess_mode="livesum",
)
READERS_OPEN = Gauge(
    "prompthub_turn_readers_open",
    "Readers of turn events connected now (GET /api/turns/<id>/events).",
    multiprocess_mode="livesum",
)


# --- what the features call ------------------------------------------------------------------


def turns_started(count: int = 1) -> None:
    TURNS_STARTED.inc(count)


def turn_finished(
    *,
    status: str,
    stopped: bool,
    provider: str | None,
    ttft_ms: int | None,
    total_ms: int | None,
) -> None:
    """One turn's end (``status`` is the stored ``MessageStatus`` value)."""
    outcome = "stopped" if stopped else str(status)
    TURNS_FINISHED.labels(outcome).inc()
    if ttft_ms is not None and provider:
        TTFT_SECONDS.labels(provider).observe(ttft_ms / 1000)
    if total_ms is not None:
        TURN_SECONDS.labels(outcome).observe(total_ms / 1000)


def provider_failure(attempt) -> None:
    """The chain's ``observe`` callback: one ``AttemptRecord``."""
    PROVIDER_ERRORS.labels(attempt.provider, attempt.kind).inc()
    if attempt.action == "fallback":
        PROVIDER_FALLBACKS.labels(attempt.provider, attempt.kind).inc()


# --- the endpoint ----------------------------------------------------------------------------


def route_of() -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else UNMATCHED


def _observe_request(response: Response) -> Response:
    method = request.method if request.method in METHODS else "OTHER"
    route = route_of()
    REQUESTS.labels(method, route, str(response.status_code)).inc()
    started = request.environ.get(ENVIRON_STARTED)
    if started is not None:
        REQUEST_SECONDS.labels(method, route).observe(time.perf_counter() - started)
    return response


class _SpoolCollector:
    """Replies waiting in this node's spool for the database, counted when scraped (the spool
    is a folder per node, so the answering worker sees all of it)."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self):
        from app.chat.replies import spool

        family = GaugeMetricFamily(
            "prompthub_reply_spool_files", "Replies spooled while the database was out of reach."
        )
        try:
            with self.app.app_context():
                family.add_metric([], len(spool()))
        except OSError:
            return
        yield family


class _JobsCollector:
    """Background work, counted when scraped and the same whichever process answers (the jobs
    run in ``flask worker``, often another process or machine): PDF extractions waiting and
    running, from the rows; jobs waiting in the queue (``app/jobs.py``)."""

    def __init__(self, app: Flask) -> None:
        self.app = app

    def collect(self):
        from app.files.extraction import extraction_counts
        from app.jobs import jobs

        with self.app.app_context():
            try:
                counts = extraction_counts()
            except Exception:  # the database is away: /readyz says so
                counts = None
            if counts is not None:
                waiting, running = counts
                yield GaugeMetricFamily(
                    "prompthub_extraction_queue_waiting",
                    "PDF files waiting for text extraction (pending, not running).",
                    value=waiting,
                )
                yield GaugeMetricFamily(
                    "prompthub_extraction_running", "Text extractions running now.", value=running
                )
            try:
                queued = jobs(self.app).pending()
            except Exception:  # the queue's Redis is away
                return
            yield GaugeMetricFamily(
                "prompthub_jobs_queued", "Background jobs waiting in the queue.", value=queued
            )


def _authorised(token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def multiprocess_mode() -> bool:
    """Whether prometheus-client keeps values in ``PROMETHEUS_MULTIPROC_DIR`` (it decides once,
    at import, from the process environment; ``gunicorn.conf.py`` sets it)."""
    return values.ValueClass is not values.MutexValue


def _registry(app: Flask) -> CollectorRegistry:
    if multiprocess_mode():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_Forward(REGISTRY))
    registry.register(_SpoolCollector(app))
    registry.register(_JobsCollector(app))
    return registry


class _Forward:
    """The process's default registry, inside a registry of our own (one per app, so the
    per-app spool collector never lands on the process-wide one)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self):
        return self.registry.collect()


def init_app(app: Flask) -> None:
    from app.chat import replies

    app.after_request(_observe_request)
    replies.on_interrupted(app, lambda _reply_id: TURNS_FINISHED.labels(replies.INTERRUPTED).inc())
    token = app.config.get("METRICS_TOKEN")
    registry = _registry(app)

    def metrics():
        if not token:
            abort(404)
        if not _authorised(token):
            return Response(
                "A valid metrics token is required.\n",
                401,
                {"WWW-Authenticate": 'Bearer realm="metrics"'},
                mimetype="text/plain",
            )
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)

    app.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])
