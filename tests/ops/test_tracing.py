"""Traces from real processes: a bot's listener, update worker and sender export their
spans over OTLP/HTTP (the SDK's exporter, unmodified) to a receiver in the test, and one
update makes one trace: publish -> handle -> send."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tgfleet.testing import BotFactory, UserFactory
from tgfleet.testing.fleet import LocalFleet

pytestmark = pytest.mark.timeout(300)


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, object]


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP traces endpoint that keeps what it is sent."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spans: list[Span] = []
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        got = []
        for resource_spans in request.resource_spans:
            attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for s in scope.spans:
                    got.append(
                        Span(
                            attrs.get("service.name", ""),
                            s.name,
                            s.trace_id.hex(),
                            s.span_id.hex(),
                            s.parent_span_id.hex(),
                            {a.key: _value(a.value) for a in s.attributes},
                        )
                    )
        with self.server.lock:
            self.server.spans += got
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _value(value: object) -> object:
    kind = value.WhichOneof("value")  # type: ignore[attr-defined]
    return getattr(value, kind) if kind else None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_one_update_is_one_trace_from_publish_to_send(
    receiver: Receiver,
    tgfleet_fleet: LocalFleet,
    tgfleet_bot: BotFactory,
    tgfleet_user: UserFactory,
) -> None:
    # Given a bot whose processes trace, exporting to the receiver
    tgfleet_fleet.group.env.update(
        TGFLEET_TRACING="true",
        OTEL_EXPORTER_OTLP_ENDPOINT=f"http://127.0.0.1:{receiver.server_port}",
        OTEL_BSP_SCHEDULE_DELAY="100",
    )
    bot = tgfleet_bot(app="echo")
    # When a user's message is answered
    ann = tgfleet_user("Ann")
    ann.send("trace me")
    ann.expect_reply("trace me")

    # Then the three processes exported one trace: publish -> handle -> send
    def spans() -> dict[str, Span]:
        with receiver.lock:
            return {s.name: s for s in receiver.spans if s.attributes.get("tgfleet.bot") == bot.id}

    deadline = time.monotonic() + 30
    while len(spans()) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    found = spans()
    assert set(found) == {"tgfleet.publish", "tgfleet.handle", "tgfleet.send"}, found
    publish, handle, send = (
        found[n] for n in ("tgfleet.publish", "tgfleet.handle", "tgfleet.send")
    )
    assert publish.trace_id == handle.trace_id == send.trace_id
    assert handle.parent_id == publish.span_id and send.parent_id == handle.span_id
    assert (publish.service, handle.service, send.service) == (
        "tgfleet-listener",
        "tgfleet-worker",
        "tgfleet-worker",
    )
    assert send.attributes["tgfleet.outcome"] == "sent"
    assert handle.attributes["tgfleet.kind"] == "message"
