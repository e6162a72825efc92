"""tgfleet.platform.taskmsg: task messages straight to Redis, as Celery would send them."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from tests.support.waiting import wait_until
from tgfleet.dev.processes import Child
from tgfleet.platform import taskmsg
from tgfleet.platform.celery_app import make_celery
from tgfleet.platform.names import PING_PREFIX
from tgfleet.platform.settings import Settings
from tgfleet.platform.taskmsg import TaskCall

#: Fields that differ between any two messages (ids, clocks, the sending process).
_PER_MESSAGE = {"id", "root_id", "correlation_id", "delivery_tag", "tgfleet_published_at", "eta"}


@pytest.fixture
def broker(settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis_url)
    yield client
    client.close()


def _decoded(raw: bytes | str) -> tuple[dict[str, Any], Any]:
    message = json.loads(raw)
    body = json.loads(base64.b64decode(message.pop("body")))
    return message, body


def _shape(message: dict[str, Any]) -> dict[str, Any]:
    headers = {k: v for k, v in message["headers"].items() if k not in _PER_MESSAGE}
    props = {k: v for k, v in message["properties"].items() if k not in _PER_MESSAGE}
    return {**message, "headers": headers, "properties": props}


def test_messages_match_what_send_task_publishes(settings: Settings, broker: redis.Redis) -> None:
    # Given the same task sent by Celery and by taskmsg (no worker runs in this test)
    app = make_celery(settings)
    queue = "sends"
    kwargs = {"outbox_id": 1, "bot_id": 2, "chat_id": 3}
    celery_id = app.send_task("tgfleet.sends.deliver", kwargs=kwargs, countdown=5).id
    (our_id,) = taskmsg.publish(
        app, [TaskCall("tgfleet.sends.deliver", queue, kwargs=kwargs, countdown=5)]
    )
    # When both are read back from the queue's list
    found = {}
    for raw in broker.lrange(queue, 0, -1):
        message, body = _decoded(raw)
        if message["headers"]["id"] in (celery_id, our_id):
            found[message["headers"]["id"]] = (message, body)
            broker.lrem(queue, 1, raw)  # type: ignore[arg-type]
    (ours, our_body), (celerys, celery_body) = found[our_id], found[celery_id]
    # Then they carry the same fields and body; only ids and clocks differ
    assert ours["properties"]["correlation_id"] == our_id
    assert _shape(ours) == _shape(celerys)
    assert our_body == celery_body
    assert ours["headers"]["eta"] and celerys["headers"]["eta"]
    assert ours["headers"]["parent_id"] is None
    assert abs(ours["headers"]["tgfleet_published_at"] - time.time()) < 60


def test_a_real_worker_runs_published_tasks_in_one_round_trip(
    settings: Settings, broker: redis.Redis, start_worker: Callable[..., Child]
) -> None:
    # Given a real worker on the maintenance queue
    start_worker(queues="maintenance", concurrency=1)
    app = make_celery(settings)
    tokens = [uuid.uuid4().hex for _ in range(3)]
    # When three pings are published at once, the last one a second later
    calls = [TaskCall("tgfleet.maintenance.ping", "maintenance", args=[t]) for t in tokens]
    calls[-1] = TaskCall("tgfleet.maintenance.ping", "maintenance", [tokens[-1]], countdown=1.0)
    assert taskmsg.supports(app)
    taskmsg.publish(app, calls)

    # Then the worker answers every one of them
    def all_answered() -> list[Any] | None:
        answers = [broker.get(PING_PREFIX + t) for t in tokens]
        return answers if all(answers) else None

    answers = wait_until(all_answered, 30, "answers to the 3 pings")
    assert all(a and a.startswith(b"pong from") for a in answers)


def test_nothing_is_published_for_no_calls(settings: Settings) -> None:
    assert taskmsg.publish(make_celery(settings), []) == []


def test_a_task_sent_again_keeps_its_id(settings: Settings, broker: redis.Redis) -> None:
    # When a task sends itself again under its own id (what the senders do for a wait)
    task_id = str(uuid.uuid4())
    call = TaskCall("tgfleet.sends.deliver", "sends", kwargs={"outbox_id": 1}, task_id=task_id)
    assert taskmsg.publish(make_celery(settings), [call]) == [task_id]
    # Then the message carries that id, as Celery's own retry would
    mine = [raw for raw in broker.lrange("sends", 0, -1) if task_id.encode() in raw]
    message, _ = _decoded(mine[0])
    broker.lrem("sends", 1, mine[0])
    assert message["headers"]["id"] == message["properties"]["correlation_id"] == task_id


def test_big_arguments_are_cut_in_the_headers_not_in_the_body(
    settings: Settings, broker: redis.Redis
) -> None:
    # Given a task whose argument is far bigger than Celery's repr limit (an update)
    app = make_celery(settings)
    update = {"text": "x" * 5000}
    call = TaskCall("tgfleet.maintenance.ping", "taskmsg-big", args=[update], kwargs=update)
    (task_id,) = taskmsg.publish(app, [call])
    # When the message is read back
    message, body = _decoded(broker.rpop("taskmsg-big"))  # type: ignore[arg-type]
    # Then its reprs are cut as send_task cuts them, and the body carries it whole
    headers = message["headers"]
    assert headers["id"] == task_id
    assert len(headers["argsrepr"]) <= app.amqp.argsrepr_maxsize
    assert len(headers["kwargsrepr"]) <= app.amqp.kwargsrepr_maxsize
    assert headers["argsrepr"].startswith("({'text': 'xxx") and headers["argsrepr"].endswith("...")
    assert body[0] == [update] and body[1] == update
