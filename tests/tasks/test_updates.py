"""Ingest end to end: simulator -> `tgfleet listen` -> Redis -> real update workers -> PostgreSQL.

Each test uses its own bots; the echo app replies with the text it got, so the outbox
rows, ordered by id, are the order in which each chat's handlers ran.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import psycopg2
import pytest
import redis

from tests.support.databases import query
from tests.support.envelopes import message_envelope
from tests.support.waiting import log_tail, wait_until
from tgfleet.dev.processes import Child
from tgfleet.dev.services import DevServices, restart_redis
from tgfleet.inbox import chat_lock_key
from tgfleet.listeners.publisher import QueuedEnvelopes
from tgfleet.platform.celery_app import make_celery
from tgfleet.platform.envelope import Envelope, decode
from tgfleet.platform.names import HANDLE_UPDATE_BATCH, ORPHAN_DEAD_LETTERS
from tgfleet.platform.settings import Settings

pytestmark = pytest.mark.timeout(300)


def inbound(settings: Settings, bot_ids: list[int]) -> list[tuple[Any, ...]]:
    return query(
        settings,
        "SELECT bot_id, chat_id, tg_message_id, text, processed_at IS NOT NULL "
        "FROM messages WHERE bot_id = ANY(%s) AND direction = 'in'",
        bot_ids,
    )


def replies(settings: Settings, bot_ids: list[int]) -> dict[tuple[int, int], list[str]]:
    by_chat: dict[tuple[int, int], list[str]] = defaultdict(list)
    for bot_id, chat_id, text in query(
        settings,
        "SELECT bot_id, chat_id, text FROM outbox WHERE bot_id = ANY(%s) ORDER BY id",
        bot_ids,
    ):
        by_chat[(bot_id, chat_id)].append(text)
    return by_chat


def listening(child: Child, bot_ids: list[int], timeout: float = 60) -> None:
    def ready() -> bool:
        log = child.log_path.read_text(errors="replace")
        assert child.alive, log_tail(child)
        return all(f"listening for bot {bot_id}" in log for bot_id in bot_ids)

    wait_until(ready, timeout, f"{child.name} to listen for {bot_ids}")


def test_message_is_stored_once_and_handled(
    sim_settings: Settings,
    simulator: Any,
    make_bot: Callable[..., dict[str, Any]],
    start_listener: Callable[..., Child],
    start_worker: Callable[..., Child],
    sim_env: dict[str, str],
) -> None:
    # Given a bot with the echo app, a listener and an update worker
    bot = make_bot(app="echo")
    user = simulator.create_user("Ann")
    listening(start_listener([bot["id"]]), [bot["id"]])
    start_worker(queues="updates", concurrency=2, extra_env=sim_env)
    # When the user writes to the bot
    simulator.send(user["id"], bot["id"], "hello there")
    # Then the message is stored once, processed, and the reply is queued in the outbox
    rows = wait_until(
        lambda: [r for r in inbound(sim_settings, [bot["id"]]) if r[4]], 60, "the processed message"
    )
    assert [(r[1], r[3]) for r in rows] == [(user["id"], "hello there")]
    assert replies(sim_settings, [bot["id"]]) == {(bot["id"], user["id"]): ["hello there"]}
    # And the sender is in the entity store and tg_users, with this bot's access hash
    entity = query(
        sim_settings,
        "SELECT access_hash FROM entities WHERE bot_id = %s AND peer_id = %s",
        bot["id"],
        user["id"],
    )
    assert entity and entity[0][0] != 0
    assert query(
        sim_settings,
        "SELECT first_name FROM tg_users WHERE bot_id = %s AND user_id = %s",
        bot["id"],
        user["id"],
    ) == [("Ann",)]


def test_thousand_messages_in_order_once_with_a_worker_killed(
    sim_settings: Settings,
    simulator: Any,
    make_bot: Callable[..., dict[str, Any]],
    start_listener: Callable[..., Child],
    start_worker: Callable[..., Child],
    sim_env: dict[str, str],
) -> None:
    # Given 3 bots, 50 users, a listener and 2 update worker processes
    bots = [make_bot(app="echo")["id"] for _ in range(3)]
    users = [simulator.create_user(f"U{i}")["id"] for i in range(50)]
    listening(start_listener(bots), bots)
    # (no beat: the live worker gives back what the killed one had taken, in flight or
    # unacknowledged, within seconds; see platform/handoff.py)
    victim = start_worker(queues="updates", concurrency=1, extra_env=sim_env)
    start_worker(queues="updates,maintenance", concurrency=1, extra_env=sim_env)
    sent: dict[tuple[int, int], list[str]] = defaultdict(list)
    # When 1,000 messages arrive and one worker is killed with SIGKILL half-way
    for n in range(1000):
        bot, user = bots[n % 3], users[(n // 3) % 50]
        text = f"m{n}"
        simulator.send(user, bot, text)
        sent[(bot, user)].append(text)
        if n == 500:
            os.killpg(victim.process.pid, signal.SIGKILL)

    # Then every message is stored exactly once and processed
    def all_processed() -> bool:
        rows = inbound(sim_settings, bots)
        return len(rows) >= 1000 and all(r[4] for r in rows)

    wait_until(all_processed, 180, "1,000 processed messages")
    rows = inbound(sim_settings, bots)
    assert len(rows) == 1000
    assert len({(r[0], r[2]) for r in rows}) == 1000
    # And each chat's handlers ran once per message, in the order the user sent them
    assert replies(sim_settings, bots) == sent


def test_second_listener_takes_over_and_catches_up(
    sim_settings: Settings,
    simulator: Any,
    make_bot: Callable[..., dict[str, Any]],
    start_listener: Callable[..., Child],
    start_worker: Callable[..., Child],
    sim_env: dict[str, str],
) -> None:
    # Given two listeners for one bot: the first holds the lease, the second waits
    bot = make_bot(app="echo")["id"]
    user = simulator.create_user("Bo")["id"]
    first = start_listener([bot], lease_ttl=6)
    listening(first, [bot])
    second = start_listener([bot], lease_ttl=6)
    start_worker(queues="updates", concurrency=2, extra_env=sim_env)
    simulator.send(user, bot, "before")
    wait_until(lambda: len(inbound(sim_settings, [bot])) == 1, 60, "the first message")
    # When the first listener is killed and messages keep coming while nobody listens
    os.killpg(first.process.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    for n in range(5):
        simulator.send(user, bot, f"during {n}")
    # Then the second takes the bot over within 20 s and catches up on every message
    listening(second, [bot], timeout=25)
    assert time.monotonic() - killed_at < 20 + 5
    wait_until(lambda: len(inbound(sim_settings, [bot])) == 6, 60, "the missed messages")
    texts = sorted(r[3] for r in inbound(sim_settings, [bot]))
    assert texts == sorted(["before"] + [f"during {n}" for n in range(5)])


def test_a_listener_that_takes_over_goes_on_with_each_chat_s_order_chain(
    sim_settings: Settings,
    simulator: Any,
    make_bot: Callable[..., dict[str, Any]],
    start_listener: Callable[..., Child],
    start_worker: Callable[..., Child],
    sim_env: dict[str, str],
) -> None:
    # Given a listener that published a chat's message, which no worker has taken yet
    bot = make_bot(app="echo")["id"]
    user = simulator.create_user("Di")["id"]
    queued = QueuedEnvelopes(redis.Redis.from_url(sim_settings.redis_url))
    queued()

    def of_bot() -> list[Envelope]:
        queued()
        return [e for e in map(decode, queued.envelopes) if e.bot_id == bot]

    first = start_listener([bot])
    listening(first, [bot])
    simulator.send(user, bot, "one")
    (one,) = wait_until(of_bot, 30, "the first envelope")
    # When that listener stops and another one takes the bot over
    first.process.send_signal(signal.SIGTERM)
    first.process.wait(timeout=30)
    second = start_listener([bot])
    listening(second, [bot])
    simulator.send(user, bot, "two")
    # Then the chat's first message from the new listener names the old one's last
    _, two = wait_until(lambda: of_bot() if len(of_bot()) == 2 else None, 30, "the second")
    assert one.prev_id is None and one.msg_id is not None
    assert (two.chat_id, two.prev_id) == (one.chat_id, one.msg_id)
    # And the workers handle them in that order, with no gap
    start_worker(queues="updates", concurrency=2, extra_env=sim_env)
    wait_until(lambda: len(replies(sim_settings, [bot]).get((bot, user), [])) == 2, 60, "replies")
    assert replies(sim_settings, [bot])[(bot, user)] == ["one", "two"]
    assert query(sim_settings, "SELECT count(*) FROM dead_updates WHERE bot_id = %s", bot) == [(0,)]


def test_a_listener_without_a_session_logs_in_then_catches_up(
    sim_settings: Settings,
    simulator: Any,
    make_bot: Callable[..., dict[str, Any]],
    start_listener: Callable[..., Child],
    start_worker: Callable[..., Child],
    sim_env: dict[str, str],
) -> None:
    # Given a bot whose update state is saved, but whose session is gone (a new host, or
    # a server that moved: a new auth key must log in before it may catch up)
    bot = make_bot(app="echo")["id"]
    user = simulator.create_user("Cy")["id"]
    start_worker(queues="updates", concurrency=1, extra_env=sim_env)
    first = start_listener([bot])
    listening(first, [bot])
    simulator.send(user, bot, "before")
    wait_until(lambda: len(inbound(sim_settings, [bot])) == 1, 60, "the first message")
    first.process.send_signal(signal.SIGTERM)
    first.process.wait(timeout=30)
    query(sim_settings, "DELETE FROM bot_sessions WHERE bot_id = %s RETURNING 1", bot)
    simulator.send(user, bot, "while nobody listened")
    # When a listener starts for it
    second = start_listener([bot])
    # Then it logs in with the token, listens, and catches up on the missed message
    listening(second, [bot])
    assert "logged in" in second.log_path.read_text()
    wait_until(lambda: len(inbound(sim_settings, [bot])) == 2, 60, "the missed message")


def test_redis_restart_mid_ingest_loses_nothing(
    sim_settings: Settings,
    simulator: Any,
    make_bot: Callable[..., dict[str, Any]],
    start_listener: Callable[..., Child],
    start_worker: Callable[..., Child],
    sim_env: dict[str, str],
    dev_services: DevServices,
    start_beat: Callable[..., Child],
) -> None:
    # Given ingest running, with beat giving back stuck messages after 5 s (not 15 min)
    bot = make_bot(app="echo")["id"]
    user = simulator.create_user("Cy")["id"]
    listening(start_listener([bot]), [bot])
    fast = {**sim_env, "TGFLEET_REDELIVER_AFTER_S": "5", "TGFLEET_REDELIVER_EVERY_S": "2"}
    start_worker(queues="updates,maintenance", concurrency=2, extra_env=fast)
    start_beat(extra_env=fast)
    for n in range(100):
        simulator.send(user, bot, f"r{n}")
        if n == 40:
            # When Redis goes away for 2 s in the middle of the stream
            restart_redis(dev_services, downtime=2.0)
    # Then every message still arrives, once
    try:
        wait_until(
            lambda: len([r for r in inbound(sim_settings, [bot]) if r[4]]) == 100,
            120,
            "100 processed messages",
        )
    except AssertionError:
        rows = inbound(sim_settings, [bot])
        missing = {f"r{n}" for n in range(100)} - {r[3] for r in rows}
        client = redis.Redis.from_url(sim_settings.redis_url)
        raise AssertionError(
            f"missing {sorted(missing)}; unprocessed {[r for r in rows if not r[4]]}; "
            f"queue {client.llen('updates')} unacked {client.hlen('unacked')}"
        ) from None
    assert sorted(r[3] for r in inbound(sim_settings, [bot])) == sorted(f"r{n}" for n in range(100))


def test_malformed_envelopes_are_dead_lettered(
    migrated: Settings,
    make_bot: Callable[..., dict[str, Any]],
    start_worker: Callable[..., Child],
    sim_env: dict[str, str],
) -> None:
    bot = make_bot(app="echo")["id"]
    start_worker(queues="updates", concurrency=1, extra_env=sim_env)
    app = make_celery(migrated)
    client = redis.Redis.from_url(migrated.redis_url)
    client.delete(ORPHAN_DEAD_LETTERS)
    # When garbage arrives: a bad TL payload for a real bot, and a bot that doesn't exist
    app.send_task(
        "tgfleet.updates.handle",
        args=[{"v": 1, "bot": bot, "key": "bad-1", "kind": "message", "tl": "AAAA"}],
    )
    app.send_task("tgfleet.updates.handle", args=["not even an object"])
    app.send_task(
        "tgfleet.updates.handle",
        args=[{"v": 99, "bot": bot, "key": "bad-2", "kind": "message", "tl": ""}],
    )

    # Then each is kept with its reason and the worker keeps serving
    def all_three() -> list[tuple[Any, ...]] | None:
        rows = query(
            migrated,
            "SELECT dedupe_key, reason FROM dead_updates WHERE bot_id = %s ORDER BY id",
            bot,
        )
        return rows if len(rows) == 2 and client.llen(ORPHAN_DEAD_LETTERS) else None

    rows = wait_until(all_three, 60, "dead letters")
    reasons = dict(rows)
    assert "not a valid TL object" in reasons["bad-1"]
    assert "schema version 99" in reasons["bad-2"]
    orphan = json.loads(client.lindex(ORPHAN_DEAD_LETTERS, 0))
    assert "must be a JSON object" in orphan["reason"]
    assert orphan["envelope"]["raw"] == "'not even an object'"
    client.close()


def test_a_batch_is_handled_in_order_and_a_busy_chat_is_deferred(
    migrated: Settings,
    make_bot: Callable[..., dict[str, Any]],
    start_worker: Callable[..., Child],
    sim_env: dict[str, str],
) -> None:
    # Given a worker, and chat 1001 of an echo bot held by someone else (its advisory lock)
    bot = make_bot(app="echo")["id"]
    worker = start_worker(queues="updates", concurrency=1, extra_env=sim_env)
    holder = psycopg2.connect(migrated.owner_database_url)
    holder.autocommit = True
    with holder.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", (chat_lock_key(bot, 1001),))
    # When one batch task brings a malformed envelope, two messages of chat 1002, one of
    # the held chat 1001 and a replay of the first message of chat 1002
    batch = [
        {"v": 1, "bot": bot, "key": "bad-batch", "kind": "message", "tl": "AAAA"},
        message_envelope(bot, 1002, 1, "first"),
        message_envelope(bot, 1002, 2, "second"),
        message_envelope(bot, 1001, 3, "waits"),
        message_envelope(bot, 1002, 1, "first"),
    ]
    make_celery(migrated).send_task(HANDLE_UPDATE_BATCH, args=[batch])
    # Then chat 1002 is handled in order, once, while 1001 waits for its chat
    wait_until(lambda: "handle_batch" in worker.log_path.read_text(), 60, "the batch")
    wait_until(
        lambda: (
            sorted(r[:4] for r in inbound(migrated, [bot]) if r[4])
            == [(bot, 1002, 1, "first"), (bot, 1002, 2, "second")]
        ),
        60,
        "chat 1002",
    )
    assert replies(migrated, [bot])[(bot, 1002)] == ["first", "second"]
    outcome = wait_until(
        lambda: [line for line in worker.log_path.read_text().splitlines() if "deferred=" in line],
        60,
        "the batch's outcome",
    )
    assert "'dead=1 deferred=1 processed=2'" in outcome[0]
    dead = query(migrated, "SELECT reason FROM dead_updates WHERE dedupe_key = 'bad-batch'")
    assert "not a valid TL object" in dead[0][0]
    # And once the chat is free, the deferred message is handled by its own task
    with holder.cursor() as cur:
        cur.execute("SELECT pg_advisory_unlock(%s)", (chat_lock_key(bot, 1001),))
    holder.close()
    wait_until(lambda: (bot, 1001, 3, "waits", True) in inbound(migrated, [bot]), 60, "chat 1001")
    assert replies(migrated, [bot])[(bot, 1001)] == ["waits"]
