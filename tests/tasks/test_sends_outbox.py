"""The outbox API, peer resolution and the send CLI against real PostgreSQL and Redis
(no Telegram needed: these parts never talk to it)."""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from tgfleet.db import Bot, Entity, Outbox, OutboxStatus, PeerType, TgUser, session_scope
from tgfleet.platform.celery_app import make_celery
from tgfleet.platform.names import SEND_METRICS
from tgfleet.platform.settings import Settings
from tgfleet.sends.cli import SendCliError, add_parsers, queue_broadcast, recipients
from tgfleet.sends.delivery import claim, random_id_for
from tgfleet.sends.outbox import MAX_TEXT, next_part_key, queue_message, split_text, utf16_len
from tgfleet.sends.resolve import PeerCache, PeerNotFound, resolve_input_peer
from tgfleet.sends.sweep import QueueDelay


@pytest.fixture
def bot_id(migrated: Settings) -> Iterator[int]:
    """Given a bot in the database (a random id far from the simulator's) and an empty queue."""
    bot = random.randint(10**12, 2 * 10**12)
    with session_scope(migrated, role="admin") as s:
        s.add(Bot(id=bot, name="outbox-test", admin_chat_ids=[]))
    make_celery(migrated)
    redis.Redis.from_url(migrated.redis_url).delete("sends")
    yield bot
    with session_scope(migrated, role="admin") as s:
        s.execute(delete(Bot).where(Bot.id == bot))
    redis.Redis.from_url(migrated.redis_url).delete("sends")


def _queued_tasks(settings: Settings) -> list[dict[str, object]]:
    client = redis.Redis.from_url(settings.redis_url)
    bodies = [json.loads(raw) for raw in client.lrange("sends", 0, -1)]
    return [b["headers"] | {"kwargs": _kwargs(b)} for b in bodies]


def _kwargs(body: dict[str, object]) -> object:
    import base64

    raw = body["body"]
    assert isinstance(raw, str)
    return json.loads(base64.b64decode(raw))[1]


@given(st.text(alphabet=st.sampled_from("ab \n😀é"), max_size=9000))
@hypothesis_settings(max_examples=60, deadline=None)
def test_split_text_keeps_every_character_within_the_limit(text: str) -> None:
    parts = split_text(text)
    assert "".join(parts) == text
    assert all(utf16_len(p) <= MAX_TEXT for p in parts)
    assert all(parts) or parts == [""]


def test_random_id_is_stable_per_row_and_distinct_between_rows(migrated: Settings) -> None:
    first = random_id_for(migrated, 1, 2)
    assert first == random_id_for(migrated, 1, 2)
    assert first != random_id_for(migrated, 1, 3) != random_id_for(migrated, 2, 2)
    assert -(2**63) <= first < 2**63 and first != 0


def test_queue_message_enqueues_only_after_commit(migrated: Settings, bot_id: int) -> None:
    # Given a transaction that queues a message
    with session_scope(migrated, bot_id=bot_id) as s:
        row = queue_message(s, bot_id, 42, "hello")
        # Then nothing is enqueued before the commit
        assert _queued_tasks(migrated) == []
    # And exactly one deliver task after it
    [task] = _queued_tasks(migrated)
    assert task["task"] == "tgfleet.sends.deliver"
    assert task["kwargs"] == {"outbox_id": row.id, "bot_id": bot_id, "chat_id": 42}


def test_rolled_back_message_is_never_enqueued(migrated: Settings, bot_id: int) -> None:
    with pytest.raises(RuntimeError), session_scope(migrated, bot_id=bot_id) as s:
        queue_message(s, bot_id, 42, "hello")
        raise RuntimeError("handler failed")
    assert _queued_tasks(migrated) == []
    with session_scope(migrated, bot_id=bot_id) as s:
        assert s.scalars(select(Outbox).where(Outbox.bot_id == bot_id)).all() == []


