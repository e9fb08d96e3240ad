"""OpenTelemetry tracing of the engine, on only when ``SCHED_OTLP_ENDPOINT`` is set.

``setup()`` (called once from ``WorkflowsConfig.ready``) installs a tracer provider that
exports over OTLP/HTTP and instruments Django, so every HTTP request is a span, joined to the
caller's trace when the request carries a W3C ``traceparent`` header. The start request's
trace context is stored with the run (``current_traceparent()``) and copied into every task
message, so the worker's spans of a workflow's tasks and activities join the same trace.

When the endpoint is unset nothing is imported, no provider is installed and Django is not
instrumented: ``enabled()`` is one global read and ``current_traceparent()`` returns None.

Process state: ``_provider``, set once by ``setup()`` and read by every span.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger("sched.tracing")
SERVICE_NAME = "sched-engine"

_provider: TracerProvider | None = None


def enabled() -> bool:
    return _provider is not None


def traces_url(endpoint: str) -> str:
    """``http://collector:4318`` -> ``http://collector:4318/v1/traces`` (kept if given)."""
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.endswith("/v1/traces") else endpoint + "/v1/traces"


def setup(endpoint: str | None, *, exporter: SpanExporter | None = None,
          service_name: str = SERVICE_NAME) -> bool:
    """Trace to ``endpoint`` (or to ``exporter``, synchronously: for tests). Returns whether
    tracing is on. Does nothing when both are None or tracing is already on."""
    global _provider
    if _provider is not None or (endpoint is None and exporter is None):
        return _provider is not None
    from opentelemetry import trace
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        assert endpoint is not None
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(traces_url(endpoint))))
    # The global provider can be set once per process; our own spans and Django's use
    # ``provider`` directly, so a second setup (tests) still traces to its exporter.
    trace.set_tracer_provider(provider)
    DjangoInstrumentor().instrument(tracer_provider=provider)
    _provider = provider
    log.info("tracing to %s", traces_url(endpoint) if endpoint else type(exporter).__name__)
    return True


def shutdown() -> None:
    """Stop tracing: flush, and take the Django instrumentation out again (tests)."""
    global _provider
    if _provider is None:
        return
    from opentelemetry.instrumentation.django import DjangoInstrumentor

    DjangoInstrumentor().uninstrument()
    _provider.force_flush()
    _provider = None


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span (e.g. the start request's), if tracing."""
    if _provider is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) of the current span, in hex, for log lines; None if none."""
    if _provider is None:
        return None
    from opentelemetry import trace

    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"
