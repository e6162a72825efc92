"""Outbox media: the JSON forms and their checks, and the Telegram requests they become."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
from telethon.tl import functions, types

from tgfleet.db import Outbox
from tgfleet.sends.media import (
    LocalFile,
    MediaError,
    MediaFileError,
    StoredFile,
    check_readable,
    file_reference_in,
    parse_media,
    stored_media,
    upload_media,
    uploaded_media,
    with_reference,
)
from tgfleet.sends.outbox import outbox_rows
from tgfleet.sends.telegram_calls import build_request

PEER = types.InputPeerUser(1001, 777)
REF = base64.b64encode(b"file-ref").decode()


def row(media: dict[str, Any], text: str = "caption") -> Outbox:
    return Outbox(
        bot_id=42, id=9, chat_id=1001, text=text, parse_mode=None, reply_to=None, media=media
    )


def test_a_received_document_is_sent_again_by_id() -> None:
    # Given a document the bot received, with the message it came in
    media = stored_media("document", 5, 6, REF, source=(1001, 70))
    # When its row becomes a request
    request = build_request(row(media), PEER, 556)
    # Then it is sendMedia with an InputMediaDocument, the caption and our random_id
    assert isinstance(request, functions.messages.SendMediaRequest)
    assert request.media == types.InputMediaDocument(types.InputDocument(5, 6, b"file-ref"))
    assert (request.message, request.random_id) == ("caption", 556)
    assert parse_media(media) == StoredFile("document", 5, 6, b"file-ref", (1001, 70))


def test_a_received_photo_is_sent_again_as_a_photo() -> None:
    request = build_request(row({"photo": [5, 6, REF]}), PEER, 1)
    assert isinstance(request, functions.messages.SendMediaRequest)
    assert request.media == types.InputMediaPhoto(types.InputPhoto(5, 6, b"file-ref"))


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("document", []),
        ("voice", [types.DocumentAttributeAudio(duration=0, voice=True)]),
        ("video", [types.DocumentAttributeVideo(duration=0, w=0, h=0, supports_streaming=True)]),
    ],
)
def test_an_upload_carries_its_name_and_the_attributes_of_its_kind(
    kind: str, extra: list[Any]
) -> None:
    # Given a local file to send as ``kind``
    media = upload_media("/srv/files/report.ogg", kind)
    uploaded = types.InputFile(id=1, parts=1, name="report.ogg", md5_checksum="")
    # When its row becomes a request with the uploaded file
    request = build_request(row(media), PEER, 7, uploaded)
    # Then it is an uploaded document named after the file, with its kind's attributes
    assert isinstance(request, functions.messages.SendMediaRequest)
    sent = request.media
    assert isinstance(sent, types.InputMediaUploadedDocument)
    assert sent.file is uploaded
    assert sent.attributes == [types.DocumentAttributeFilename("report.ogg"), *extra]
    assert sent.mime_type == "audio/ogg"  # guessed from the name
    assert sent.force_file is (True if kind == "document" else None)


def test_an_uploaded_photo_is_an_uploaded_photo() -> None:
    spec = LocalFile("/a/b.jpg", "photo", "b.jpg", "image/jpeg")
    uploaded = types.InputFile(id=1, parts=1, name="b.jpg", md5_checksum="")
    assert uploaded_media(spec, uploaded) == types.InputMediaUploadedPhoto(file=uploaded)


def test_an_upload_gets_defaults_from_its_path_and_kind() -> None:
    spec = parse_media({"upload": {"path": "/tmp/clip", "kind": "video"}})
    assert spec == LocalFile("/tmp/clip", "video", "clip", "video/mp4")
    spec = parse_media(upload_media("/x/notes.bin", file_name="n.txt", mime_type="text/x"))
    assert spec == LocalFile("/x/notes.bin", "document", "n.txt", "text/x")


def test_a_relative_path_is_made_absolute_when_the_handler_names_it() -> None:
    media = upload_media("relative/file.pdf")
    assert media["upload"]["path"] == os.path.abspath("relative/file.pdf")


def test_an_upload_must_be_uploaded_before_its_request_is_built() -> None:
    with pytest.raises(ValueError, match="has to be uploaded"):
        build_request(row(upload_media("/a/b.pdf")), PEER, 1)


@pytest.mark.parametrize(
    ("media", "message"),
    [
        ("5,6,ref", "must be one of"),
        ({"source": [1, 2]}, "exactly one of"),
        ({"photo": [5, 6, REF], "document": [5, 6, REF]}, "exactly one of"),
        ({"video": [1, 2, REF]}, "exactly one of"),
        ({"photo": [5, 6]}, r"\[id, access_hash, ref_b64\]"),
        ({"document": ["5", 6, REF]}, "the file id must be an integer"),
        ({"document": [5, True, REF]}, "the access hash must be an integer"),
        ({"document": [5, 6, "not base64!"]}, "not valid base64"),
        ({"document": [5, 6, REF], "source": [1]}, r"'source' must be \[chat_id, message_id\]"),
        ({"document": [5, 6, REF], "colour": "red"}, r"unknown keys \['colour'\]"),
        ({"upload": "/a/b"}, "'upload' must be an object"),
        ({"upload": {"path": "a/b"}}, "absolute 'path'"),
        ({"upload": {"path": "/a/b", "kind": "sticker"}}, "kind must be one of"),
        ({"upload": {"path": "/a/b", "size": 3}}, r"unknown keys \['size'\]"),
        ({"upload": {"path": "/a/b", "file_name": "x/y"}}, "plain name"),
        ({"upload": {"path": "/a/b", "mime_type": "pdf"}}, "type/subtype"),
        ({"upload": {"path": "/a/b"}, "source": [1, 2]}, r"unknown keys \['source'\]"),
    ],
)
def test_malformed_media_fails_in_the_handler_with_the_reason(media: Any, message: str) -> None:
    # When a handler queues a message with malformed media, Then it fails at once, saying why
    with pytest.raises(MediaError, match=message):
        outbox_rows(42, 1001, "caption", media=media)
    # And the sender would fail such a row too (a ValueError: no retry)
    with pytest.raises(ValueError, match=message):
        build_request(row(media), PEER, 1)


def test_valid_media_goes_with_the_first_part() -> None:
    media = upload_media("/a/b.pdf")
    rows = outbox_rows(42, 1001, "x" * 1500, media=media)
    assert rows[0]["media"] == media and "media" not in rows[1]


def test_a_fresh_reference_replaces_the_old_one_once() -> None:
    media = stored_media("photo", 5, 6, REF, source=(1001, 70))
    fresh = with_reference(media, b"new-ref")
    assert parse_media(fresh) == StoredFile("photo", 5, 6, b"new-ref", (1001, 70), True)
    assert media["photo"][2] == REF  # the original is left alone
    with pytest.raises(MediaError):
        with_reference(upload_media("/a/b"), b"x")


def test_the_current_reference_is_read_from_the_message_that_has_the_file() -> None:
    spec = StoredFile("document", 5, 6, b"old")
    document = types.Document(
        id=5, access_hash=6, file_reference=b"new", date=None, mime_type="x/y", size=1, dc_id=2,
        attributes=[],
    )  # fmt: skip
    message = types.Message(
        id=70, peer_id=types.PeerUser(1), date=None, message="",
        media=types.MessageMediaDocument(document=document),
    )  # fmt: skip
    assert file_reference_in(message, spec) == b"new"
    assert file_reference_in(message, StoredFile("document", 99, 6, b"old")) is None
    assert file_reference_in(message, StoredFile("photo", 5, 6, b"old")) is None
    assert file_reference_in(types.MessageEmpty(70, None), spec) is None


def test_a_readable_file_gives_its_size(tmp_path: Path) -> None:
    path = tmp_path / "a.txt"
    path.write_bytes(b"hello")
    assert check_readable(LocalFile(str(path), "document", "a.txt", "text/plain")) == 5


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p, "does not exist"),
        (lambda p: (p.mkdir(), p)[1], "is a directory"),
        (lambda p: (p.write_bytes(b""), p)[1], "is empty"),
    ],
)
def test_a_file_that_cannot_be_uploaded_says_why(tmp_path: Path, make: Any, message: str) -> None:
    path = make(tmp_path / "f")
    with pytest.raises(MediaFileError, match=message):
        check_readable(LocalFile(str(path), "document", "f", "text/plain"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_an_unreadable_file_says_so(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_bytes(b"x")
    path.chmod(0)
    with pytest.raises(MediaFileError, match="cannot read the file to upload"):
        check_readable(LocalFile(str(path), "document", "secret", "text/plain"))
