"""Files: documents, voice notes and videos from users; uploads and re-sends from bots."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from telethon import events
from telethon.errors import FileReferenceExpiredError, MediaEmptyError
from telethon.tl import types

from tests.support.simulator import World, collect
from tests.support.waiting import wait_until_async

pytestmark = pytest.mark.timeout(60)

_FILES = [
    {"type": "document", "file_name": "cv.pdf", "mime_type": "application/pdf", "size": 2048},
    {"type": "voice", "duration": 7, "size": 4000},
    {"type": "video", "file_name": "clip.mp4", "duration": 3.5, "width": 320, "height": 240},
]


def test_bot_receives_documents_voice_notes_and_videos(
    world: World, run: Callable[..., Any]
) -> None:
    # Given a listening bot
    async def scenario() -> list[Any]:
        client = await world.bot_client()
        seen: list[Any] = []
        client.add_event_handler(collect(seen, lambda e: e.message), events.NewMessage())
        await client.catch_up()
        try:
            # When the user sends a document, a voice note and a video
            for media in _FILES:
                await asyncio.to_thread(
                    world.sim.send, world.user["id"], world.bot["id"], "", media=media
                )
            await wait_until_async(lambda: len(seen) == 3, 5, "the three files")
            return seen
        finally:
            await client.disconnect()

    doc, voice, video = run(scenario())
    # Then each arrives as MessageMediaDocument with Telegram's attributes
    assert isinstance(doc.media, types.MessageMediaDocument)
    assert (doc.file.name, doc.file.mime_type, doc.file.size) == ("cv.pdf", "application/pdf", 2048)
    assert doc.document.access_hash and doc.document.file_reference
    assert voice.voice is not None and voice.file.duration == 7
    assert voice.file.mime_type == "audio/ogg"
    assert video.video is not None and (video.file.width, video.file.height) == (320, 240)


def test_bot_sends_a_received_document_back_by_id(world: World, run: Callable[..., Any]) -> None:
    # Given a bot that received a document
    [sent] = world.sim.send(world.user["id"], world.bot["id"], "", media=_FILES[0])

    async def scenario() -> int:
        client = await world.bot_client()
        try:
            peer = await client.get_input_entity("ann_smith")
            [message] = await client.get_messages(peer, ids=[sent["id"]])
            doc = message.document
            # When it sends it with a stale file reference or a wrong access hash
            with pytest.raises(FileReferenceExpiredError):
                await client.send_file(peer, types.InputDocument(doc.id, doc.access_hash, b"x"))
            with pytest.raises(MediaEmptyError):
                await client.send_file(peer, types.InputDocument(doc.id, 1, doc.file_reference))
            # and then as received (InputMediaDocument: id, access hash, file reference)
            await client.send_file(peer, doc, caption="back")
            return int(doc.id)
        finally:
            await client.disconnect()

    doc_id = run(scenario())
    # Then only the valid one reached the user, as the same document
    [got] = world.sim.received(world.user["id"])
    assert got["text"] == "back"
    assert got["media"]["id"] == doc_id
    assert (got["media"]["type"], got["media"]["file_name"]) == ("document", "cv.pdf")


def test_send_file_uploads_a_local_file(
    world: World, run: Callable[..., Any], tmp_path: Path
) -> None:
    # Given a 300 KiB local PDF (three upload parts)
    path = tmp_path / "report.pdf"
    path.write_bytes(bytes(range(256)) * 1200)

    async def scenario() -> Any:
        client = await world.bot_client()
        try:
            peer = await client.get_input_entity("ann_smith")
            # When the bot sends it with Telethon's send_file
            return await client.send_file(peer, str(path), caption="your report")
        finally:
            await client.disconnect()

    message = run(scenario())
    # Then the user receives it with its name, type and size, and the bot's result agrees
    [got] = world.sim.received(world.user["id"])
    assert got["media"]["type"] == "document"
    assert (got["media"]["file_name"], got["media"]["mime_type"]) == (
        "report.pdf",
        "application/pdf",
    )
    assert got["media"]["size"] == path.stat().st_size
    assert message.document.id == got["media"]["id"]
    assert world.sim.stats()["counters"]["file_parts"] == 3  # 128 KiB parts, bytes not kept
