"""Fixtures of the observability tests: one in-memory span exporter for the whole process.

OpenTelemetry lets a process set its global tracer provider once, so every test that traces
shares ``EXPORTER`` and clears it first; ``traced`` turns the engine's tracing on for one
test and off again (the Django instrumentation is taken out).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from schedproject import tracing

EXPORTER = InMemorySpanExporter()


@pytest.fixture
def traced() -> Iterator[InMemorySpanExporter]:
    tracing.setup(None, exporter=EXPORTER)
    EXPORTER.clear()
    try:
        yield EXPORTER
    finally:
        tracing.shutdown()
        EXPORTER.clear()
