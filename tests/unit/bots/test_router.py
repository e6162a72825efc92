"""The router picks a message's handler: commands (with @botname, any case), photos, texts,
the fallback; edits are recorded but never handled again."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session
from telethon.tl import types

from tgfleet.bots import DEFAULT_APP, app_router
from tgfleet.bots.context import Context
from tgfleet.bots.effects import Effects
from tgfleet.bots.router import HandlerFn, Router
from tgfleet.inbox import InboundMessage
from tgfleet.platform.envelope import KIND_EDIT, KIND_MESSAGE
from tgfleet.platform.errors import AppUnavailable

USER = 1001
SENT_AT = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def photo() -> types.MessageMediaPhoto:
    size = types.PhotoSize(type="x", w=800, h=600, size=50_000)
    return types.MessageMediaPhoto(
        photo=types.Photo(
            id=5, access_hash=6, file_reference=b"ref", date=SENT_AT, sizes=[size], dc_id=2
        )
    )


def inbound(
    text: str = "",
    media: types.TypeMessageMedia | None = None,
    kind: str = KIND_MESSAGE,
    chat_id: int = USER,
) -> InboundMessage:
    """A stored inbound message with its real Telethon message, as the inbox builds it."""
    message = types.Message(
        id=17,
        peer_id=types.PeerUser(USER) if chat_id > 0 else types.PeerChat(-chat_id),
        date=SENT_AT,
        message=text,
        from_id=types.PeerUser(USER),
        media=media,
    )
    return InboundMessage(
        bot_id=42,
        chat_id=chat_id,
        sender_id=USER,
        tg_message_id=17,
        text=text,
        message=message,
        kind=kind,
    )


def context(message: InboundMessage, admins: tuple[int, ...] = ()) -> Context:
    # An unbound Session opens no connection; these handlers do not query.
    return Context(Session(), 42, list(admins), message, Effects(42))


class Calls:
    """A router whose handlers record which one ran."""

    def __init__(self) -> None:
        self.router = Router("test")
        self.ran: list[str] = []
        self.router.command("start")(self.handler("start"))
        self.router.command("Set")(self.handler("set"))
        self.router.photo()(self.handler("photo"))
        self.router.text()(self.handler("text"))
        self.router.fallback()(self.handler("fallback"))

    def handler(self, name: str) -> HandlerFn:
        def run(ctx: Context) -> None:
            self.ran.append(name)

        run.__name__ = name
        return run


@pytest.fixture
def calls() -> Calls:
    return Calls()


def chosen(router: Router, message: InboundMessage) -> str | None:
    """The name of the handler ``router`` picks for ``message`` (None: no handler)."""
    handler = router.resolve(message)
    return None if handler is None else handler.__name__


@pytest.mark.parametrize(
    ("text", "handler"),
    [
        ("/start", "start"),
        ("/START", "start"),
        ("/start@fleet_bot", "start"),
        ("/Start@Fleet_Bot payload", "start"),
        ("  /start  ", "start"),
        ("/set age 30", "set"),  # registered as "Set": names are case-insensitive
        ("/unknown", "fallback"),
        ("/", "fallback"),
        ("/@fleet_bot", "fallback"),
        ("hello", "text"),
        ("start", "text"),
        ("", "fallback"),
        ("   ", "fallback"),
    ],
)
def test_texts_and_commands_reach_their_handler(calls: Calls, text: str, handler: str) -> None:
    # Given a router with commands, a text handler and a fallback
    # When a message with ``text`` is resolved, Then the expected handler is chosen
    assert chosen(calls.router, inbound(text)) == handler


def test_a_photo_goes_to_the_photo_handler_even_with_a_command_caption(calls: Calls) -> None:
    assert chosen(calls.router, inbound("/start", media=photo())) == "photo"


def test_without_a_photo_handler_a_photo_is_treated_by_its_caption() -> None:
    # Given a router with no photo handler
    router = Router("no-photos")
    router.text()(text_handler := lambda ctx: None)
    router.fallback()(fallback := lambda ctx: None)
    # Then a captioned photo is a text, an uncaptioned one goes to the fallback
    assert router.resolve(inbound("nice", media=photo())) is text_handler
    assert router.resolve(inbound("", media=photo())) is fallback


def test_other_media_are_not_photos(calls: Calls) -> None:
    # Given a message whose media is a document, or a photo that was deleted
    document = types.MessageMediaDocument(document=types.DocumentEmpty(id=1))
    deleted = types.MessageMediaPhoto(photo=types.PhotoEmpty(id=5))
    # Then neither reaches the photo handler
    assert chosen(calls.router, inbound("", media=document)) == "fallback"
    assert chosen(calls.router, inbound("", media=deleted)) == "fallback"


@pytest.mark.parametrize("text", ["/start", "hello", ""])
def test_edits_are_never_handled_again(calls: Calls, text: str) -> None:
    # Given an edit of any message, When it is dispatched, Then nothing runs
    message = inbound(text, media=photo() if not text else None, kind=KIND_EDIT)
    assert chosen(calls.router, message) is None
    assert calls.router.dispatch(context(message)) is False
    assert calls.ran == []


def test_dispatch_runs_the_handler_once_and_says_so(calls: Calls) -> None:
    assert calls.router.dispatch(context(inbound("/set name Ann"))) is True
    assert calls.ran == ["set"]


def test_without_a_fallback_an_unknown_command_is_not_handled() -> None:
    router = Router("bare")
    router.command("start")(lambda ctx: None)
    assert router.resolve(inbound("/help")) is None
    assert router.dispatch(context(inbound("plain text"))) is False


def test_the_context_speaks_for_the_message() -> None:
    # Given a command with arguments in a private chat, and two admins
    ctx = context(inbound("/set  age   30"), admins=(7, 8))
    # Then the context gives its words, its chat and sender; replies go to the outbox
    assert ctx.args() == ["age", "30"]
    assert (ctx.chat_id, ctx.user_id) == (USER, USER)
    ctx.reply("saved")
    ctx.notify_admins("someone set their age")
    ctx.event("profile_set", field="age")
    assert [(row["chat_id"], row["text"]) for row in ctx.effects.outbox] == [
        (USER, "saved"),
        (7, "someone set their age"),
        (8, "someone set their age"),
    ]
    assert ctx.effects.events == [
        {"kind": "profile_set", "user_id": USER, "data": {"field": "age"}}
    ]


def test_in_a_group_the_user_is_the_sender_not_the_chat() -> None:
    ctx = context(inbound("hi", chat_id=-55))
    assert (ctx.chat_id, ctx.user_id) == (-55, USER)


# -- the apps ---------------------------------------------------------------------------------


def test_the_echo_app_answers_a_text_with_itself() -> None:
    # Given the echo app and a text message
    ctx = context(inbound("ping"))
    # When it is dispatched
    assert app_router("echo").dispatch(ctx)
    # Then the same text is queued for the same chat, and the echo is counted
    assert [(r["chat_id"], r["text"]) for r in ctx.effects.outbox] == [(USER, "ping")]
    assert [e["kind"] for e in ctx.effects.events] == ["echo"]


def test_the_echo_app_answers_a_bare_photo_with_a_placeholder() -> None:
    ctx = context(inbound("", media=photo()))
    assert app_router("echo").dispatch(ctx)
    assert [r["text"] for r in ctx.effects.outbox] == ["(no text)"]


def test_apps_are_found_by_name() -> None:
    assert app_router(None).name == DEFAULT_APP
    assert app_router("echo").name == "echo"
    with pytest.raises(AppUnavailable, match=r"unknown bot app 'chess': name a registered app"):
        app_router("chess")
