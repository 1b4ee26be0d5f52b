"""OpenTelemetry traces: off unless an OTLP endpoint is configured.

With ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_ENDPOINT``, to which
``/v1/traces`` is added) and without ``OTEL_SDK_DISABLED=true``, each process builds its own
``TracerProvider`` when the app is built (after gunicorn's fork: no preload, so nothing is
shared across workers) and sends spans in batches over OTLP/HTTP. Instrumented, each on this app
alone (never process-wide patching, so one app's tracing never reaches another's):

- Flask: one server span per request (excluding ``/healthz``, ``/readyz``, ``/metrics``), named
  by URL rule, with the request id (``app/observability.py``) as ``prompthub.request_id``. An
  incoming W3C ``traceparent`` is continued.
- SQLAlchemy: a span per statement on this app's engine.
- httpx: a span per provider call on the shared client (``app/llm.py``); the call runs in the
  turn's pump thread, which is started in the request's context (``chat/services.run_turn``)
  so the span is the request's child.

Unconfigured, nothing of OpenTelemetry is imported and no hook is installed: no cost at all.
The test suite hands an exporter in ``TRACING_SPAN_EXPORTER`` (an in-memory one); spans then go
to it at once instead of in batches.
"""

from __future__ import annotations

import logging

import httpx
from flask import Flask

from app.observability import ENVIRON_ID

log = logging.getLogger(__name__)

REQUEST_ID_ATTRIBUTE = "prompthub.request_id"
EXCLUDED_URLS = "/healthz,/readyz,/metrics"


def traces_endpoint(config) -> str | None:
    """The OTLP/HTTP traces URL, or None when tracing is off."""
    if config.get("OTEL_SDK_DISABLED"):
        return None
    if config.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return config["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
    base = config.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    return base.rstrip("/") + "/v1/traces" if base else None


def _tag_request(span, environ) -> None:
    if span.is_recording():
        span.set_attribute(REQUEST_ID_ATTRIBUTE, environ.get(ENVIRON_ID, "-"))


def init_app(app: Flask) -> None:
    """Call early in the factory: the request span then covers the other ``before_request``
    hooks (the bearer user's lookup, rate limits)."""
    exporter = app.config.get("TRACING_SPAN_EXPORTER")
    endpoint = traces_endpoint(app.config)
    if exporter is None and endpoint is None:
        return
    from opentelemetry.instrumentation.flask import FlaskInstrumentor
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    from app.extensions import db

    provider = TracerProvider(
        resource=Resource.create({"service.name": app.config["OTEL_SERVICE_NAME"]})
    )
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        log.info("tracing: spans go to %s", endpoint)
    app.extensions["tracer_provider"] = provider

    FlaskInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        request_hook=_tag_request,
        excluded_urls=EXCLUDED_URLS,
        enable_commenter=False,
    )
    # What ``SQLAlchemyInstrumentor().instrument(engine=...)`` does for the engine, without
    # its process-wide patch of ``create_engine`` (which would trace every later app too).
    tracer = provider.get_tracer("opentelemetry.instrumentation.sqlalchemy")
    connections = (
        NoOpMeterProvider()
        .get_meter("opentelemetry.instrumentation.sqlalchemy")
        .create_up_down_counter("db.client.connections.usage")
    )
    with app.app_context():
        EngineTracer(tracer, db.engine, connections)


def instrument_client(app: Flask, client: httpx.Client) -> None:
    """Trace ``client``'s calls when tracing is on (``app/llm.py``, as it builds the client)."""
    provider = app.extensions.get("tracer_provider")
    if provider is None:
        return
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

    HTTPXClientInstrumentor.instrument_client(client, tracer_provider=provider)


def shutdown(app: Flask) -> None:
    """Send what is buffered and stop (tests; at exit the SDK does it itself)."""
    provider = app.extensions.pop("tracer_provider", None)
    if provider is not None:
        provider.shutdown()
