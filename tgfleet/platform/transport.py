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

Consuming itself is tgfleet's too: a message is taken off its queue onto the consumer's
in-flight list in one step and released from it when kombu records it as unacknowledged,
and what a dead consumer held is given back within seconds (``platform/handoff.py``).
kombu's ``BRPOP`` took a message into the worker's memory first, and a worker killed in
that instant lost it (celery/celery#7950).

``celeryconfig.broker_transport`` names ``Transport``, so every tgfleet process (workers,
beat, listeners, the CLI) uses it; only consuming differs from kombu's. kombu no longer
picks the transport from the URL's scheme then, and with it went its reading of
``rediss://`` as TLS: ``broker_ssl`` gives that back (``make_celery``).
"""

from __future__ import annotations

import contextlib
import logging
import ssl
import time
from queue import Empty
from typing import Any
from urllib.parse import urlparse

from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import Channel as VirtualChannel
from kombu.transport.virtual import QoS as VirtualQoS
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads

from tgfleet.platform import handoff
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


class QoS(kombu_redis.QoS):
    """kombu's Redis QoS; recording a message as unacknowledged also releases it from the
    consumer's in-flight list and lists it as held (reclaimable queues), in the same
    ``MULTI``; the acknowledgement drops it from the held set."""

    channel: Channel

    # kombu's QoS.append, with the in-flight release and the held set in its pipeline.
    def append(self, message: Any, delivery_tag: str) -> None:
        delivery = message.delivery_info
        EX, RK = delivery["exchange"], delivery["routing_key"]
        channel = self.channel
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(self.unacked_index_key, {delivery_tag: time.time()}).hset(
                self.unacked_key, delivery_tag, dumps([message._raw, EX, RK])
            )
            if channel._taken is not None:
                pipe.lrem(handoff.inflight_key(channel.consumer_id), 1, channel._taken)
            if RK in handoff.RECLAIMABLE_QUEUES:
                pipe.sadd(handoff.held_key(channel.consumer_id), delivery_tag)
            pipe.execute()
            channel._taken = None
            VirtualQoS.append(self, message, delivery_tag)

    def _connection_gone(self) -> bool:
        """True once Celery closed the connection this channel came on (the broker went
        away): kombu would reconnect from its settings, which are gone, and raise
        ``AttributeError: 'NoneType' object has no attribute 'hostname'`` (or
        ``'client'``), which ended the worker."""
        transport = self.channel.connection
        return transport is None or transport.client is None

    def restore_unacked(self, client: Any = None) -> None:
        """kombu's; not once the connection is gone (a channel closed again after the
        broker went away). The messages stay unacknowledged and held: a live consumer
        gives them back once this one is dead."""
        if client is None and self._connection_gone():
            if self._delivered:
                log.warning(
                    "%d unacknowledged message(s) left to be reclaimed: the broker connection "
                    "is gone",
                    len(self._delivered),
                )
            self._delivered.clear()
            return
        super().restore_unacked(client)

    def ack(self, delivery_tag: str) -> None:
        """kombu's; a task that ends after its connection is gone (a thread of the pool
        finishing after Redis went away) cannot be acknowledged: it stays held, is given
        back once its consumer counts as dead, and its second run finds its work done."""
        try:
            super().ack(delivery_tag)
        except AttributeError:
            if not self._connection_gone():
                raise
            log.info("not acknowledged, connection gone (delivered again): %s", delivery_tag)

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        try:
            super().reject(delivery_tag, requeue)
        except AttributeError:
            if not self._connection_gone():
                raise
            log.info("not rejected, connection gone (delivered again): %s", delivery_tag)

    def _remove_from_indices(self, delivery_tag: str, pipe: Any = None) -> Any:
        with self.pipe_or_acquire(pipe) as pipe:
            return (
                pipe.zrem(self.unacked_index_key, delivery_tag)
                .hdel(self.unacked_key, delivery_tag)
                .srem(handoff.held_key(self.channel.consumer_id), delivery_tag)
            )


class Channel(kombu_redis.Channel):
    """kombu's Redis channel; a message it cannot deliver is set aside, not raised; a
    message is taken with ``handoff.TAKE``, never popped into memory alone."""

    QoS = QoS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.consumer_id = handoff.new_consumer_id()
        #: The raw message taken onto the in-flight list and not yet recorded.
        self._taken: bytes | None = None
        #: True: the next poll (and the one in flight) waits for a message, not takes one.
        self._wait_next = False
        #: When this consumer last wrote its heartbeat; 0: not in the registry.
        self._beat_at = 0.0
        self._reclaim_at = 0.0
        super().__init__(*args, **kwargs)
        options = self.connection.client.transport_options
        #: False: kombu's own BRPOP (``TGFLEET_BROKER_HANDOFF=false``, or a global key
        #: prefix, which tgfleet does not set).
        self._handoff = bool(options.get("tgfleet_handoff", True)) and not self.global_keyprefix

    def handoff_tick(self, client: Any = None) -> None:
        """Heartbeat; every ``RECLAIM_EVERY_S``, give back what dead consumers held."""
        now = time.time()
        with self.conn_or_acquire(client) as redis_client:
            handoff.heartbeat(redis_client, self.consumer_id, now)
            self._beat_at = now
            if now >= self._reclaim_at:
                self._reclaim_at = now + handoff.RECLAIM_EVERY_S
                handoff.reclaim_dead(self, redis_client, now)

    def _brpop_start(self, timeout: float | None = None) -> None:
        if not self._handoff:
            super()._brpop_start(timeout)
            return None
        if timeout is None:
            timeout = self.brpop_timeout
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return None
        if time.time() - self._beat_at > handoff.HEARTBEAT_S:
            self.handoff_tick()  # registered before the first take; beats without a loop
        connection = self.client.connection
        self._in_poll = connection
        self._brpop_sent_at = time.monotonic()  # type: ignore[assignment]  # (kombu: None)
        if self._wait_next:
            key = handoff.wait_key(queues)
            connection.send_command("BLMOVE", key, key, "RIGHT", "RIGHT", timeout or 0)
        else:
            keys = [self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues]
            inflight = handoff.inflight_key(self.consumer_id)
            connection.send_command("EVAL", handoff.TAKE, 1 + len(keys), inflight, *keys)
        return None

    def _release_taken(self) -> None:
        """Take a message that was not recorded (set aside, or refused by kombu) off the
        in-flight list; if Redis cannot be told, leave it there under an id that stops
        beating, for a live consumer to give back."""
        taken, self._taken = self._taken, None
        if taken is None:
            return
        try:
            with self.conn_or_acquire() as client:
                client.lrem(handoff.inflight_key(self.consumer_id), 1, taken)
        except Exception:
            self.consumer_id, self._beat_at = handoff.new_consumer_id(), 0.0

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

    # kombu's Channel._brpop_read, with ``self._decoded`` for ``loads(bytes_to_str(item))``,
    # reading what ``_brpop_start`` sent: a take, or a wait for one.
    def _brpop_read(self, **options: Any) -> bool:
        if self._handoff:
            return self._take_read(**options)
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

    def _take_read(self, **options: Any) -> bool:
        command = "BLMOVE" if self._wait_next else "EVAL"  # what _brpop_start sent
        try:
            try:
                reply = self.client.parse_response(self.client.connection, command, **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if command == "BLMOVE":  # a message came, or the wait ended: take next
                self._wait_next = False
                raise Empty()
            if not reply:
                self._wait_next = True
                raise Empty()
            source, item = reply
            dest = bytes_to_str(source).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            self._taken = item
            try:
                message = self._decoded(item, dest)
                if message is None:
                    raise Empty()  # set aside; the loop goes on
                self.connection._deliver(message, dest)
            finally:
                self._release_taken()  # a no-op once QoS.append recorded it
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]  # (kombu sets None)
            self._flush_brpop_reauth()

    def close(self) -> None:
        """kombu's close; a consumer leaves the registry first (what it held unacknowledged
        kombu gives back as it closes)."""
        if not self.closed and self._beat_at and self._handoff:
            if self._in_poll:  # kombu's close reads it too; read it before leaving
                with contextlib.suppress(Empty):
                    self._brpop_read()
            try:
                with self.conn_or_acquire() as client:
                    handoff.leave(self, client, self.consumer_id)
            except Exception:  # Redis is gone: a live consumer reclaims it when it is dead
                log.debug("consumer %s left without unregistering", self.consumer_id)
            self._beat_at = 0.0
        super().close()

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
    """kombu's Redis transport with ``Channel``; consuming channels beat and reclaim on
    the event loop's timer."""

    Channel = Channel

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        super().register_with_event_loop(connection, loop)
        cycle: Any = self.cycle
        old = getattr(cycle, "_handoff_tref", None)
        if old is not None:
            old.cancel()
        cycle._handoff_tref = loop.call_repeatedly(handoff.HEARTBEAT_S, self._handoff_tick)

    def _handoff_tick(self) -> None:
        cycle: Any = self.cycle
        for channel in list(cycle._channels):
            if channel.active_queues and channel._handoff and not channel.closed:
                try:
                    channel.handoff_tick()
                except Exception as exc:  # Redis away: the consuming side reconnects
                    log.debug("consumer heartbeat failed: %r", exc)


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
