"""The outbox API on real PostgreSQL and Redis: texts split within Telegram's limit, rows
enqueued only after commit, dedupe keys and linked parts."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import select

from tests.support.sends import queued_tasks
from tgfleet.db import Outbox, OutboxStatus, session_scope
from tgfleet.platform.settings import Settings
from tgfleet.sends.media import upload_media
from tgfleet.sends.outbox import MAX_TEXT, next_part_key, queue_message, split_text, utf16_len


@given(st.text(alphabet=st.sampled_from("ab \n😀é"), max_size=9000))
@hypothesis_settings(max_examples=60, deadline=None)
def test_split_text_keeps_every_character_within_the_limit(text: str) -> None:
    parts = split_text(text)
    assert "".join(parts) == text
    assert all(utf16_len(p) <= MAX_TEXT for p in parts)
    assert all(parts) or parts == [""]


def test_queue_message_enqueues_only_after_commit(migrated: Settings, bot_id: int) -> None:
    # Given a transaction that queues a message
    with session_scope(migrated, bot_id=bot_id) as s:
        row = queue_message(s, bot_id, 42, "hello")
        # Then nothing is enqueued before the commit
        assert queued_tasks(migrated) == []
    # And, after it, the bot's ready-sends task is woken, which finds the row itself
    [task] = queued_tasks(migrated)
    assert task["task"] == "tgfleet.sends.deliver_ready"
    assert task["kwargs"] == {"bot_id": bot_id}
    assert row.status is OutboxStatus.QUEUED


def test_a_file_to_upload_gets_a_deliver_task_of_its_own(
    migrated: Settings, bot_id: int, tmp_path: Path
) -> None:
    # Given a message with a file to upload (a round sends no uploads)
    photo = tmp_path / "cat.jpg"
    photo.write_bytes(b"\xff\xd8 not really a jpeg")
    with session_scope(migrated, bot_id=bot_id) as s:
        row = queue_message(s, bot_id, 42, "look", media=upload_media(str(photo), "photo"))
    # Then it has a deliver task of its own
    [task] = queued_tasks(migrated)
    assert task["task"] == "tgfleet.sends.deliver"
    assert task["kwargs"] == {"outbox_id": row.id, "bot_id": bot_id, "chat_id": 42}


def test_rolled_back_message_is_never_enqueued(migrated: Settings, bot_id: int) -> None:
    with pytest.raises(RuntimeError), session_scope(migrated, bot_id=bot_id) as s:
        queue_message(s, bot_id, 42, "hello")
        raise RuntimeError("handler failed")
    assert queued_tasks(migrated) == []
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
    [task] = queued_tasks(migrated)  # the ready-sends task, once: the rerun made no row
    assert task["kwargs"] == {"bot_id": bot_id}
