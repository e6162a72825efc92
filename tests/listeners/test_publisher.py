"""The listener's publisher on a real Redis: Celery task messages, FIFO, callbacks only
after the publish, bounded back-pressure while Redis is down, drain before stopping.

Each test runs its own redis-server (not the session's), so stopping it disturbs nobody.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.waiting import wait_until, wait_until_async
from tgfleet.dev.host import find_redis_server, free_port, port_open
from tgfleet.listeners.publisher import (
    ENVELOPES_PER_TASK,
    MAX_BATCH,
    Publisher,
    QueuedEnvelopes,
    _Message,
    envelopes_in,
    task_messages,
)
from tgfleet.platform.celery_app import make_celery
from tgfleet.platform.names import HANDLE_UPDATE, HANDLE_UPDATE_BATCH, RECORD_ENTITIES
from tgfleet.platform.queues import PUBLISHED_AT_HEADER
from tgfleet.platform.settings import Settings

pytestmark = pytest.mark.timeout(120)


class PrivateRedis:
    """A redis-server of the test's own, which the test may stop and start again."""

    def __init__(self, data: Path) -> None:
        self.data = data
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [str(find_redis_server()), "--port", str(self.port), "--bind", "127.0.0.1"]
        argv += ["--dir", str(self.data), "--save", "", "--appendonly", "yes"]
        argv += ["--appendfsync", "always"]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        wait_until(lambda: port_open(self.port), 20, "redis-server to start", poll=0.02)

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()  # saves the append-only file
        self.process.wait(timeout=20)
        self.process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    if server.process is not None:
        server.stop()


