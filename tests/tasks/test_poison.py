"""Poison messages on a real update worker: a message no worker can run (not JSON, cut
short, not a task, a task this worker does not know, arguments the task does not take)
is set aside with its reason and its bytes, the messages around it are handled, and the
worker serves on."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from tests.support.databases import query
from tests.support.envelopes import message_envelope
from tests.support.waiting import log_tail, wait_until
from tgfleet.dev.processes import Child
from tgfleet.platform import taskmsg
from tgfleet.platform.celery_app import TgfleetCelery, make_celery
from tgfleet.platform.names import HANDLE_UPDATE, POISON_MESSAGES, RECORD_ENTITIES, UPDATES_QUEUE
from tgfleet.platform.poison import RAW_KEPT, PoisonMessage, poison_messages
from tgfleet.platform.settings import Settings
from tgfleet.platform.taskmsg import TaskCall

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def broker(migrated: Settings) -> Iterator[redis.Redis]:
    """The broker's Redis, with no poison messages kept from before."""
    client = redis.Redis.from_url(migrated.redis_url)
    client.delete(POISON_MESSAGES)
    yield client
    client.delete(POISON_MESSAGES)
    client.close()


@pytest.fixture
def worker_for(start_worker: Callable[..., Child], sim_env: dict[str, str]) -> Callable[[], Child]:
    def start() -> Child:
        return start_worker(queues=UPDATES_QUEUE, concurrency=1, extra_env=sim_env)

    return start


def raw_message(app: TgfleetCelery, client: redis.Redis, envelope: dict[str, Any]) -> bytes:
    """The bytes of the ``handle`` task message of ``envelope``, as the broker holds it."""
    scratch = f"test-poison-scratch-{uuid.uuid4().hex}"
    taskmsg.publish(app, [TaskCall(HANDLE_UPDATE, scratch, args=[envelope])])
    raw = client.rpop(scratch)
    assert isinstance(raw, bytes)
    return raw


def handled_texts(settings: Settings, bot: int) -> set[str]:
    rows = query(
        settings,
        "SELECT text FROM messages WHERE bot_id = %s AND direction = 'in' "
        "AND processed_at IS NOT NULL",
        bot,
    )
    return {text for (text,) in rows}


def wait_handled(settings: Settings, bot: int, texts: set[str], worker: Child) -> None:
    wait_until(
        lambda: texts <= handled_texts(settings, bot),
        60,
        f"{sorted(texts)} to be handled",
        detail=lambda: f"handled {sorted(handled_texts(settings, bot))}; {log_tail(worker)}",
    )


def assert_serving(worker: Child) -> None:
    log = worker.log_path.read_text(errors="replace")
    assert worker.alive, log_tail(worker)
    assert "Unrecoverable error" not in log
    assert "Connection to broker lost" not in log


