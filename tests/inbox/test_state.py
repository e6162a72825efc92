"""Conversation state on a real PostgreSQL: what ``ctx.state`` reads and writes, that the
drain reads it (and the sender's language) with the message in the same statement, and
that a handler's state change commits with its effects and rolls back with them. Driven
directly, as tests/inbox/test_drain.py does (no worker processes)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
from sqlalchemy import event
from sqlalchemy.orm import Session
from telethon.tl import types

from tests.support.databases import query
from tgfleet.bots import ConversationState
from tgfleet.bots.runtime import BotView, handler_for
from tgfleet.db import fleet, get_engine, session_scope
from tgfleet.inbox import InboundMessage, drain_chat, record_and_handle
from tgfleet.inbox.record import Handler
from tgfleet.platform.celery_app import make_celery
from tgfleet.platform.envelope import Envelope, decode, encode
from tgfleet.platform.names import SENDS_QUEUE
from tgfleet.platform.settings import Settings

USER = 5150
REGISTRATION = "tests.support.apps_fsm:registration"
FAILING = "tests.support.apps_fsm:failing"


@pytest.fixture
def bot_id(migrated: Settings) -> Iterator[int]:
    """A bot in the fleet, and a current Celery app: replies enqueue their deliveries
    on commit (no sender runs here: the queue is emptied afterwards)."""
    bot = uuid.uuid4().int % 10**9 + 10**9
    fleet.save_bot(migrated, f"{bot}:{'x' * 35}", name="state-test", admin_chat_ids=[])
    make_celery(migrated)
    yield bot
    fleet.remove_bot(migrated, bot)
    redis.Redis.from_url(migrated.redis_url).delete(SENDS_QUEUE)


def envelope(bot_id: int, msg_id: int, text: str, lang: str | None = None) -> Envelope:
    """``USER`` writes ``text`` to the bot in their private chat (message ``msg_id``,
    following ``msg_id - 1``); ``lang``: their Telegram app's language."""
    user = types.User(id=USER, access_hash=77, first_name="Ann", lang_code=lang)
    message = types.Message(
        id=msg_id,
        peer_id=types.PeerUser(USER),
        date=datetime.now(UTC),
        message=text,
        from_id=types.PeerUser(USER),
    )
    update = types.UpdateNewMessage(message=message, pts=msg_id, pts_count=1)
    return decode(encode(bot_id, update, [user], prev_id=msg_id - 1 or None))


def deliver(settings: Settings, env: Envelope, handler: Handler) -> None:
    """What the update task does, minus Celery: record + first step, then drain."""
    _, first = record_and_handle(settings, env, handler)
    drain_chat(settings, env.bot_id, env.chat_id, handler, first=first)


def app(bot_id: int, spec: str) -> Handler:
    return handler_for(BotView(bot_id, (), {"app": spec}))


def stored(settings: Settings, bot_id: int) -> list[tuple[Any, ...]]:
    return query(
        settings,
        "SELECT state, data, expires_at IS NOT NULL FROM conversation_states "
        "WHERE bot_id = %s AND chat_id = %s AND user_id = %s",
        bot_id,
        USER,
        USER,
    )


def replies(settings: Settings, bot_id: int) -> list[str]:
    rows = query(settings, "SELECT text FROM outbox WHERE bot_id = %s ORDER BY id", bot_id)
    return [r[0] for r in rows]


def test_state_reads_and_writes_go_through_the_session(migrated: Settings, bot_id: int) -> None:
    # Given a state written outside the runtime (flush), in one transaction
    with session_scope(migrated, bot_id=bot_id) as session:
        state = ConversationState(session, bot_id, USER, USER)
        assert (state.get(), state.get_data()) == (None, {})  # read: no row yet
        state.set("Quiz:q1", expires_in=timedelta(minutes=5))
        state.update_data(score=1)
        state.flush()
    # Then another transaction reads it back
    with session_scope(migrated, bot_id=bot_id) as session:
        state = ConversationState(session, bot_id, USER, USER)
        assert (state.get(), state.get_data()) == ("Quiz:q1", {"score": 1})
        assert state.expires_at is not None
    # And another bot does not see it (row-level security)
    other = bot_id + 1
    fleet.save_bot(migrated, f"{other}:{'y' * 35}", name="other", admin_chat_ids=[])
    try:
        with session_scope(migrated, bot_id=other) as session:
            assert ConversationState(session, bot_id, USER, USER).get() is None
    finally:
        fleet.remove_bot(migrated, other)
    # When it is cleared, Then the row is gone
    with session_scope(migrated, bot_id=bot_id) as session:
        state = ConversationState(session, bot_id, USER, USER)
        state.clear()
        state.flush()
    assert stored(migrated, bot_id) == []


