"""The Telegram requests built from outbox rows, and the message id read from answers."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from telethon.tl import functions, types

from tgfleet.db import Outbox
from tgfleet.sends.telegram_calls import build_request, parse_text, sent_message_id

PEER = types.InputPeerUser(1001, 777)


def row(text: str = "hi", **columns: Any) -> Outbox:
    """An outbox row as the claim returns it (an ORM object; no database involved)."""
    values: dict[str, Any] = {"bot_id": 42, "id": 9, "chat_id": 1001, "text": text}
    values.update({"parse_mode": None, "reply_to": None, "media": None} | columns)
    return Outbox(**values)


@pytest.mark.parametrize(
    ("text", "mode", "plain", "entities"),
    [
        ("**bold** move", "markdown", "bold move", [types.MessageEntityBold(0, 4)]),
        ("**bold** move", "md", "bold move", [types.MessageEntityBold(0, 4)]),
        ("<i>it</i> is", "html", "it is", [types.MessageEntityItalic(0, 2)]),
        ("**as is**", None, "**as is**", None),
        ("no markup", "html", "no markup", None),  # no entities: None, not []
    ],
)
def test_markup_becomes_plain_text_and_entities(
    text: str, mode: str | None, plain: str, entities: Any
) -> None:
    assert parse_text(text, mode) == (plain, entities)


def test_a_text_row_is_a_send_message_without_link_preview() -> None:
    # Given a row replying to message 17, with HTML
    request = build_request(row("<b>hi</b>", parse_mode="html", reply_to=17), PEER, 555)
    # Then it is messages.sendMessage with the plain text, entities, the reply and our id
    assert isinstance(request, functions.messages.SendMessageRequest)
    assert (request.peer, request.message, request.random_id) == (PEER, "hi", 555)
    assert request.entities == [types.MessageEntityBold(0, 2)]
    assert request.reply_to == types.InputReplyToMessage(17)
    assert request.no_webpage is True


def test_a_row_with_a_photo_is_a_send_media() -> None:
    media = {"photo": [5, 6, base64.b64encode(b"file-ref").decode()]}
    request = build_request(row("caption", media=media), PEER, 556)
    assert isinstance(request, functions.messages.SendMediaRequest)
    assert request.media == types.InputMediaPhoto(types.InputPhoto(5, 6, b"file-ref"))
    assert (request.message, request.random_id, request.reply_to) == ("caption", 556, None)


@pytest.mark.parametrize("media", [{"photo": [5, 6]}, {"photo": "5,6,ref"}, {"video": [1, 2, ""]}])
def test_malformed_media_is_a_value_error(media: dict[str, Any]) -> None:
    # The sender fails such a row at once: a retry cannot make it valid
    with pytest.raises(ValueError, match=r"\{'photo': \[id, access_hash, ref_b64\]\}"):
        build_request(row(media=media), PEER, 1)


def test_the_message_id_comes_from_the_answer_of_any_shape() -> None:
    request = build_request(row(), PEER, 555)
    short = types.UpdateShortSentMessage(id=70, pts=1, pts_count=1, date=None)
    sent = types.Message(id=72, peer_id=types.PeerUser(1001), date=None, message="hi")
    updates = types.Updates(
        updates=[
            types.UpdateMessageID(id=71, random_id=999),  # someone else's send
            types.UpdateMessageID(id=73, random_id=555),
            types.UpdateNewMessage(message=sent, pts=2, pts_count=1),
        ],
        users=[],
        chats=[],
        date=None,
        seq=0,
    )
    only_new = types.Updates(
        updates=[types.UpdateNewMessage(message=sent, pts=2, pts_count=1)],
        users=[],
        chats=[],
        date=None,
        seq=0,
    )
    # Then a short answer gives its id, full updates the id matching our random_id, else
    # the new message's, and an answer without any gives None
    assert sent_message_id(short, request) == 70
    assert sent_message_id(updates, request) == 73
    assert sent_message_id(only_new, request) == 72
    assert sent_message_id(types.Updates([], [], [], None, 0), request) is None