def test_bytes_that_are_no_message_are_set_aside_and_the_worker_serves_on(
    migrated: Settings,
    make_bot: Callable[..., dict[str, Any]],
    worker_for: Callable[[], Child],
    broker: redis.Redis,
) -> None:
    # Given an echo bot and an update worker
    bot = make_bot(app="echo")["id"]
    worker = worker_for()
    app = make_celery(migrated)
    # And three messages no worker can run: bytes that are not JSON, the first half of
    # a real task message, and 100 KiB of garbage
    garbage = b"\xff\x00 not json: " + uuid.uuid4().hex.encode()
    whole = raw_message(app, broker, message_envelope(bot, 7002, 1, "cut short"))
    cut = whole[: len(whole) // 2]
    big = b"<" * (100 * 1024)
    # When they arrive on `updates` between two valid envelopes
    before = message_envelope(bot, 7001, 1, "before")
    after = message_envelope(bot, 7003, 1, "after")
    taskmsg.publish(app, [TaskCall(HANDLE_UPDATE, UPDATES_QUEUE, args=[before])])
    for raw in (garbage, cut, big):
        broker.lpush(UPDATES_QUEUE, raw)
    taskmsg.publish(app, [TaskCall(HANDLE_UPDATE, UPDATES_QUEUE, args=[after])])
    # Then both valid envelopes are handled
    wait_handled(migrated, bot, {"before", "after"}, worker)
    # And each bad message was set aside, in the order it came, with its reason, its
    # bytes (the first 64 KiB of the big one) and its full size
    kept = list(reversed(poison_messages(broker)))
    assert [m.raw for m in kept] == [garbage, cut, big[:RAW_KEPT]]
    assert [m.size for m in kept] == [len(garbage), len(cut), len(big)]
    assert [m.truncated for m in kept] == [False, False, True]
    assert [m.queue for m in kept] == [UPDATES_QUEUE] * 3
    assert kept[0].reason.startswith("not JSON: Expecting value")
    assert kept[1].reason.startswith("not JSON: Unterminated string")
    assert kept[2].reason.startswith("not JSON: Expecting value")
    # And the worker serves on; the cut message was never handled
    assert_serving(worker)
    assert "cut short" not in handled_texts(migrated, bot)


def test_a_task_called_with_arguments_it_does_not_take_is_set_aside_once(
    migrated: Settings,
    make_bot: Callable[..., dict[str, Any]],
    worker_for: Callable[[], Child],
    broker: redis.Redis,
) -> None:
    # Given an echo bot and an update worker
    bot = make_bot(app="echo")["id"]
    worker = worker_for()
    app = make_celery(migrated)
    wrong = message_envelope(bot, 7101, 1, "wrong arguments")
    # When tasks arrive with arguments they do not take, then a valid envelope
    ids = {
        app.send_task(HANDLE_UPDATE, args=[wrong, "extra"]).id: (
            "too many positional arguments",
            {"args": [wrong, "extra"], "kwargs": {}},
        ),
        app.send_task(HANDLE_UPDATE, args=[]).id: (
            "missing a required argument: 'envelope'",
            {"args": [], "kwargs": {}},
        ),
        app.send_task(RECORD_ENTITIES, args=[bot, []], kwargs={"nope": 1}).id: (
            "got an unexpected keyword argument 'nope'",
            {"args": [bot, []], "kwargs": {"nope": 1}},
        ),
    }
    app.send_task(HANDLE_UPDATE, args=[message_envelope(bot, 7102, 1, "after")])
    # Then the valid envelope is handled
    wait_handled(migrated, bot, {"after"}, worker)
    # And each bad call is set aside once, with its reason, task and arguments
    kept = {m.task_id: m for m in poison_messages(broker)}
    assert len(poison_messages(broker)) == len(kept) == 3 and set(kept) == set(ids)
    for task_id, (reason, arguments) in ids.items():
        message = kept[task_id]
        assert reason in message.reason, message.reason
        assert json.loads(message.raw) == arguments
        assert message.queue == UPDATES_QUEUE
    assert {kept[i].task for i in ids} == {HANDLE_UPDATE, RECORD_ENTITIES}
    # And acknowledged (nothing will bring them back), not logged as task failures
    wait_until(
        lambda: not any(i.encode() in v for v in broker.hvals("unacked") for i in ids),
        30,
        "the bad calls to be acknowledged",
    )
    assert "raised unexpected" not in worker.log_path.read_text(errors="replace")
    assert "wrong arguments" not in handled_texts(migrated, bot)
    assert_serving(worker)


def test_messages_celery_cannot_run_as_tasks_are_set_aside(
    migrated: Settings,
    make_bot: Callable[..., dict[str, Any]],
    worker_for: Callable[[], Child],
    broker: redis.Redis,
) -> None:
    # Given an echo bot and an update worker
    bot = make_bot(app="echo")["id"]
    worker = worker_for()
    app = make_celery(migrated)
    # And kombu messages that are no task Celery can run: a body that is not [args,
    # kwargs, embed] (it used to end the worker, and the next one it was given back to),
    # and a task this worker does not know
    real = json.loads(raw_message(app, broker, message_envelope(bot, 7201, 1, "template")))
    not_a_call = {**real, "body": base64.b64encode(b'"hello"').decode()}
    unknown = {**real, "headers": {**real["headers"], "task": "tgfleet.updates.nope"}}
    # When they arrive, with a broadcast that is no kombu message, then a valid envelope
    for message in (not_a_call, unknown):
        broker.lpush(UPDATES_QUEUE, json.dumps(message))
    db = broker.connection_pool.connection_kwargs.get("db", 0)
    # (the worker can log "ready." before its subscription to broadcasts reaches Redis,
    # and a broadcast nobody hears is lost: it goes again until the worker hears one)
    wait_until(
        lambda: broker.publish(f"/{db}.celery.pidbox", b"[1, 2]") >= 1,
        30,
        "the worker to hear a broadcast",
    )
    app.send_task(HANDLE_UPDATE, args=[message_envelope(bot, 7202, 1, "after")])
    # Then the valid envelope is handled, and the bad messages are set aside
    wait_handled(migrated, bot, {"after"}, worker)
    kept = wait_until(
        lambda: (m := poison_messages(broker)) and len(m) >= 3 and m,
        30,
        "three poison messages",
        detail=lambda: [m.reason for m in poison_messages(broker)],
    )
    by_reason = {m.reason.split(":")[0]: m for m in kept}
    assert set(by_reason) == {
        "not a task message",
        "a task this worker does not know",
        "not a kombu message",
    }, [m.reason for m in kept]
    assert "the body is not [args, kwargs, embed]" in by_reason["not a task message"].reason
    assert json.loads(by_reason["not a task message"].raw) == not_a_call
    assert by_reason["a task this worker does not know"].task == "tgfleet.updates.nope"
    assert by_reason["not a kombu message"].queue == "celery.pidbox"
    assert by_reason["not a kombu message"].raw == b"[1, 2]"
    assert all(isinstance(m, PoisonMessage) for m in kept)
    assert_serving(worker)
