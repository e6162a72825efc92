"""The hand-off from the queue to a worker, on real Redis, real processes and a real
update worker: a consumer killed with SIGKILL between taking a message and recording it
(celery/celery#7950's window), or while it holds it unacknowledged, loses nothing, and a
live worker gives the message back within seconds, not after TGFLEET_REDELIVER_AFTER_S."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from tests.support.databases import query
from tests.support.envelopes import message_envelope
from tests.support.waiting import wait_until
from tgfleet.dev.host import port_open
from tgfleet.dev.processes import Child
from tgfleet.dev.services import DevServices, restart_redis
from tgfleet.platform import handoff, taskmsg
from tgfleet.platform.celery_app import make_celery
from tgfleet.platform.names import HANDLE_UPDATE, UPDATES_QUEUE
from tgfleet.platform.settings import Settings
from tgfleet.platform.taskmsg import TaskCall
from tgfleet.platform.transport import Transport

pytestmark = pytest.mark.timeout(300)

#: A consumer of ``updates`` with tgfleet's transport that kills itself with SIGKILL at
#: one instant: ``take`` once the message is taken, before it is recorded as
#: unacknowledged; ``hold`` once it is recorded, before the task would run.
DYING_CONSUMER = """
import os, signal, sys
from tgfleet.platform import transport
from tgfleet.platform.celery_app import make_celery
from tgfleet.platform.names import UPDATES_QUEUE
from tgfleet.platform.settings import Settings