def test_dedupe_key_and_long_texts(migrated: Settings, bot_id: int) -> None:
    # Given a text of 2.5 Telegram messages queued twice with the same dedupe key
    text = "word " * 2000
    for _ in range(2):
        with session_scope(migrated, bot_id=bot_id) as s:
            first = queue_message(s, bot_id, 42, text, dedupe_key="welcome:42", parse_mode="html")
    # Then it became 3 linked parts, created once; only the first is enqueued (the others
    # are held until the part before them is sent, so they arrive in order)
    with session_scope(migrated, bot_id=bot_id) as s:
        rows = s.scalars(select(Outbox).where(Outbox.bot_id == bot_id).order_by(Outbox.id)).all()
    keys = [r.dedupe_key for r in rows]
    assert keys == ["welcome:42", "welcome:42#part1", "welcome:42#part2"]
    assert next_part_key(keys[0]) == keys[1] and next_part_key(keys[1]) == keys[2]
    assert "".join(r.text for r in rows) == text and rows[0].id == first.id
    assert {r.parse_mode for r in rows} == {"html"}
    assert [r.next_attempt_at.year for r in rows[1:]] == [9999, 9999]
    [task] = _queued_tasks(migrated)
    assert task["kwargs"]["outbox_id"] == first.id  # type: ignore[index]


def test_a_claim_is_won_once_until_its_lease_expires(migrated: Settings, bot_id: int) -> None:
    with session_scope(migrated, bot_id=bot_id) as s:
        row = queue_message(s, bot_id, 42, "hi")
    results = []
    for _ in range(2):
        with session_scope(migrated, bot_id=bot_id) as s:
            results.append(claim(s, migrated, bot_id, row.id) is not None)
    assert results == [True, False]
    expired = migrated.model_copy(update={"send_lease_s": 0.0})
    with session_scope(migrated, bot_id=bot_id) as s:
        stored = claim(s, expired, bot_id, row.id)
        assert stored is not None and stored.status is OutboxStatus.SENDING
        assert stored.random_id == random_id_for(migrated, bot_id, row.id)


def test_resolution_prefers_lru_then_store_and_explains_a_miss(
    migrated: Settings, bot_id: int
) -> None:
    cache = PeerCache()
    with session_scope(migrated, bot_id=bot_id) as s:
        s.add(Entity(bot_id=bot_id, peer_type=PeerType.USER, peer_id=7, access_hash=777))
        s.add(TgUser(bot_id=bot_id, user_id=8, username="eight"))
    with session_scope(migrated, bot_id=bot_id) as s:
        first = resolve_input_peer(s, bot_id, 7, cache=cache)
        again = resolve_input_peer(s, bot_id, 7, cache=cache)
        assert (first.source, again.source) == ("store", "lru")
        assert (first.peer.user_id, first.peer.access_hash) == (7, 777)
        # A hash Telegram refused is not taken from the store again
        with pytest.raises(PeerNotFound, match="no username known"):
            resolve_input_peer(s, bot_id, 7, cache=cache, distrust_hash=777)
        with pytest.raises(PeerNotFound, match="@eight did not resolve"):
            resolve_input_peer(s, bot_id, 8, cache=cache)
        assert resolve_input_peer(s, bot_id, -55, cache=cache).source == "static"


def test_broadcast_is_resumable_and_skips_blocked_users(migrated: Settings, bot_id: int) -> None:
    # Given 5 users of the bot, one of whom blocked it, one with a username
    with session_scope(migrated, bot_id=bot_id) as s:
        for user_id in range(1, 6):
            s.add(TgUser(bot_id=bot_id, user_id=user_id, is_blocked=user_id == 3))
        s.add(Entity(bot_id=bot_id, peer_type=PeerType.USER, peer_id=9, username="Nine"))
    chats = recipients(migrated, bot_id, ["all", "@nine", "4"])
    assert chats == [1, 2, 4, 5, 9]
    with pytest.raises(SendCliError, match="@nobody"):
        recipients(migrated, bot_id, ["@nobody"])
    # When the broadcast is queued, interrupted after 2 chats, and run again in full
    assert queue_broadcast(migrated, bot_id, chats[:2], "news", 77) == 2
    assert queue_broadcast(migrated, bot_id, chats, "news", 77) == 3
    assert queue_broadcast(migrated, bot_id, chats, "news", 77) == 0
    # Then every chat has exactly one row of the broadcast
    with session_scope(migrated, bot_id=bot_id) as s:
        rows = s.scalars(select(Outbox.chat_id).where(Outbox.broadcast_id == 77)).all()
    assert sorted(rows) == chats
    assert len(_queued_tasks(migrated)) == 5