def test_an_expired_row_reads_as_none_from_the_database(migrated: Settings, bot_id: int) -> None:
    # Given a row whose expiry has passed
    query(
        migrated,
        "INSERT INTO conversation_states (bot_id, chat_id, user_id, state, data, expires_at) "
        "VALUES (%s, %s, %s, 'Quiz:q1', '{\"score\": 3}', now() - interval '1 second') "
        "RETURNING 1",
        bot_id,
        USER,
        USER,
    )
    # When it is read, Then it is no state and no data, and a flush deletes it
    with session_scope(migrated, bot_id=bot_id) as session:
        state = ConversationState(session, bot_id, USER, USER)
        assert (state.get(), state.get_data()) == (None, {})
        state.flush()
    assert stored(migrated, bot_id) == []


def test_the_drain_reads_state_and_language_with_the_message(
    migrated: Settings, bot_id: int
) -> None:
    seen: list[InboundMessage] = []

    def handler(session: Session, inbound: InboundMessage) -> None:
        seen.append(inbound)

    statements: list[str] = []

    def count(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        statements.append(sql)

    # Given a user in a state, with data and an expiry
    query(
        migrated,
        "INSERT INTO conversation_states (bot_id, chat_id, user_id, state, data, expires_at) "
        "VALUES (%s, %s, %s, 'Quiz:q2', '{\"score\": 2}', now() + interval '1 hour') "
        "RETURNING 1",
        bot_id,
        USER,
        USER,
    )
    engine = get_engine(migrated)
    event.listen(engine, "before_cursor_execute", count)
    try:
        # When two messages arrive (one recorded and handled in one statement, the next
        # found by the drain's own statement), from a user whose app is in German
        deliver(migrated, envelope(bot_id, 1, "a", lang="de"), handler)
        deliver(migrated, envelope(bot_id, 2, "b", lang="de"), handler)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    # Then each handler saw the state, its data, its expiry and the language
    assert [(m.text, m.state_loaded, m.state, m.state_data, m.user_lang) for m in seen] == [
        ("a", True, "Quiz:q2", {"score": 2}, "de"),
        ("b", True, "Quiz:q2", {"score": 2}, "de"),
    ]
    assert all(m.state_expires_at is not None for m in seen)
    # And no statement of its own read it
    assert not [s for s in statements if "conversation_states" in s and "JOIN" not in s]


def test_a_conversation_step_commits_with_its_reply(migrated: Settings, bot_id: int) -> None:
    handler = app(bot_id, REGISTRATION)
    # When the user registers and gives a name
    deliver(migrated, envelope(bot_id, 1, "/register"), handler)
    # Then the state and the question were committed together
    assert stored(migrated, bot_id) == [("Registration:name", {}, True)]
    assert replies(migrated, bot_id) == ["What is your name?"]
    deliver(migrated, envelope(bot_id, 2, "Ann"), handler)
    assert stored(migrated, bot_id) == [("Registration:age", {"name": "Ann"}, True)]
    # And a bad age keeps the step, a good one ends the conversation (the row is gone)
    deliver(migrated, envelope(bot_id, 3, "old"), handler)
    assert stored(migrated, bot_id) == [("Registration:age", {"name": "Ann"}, True)]
    deliver(migrated, envelope(bot_id, 4, "30"), handler)
    assert stored(migrated, bot_id) == []
    assert replies(migrated, bot_id) == [
        "What is your name?",
        "How old are you?",
        "Please send your age as a number.",
        "Done, Ann, 30",
    ]


def test_a_failed_handler_rolls_its_state_change_back_with_its_reply(
    migrated: Settings, bot_id: int
) -> None:
    handler = app(bot_id, FAILING)
    # When a handler sets a state and replies, then raises
    deliver(migrated, envelope(bot_id, 1, "/arm fail"), handler)
    # Then neither the state nor the reply was written, and the update is dead-lettered
    assert stored(migrated, bot_id) == []
    assert replies(migrated, bot_id) == []
    dead = query(migrated, "SELECT count(*) FROM dead_updates WHERE bot_id = %s", bot_id)
    assert dead == [(1,)]
    # When the same handler succeeds, Then both are written
    deliver(migrated, envelope(bot_id, 2, "/arm"), handler)
    assert stored(migrated, bot_id) == [("Boom:armed", {"armed_by": USER}, False)]
    assert replies(migrated, bot_id) == ["armed"]
