"""Spans and their context, with the SDK's in-memory exporter (tests/ops/test_tracing.py
follows one update through real processes)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tgfleet.platform import tracing


@pytest.fixture
def exported(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    monkeypatch.setattr(tracing, "_provider", provider)
    yield exporter
    provider.shutdown()


def test_with_tracing_off_nothing_is_traced_or_carried() -> None:
    with tracing.span("tgfleet.handle", "consumer"):
        assert tracing.current_traceparent() is None
    tracing.record_span("tgfleet.send", "client", 1, 2)  # (no error, nothing kept)


def test_the_next_step_is_the_child_of_the_carried_traceparent(
    exported: InMemorySpanExporter,
) -> None:
    # Given a publish whose traceparent went with the update
    with tracing.span("tgfleet.publish", "producer", attributes={"tgfleet.bot": 7}):
        carried = tracing.current_traceparent()
    assert carried is not None and tracing.TRACEPARENT.match(carried)
    # When a worker handles it, and a sender records a send that already happened
    with tracing.span("tgfleet.handle", "consumer", carried):
        written = tracing.current_traceparent()
    tracing.record_span("tgfleet.send", "client", 1_000, 5_000, written, {"tgfleet.bot": 7})
    publish, handle, send = exported.get_finished_spans()
    # Then the three are one trace, each the child of the step before
    assert handle.parent is not None and handle.parent.span_id == publish.context.span_id
    assert send.parent is not None and send.parent.span_id == handle.context.span_id
    assert len({s.context.trace_id for s in (publish, handle, send)}) == 1
    assert (send.start_time, send.end_time) == (1_000, 5_000)


def test_a_malformed_traceparent_starts_a_new_trace(exported: InMemorySpanExporter) -> None:
    with tracing.span("tgfleet.handle", "consumer", "00-garbage"):
        pass
    [handle] = exported.get_finished_spans()
    assert handle.parent is None
