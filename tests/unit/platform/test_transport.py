"""The broker transport's decode step: what kombu can deliver is decoded as kombu would,
anything else is refused with a reason (and set aside by the channel); kombu's methods
the channel copies are pinned."""

from __future__ import annotations

import hashlib
import inspect
import json
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kombu import Connection, Producer
from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import base as virtual
from kombu.utils.imports import symbol_by_name

import celeryconfig
from tgfleet.platform.celery_app import make_celery
from tgfleet.platform.settings import Settings
from tgfleet.platform.transport import (
    NotAMessage,
    Transport,
    broker_ssl,
    decode_message,
    message_problem,
)

#: kombu's code that ``tgfleet.platform.transport`` copies or mirrors, by a hash of its
#: source. A kombu upgrade that changes one fails here: compare the new source with
#: ``Channel._brpop_read`` / ``_get`` / ``_deliver_fanout_message`` and
#: ``message_problem``, and ``Channel._brpop_start`` / ``_take_read`` / ``close`` /
#: ``QoS.append`` / ``_remove_from_indices`` (the hand-off, ``platform/handoff.py``), carry
#: the change over, then update the hash.
KOMBU_PINNED = {
    kombu_redis.Channel._brpop_start: "06723d707ddf2240",
    kombu_redis.Channel._brpop_read: "c42518699709f2df",
    kombu_redis.Channel.close: "101e9b9cdad44b88",
    kombu_redis.Channel._do_restore_message: "8b430df94e45b5b0",
    kombu_redis.QoS._remove_from_indices: "980a109d54ad9136",
    kombu_redis.QoS.restore_unacked: "8954efef014d546e",
    kombu_redis.QoS.ack: "1bc15a4ddf541af6",
    kombu_redis.QoS.reject: "747a02434344d1a6",
    kombu_redis.Channel._get: "be26a9f1eb4cf8da",
    kombu_redis.Channel._deliver_fanout_message: "06662335a70a5b62",
    kombu_redis.QoS.append: "35c655f6ecc62fe6",
    virtual.Message.__init__: "c90d08ccfa2e3e9a",
}


@pytest.fixture
def memory_channel() -> Iterator[Any]:
    """A kombu channel of the in-memory transport (no service): it builds messages the
    way every virtual transport, Redis's included, does."""
    with Connection("memory://") as connection:
        yield connection.channel()


@pytest.fixture
def kombu_message(memory_channel: Any) -> Callable[..., dict[str, Any]]:
    """Factory: the raw message kombu publishes for ``body`` (what Redis holds, decoded)."""

    def publish(body: Any) -> dict[str, Any]:
        Producer(memory_channel).publish(body, routing_key="q", serializer="json")
        raw: dict[str, Any] = memory_channel._get("q")
        return raw

    return publish


@pytest.mark.parametrize("source", sorted(KOMBU_PINNED, key=lambda f: f.__qualname__))
def test_kombus_code_the_channel_copies_is_the_code_it_was_written_against(source: Any) -> None:
    digest = hashlib.sha256(inspect.getsource(source).encode()).hexdigest()[:16]
    assert digest == KOMBU_PINNED[source], f"kombu's {source.__qualname__} changed"


def test_a_message_kombu_published_decodes_as_kombu_decodes_it(
    kombu_message: Callable[..., dict[str, Any]],
) -> None:
    # Given the bytes of a message kombu published
    message = kombu_message({"hello": "wörld"})
    raw = json.dumps(message).encode()
    # Then they decode to the same message, bytes or text
    assert decode_message(raw) == message
    assert decode_message(raw.decode()) == message


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\x00garbage", "not JSON: Expecting value"),
        (b'{"body": "eyJ", "properties": {"delivery_t', "not JSON: Unterminated string"),
        (b"", "not JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
        (b"[1, 2]", "not a kombu message: a JSON array, not an object"),
        (b'"hello"', "not a kombu message: a JSON string, not an object"),
        (b"null", "not a kombu message: a JSON value, not an object"),
        (b"{}", "not a kombu message: no properties object"),
    ],
)
def test_bytes_that_are_no_kombu_message_are_refused_with_the_reason(
    raw: bytes, reason: str
) -> None:
    with pytest.raises(NotAMessage) as refused:
        decode_message(raw)
    assert refused.value.reason.startswith(reason), refused.value.reason