def test_outbox_retry_requeues_dead_rows(migrated: Settings, bot_id: int) -> None:
    with session_scope(migrated, bot_id=bot_id) as s:
        row = queue_message(s, bot_id, 42, "hi")
    with session_scope(migrated, bot_id=bot_id) as s:
        stored = s.get(Outbox, (bot_id, row.id))
        assert stored is not None
        stored.status, stored.attempts, stored.last_error = OutboxStatus.DEAD, 8, "gone"
    parser = argparse.ArgumentParser()
    add_parsers(parser.add_subparsers())
    args = parser.parse_args(["outbox", "retry", "--bot", str(bot_id)])
    assert args.func(args, migrated) == 0
    with session_scope(migrated, bot_id=bot_id) as s:
        stored = s.get(Outbox, (bot_id, row.id))
        assert stored is not None
        assert (stored.status, stored.attempts, stored.last_error) == (
            OutboxStatus.RETRYING,
            0,
            None,
        )
    assert len(_queued_tasks(migrated)) == 2


def test_cli_send_is_resumable_and_outbox_reports(
    migrated: Settings, bot_id: int, subprocess_env: dict[str, str]
) -> None:
    # Given 3 users of the bot
    with session_scope(migrated, bot_id=bot_id) as s:
        for user_id in (11, 12, 13):
            s.add(TgUser(bot_id=bot_id, user_id=user_id))

    def tgfleet(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "tgfleet", *argv],
            env=subprocess_env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    send = ["send", "--bot", str(bot_id), "--to", "all", "--text", "hi", "--broadcast-id", "9"]
    # When the same broadcast is sent twice
    first, again = tgfleet(*send), tgfleet(*send)
    # Then the first run queued 3 rows and the second none
    assert first.returncode == 0, first.stderr
    assert "queued 3 message(s) for 3 chat(s)" in first.stdout
    assert "queued 0 message(s) for 3 chat(s), 3 already queued earlier" in again.stdout
    status = tgfleet("outbox", "status", "--bot", str(bot_id))
    assert status.returncode == 0, status.stderr
    assert str(bot_id) in status.stdout and "queued" in status.stdout
    # And a bad target is refused with a clear message
    bad = tgfleet("send", "--bot", str(bot_id), "--to", "@ghost", "--text", "x")
    assert bad.returncode == 1 and "does not know @ghost" in bad.stderr


def test_queue_delay_tells_a_busy_queue_from_lost_tasks(migrated: Settings) -> None:
    client = redis.Redis.from_url(migrated.redis_url)
    fake_sender: Any = SimpleNamespace(redis=client)
    delay = QueueDelay()
    client.delete("sends")
    try:
        # Given 100 tasks waiting: no send rate known yet -> no verdict (no sweep)
        client.rpush("sends", *["task"] * 100)
        assert delay.estimate(fake_sender) is None
        # When senders get through 50 messages in about 0.2 s
        client.hincrby(SEND_METRICS, "sent", 50)
        time.sleep(0.2)
        # Then a task waits about 2 x 100 / 250 per s in the queue: rows are late, not lost
        estimate = delay.estimate(fake_sender)
        assert estimate is not None and 0.3 < estimate < 1.5
        # And an empty queue means no delay at all
        client.delete("sends")
        assert delay.estimate(fake_sender) == 0.0
    finally:
        client.delete("sends")
