"""Spans of the worker's workflow tasks and activities, when OpenTelemetry is there.

The SDK does not need OpenTelemetry: without ``opentelemetry-api`` installed, or with no
tracer provider configured by the application, ``span()`` is a no-op context manager. With
one, each workflow task and activity attempt is a span whose parent is the ``traceparent``
the engine copied into the task message (the trace of the request that started the run), so
a workflow's spans join its caller's trace.

``configure_from_env()`` is for the ``python -m sdk.worker`` command: it installs an OTLP/HTTP
exporter to ``SCHED_OTLP_ENDPOINT`` if that is set and ``opentelemetry-sdk`` is installed.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

logger = logging.getLogger("sched.worker")

try:
    from opentelemetry import trace as _trace
    from opentelemetry.trace import ProxyTracerProvider, SpanKind, Status, StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _PROPAGATOR: Any = TraceContextTextMapPropagator()
except ImportError:  # pragma: no cover - exercised where OpenTelemetry is absent
    _trace = None  # type: ignore[assignment]

Attributes = Mapping[str, str | int | bool]


def tracing() -> bool:
    """Whether spans are recorded: OpenTelemetry is installed and a provider is set."""
    return _trace is not None and not isinstance(_trace.get_tracer_provider(),
                                                 ProxyTracerProvider)


class _Span:
    """What the body of ``span()`` can do to its span."""

    def __init__(self, span: Any = None) -> None:
        self._span = span

    def fail(self, message: str) -> None:
        if self._span is not None:
            self._span.set_status(Status(StatusCode.ERROR, message[:200]))


@contextlib.contextmanager
def span(name: str, traceparent: str | None, attributes: Attributes) -> Iterator[_Span]:
    """A span named ``name`` under ``traceparent`` (a new trace if None), if tracing."""
    if not tracing():
        yield _Span()
        return
    parent = _PROPAGATOR.extract({"traceparent": traceparent}) if traceparent else None
    tracer = _trace.get_tracer("sched.worker")
    with tracer.start_as_current_span(name, context=parent, kind=SpanKind.CONSUMER,
                                      attributes=dict(attributes)) as current:
        yield _Span(current)


def configure_from_env(service_name: str = "sched-worker") -> bool:
    """Export spans to ``$SCHED_OTLP_ENDPOINT`` (OTLP/HTTP). Returns whether tracing is on."""
    endpoint = os.environ.get("SCHED_OTLP_ENDPOINT")
    if not endpoint or _trace is None:
        return False
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        logger.warning("SCHED_OTLP_ENDPOINT is set but opentelemetry-sdk and "
                       "opentelemetry-exporter-otlp-proto-http are not installed")
        return False
    endpoint = endpoint.rstrip("/")
    if not endpoint.endswith("/v1/traces"):
        endpoint += "/v1/traces"
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint)))
    _trace.set_tracer_provider(provider)
    return True
