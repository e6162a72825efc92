"""Outbox operations besides sends: edits, deletes and callback answers, as rows and as the
Telegram calls the sender makes from them."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from telethon.tl import functions, types

from tgfleet.db import Outbox, OutboxOp, OutboxStatus
from tgfleet.sends.media import LocalFile, MediaError, stored_media, upload_media
from tgfleet.sends.outbox import (
    MAX_CAPTION,
    MAX_DELETE,
    MAX_TEXT,
    answer_row,
    delete_row,
    edit_row,
    outbox_rows,
)
from tgfleet.sends.sender import _local_file
from tgfleet.sends.telegram_calls import build_request, sent_message_id

PEER = types.InputPeerUser(1001, 777)
LIKE = {"inline": [[{"text": "Like", "data": base64.b64encode(b"vote:like:7").decode()}]]}


def as_row(values: dict[str, Any]) -> Outbox:
    """An outbox row as the claim would return it (no database involved)."""
    values = {k: v for k, v in values.items() if k not in ("status", "next_attempt_at")}
    return Outbox(**{"id": 9, "reply_to": None, "media": None, "parse_mode": None, **values})


def test_an_edit_changes_text_and_keyboard_of_its_message() -> None:
    # Given an edit of message 55 with a new text and a keyboard
    values = edit_row(42, 1001, 55, "<b>new</b>", reply_markup=LIKE, parse_mode="html")
    assert (values["op"], values["target_id"], values["status"]) == (
        OutboxOp.EDIT.value,
        55,
        OutboxStatus.QUEUED,
    )
    # When the sender builds its call
    request = build_request(as_row(values), PEER, 0)
    # Then it is messages.editMessage of that message, with text, entities and buttons
    assert isinstance(request, functions.messages.EditMessageRequest)
    assert (request.peer, request.id, request.message) == (PEER, 55, "new")
    assert request.entities == [types.MessageEntityBold(0, 3)]
    button = request.reply_markup.rows[0].buttons[0]
    data = getattr(button, "data", None) or button.type.data  # Telethon's layer 229 nests it
    assert (button.text, data) == ("Like", b"vote:like:7")
    # And the edited message's id is what the row records as sent
    assert sent_message_id(types.Updates([], [], [], 0, 0), request) == 55


def test_an_edit_of_the_keyboard_alone_keeps_the_text() -> None:
    request = build_request(as_row(edit_row(42, 1001, 55, None, reply_markup=LIKE)), PEER, 0)
    assert isinstance(request, functions.messages.EditMessageRequest)
    assert request.message is None and request.reply_markup is not None


@pytest.mark.parametrize(
    ("text", "markup", "error"),
    [
        (None, None, "a new text, a new keyboard or new media"),
        ("x" * (MAX_TEXT + 1), None, f"at most {MAX_TEXT}"),
        ("ok", {"inline": [[{"text": "x", "data": ""}]]}, "callback data"),
    ],
)
def test_a_bad_edit_fails_when_it_is_made(text: str | None, markup: Any, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        edit_row(42, 1001, 55, text, reply_markup=markup)


def test_an_edit_with_a_received_photo_replaces_the_file_and_captions_it() -> None:
    # Given an edit of message 55 to a photo the bot received, captioned, with a keyboard
    ref = base64.b64encode(b"file-ref").decode()
    media = stored_media("photo", 5, 6, ref, source=(1001, 70))
    values = edit_row(42, 1001, 55, "**Bob**, 31", reply_markup=LIKE, parse_mode="md", media=media)
    assert values["media"] == media
    # When the sender builds its call
    request = build_request(as_row(values), PEER, 0)
    # Then it is messages.editMessage of message 55 with the photo by id and the caption
    assert isinstance(request, functions.messages.EditMessageRequest)
    assert request.media == types.InputMediaPhoto(types.InputPhoto(5, 6, b"file-ref"))
    assert (request.id, request.message, request.entities) == (
        55,
        "Bob, 31",
        [types.MessageEntityBold(0, 3)],
    )
    assert request.reply_markup is not None
    assert sent_message_id(types.Updates([], [], [], 0, 0), request) == 55


def test_an_edit_with_media_alone_keeps_the_caption() -> None:
    media = stored_media("document", 5, 6, base64.b64encode(b"r").decode())
    request = build_request(as_row(edit_row(42, 1001, 55, None, media=media)), PEER, 0)
    assert isinstance(request, functions.messages.EditMessageRequest)
    assert request.message is None and request.reply_markup is None
    assert request.media == types.InputMediaDocument(types.InputDocument(5, 6, b"r"))


def test_an_edit_that_uploads_a_local_photo_goes_through_the_senders_upload(
    tmp_path: Path,
) -> None:
    # Given an edit to a local photo
    path = tmp_path / "next.jpg"
    path.write_bytes(b"jpeg" * 100)
    row = as_row(edit_row(42, 1001, 55, "next", media=upload_media(path, "photo")))
    # Then the sender uploads it first (as it does for sends), and the edit carries it
    assert _local_file(row) == LocalFile(str(path), "photo", "next.jpg", "image/jpeg")
    with pytest.raises(ValueError, match="has to be uploaded"):
        build_request(row, PEER, 0)
    uploaded = types.InputFile(7, 1, "next.jpg", "")
    request = build_request(row, PEER, 0, uploaded)
    assert isinstance(request, functions.messages.EditMessageRequest)
    assert request.media == types.InputMediaUploadedPhoto(file=uploaded)
    # And an edit without media uploads nothing
    assert _local_file(as_row(edit_row(42, 1001, 55, "text"))) is None


@pytest.mark.parametrize(
    ("text", "media", "error"),
    [
        (
            "x" * (MAX_CAPTION + 1),
            {"photo": [5, 6, "cmVm"]},
            f"caption may have at most {MAX_CAPTION}",
        ),
        ("ok", {"photo": [5, 6]}, r"must be \[id, access_hash, ref_b64\]"),
        ("ok", {"upload": {"path": "/tmp/a.ogg", "kind": "voice"}}, "into a voice note"),
    ],
)
def test_a_bad_media_edit_fails_when_it_is_made(text: str, media: Any, error: str) -> None:
    with pytest.raises(ValueError, match=error) as raised:
        edit_row(42, 1001, 55, text, media=media)
    assert isinstance(raised.value, MediaError) == ("caption" not in error)


def test_a_delete_takes_its_ids_in_one_call() -> None:
    # Given a delete of three messages (one named twice)
    values = delete_row(42, 1001, [7, 5, 7, 6])
    assert values["options"] == {"ids": [5, 6, 7]}
    # Then the call deletes them for everyone
    request = build_request(as_row(values), PEER, 0)
    assert isinstance(request, functions.messages.DeleteMessagesRequest)
    assert (request.id, request.revoke) == ([5, 6, 7], True)
    assert sent_message_id(None, request) is None


def test_a_delete_in_a_channel_goes_to_the_channel() -> None:
    channel = types.InputPeerChannel(2002, 888)
    request = build_request(as_row(delete_row(42, -1002002, [3])), channel, 0)
    assert isinstance(request, functions.channels.DeleteMessagesRequest)
    assert request.channel == types.InputChannel(2002, 888)


@pytest.mark.parametrize(("ids", "error"), [([], "at least one"), (range(101), "at most 100")])
def test_a_bad_delete_fails_when_it_is_made(ids: Any, error: str) -> None:
    assert MAX_DELETE == 100
    with pytest.raises(ValueError, match=error):
        delete_row(42, 1001, ids)


def test_an_answer_is_a_callback_answer_with_its_text_and_alert() -> None:
    # Given an answer to press 123456789 with an alert
    values = answer_row(42, 1001, 123456789, "Liked!", alert=True)
    # Then the call answers that query, with no peer needed, and caches nothing
    request = build_request(as_row(values), None, 0)
    assert isinstance(request, functions.messages.SetBotCallbackAnswerRequest)
    assert (request.query_id, request.message, request.alert, request.cache_time) == (
        123456789,
        "Liked!",
        True,
        0,
    )


def test_an_empty_answer_only_stops_the_spinner() -> None:
    request = build_request(as_row(answer_row(42, 1001, 5)), None, 0)
    assert isinstance(request, functions.messages.SetBotCallbackAnswerRequest)
    assert (request.message, request.alert, request.url) == (None, None, None)


def test_an_answer_over_200_characters_fails_when_it_is_made() -> None:
    with pytest.raises(ValueError, match="at most 200"):
        answer_row(42, 1001, 5, "x" * 201)


def test_a_keyboard_goes_with_the_last_part_of_a_long_text() -> None:
    # Given a text Telegram must split, with a keyboard
    rows = outbox_rows(42, 1001, "word " * 1000, reply_markup=LIKE)
    # Then only the last part carries the keyboard, and it becomes the message's buttons
    assert [r.get("reply_markup") for r in rows] == [None] * (len(rows) - 1) + [LIKE]
    request = build_request(as_row(rows[-1] | {"dedupe_key": None}), PEER, 1)
    assert isinstance(request, functions.messages.SendMessageRequest)
    assert isinstance(request.reply_markup, types.ReplyInlineMarkup)


def test_a_bad_keyboard_fails_when_the_message_is_made() -> None:
    with pytest.raises(ValueError):
        outbox_rows(42, 1001, "hi", reply_markup={"inline": [[{"text": "x"}]]})