def _broken(message: dict[str, Any], how: str) -> dict[str, Any]:
    """``message`` with one thing kombu needs taken away or spoilt."""
    broken = json.loads(json.dumps(message))
    properties = broken["properties"]
    if how == "no delivery tag":
        del properties["delivery_tag"]
    elif how == "a delivery tag kombu cannot store":
        properties["delivery_tag"] = {"a": 1}
    elif how == "no delivery info":
        del properties["delivery_info"]
    elif how == "no routing key":
        del properties["delivery_info"]["routing_key"]
    elif how == "headers that are a list":
        broken["headers"] = ["task"]
    elif how == "a body that is not base64":
        broken["body"] = "abc"
    elif how == "an unknown body encoding":
        properties["body_encoding"] = "rot13"
    elif how == "properties that are a list":
        broken["properties"] = [properties]
    return broken


BREAKAGES = [
    "no delivery tag",
    "a delivery tag kombu cannot store",
    "no delivery info",
    "no routing key",
    "headers that are a list",
    "a body that is not base64",
    "an unknown body encoding",
    "properties that are a list",
]


def _kombu_delivers(payload: dict[str, Any], channel: Any) -> None:
    """What kombu's Redis channel does with a decoded message before Celery sees it: build
    the message (``virtual.Message``) and record it as unacknowledged (``QoS.append``
    reads the delivery info and stores the tag as a Redis hash field)."""
    message = channel.Message(payload, channel=channel)
    delivery = message.delivery_info
    _ = delivery["exchange"], delivery["routing_key"]  # what QoS.append reads
    if not isinstance(message.delivery_tag, str | int | float):
        raise TypeError(f"Redis cannot store the tag {message.delivery_tag!r}")


@pytest.mark.parametrize("how", BREAKAGES)
def test_a_message_kombu_cannot_deliver_is_refused_and_kombu_indeed_cannot(
    kombu_message: Callable[..., dict[str, Any]], memory_channel: Any, how: str
) -> None:
    # Given a message kombu published, and one thing about it spoilt
    message = kombu_message(["args"])
    _kombu_delivers(message, memory_channel)
    broken = _broken(message, how)
    # Then the decode step refuses it, saying it is no kombu message
    problem = message_problem(broken)
    assert problem is not None
    with pytest.raises(NotAMessage, match="not a kombu message"):
        decode_message(json.dumps(broken))
    # And kombu, given it, would have raised out of the worker's loop
    with pytest.raises(Exception):  # noqa: B017 (KeyError, TypeError, binascii.Error, ...)
        _kombu_delivers(broken, memory_channel)


def test_every_tgfleet_process_uses_the_transport_and_the_consumer(
    make_settings: Callable[..., Settings],
) -> None:
    # Given the app as every tgfleet process builds it
    app = make_celery(make_settings())
    # Then its broker connection uses tgfleet's transport (no connection is opened)
    assert app.connection_for_write().get_transport_cls() is Transport
    # And its workers use tgfleet's consumer
    consumer = symbol_by_name(app.conf.worker_consumer)
    assert consumer.__module__ == "tgfleet.platform.consumer"
    assert app.conf.worker_consumer == celeryconfig.worker_consumer


@pytest.mark.parametrize(
    ("url", "cert_reqs"),
    [
        ("redis://redis.invalid:6379/0", None),
        ("rediss://redis.invalid:6380/0", ssl.CERT_NONE),
        ("rediss://redis.invalid:6380/0?ssl_cert_reqs=required", ssl.CERT_REQUIRED),
    ],
)
def test_rediss_still_means_tls(
    make_settings: Callable[..., Settings], url: str, cert_reqs: ssl.VerifyMode | None
) -> None:
    # Given a broker URL, When the app makes its connection (kombu picks the transport from
    # the URL's scheme no longer, so it does not read rediss:// as TLS itself)
    connection = make_celery(make_settings(REDIS_URL=url)).connection_for_write()
    # Then TLS is on exactly for rediss://, verified as kombu would have it verified
    assert connection.get_transport_cls() is Transport
    if cert_reqs is None:
        assert not connection.ssl and broker_ssl(url) is None
    else:
        assert connection.ssl == {"ssl_cert_reqs": cert_reqs}
        assert Connection(url).ssl == connection.ssl  # kombu's own reading of the URL
