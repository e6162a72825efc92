"""Traces (OpenTelemetry, off by default): one trace per update, from the listener's
publish through the update worker's handling to each reply's send.

``TGFLEET_TRACING=true`` (with ``pip install 'tgfleet[tracing]'``) makes each process
export its spans over OTLP/HTTP to ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the SDK's own
variables apply: ``OTEL_SERVICE_NAME``, ``OTEL_EXPORTER_OTLP_HEADERS``, ...). The
context travels with the work itself, as a W3C ``traceparent``: in the update's envelope
(``tp``), then in each outbox row the handler wrote (``outbox.trace_parent``). Celery
headers would lose it where tgfleet's work leaves Celery: the listener publishes raw task
messages, and a reply waits in PostgreSQL (a scheduled send for days) before a sender,
maybe after a restart, takes it.

Spans: ``tgfleet.publish`` (listener, producer), ``tgfleet.handle`` (update worker,
consumer; its child by the envelope), ``tgfleet.send`` (sender, client; a child of the
handling that wrote the row). With tracing off every call here is a no-op and
OpenTelemetry is not imported.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Mapping
from typing import Any

from tgfleet.platform.errors import ConfigError
from tgfleet.platform.settings import Settings

log = logging.getLogger(__name__)

#: A W3C traceparent: version, trace id, parent span id, flags.
TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")

_tracer: Any = None
_provider: Any = None


def configure(settings: Settings, role: str) -> bool:
    """Set up this process's exporter when ``TGFLEET_TRACING`` is on (True then)."""
    global _tracer, _provider
    if not settings.tracing or _tracer is not None:
        return _tracer is not None
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        raise ConfigError(
            f"TGFLEET_TRACING is on but OpenTelemetry is not installed ({exc.name}): "
            "pip install 'tgfleet[tracing]', or unset TGFLEET_TRACING"
        ) from None
    resource = Resource.create({"service.name": f"tgfleet-{role}", "tgfleet.role": role})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _provider, _tracer = provider, provider.get_tracer("tgfleet")
    log.info("traces of this %s go over OTLP (OTEL_EXPORTER_OTLP_ENDPOINT)", role)
    # the SDK's own context API: make this provider the global one for libraries too
    trace.set_tracer_provider(provider)
    return True


def shutdown() -> None:
    """Export what is still buffered (at a process's end)."""
    if _provider is not None:
        _provider.shutdown()


def flush() -> None:
    """Export what is buffered now (a pool process about to exit)."""
    if _provider is not None:
        _provider.force_flush()


@contextlib.contextmanager
def span(
    name: str,
    kind: str,
    parent: str | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[None]:
    """A span named ``name`` (``kind``: producer, consumer, client, internal), the child
    of ``parent`` (a traceparent) if given, current while the block runs."""
    if _tracer is None:
        yield
        return
    from opentelemetry.trace import SpanKind

    with _tracer.start_as_current_span(
        name,
        context=_context(parent),
        kind=SpanKind[kind.upper()],
        attributes=dict(attributes or {}),
    ):
        yield


def record_span(
    name: str,
    kind: str,
    start_ns: int,
    end_ns: int,
    parent: str | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> None:
    """A span that already happened (one message of a batch sent together)."""
    if _tracer is None:
        return
    from opentelemetry.trace import SpanKind

    done = _tracer.start_span(
        name,
        context=_context(parent),
        kind=SpanKind[kind.upper()],
        attributes=dict(attributes or {}),
        start_time=start_ns,
    )
    done.end(end_time=end_ns)


def current_traceparent() -> str | None:
    """The traceparent of the current span, to carry to the next step (None: no trace)."""
    if _tracer is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


def _context(parent: str | None) -> Any:
    if parent is None or not TRACEPARENT.match(parent):
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({"traceparent": parent})
