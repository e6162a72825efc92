"""The broker transport: kombu's Redis transport, setting poison messages aside.

kombu's Redis transport pops a message off a queue's list (``BRPOP``) and decodes it
before anything else sees it. A message that is not a kombu message (bytes that are not
JSON, a half-written one, JSON of another shape) raised out of the worker's event loop,
and Celery ended the worker (``Unrecoverable error: JSONDecodeError``) or reconnected,
with the message gone either way. ``Channel`` decodes each message itself where kombu
reads one off a queue (``_brpop_read``: consumers; ``_get``: ``basic_get``) and checks
that kombu can deliver it (``decode_message``). One that fails is set aside with its
reason and raw bytes (``platform/poison.py``), and the worker consumes on.

``_brpop_read`` and ``_get`` are kombu's own with that one step swapped in;
``tests/unit/platform/test_transport.py`` pins kombu's versions of them, so an upgrade of
kombu that changes them fails a test instead of losing the guard unseen. Broadcasts
(remote control: ``celery inspect``, ``tgfleet status``'s ping) come through
``_deliver_fanout_message``: kombu already drops one that is not JSON, with a warning;
one that is JSON but no kombu message is set aside here too.

``celeryconfig.broker_transport`` names ``Transport``, so every tgfleet process (workers,
beat, listeners, the CLI) uses it; only consuming differs from kombu's. kombu no longer
picks the transport from the URL's scheme then, and with it went its reading of
``rediss://`` as TLS: ``broker_ssl`` gives that back (``make_celery``).
"""

from __future__ import annotations

import logging
import ssl
from queue import Empty
from typing import Any
from urllib.parse import urlparse

from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import Channel as VirtualChannel
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

from tgfleet.platform.poison import PoisonMessage, log_lost, set_aside

log = logging.getLogger(__name__)

#: JSON's names of what a payload decoded to, for reasons.
_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number"}


class NotAMessage(ValueError):
    """Raw bytes off a queue that kombu cannot deliver; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_message(raw: bytes | str) -> dict[str, Any]:
    """The kombu message in ``raw``, as kombu's Redis transport decodes it; raises
    ``NotAMessage`` when there is none (``message_problem``)."""
    try:
        payload = loads(bytes_to_str(raw))
    except Exception as exc:  # JSONDecodeError, RecursionError on absurd nesting, ...
        raise NotAMessage(f"not JSON: {exc}") from None
    problem = message_problem(payload)
    if problem is not None:
        raise NotAMessage(f"not a kombu message: {problem}")
    return payload


def message_problem(payload: Any) -> str | None:
    """What in a decoded message would make kombu fail while delivering it, before
    Celery sees it (``virtual.Message`` reads the properties, the delivery tag and the
    body, ``QoS.append`` records the delivery info); None when there is nothing."""
    if not isinstance(payload, dict):
        return f"a JSON {_JSON_TYPES.get(type(payload), 'value')}, not an object"
    properties = payload.get("properties")
    if not isinstance(properties, dict):
        return "no properties object"
    tag = properties.get("delivery_tag")
    if not isinstance(tag, str | int | float) or isinstance(tag, bool):
        return f"no usable delivery tag ({tag!r:.60})"
    info = properties.get("delivery_info")
    if not isinstance(info, dict) or "exchange" not in info or "routing_key" not in info:
        return "no delivery info with an exchange and a routing key"
    headers = payload.get("headers")
    if headers and not isinstance(headers, dict):
        return "headers are not an object"
    body, encoding = payload.get("body"), properties.get("body_encoding")
    if body and encoding and str(encoding).lower() != "utf-8":
        codec = VirtualChannel.codecs.get(encoding)
        if codec is None:
            return f"unknown body encoding {encoding!r:.60}"
        try:
            codec.decode(body)
        except Exception as exc:
            return f"body is not {encoding}: {exc!r:.200}"
    return None


class Channel(kombu_redis.Channel):
    """kombu's Redis channel; a message it cannot deliver is set aside, not raised."""

    def _set_aside(self, message: PoisonMessage, client: Any = None) -> None:
        try:
            with self.conn_or_acquire(client) as redis_client:
                set_aside(redis_client, message)
        except Exception as exc:
            log_lost(message, exc)
            if isinstance(exc, self.connection_errors):
                raise  # Redis has gone: kombu reconnects, as after any failed read

    def _decoded(self, raw: bytes, queue: str, client: Any = None) -> dict[str, Any] | None:
        """The kombu message in ``raw``, or None when it held none (then set aside)."""
        try:
            return decode_message(raw)
        except NotAMessage as exc:
            self._set_aside(PoisonMessage.of(raw, exc.reason, queue), client)
            return None

    # kombu's Channel._brpop_read, with ``self._decoded`` for ``loads(bytes_to_str(item))``.
    def _brpop_read(self, **options: Any) -> bool:
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                # if there's a ConnectionError, disconnect so the next
                # iteration will reconnect automatically.
                self.client.connection.disconnect()
                raise
            if dest__item:
                dest, item = dest__item
                dest = bytes_to_str(dest).rsplit(self.sep, 1)[0]
                self._queue_cycle.rotate(dest)
                message = self._decoded(item, dest)
                if message is None:
                    raise Empty()  # as after a BRPOP that timed out: the loop goes on
                self.connection._deliver(message, dest)
                return True
            else:
                raise Empty()
        finally:
            self._in_poll = None  # type: ignore[assignment]  # (kombu sets None)
            # The BRPOP connection is now idle (its reply has been fully
            # consumed and no new BRPOP has been issued yet): this is the
            # safe moment to flush any pending streaming re-auth token.
            self._flush_brpop_reauth()

    # kombu's Channel._get, with ``self._decoded``: a poison message is set aside and the
    # next one is taken.
    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        with self.conn_or_acquire() as client:
            for pri in self.priority_steps:
                while item := client.rpop(self._q_for_pri(queue, pri)):
                    self._maybe_update_queues_expire(client, queue)
                    message = self._decoded(item, queue, client)
                    if message is not None:
                        return message

            self._maybe_update_queues_expire(client, queue)
            raise Empty()

    def _deliver_fanout_message(self, message: Any, exchange: str) -> bool:
        problem = message_problem(message)
        if problem is not None:
            raw = dumps(message).encode()
            self._set_aside(PoisonMessage.of(raw, f"not a kombu message: {problem}", exchange))
            return False
        return bool(super()._deliver_fanout_message(message, exchange))


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with ``Channel``."""

    Channel = Channel


def broker_ssl(url: str) -> dict[str, Any] | None:
    """TLS options for the broker at ``url``, as kombu gives them when the URL's scheme
    picks the transport: TLS for ``rediss://``, certificates checked as the URL's
    ``ssl_cert_reqs`` says (its ``ssl_*`` parameters take precedence over these), else
    not checked, kombu's default, with kombu's warning; None for ``redis://``."""
    if urlparse(url).scheme != "rediss":
        return None
    if "ssl_cert_reqs=" not in url:
        log.warning(
            "Secure redis scheme specified (rediss) with no ssl options, "
            "defaulting to insecure SSL behaviour."
        )
    return {"ssl_cert_reqs": ssl.CERT_NONE}
