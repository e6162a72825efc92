"""Media and handler errors end to end: a simulated user sends files, the listener, an
update worker running ``tests.support.apps_media`` and a sender send them back (by id,
or uploaded from a local file); handlers that raise on messages and presses, and one
that asks to be run again later. What the user (and the admin) sees is the check."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.databases import query
from tests.support.running import RunningApp
from tests.support.waiting import wait_until
from tgfleet.platform.settings import Settings

pytestmark = pytest.mark.timeout(300)
APP = "tests.support.apps_media:app"


@pytest.fixture
def start_fleet(run_app: Callable[..., RunningApp]) -> Callable[..., RunningApp]:
    """Factory: a bot running the media app (``run_app``'s ``bot_settings`` and ``admin``)."""
    return lambda bot_settings=None, admin=False: run_app(APP, bot_settings, admin)


def texts(simulator: Any, user: int, bot: int) -> list[str]:
    return [m["text"] for m in simulator.received(user, bot)]


def outbox_of(settings: Settings, bot: int, chat: int) -> list[tuple[Any, ...]]:
    return query(
        settings,
        "SELECT status, attempts, last_error, media FROM outbox "
        "WHERE bot_id = %s AND chat_id = %s AND op = 'send' ORDER BY id",
        bot,
        chat,
    )


def dead_updates(settings: Settings, bot: int) -> list[tuple[Any, ...]]:
    return query(
        settings, "SELECT dedupe_key, reason FROM dead_updates WHERE bot_id = %s ORDER BY id", bot
    )


def test_files_a_user_sends_come_back_by_id(
    simulator: Any, start_fleet: Callable[..., dict[str, int]]
) -> None:
    fleet = start_fleet()
    bot, user = fleet["bot"], fleet["user"]
    sent = []
    for media in (
        {"type": "document", "file_name": "report.pdf", "mime_type": "application/pdf"},
        {"type": "voice", "duration": 3},
        {"type": "video", "file_name": "clip.mp4"},
    ):
        # When the user sends a document, then a voice note, then a video
        [message] = simulator.send(user, bot, "", media=media)
        sent.append(message["media"])
        # Then each comes back, the same file (sent again by id, not uploaded), captioned
        got = simulator.wait_received(user, len(sent), bot, timeout=60)[len(sent) - 1]
        assert got["text"] == f"your {media['type']}"
        assert got["media"] == sent[-1]


def test_a_stale_file_reference_is_fetched_again_from_the_users_message(
    settings: Settings, simulator: Any, start_fleet: Callable[..., dict[str, int]]
) -> None:
    fleet = start_fleet()
    bot, user = fleet["bot"], fleet["user"]
    # Given a handler that sends a received document back with an outdated file reference
    [message] = simulator.send(user, bot, "stale", media={"type": "document"})
    # When Telegram answers FILE_REFERENCE_EXPIRED, Then the sender fetched the user's
    # message again for a fresh reference, and the user got their document back once
    got = simulator.wait_received(user, 1, bot, timeout=60)
    assert [m["media"] for m in got] == [message["media"]]
    [(status, _, _, media)] = outbox_of(settings, bot, user)
    assert (status, media["refreshed"], media["source"]) == ("sent", True, [user, message["id"]])


def test_a_handler_uploads_local_files_of_each_kind(
    tmp_path: Path, simulator: Any, start_fleet: Callable[..., dict[str, int]]
) -> None:
    fleet = start_fleet()
    bot, user = fleet["bot"], fleet["user"]
    files = {
        "document": tmp_path / "notes.txt",
        "voice": tmp_path / "hello.ogg",
        "video": tmp_path / "clip.mp4",
        "photo": tmp_path / "cat.jpg",
    }
    for kind, path in files.items():
        path.write_bytes(kind.encode() * 700)
    for count, (kind, path) in enumerate(files.items(), 1):
        # When a handler replies with a local file
        simulator.send(user, bot, f"/upload {path} {kind}")
        # Then the sender uploaded it and the user got it as that kind
        got = simulator.wait_received(user, count, bot, timeout=60)[count - 1]
        assert (got["text"], got["media"]["type"]) == (f"uploaded {kind}", kind)
        if kind != "photo":
            assert (got["media"]["file_name"], got["media"]["size"]) == (path.name, len(kind) * 700)
    assert got["media"]["type"] == "photo"


def test_a_file_that_is_not_there_fails_its_row_at_once(
    tmp_path: Path,
    settings: Settings,
    simulator: Any,
    start_fleet: Callable[..., dict[str, int]],
) -> None:
    fleet = start_fleet()
    bot, user = fleet["bot"], fleet["user"]
    missing = tmp_path / "gone.pdf"
    # When a handler uploads a file that does not exist
    simulator.send(user, bot, f"/upload {missing} document")
    # Then its row failed on the first attempt, saying which file and why
    rows = wait_until(
        lambda: [r for r in outbox_of(settings, bot, user) if r[0] == "failed"], 60, "the failure"
    )
    [(_, attempts, reason, _)] = rows
    assert attempts == 0
    assert reason == f"the file to upload does not exist: {missing}"
    # And the chat carries on
    simulator.send(user, bot, "still there?")
    assert simulator.wait_received(user, 1, bot, timeout=60)[0]["text"] == "echo: still there?"


def test_a_press_whose_handler_raised_is_answered_and_the_admins_told(
    settings: Settings, simulator: Any, start_fleet: Callable[..., dict[str, int]]
) -> None:
    fleet = start_fleet({"notify_admins_on_error": True}, admin=True)
    bot, user, admin = fleet["bot"], fleet["user"], fleet["admin"]
    simulator.send(user, bot, "/start")
    keyboard = simulator.wait_received(user, 1, bot, timeout=60)[0]
    # When the user presses a button whose handler raises
    answer = simulator.press(user, bot, keyboard["message_id"], text="Explode", timeout=30)
    # Then the press was answered once, empty (the handler's own answer was rolled back)
    assert (answer["answered"], answer["message"]) == (True, None)
    # And the update is dead-lettered with the handler's error
    [(key, reason)] = wait_until(lambda: dead_updates(settings, bot), 30, "the dead letter")
    assert key.startswith(f"h:{user}:") and "the button exploded" in reason
    # And the admin was told, once
    notice = simulator.wait_received(admin, 2, bot, timeout=60)[1]["text"]
    assert "the button exploded" in notice and f"chat {user}" in notice
    # When a handler raises on a message, Then its reply is rolled back, the admin told
    simulator.send(user, bot, "/boom")
    notices = simulator.wait_received(admin, 3, bot, timeout=60)
    assert "boom on purpose" in notices[2]["text"]
    # And the chat's next message is handled
    simulator.send(user, bot, "after")
    wait_until(lambda: texts(simulator, user, bot) == ["Careful", "echo: after"], 60, "the echo")
    assert len(dead_updates(settings, bot)) == 2
    assert len(simulator.received(admin, bot)) == 3


def test_a_handler_that_asks_to_retry_runs_again_later_and_its_chat_waits(
    tmp_path: Path,
    settings: Settings,
    simulator: Any,
    start_fleet: Callable[..., dict[str, int]],
) -> None:
    fleet = start_fleet()
    bot, user = fleet["bot"], fleet["user"]
    counter = tmp_path / "attempts"
    # When a handler raises RetryLater twice before it succeeds, and a message follows
    simulator.send(user, bot, f"/flaky {counter}")
    simulator.send(user, bot, "next")
    # Then the user got the third attempt's reply only, and the echo of the next message
    wait_until(
        lambda: sorted(texts(simulator, user, bot)) == ["attempt 3 queued", "echo: next"],
        60,
        "the reply after the retries, and the echo",
        detail=lambda: texts(simulator, user, bot),
    )
    assert counter.read_text() == "3"
    # And the next message was handled only after the retried one: its reply was written
    # after (two sends to a chat may arrive in either order; and not by processed_at,
    # each handling transaction's start, which can come before the chat lock it waited
    # for: a fresh-clone run saw "next" 83 us "before" the retried message that way)
    replies = query(settings, "SELECT text FROM outbox WHERE bot_id = %s ORDER BY id", bot)
    assert [row[0] for row in replies] == ["attempt 3 queued", "echo: next"]
    assert dead_updates(settings, bot) == []


def test_a_handler_that_retries_forever_is_dead_lettered(
    settings: Settings, simulator: Any, start_fleet: Callable[..., dict[str, int]]
) -> None:
    fleet = start_fleet({"handler_retry_limit": 2})
    bot, user = fleet["bot"], fleet["user"]
    # When a handler asks to be retried every time, and a message follows
    simulator.send(user, bot, "/forever")
    simulator.send(user, bot, "after")
    # Then after the bot's limit the update is dead-lettered with the reason
    [(_, reason)] = wait_until(lambda: dead_updates(settings, bot), 60, "the dead letter")
    assert reason == "handler asked to retry 3 times, gave up: never ready"
    # And the chat carries on with the next message
    wait_until(lambda: texts(simulator, user, bot) == ["echo: after"], 60, "the echo")


def test_a_press_replaces_the_photo_of_a_card_in_place(
    tmp_path: Path,
    settings: Settings,
    simulator: Any,
    start_fleet: Callable[..., dict[str, int]],
) -> None:
    fleet = start_fleet()
    bot, user = fleet["bot"], fleet["user"]
    # Given the next profile's photo, which the bot kept, and a local photo file
    [kept] = simulator.send(user, bot, "profile", photo=True)
    path = tmp_path / "next.jpg"
    path.write_bytes(b"jpeg" * 700)
    simulator.send(user, bot, f"/cardfile {path}")
    simulator.wait_received(user, 2, bot, timeout=60)
    # And a profile card the bot sent: another photo, captioned, with buttons
    [shown] = simulator.send(user, bot, "card", photo=True)
    card = simulator.wait_received(user, 3, bot, timeout=60)[2]
    assert (card["media"], card["text"]) == ({"type": "photo", "id": shown["photo_id"]}, "Ann, 30")

    def card_now() -> dict[str, Any]:
        [now] = [m for m in simulator.received(user, bot) if m["message_id"] == card["message_id"]]
        return now

    # When the user presses Next
    assert simulator.press(user, bot, card["message_id"], text="Next", timeout=30)["answered"]
    # Then the card shows the kept photo in place (sent by id), the new caption, its buttons
    edited = wait_until(
        lambda: card_now() if card_now()["text"] == "Bob, 31" else None, 60, "the edit"
    )
    assert edited["media"] == {"type": "photo", "id": kept["photo_id"]}
    assert [b["text"] for b in edited["markup"]["inline"][0]] == ["Next", "Upload"]
    # When the user presses Upload, Then the sender uploaded the local photo into the card
    assert simulator.press(user, bot, card["message_id"], text="Upload", timeout=30)["answered"]
    uploaded = wait_until(
        lambda: card_now() if card_now()["text"] == "Cat, 29" else None, 60, "the upload edit"
    )
    assert uploaded["media"]["type"] == "photo"
    assert uploaded["media"]["id"] not in (kept["photo_id"], shown["photo_id"])
    # And the user got no other message: both were edits, recorded as sent edit rows
    assert len(simulator.received(user, bot)) == 3
    rows = query(
        settings,
        "SELECT status, media FROM outbox WHERE bot_id = %s AND op = 'edit' ORDER BY id",
        bot,
    )
    assert [(status, sorted(media)) for status, media in rows] == [
        ("sent", ["photo"]),
        ("sent", ["upload"]),
    ]
