"""The send and outbox commands on real PostgreSQL and Redis: resumable broadcasts,
retrying dead rows, and ``tgfleet send`` / ``tgfleet outbox`` in child processes."""

from __future__ import annotations

import argparse
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from tests.support.sends import queued_tasks
from tgfleet.db import Entity, Outbox, OutboxStatus, PeerType, TgUser, session_scope
from tgfleet.platform.settings import Settings
from tgfleet.sends.cli import SendCliError, add_parsers, queue_broadcast, recipients
from tgfleet.sends.outbox import queue_message


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
    assert len(queued_tasks(migrated)) == 5


def test_a_broadcast_of_a_long_text_or_for_later_is_queued_in_bulk_as_one_by_one(
    migrated: Settings, bot_id: int
) -> None:
    # When a text of two parts is broadcast to 60 chats, twice (a resumed broadcast)
    chats = list(range(100, 160))
    long_text = "word " * 1000  # 5,000 characters: two messages
    assert queue_broadcast(migrated, bot_id, chats, long_text, 88) == 60
    assert queue_broadcast(migrated, bot_id, chats, long_text, 88) == 0
    # Then each chat has both parts, the second held until the first is sent, and only
    # first parts were enqueued (as batches of the bot's distinct chats)
    with session_scope(migrated, bot_id=bot_id) as s:
        rows = s.execute(
            select(Outbox.chat_id, Outbox.dedupe_key, Outbox.next_attempt_at).where(
                Outbox.broadcast_id == 88
            )
        ).all()
    assert len(rows) == 120
    held = [r for r in rows if r.dedupe_key.endswith("#part1")]
    assert len(held) == 60 and all(r.next_attempt_at.year > 9000 for r in held)
    enqueued = [
        item[1]
        for task in queued_tasks(migrated)
        for item in task["kwargs"]["items"]  # type: ignore[index]
    ]
    assert sorted(enqueued) == chats
    # When it is scheduled instead, nothing is enqueued
    before = len(queued_tasks(migrated))
    later = datetime(2099, 1, 1, tzinfo=UTC)
    assert queue_broadcast(migrated, bot_id, chats, "later", 89, at=later) == 60
    assert len(queued_tasks(migrated)) == before
    with session_scope(migrated, bot_id=bot_id) as s:
        statuses = s.scalars(select(Outbox.status).where(Outbox.broadcast_id == 89)).all()
    assert set(statuses) == {OutboxStatus.SCHEDULED}


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
    assert len(queued_tasks(migrated)) == 2


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
    # When a broadcast is scheduled for next Christmas morning in Berlin
    year = datetime.now(UTC).year + 1
    later = [*send[:-1], "10", "--at", f"{year}-12-24T09:00", "--tz", "Europe/Berlin"]
    scheduled = tgfleet(*later)
    # Then it says when, in UTC too, and the rows wait: listed, then cancelled
    assert scheduled.returncode == 0, scheduled.stderr
    assert f"scheduled for {year}-12-24T09:00:00+01:00 ({year}-12-24 08:00:00 UTC) 3" in (
        scheduled.stdout
    )
    listed = tgfleet("outbox", "scheduled", "--bot", str(bot_id))
    assert listed.stdout.count(f"{year}-12-24 08:00:00") == 3, listed.stdout
    cancel = tgfleet("outbox", "cancel", "--bot", str(bot_id), "--broadcast-id", "10")
    assert "cancelled 3 scheduled row(s)" in cancel.stdout, cancel.stderr
    # And a time zone that does not exist is named, and nothing is written
    typo = tgfleet(*send[:-1], "11", "--at", f"{year}-12-24T09:00", "--tz", "Europe/Berln")
    assert typo.returncode == 1
    assert "--tz 'Europe/Berln' is not a time zone" in typo.stderr
    with session_scope(migrated, bot_id=bot_id) as s:
        assert s.scalars(select(Outbox).where(Outbox.broadcast_id == 11)).all() == []


def test_a_bot_that_is_not_in_the_fleet_is_named(migrated: Settings) -> None:
    # Given a bot id no bot of the fleet has, When its recipients are looked up,
    # Then the error names the bot and how to add one (not a foreign-key traceback)
    with pytest.raises(SendCliError, match=r"bot 987654321 is not in this fleet.*bots add"):
        recipients(migrated, 987654321, ["1"])