@pytest.fixture
def broker(private_redis: PrivateRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(private_redis.url)
    yield client
    client.close()


def envelope(n: int) -> dict[str, Any]:
    return {"v": 1, "bot": 7, "key": f"m:1:{n}", "kind": "message", "tl": "AAAA", "msg": n}


def queued(broker: redis.Redis, queue: str = "updates") -> list[dict[str, Any]]:
    """The queue's messages, oldest first (kombu LPUSHes; workers take from the right)."""
    return [json.loads(raw) for raw in reversed(broker.lrange(queue, 0, -1))]


def queued_msgs(broker: redis.Redis) -> list[int]:
    """The ``msg`` of every envelope queued in ``updates``, oldest first."""
    raw = reversed(broker.lrange("updates", 0, -1))
    return [envelope["msg"] for message in raw for envelope in envelopes_in(message)]


class Recorder:
    """on_published callbacks that note which envelopes were in Redis when they ran."""

    def __init__(self, broker: redis.Redis) -> None:
        self.in_redis = QueuedEnvelopes(broker)
        self.done: list[int] = []
        self.early: list[int] = []

    def callback(self, n: int) -> Any:
        def published() -> None:
            if self.in_redis() < n + 1:
                self.early.append(n)
            self.done.append(n)

        return published


def test_publishes_celery_task_messages_in_order_and_calls_back_after(
    settings: Settings, private_redis: PrivateRedis, broker: redis.Redis
) -> None:
    app = make_celery(settings.model_copy(update={"redis_url": private_redis.url}))
    count = 2 * MAX_BATCH + 7  # more than one batch
    recorder = Recorder(broker)

    async def scenario() -> None:
        publisher = Publisher(app, asyncio.get_running_loop())
        publisher.start()
        # When more envelopes than one batch are handed over at once
        for n in range(count):
            await publisher.publish(envelope(n), recorder.callback(n))
        assert await publisher.drain(timeout=30)
        publisher.stop()

    asyncio.run(scenario())
    # Then the queue holds them in hand-over order, once each, packed into tasks of at
    # most ENVELOPES_PER_TASK
    messages = queued(broker)
    assert queued_msgs(broker) == list(range(count))
    assert len(messages) >= count / ENVELOPES_PER_TASK
    assert all(len(envelopes_in(json.dumps(m))) <= ENVELOPES_PER_TASK for m in messages)
    # And each callback ran in order, after its message was in Redis
    assert recorder.done == list(range(count))
    assert recorder.early == []
    # And each is the message Celery itself publishes for the task (protocol 2, same headers
    # and properties, routed to the updates queue, publish time stamped)
    with app.producer_or_acquire() as producer:
        app.send_task(HANDLE_UPDATE, args=[envelope(-1)], queue="updates", producer=producer)
    reference = queued(broker)[-1]
    for message in messages[:3] + messages[-3:]:
        assert message.keys() == reference.keys()
        assert message["headers"].keys() == reference["headers"].keys()
        assert message["headers"]["task"] in (HANDLE_UPDATE, HANDLE_UPDATE_BATCH)
        assert message["headers"]["id"] == message["properties"]["correlation_id"]
        assert isinstance(message["headers"][PUBLISHED_AT_HEADER], float)
        assert message["properties"].keys() == reference["properties"].keys()
        assert message["properties"]["delivery_info"] == reference["properties"]["delivery_info"]
        assert message["content-type"] == reference["content-type"] == "application/json"
    assert len({m["headers"]["id"] for m in messages}) == len(messages)


def test_back_pressure_while_redis_is_down_then_nothing_lost(
    settings: Settings, private_redis: PrivateRedis, broker: redis.Redis
) -> None:
    app = make_celery(settings.model_copy(update={"redis_url": private_redis.url}))
    capacity, total = 50, 300
    recorder = Recorder(broker)

    async def scenario() -> None:
        publisher = Publisher(app, asyncio.get_running_loop(), capacity=capacity)
        publisher.start()
        # Given 10 envelopes published while Redis is up
        for n in range(10):
            await publisher.publish(envelope(n), recorder.callback(n))
        assert await publisher.drain(timeout=10)
        # When Redis goes down and the listener keeps handing envelopes over
        private_redis.stop()
        handed = 10

        async def hand_over() -> None:
            nonlocal handed
            for n in range(10, total):
                await publisher.publish(envelope(n), recorder.callback(n))
                handed += 1

        feeder = asyncio.create_task(hand_over())
        await wait_until_async(
            lambda: handed >= 10 + capacity and not publisher.connected,
            10,
            "the hand-over to fill the buffer and the publisher to see Redis gone",
            detail=lambda: f"handed over {handed}, connected {publisher.connected}",
        )
        # Then the buffer is bounded: the hand-over stops at the capacity, none is
        # reported published, and the publisher knows the broker is unreachable
        assert handed == 10 + capacity
        assert publisher.pending == capacity
        assert recorder.done == list(range(10))
        assert not publisher.connected
        # When Redis is back, everything goes out and the hand-over finishes
        private_redis.start()
        await asyncio.wait_for(feeder, timeout=30)
        assert await publisher.drain(timeout=30)
        assert publisher.connected
        publisher.stop()

    asyncio.run(scenario())
    # Then nothing was lost and the order held; the 10 envelopes published just before
    # the outage went again (a worker may have popped them without recording them)
    assert queued_msgs(broker) == list(range(10)) + list(range(total))
    assert recorder.done == list(range(total))
    assert recorder.early == []


def test_stop_after_drain_publishes_everything_handed_over(
    settings: Settings, private_redis: PrivateRedis, broker: redis.Redis
) -> None:
    app = make_celery(settings.model_copy(update={"redis_url": private_redis.url}))
    recorder = Recorder(broker)

    async def scenario() -> tuple[bool, int]:
        publisher = Publisher(app, asyncio.get_running_loop())
        publisher.start()
        # Given envelopes and another task handed over, not yet published
        for n in range(300):
            await publisher.publish(envelope(n), recorder.callback(n))
        await publisher.send(RECORD_ENTITIES, [7, []], "updates")
        # When the listener drains (as on SIGTERM) and stops
        drained = await publisher.drain(timeout=30)
        publisher.stop()
        return drained, publisher.pending

    drained, pending = asyncio.run(scenario())
    # Then every message was published, in order, and every callback ran before drain ended
    assert drained and pending == 0
    messages = queued(broker)
    assert messages[-2]["headers"]["task"] in (HANDLE_UPDATE, HANDLE_UPDATE_BATCH)
    assert messages[-1]["headers"]["task"] == RECORD_ENTITIES
    assert queued_msgs(broker) == list(range(300))
    assert recorder.done == list(range(300))


def test_a_failing_callback_holds_back_neither_the_batch_nor_the_buffer(
    settings: Settings, private_redis: PrivateRedis, broker: redis.Redis
) -> None:
    app = make_celery(settings.model_copy(update={"redis_url": private_redis.url}))
    recorder = Recorder(broker)

    def broken() -> None:
        raise RuntimeError("bug in a callback")

    async def scenario() -> None:
        publisher = Publisher(app, asyncio.get_running_loop(), capacity=10)
        publisher.start()
        # Given a buffer of 10, and envelope 5's callback raising
        for n in range(40):
            await asyncio.wait_for(
                publisher.publish(envelope(n), broken if n == 5 else recorder.callback(n)), 10
            )
        # Then all 40 were handed over and published, and every other callback ran
        assert await publisher.drain(timeout=10)
        publisher.stop()

    asyncio.run(scenario())
    assert queued_msgs(broker) == list(range(40))
    assert recorder.done == [n for n in range(40) if n != 5]


def test_runs_of_envelopes_become_batch_tasks_and_other_messages_keep_their_place() -> None:
    # Given 45 envelopes, another task, then one more envelope, handed over in that order
    def message(task: str, args: list[Any]) -> Any:
        return _Message(task, args, "updates", None)

    handed = [message(HANDLE_UPDATE, [envelope(n)]) for n in range(45)]
    handed.append(message(RECORD_ENTITIES, [7, []]))
    handed.append(message(HANDLE_UPDATE, [envelope(45)]))
    # When they are turned into task messages
    tasks = task_messages(handed)
    # Then the run of 45 goes as batches of 20, 20 and 5, the other task keeps its place,
    # and the lone envelope after it is a plain handle task
    assert [
        (name, len(args[0]) if name == HANDLE_UPDATE_BATCH else 1) for name, args, _ in tasks
    ] == [
        (HANDLE_UPDATE_BATCH, 20),
        (HANDLE_UPDATE_BATCH, 20),
        (HANDLE_UPDATE_BATCH, 5),
        (RECORD_ENTITIES, 1),
        (HANDLE_UPDATE, 1),
    ]
    flat = [e["msg"] for name, args, _ in tasks if name == HANDLE_UPDATE_BATCH for e in args[0]]
    assert flat == list(range(45)) and tasks[-1][1] == [envelope(45)]
