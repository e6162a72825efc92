"""Updates as the inbox hands them to a handler (real Telethon TL objects), a recording
stand-in for the lead's ``Effects``, and a context built from both."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session
from telethon.tl import types

from tgfleet.bots import Context
from tgfleet.inbox import InboundMessage

BOT, USER, ADMIN, GROUP = 42, 1001, 9, 55
SENT_AT = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


def message(
    text: str = "",
    media: Any = None,
    kind: str = "message",
    chat_id: int = USER,
    sender: int = USER,
    msg_id: int = 17,
) -> InboundMessage:
    peer = types.PeerUser(chat_id) if chat_id > 0 else types.PeerChat(-chat_id)
    tl = types.Message(
        id=msg_id,
        peer_id=peer,
        date=SENT_AT,
        message=text,
        from_id=types.PeerUser(sender),
        media=media,
    )
    return InboundMessage(BOT, chat_id, sender, msg_id, text, tl, kind)


def callback(
    data: bytes, user: int = USER, msg_id: int = 30, query_id: int = 777
) -> InboundMessage:
    update = types.UpdateBotCallbackQuery(
        query_id=query_id,
        user_id=user,
        peer=types.PeerUser(user),
        msg_id=msg_id,
        chat_instance=5,
        data=data,
    )
    return InboundMessage(BOT, user, user, msg_id, "", None, "callback", update=update)


def stopped(flag: bool = True, user: int = USER) -> InboundMessage:
    update = types.UpdateBotStopped(user_id=user, date=SENT_AT, stopped=flag, qts=1)
    return InboundMessage(BOT, user, user, 0, "", None, "bot_stopped", update=update)


def photo_media() -> types.MessageMediaPhoto:
    sizes = [
        types.PhotoSize(type="m", w=320, h=240, size=9_000),
        types.PhotoSizeProgressive(type="y", w=1280, h=960, sizes=[10_000, 50_000]),
    ]
    photo = types.Photo(
        id=5, access_hash=6, file_reference=b"ref", date=SENT_AT, sizes=sizes, dc_id=2
    )
    return types.MessageMediaPhoto(photo=photo)


def document_media(*attributes: Any, mime: str = "application/pdf") -> types.MessageMediaDocument:
    document = types.Document(
        id=7,
        access_hash=8,
        file_reference=b"\x00\xff",
        date=SENT_AT,
        mime_type=mime,
        size=1234,
        dc_id=2,
        attributes=list(attributes),
    )
    return types.MessageMediaDocument(document=document)


class RecordingEffects:
    """Stands in for ``tgfleet.bots.effects.Effects``: records what a handler asked for."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def queue(self, chat_id: int, text: str, **options: Any) -> None:
        self.calls.append(("queue", chat_id, text, options))

    def event(self, kind: str, user_id: int | None, data: dict[str, Any]) -> None:
        self.calls.append(("event", kind, user_id, data))

    def answer_callback(
        self, query_id: int, text: str | None, alert: bool, url: str | None, chat_id: int = 0
    ) -> None:
        self.calls.append(("answer", query_id, text, alert, url))

    def edit(
        self, chat_id: int, message_id: int, text: str | None, reply_markup: Any, **options: Any
    ) -> None:
        self.calls.append(("edit", chat_id, message_id, text, reply_markup))

    def delete(self, chat_id: int, message_ids: list[int]) -> None:
        self.calls.append(("delete", chat_id, message_ids))


def context(
    inbound: InboundMessage,
    admins: tuple[int, ...] = (ADMIN,),
    state: str | None = None,
    settings: dict[str, Any] | None = None,
    user_lang: str | None = None,
) -> Context:
    """A context as the runtime builds it (an unbound Session: no database)."""
    return Context(
        Session(),
        BOT,
        list(admins),
        inbound,
        RecordingEffects(),  # type: ignore[arg-type]
        bot_settings=settings or {},
        state_name=state,
        user_lang=user_lang,
    )


def effects_of(ctx: Context) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = ctx.effects.calls  # type: ignore[attr-defined]
    return calls