def die(*_args, **_kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if sys.argv[1] == "take":
    transport.QoS.append = die
app = make_celery(Settings())
with app.connection_for_read() as connection:
    with connection.Consumer(app.amqp.queues[UPDATES_QUEUE], callbacks=[die], accept=["json"]):
        print("consuming", flush=True)
        while True:
            connection.drain_events(timeout=30)
"""


@pytest.fixture
def broker(migrated: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(migrated.redis_url)
    client.delete(UPDATES_QUEUE)
    yield client
    client.close()


def handled(settings: Settings, bot: int, text: str) -> bool:
    return bool(
        query(
            settings,
            "SELECT 1 FROM messages WHERE bot_id = %s AND direction = 'in' AND text = %s "
            "AND processed_at IS NOT NULL",
            bot,
            text,
        )
    )


def run_dying_consumer(settings: Settings, instant: str, env: dict[str, str]) -> str:
    """Start the consumer, let it take the one message waiting on ``updates`` and die;
    returns the consumer id it left in the registry."""
    before = set(broker_consumers(settings))
    child = subprocess.run(
        [sys.executable, "-c", DYING_CONSUMER, instant],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    (dead,) = set(broker_consumers(settings)) - before
    return dead


def broker_consumers(settings: Settings) -> list[str]:
    client = redis.Redis.from_url(settings.redis_url, decode_responses=True)
    try:
        return list(client.zrange(handoff.CONSUMERS_KEY, 0, -1))
    finally:
        client.close()


@pytest.mark.parametrize("instant", ["take", "hold"])
def test_a_consumer_killed_with_a_message_loses_nothing(
    instant: str,
    migrated: Settings,
    make_bot: Callable[..., dict[str, Any]],
    start_worker: Callable[..., Child],
    sim_env: dict[str, str],
    subprocess_env: dict[str, str],
    broker: redis.Redis,
) -> None:
    # Given a message on `updates`
    bot = make_bot(app="echo")["id"]
    text = f"survives a kill at {instant}"
    app = make_celery(migrated)
    taskmsg.publish(
        app, [TaskCall(HANDLE_UPDATE, UPDATES_QUEUE, args=[message_envelope(bot, 9100, 1, text)])]
    )
    # When a consumer takes it and is killed with SIGKILL before it is recorded as
    # unacknowledged ("take"), or after ("hold")
    dead = run_dying_consumer(migrated, instant, subprocess_env)
    killed_at = time.monotonic()
    # Then it is off the queue, and kept in Redis: on the dead consumer's in-flight list,
    # or unacknowledged and listed as held by it
    assert broker.llen(UPDATES_QUEUE) == 0
    if instant == "take":
        assert broker.llen(handoff.inflight_key(dead)) == 1
    else:
        assert broker.llen(handoff.inflight_key(dead)) == 0
        (tag,) = broker.smembers(handoff.held_key(dead))
        assert broker.hexists("unacked", tag)
    # And a live update worker gives it back and handles it within seconds (beat's
    # restore job would take TGFLEET_REDELIVER_AFTER_S, 120 s)
    start_worker(queues=UPDATES_QUEUE, concurrency=1, extra_env=sim_env)
    wait_until(lambda: handled(migrated, bot, text), 60, f"{text!r} to be handled")
    assert time.monotonic() - killed_at < 20
    # And the dead consumer is gone from the registry with its keys
    assert dead not in broker_consumers(migrated)
    assert not broker.exists(handoff.inflight_key(dead), handoff.held_key(dead))


def test_consuming_leaves_nothing_in_flight_or_held(
    migrated: Settings,
    make_bot: Callable[..., dict[str, Any]],
    broker: redis.Redis,
) -> None:
    # Given 50 messages on `updates` and a consumer with tgfleet's transport
    bot = make_bot(app="echo")["id"]
    app = make_celery(migrated)
    calls = [
        TaskCall(HANDLE_UPDATE, UPDATES_QUEUE, args=[message_envelope(bot, 9200, n, f"m{n}")])
        for n in range(1, 51)
    ]
    taskmsg.publish(app, calls)
    received: list[Any] = []
    with app.connection_for_read() as connection:
        assert isinstance(connection.transport, Transport)
        consumer = connection.Consumer(
            app.amqp.queues[UPDATES_QUEUE],
            callbacks=[lambda _body, message: received.append(message)],
            accept=["json"],
        )
        with consumer:
            channel = consumer.channel
            # When it takes them all
            wait_until(
                lambda: connection.drain_events(timeout=1) or len(received) == 50,
                30,
                "50 messages",
            )
            # Then each was taken onto its in-flight list and released when recorded:
            # the list is empty, and the 50 are unacknowledged and held
            inflight = handoff.inflight_key(channel.consumer_id)
            held = handoff.held_key(channel.consumer_id)
            assert broker.llen(inflight) == 0
            assert broker.scard(held) == 50
            assert channel.consumer_id in broker_consumers(migrated)
            # And acknowledging them empties the held set
            for message in received:
                message.ack()
            assert broker.scard(held) == 0
            assert broker.hlen("unacked") == 0 or not any(
                broker.hexists("unacked", m.delivery_tag) for m in received
            )
    # And a closed consumer leaves the registry
    assert channel.consumer_id not in broker_consumers(migrated)


def test_a_waiting_consumer_takes_a_new_message_at_once(
    migrated: Settings,
    make_bot: Callable[..., dict[str, Any]],
    broker: redis.Redis,
) -> None:
    # Given a consumer of `updates` and `analytics` with nothing to take (it waits)
    bot = make_bot(app="echo")["id"]
    app = make_celery(migrated)
    received: list[float] = []
    queues = [app.amqp.queues[UPDATES_QUEUE], app.amqp.queues["analytics"]]
    with app.connection_for_read() as connection:
        consumer = connection.Consumer(
            queues, callbacks=[lambda _b, m: (received.append(time.monotonic()), m.ack())]
        )
        with consumer:
            for _ in range(3):  # past the first take: now it waits on `updates`
                with contextlib.suppress(TimeoutError):
                    connection.drain_events(timeout=0.3)
            # When a message arrives on `updates`
            sent_at = time.monotonic()
            envelope = message_envelope(bot, 9300, 1, "now")
            taskmsg.publish(app, [TaskCall(HANDLE_UPDATE, UPDATES_QUEUE, args=[envelope])])
            connection.drain_events(timeout=5)
    # Then it is taken at once, not after the wait's timeout (1 s)
    assert len(received) == 1
    assert received[0] - sent_at < 0.5


def test_what_a_consumer_held_when_redis_went_away_is_given_back(
    migrated: Settings,
    make_bot: Callable[..., dict[str, Any]],
    broker: redis.Redis,
    dev_services: DevServices,
) -> None:
    # Given a consumer holding a message unacknowledged
    bot = make_bot(app="echo")["id"]
    app = make_celery(migrated)
    envelope = message_envelope(bot, 9400, 1, "held over a restart")
    taskmsg.publish(app, [TaskCall(HANDLE_UPDATE, UPDATES_QUEUE, args=[envelope])])
    received: list[Any] = []
    connection = app.connection_for_read()
    consumer = connection.Consumer(
        app.amqp.queues[UPDATES_QUEUE], callbacks=[lambda _b, m: received.append(m)]
    )
    consumer.consume()
    connection.drain_events(timeout=5)
    (message,) = received
    consumer_id = consumer.channel.consumer_id
    with contextlib.suppress(TimeoutError):  # and waiting for the next one, as a worker does
        connection.drain_events(timeout=0.2)
    assert consumer.channel._in_poll
    # When Redis goes away and the connection is cleaned up as Celery's consumer does
    # (collect, then close), which cannot give the message back
    port = int(migrated.redis_url.rsplit(":", 1)[1].split("/")[0])
    restarting = threading.Thread(target=restart_redis, args=(dev_services, 3.0))
    restarting.start()
    wait_until(lambda: not port_open(port), 20, "Redis to stop")
    with contextlib.suppress(Exception):  # Celery ignores what collect raises
        connection.collect(socket_timeout=0.25)
    connection.close()
    restarting.join()
    # And the task ends afterwards and acknowledges it through a channel whose pools kombu
    # had dropped as it closed (a pool thread finishing late: kombu raised AttributeError,
    # 'NoneType' object has no attribute 'hostname', and Celery ended the worker)
    consumer.channel._disconnect_pools()
    message.ack()
    # Then the message is still unacknowledged and held by the gone consumer
    assert broker.hexists("unacked", message.delivery_tag)
    assert broker.sismember(handoff.held_key(consumer_id), message.delivery_tag)
    # And once that consumer counts as dead, reclaiming gives it back to its queue
    with app.connection_for_write() as live:
        channel = live.default_channel
        later = time.time() + handoff.DEAD_AFTER_S + 1
        assert handoff.reclaim_dead(channel, channel.client, later).held == 1
    assert broker.llen(UPDATES_QUEUE) == 1
    assert not broker.hexists("unacked", message.delivery_tag)
