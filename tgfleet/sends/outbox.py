"""Putting messages in the outbox: what handlers, the CLI and the sender itself call.

``queue_message(session, bot_id, chat_id, text, ...)`` inserts ``outbox`` rows in the
caller's transaction and arranges for ``tgfleet.sends.deliver`` to be enqueued only
AFTER that transaction commits (Zulip's ``queue_event_on_commit``): a worker never sees a
row that is not committed, and a rolled-back transaction enqueues nothing.

Texts longer than Telegram's limit become several rows (parts) that arrive in order:
only the first is enqueued; each later one is held (``next_attempt_at`` far ahead) until
the sender has sent the part before it, then released in the same transaction. Parts are
linked by their dedupe keys (``<key>`` for the first part, ``<key>#part<n>`` for the
others; a split text without a ``dedupe_key`` gets a generated one). A ``dedupe_key``
makes the call idempotent.
"""

from __future__ import annotations

import logging
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from tgfleet.db import Outbox, OutboxOp, OutboxStatus
from tgfleet.platform import taskmsg
from tgfleet.platform.celery_app import current_tgfleet_app
from tgfleet.platform.names import DELIVER, DELIVER_BATCH, SENDS_QUEUE
from tgfleet.platform.taskmsg import TaskCall
from tgfleet.platform.tracing import current_traceparent
from tgfleet.sends.markup import check_markup
from tgfleet.sends.media import LocalFile, MediaError, parse_media
from tgfleet.sends.wake import wake

log = logging.getLogger(__name__)

#: Telegram's limits, in UTF-16 code units (how Telegram counts message length).
MAX_TEXT = 4096
MAX_CAPTION = 1024
#: A callback answer's text (Telegram: 0-200 characters) and the ids one delete takes.
MAX_ANSWER = 200
MAX_DELETE = 100
PARSE_MODES = ("markdown", "md", "html")

_PENDING_KEY = "tgfleet.outbox.pending"
_WAKE_KEY = "tgfleet.outbox.wake"
#: Parts 1.. of a split text carry ``<first part's key>#part<n>``.
PART_SEPARATOR = "#part"
#: ``next_attempt_at`` of a part waiting for the one before it (the sweep skips it).
HELD_UNTIL = datetime(9999, 1, 1, tzinfo=UTC)
#: A send time this close to now counts as now, not as the past (clocks, slow callers).
PAST_TOLERANCE = timedelta(seconds=5)


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def _cut(text: str, limit: int) -> int:
    """Index (in str chars) of the longest prefix of ``text`` within ``limit`` UTF-16 units,
    moved back to a line break or space when one is in the last quarter."""
    units = 0
    end = 0
    for end, char in enumerate(text):  # noqa: B007 (end is used after the loop)
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            break
    else:
        return len(text)
    for sep in ("\n", " "):
        found = text.rfind(sep, 0, end)
        if found > end * 3 // 4:
            return found + 1
    return end


def split_text(text: str, limit: int = MAX_TEXT) -> list[str]:
    """``text`` in parts of at most ``limit`` UTF-16 units, split at lines/words if possible."""
    if limit < 2:
        raise ValueError("limit must be at least 2 UTF-16 units (one character may take two)")
    parts: list[str] = []
    rest = text
    while utf16_len(rest) > limit:
        cut = _cut(rest, limit)
        parts.append(rest[:cut])
        rest = rest[cut:]
    if rest or not parts:
        parts.append(rest)
    return parts


def queue_message(
    session: Session,
    bot_id: int,
    chat_id: int,
    text: str,
    *,
    reply_to: int | None = None,
    parse_mode: str | None = None,
    dedupe_key: str | None = None,
    broadcast_id: int | None = None,
    media: dict[str, Any] | None = None,
    reply_markup: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> Outbox:
    """Queue ``text`` for ``chat_id``; returns the (first) outbox row.

    Delivery is enqueued after ``session``'s transaction commits. With a ``dedupe_key``
    already used for this bot, nothing new is created and the existing row is returned.
    ``media`` (``{"photo": [...]}``, ``{"document": [...]}`` or ``{"upload": {...}}``, see
    ``tgfleet.sends.media``) goes with the first part, whose text is then a caption
    (1024 units at most). ``at`` (an aware datetime, not in the past) schedules it: the
    row waits, stored, until the sender's scheduler enqueues it on time.
    """
    rows: list[Outbox] = []
    parts = outbox_rows(
        bot_id,
        chat_id,
        text,
        reply_to=reply_to,
        parse_mode=parse_mode,
        dedupe_key=dedupe_key,
        broadcast_id=broadcast_id,
        media=media,
        reply_markup=reply_markup,
        at=at,
    )
    for index, values in enumerate(parts):
        key = values["dedupe_key"]
        row = _insert(session, values)
        if row is not None:
            rows.append(row)
            if index == 0 and at is None:
                if is_plain_send(row):
                    wake_after_commit(session, [bot_id])
                else:
                    enqueue_after_commit(session, [(row.id, bot_id, chat_id)])
        elif key is not None:
            existing = session.scalars(
                select(Outbox).where(Outbox.bot_id == bot_id, Outbox.dedupe_key == key)
            ).one()
            rows.append(existing)
    return rows[0]


def outbox_rows(
    bot_id: int,
    chat_id: int,
    text: str,
    *,
    reply_to: int | None = None,
    parse_mode: str | None = None,
    dedupe_key: str | None = None,
    broadcast_id: int | None = None,
    media: dict[str, Any] | None = None,
    reply_markup: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> list[dict[str, Any]]:
    """The ``outbox`` rows (column values) for one message: one per part of a long text,
    the parts after the first held until the one before them is sent. A keyboard
    (``reply_markup``, checked here) goes with the last part, under the whole text."""
    if at is not None:
        check_send_time(at)
    if reply_markup is not None:
        check_markup(reply_markup)  # a bad keyboard fails now, in the handler, not later
    if media:
        parse_media(media)  # so does malformed media (MediaError, a ValueError)
    if parse_mode is not None and parse_mode.lower() not in PARSE_MODES:
        raise ValueError(f"parse_mode must be one of {', '.join(PARSE_MODES)} or None")
    if dedupe_key is not None and PART_SEPARATOR in dedupe_key:
        raise ValueError(
            f"dedupe_key must not contain {PART_SEPARATOR!r}: it links the parts of a long "
            f"text (got {dedupe_key!r:.80})"
        )
    if media:
        head = split_text(text, MAX_CAPTION)[0] if text else ""
        parts = [head, *([p for p in split_text(text[len(head) :]) if p] if head else [])]
    else:
        parts = split_text(text)
    if len(parts) > 1 and dedupe_key is None:
        dedupe_key = f"split:{uuid.uuid4().hex}"  # links the parts (see part_key)
    rows: list[dict[str, Any]] = []
    for index, part in enumerate(parts):
        values: dict[str, Any] = {
            "bot_id": bot_id,
            "chat_id": chat_id,
            "text": part,
            "parse_mode": parse_mode.lower() if parse_mode else None,
            "reply_to": reply_to if index == 0 else None,
            "dedupe_key": dedupe_key if dedupe_key is None else part_key(dedupe_key, index),
            "broadcast_id": broadcast_id,
            "status": OutboxStatus.QUEUED,
        }
        if media and index == 0:
            values["media"] = media
        if reply_markup is not None and index == len(parts) - 1:
            values["reply_markup"] = reply_markup
        if index > 0:  # held until the part before it is sent (the sender releases it)
            values["next_attempt_at"] = HELD_UNTIL
        elif at is not None:  # the scheduler makes it queued on time
            values["status"] = OutboxStatus.SCHEDULED
            values["next_attempt_at"] = at
        rows.append(values)
    return rows


def check_send_time(at: datetime, now: datetime | None = None) -> None:
    """A send time must say its time zone and must not be in the past (ValueError)."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(
            f"a send time needs its time zone: {at.isoformat()} has none "
            "(give an aware datetime, e.g. with zoneinfo.ZoneInfo('Europe/Berlin'))"
        )
    now = now or datetime.now(UTC)
    if at < now - PAST_TOLERANCE:
        raise ValueError(
            f"the send time {at.isoformat()} is in the past (it is {now.isoformat()} now)"
        )


def edit_row(
    bot_id: int,
    chat_id: int,
    message_id: int,
    text: str | None,
    *,
    reply_markup: dict[str, Any] | None = None,
    parse_mode: str | None = None,
    media: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An ``outbox`` row that edits message ``message_id``: its text, its keyboard, its
    media, or several (``text`` None keeps the text; ``reply_markup`` None sends no
    keyboard, which takes an inline keyboard away, as Telegram does; ``media`` None keeps
    the file). ``media`` is a send's form (``tgfleet.sends.media``): the message's photo
    or document is replaced by it, ``text`` becomes its caption."""
    if text is None and reply_markup is None and not media:
        raise ValueError("an edit needs a new text, a new keyboard or new media")
    limit = MAX_CAPTION if media else MAX_TEXT
    if text is not None and utf16_len(text) > limit:
        what = "a caption" if media else "an edited text"
        raise ValueError(f"{what} may have at most {limit} UTF-16 units")
    if media:
        spec = parse_media(media)  # malformed media fails now, in the handler (MediaError)
        if isinstance(spec, LocalFile) and spec.kind == "voice":
            raise MediaError("Telegram does not edit a message into a voice note: send it")
    if reply_markup is not None:
        check_markup(reply_markup)
    return {
        **_operation(bot_id, chat_id, OutboxOp.EDIT, message_id),
        "text": text or "",
        "parse_mode": _parse_mode(parse_mode),
        "reply_markup": reply_markup,
        "media": media or None,
        "options": {"keep_text": text is None},
    }


def delete_row(bot_id: int, chat_id: int, message_ids: Iterable[int]) -> dict[str, Any]:
    """An ``outbox`` row that deletes messages of ``chat_id`` (for everyone)."""
    ids = sorted({int(i) for i in message_ids})
    if not ids:
        raise ValueError("nothing to delete: give at least one message id")
    if len(ids) > MAX_DELETE:
        raise ValueError(f"Telegram deletes at most {MAX_DELETE} messages in one call")
    return {**_operation(bot_id, chat_id, OutboxOp.DELETE, None), "options": {"ids": ids}}


def answer_row(
    bot_id: int,
    chat_id: int,
    query_id: int,
    text: str | None = None,
    *,
    alert: bool = False,
    url: str | None = None,
) -> dict[str, Any]:
    """An ``outbox`` row that answers button press ``query_id`` (stops the user's spinner;
    ``text`` shows as a toast, or a dialog with ``alert``)."""
    if text is not None and len(text) > MAX_ANSWER:
        raise ValueError(f"a callback answer may have at most {MAX_ANSWER} characters")
    return {
        **_operation(bot_id, chat_id, OutboxOp.ANSWER, query_id),
        "text": text or "",
        "options": {"alert": bool(alert), "url": url},
    }


def _operation(bot_id: int, chat_id: int, op: OutboxOp, target_id: int | None) -> dict[str, Any]:
    return {
        "bot_id": bot_id,
        "chat_id": chat_id,
        "text": "",
        "op": op.value,
        "target_id": target_id,
        "status": OutboxStatus.QUEUED,
        # One call per press, edit or delete: the handler's transaction makes it once.
        "dedupe_key": None,
    }


def _parse_mode(parse_mode: str | None) -> str | None:
    if parse_mode is not None and parse_mode.lower() not in PARSE_MODES:
        raise ValueError(f"parse_mode must be one of {', '.join(PARSE_MODES)} or None")
    return parse_mode.lower() if parse_mode else None


def part_key(key: str, index: int) -> str:
    """The dedupe key of part ``index`` of a split text whose first part has ``key``."""
    return key if index == 0 else f"{key}{PART_SEPARATOR}{index}"


def next_part_key(key: str) -> str:
    """The dedupe key of the part after the row with dedupe key ``key``."""
    base, sep, number = key.rpartition(PART_SEPARATOR)
    if sep and number.isdigit():
        return part_key(base, int(number) + 1)
    return part_key(key, 1)


def queue_many(
    session: Session,
    bot_id: int,
    chat_ids: Sequence[int],
    text: str,
    *,
    dedupe_prefix: str,
    parse_mode: str | None = None,
    broadcast_id: int | None = None,
    at: datetime | None = None,
) -> int:
    """``queue_message`` for many chats in one statement (a broadcast's rows): each
    chat's dedupe key is ``dedupe_prefix`` + its id, and a chat that already has that
    key gets nothing new. Returns how many chats got a new message; their deliveries are
    enqueued after the commit (scheduled ones wait for the scheduler)."""
    rows = [
        values
        for chat_id in chat_ids
        for values in outbox_rows(
            bot_id,
            chat_id,
            text,
            parse_mode=parse_mode,
            dedupe_key=f"{dedupe_prefix}{chat_id}",
            broadcast_id=broadcast_id,
            at=at,
        )
    ]
    if not rows:
        return 0
    stmt = (
        insert(Outbox)
        .on_conflict_do_nothing(index_elements=["bot_id", "dedupe_key"])
        .returning(Outbox.id, Outbox.chat_id, Outbox.dedupe_key)
    )
    created = session.execute(stmt, rows).all()
    firsts = [row for row in created if row.dedupe_key == f"{dedupe_prefix}{row.chat_id}"]
    if at is None:
        enqueue_after_commit(session, [(row.id, bot_id, row.chat_id) for row in firsts])
    return len(firsts)


def _insert(session: Session, values: dict[str, Any]) -> Outbox | None:
    stmt = insert(Outbox).values(**values, trace_parent=current_traceparent())
    if values.get("dedupe_key") is not None:
        stmt = stmt.on_conflict_do_nothing(index_elements=["bot_id", "dedupe_key"])
    return session.execute(stmt.returning(Outbox)).scalar_one_or_none()


#: Plain sends of one bot to this many distinct chats or more, queued together, go in
#: ``deliver_batch`` tasks of up to ``BATCH_SIZE`` rows (see ``tgfleet.sends.batch``).
BATCH_MIN = 4
BATCH_SIZE = 50

#: (outbox_id, bot_id[, chat_id[, op]]): what a ``deliver`` task is given.
Delivery = tuple[int, int] | tuple[int, int, int] | tuple[int, int, int, str]


def enqueue_after_commit(session: Session, items: Iterable[Delivery]) -> None:
    """Enqueue ``deliver`` for ``items`` ((outbox_id, bot_id[, chat_id]) tuples) once
    ``session`` commits."""
    pending: list[Delivery] | None = session.info.get(_PENDING_KEY)
    if pending is None:
        pending = session.info[_PENDING_KEY] = []
    pending.extend(items)


def wake_after_commit(session: Session, bot_ids: Iterable[int]) -> None:
    """Wake the ready-sends task of ``bot_ids`` (``tgfleet.sends.wake``) once ``session``
    commits: their plain sends (``wake.PLAIN_SEND``) go in its rounds."""
    bots: set[int] | None = session.info.get(_WAKE_KEY)
    if bots is None:
        bots = session.info[_WAKE_KEY] = set()
    bots.update(bot_ids)


def is_plain_send(row: Any) -> bool:
    """The row (an ``Outbox``, or a result row with its ``op``, ``broadcast_id`` and
    ``media``) is what the ready-sends task delivers: ``wake.PLAIN_SEND`` in Python."""
    return (
        (row.op or OutboxOp.SEND) == OutboxOp.SEND
        and row.broadcast_id is None
        and not (isinstance(row.media, dict) and "upload" in row.media)
    )


# Registered once for every Session: a listener per session costs more than the check.
@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    pending = session.info.get(_PENDING_KEY)
    if pending:
        pending.clear()
    bots = session.info.get(_WAKE_KEY)
    if bots:
        bots.clear()


@event.listens_for(Session, "after_commit")
def _flush_pending(session: Session) -> None:
    pending: list[Delivery] | None = session.info.get(_PENDING_KEY)
    bots: set[int] | None = session.info.get(_WAKE_KEY)
    if pending:
        items = list(pending)
        pending.clear()
        try:
            enqueue_deliveries(items)
        except Exception:  # the rows are committed: the sender's sweep will enqueue them
            log.exception(
                "could not enqueue %d deliveries; the sweep will pick them up", len(items)
            )
    if bots:
        woken = list(bots)
        bots.clear()
        try:
            wake(woken)
        except Exception:  # the rows are committed: the next wake or the sweep sends them
            log.exception("could not wake the sends of bots %s; the sweep will", woken)


def enqueue_deliveries(items: Iterable[Delivery], countdown: float | None = None) -> None:
    """Send delivery tasks for committed rows: (outbox_id, bot_id[, chat_id[, op]]).
    With the chat id the first attempt needs no database read before its rate check.
    Plain sends of one bot to ``BATCH_MIN`` or more distinct chats go as
    ``deliver_batch`` tasks of up to ``BATCH_SIZE`` rows; the rest, each as ``deliver``.
    On a Redis broker they go out in one round trip (``tgfleet.platform.taskmsg``)."""
    items = list(items)
    batches = batch_groups(items)
    batched = {outbox_id for group in batches.values() for outbox_id, _ in group}
    calls = [
        TaskCall(
            DELIVER_BATCH,
            SENDS_QUEUE,
            kwargs={"bot_id": bot_id, "items": [list(item) for item in group[i : i + BATCH_SIZE]]},
            countdown=countdown,
        )
        for bot_id, group in batches.items()
        for i in range(0, len(group), BATCH_SIZE)
    ]
    for item in items:
        if item[0] in batched:
            continue
        kwargs: dict[str, Any] = {"outbox_id": item[0], "bot_id": item[1]}
        if len(item) > 2:
            kwargs["chat_id"] = item[2]
        if len(item) > 3 and item[3] == OutboxOp.ANSWER:
            kwargs["op"] = OutboxOp.ANSWER.value  # answered at once, not paced like sends
        calls.append(TaskCall(DELIVER, SENDS_QUEUE, kwargs=kwargs, countdown=countdown))
    publish_calls(calls)


def batch_groups(items: Sequence[Delivery]) -> dict[int, list[tuple[int, int]]]:
    """Bot id -> (outbox_id, chat_id) of the plain sends that can go in batches: a bot's
    sends to chats that have no other row among ``items`` (a chat's rows keep their order
    through the one-row path), when there are ``BATCH_MIN`` of them or more."""
    by_bot: dict[int, list[tuple[int, int]]] = {}
    for item in items:
        if len(item) > 2 and (len(item) < 4 or item[3] in (None, OutboxOp.SEND)):
            by_bot.setdefault(item[1], []).append((item[0], item[2]))
    groups = {}
    for bot_id, rows in by_bot.items():
        chats = Counter(chat_id for _, chat_id in rows)
        alone = [row for row in rows if chats[row[1]] == 1]
        if len(alone) >= BATCH_MIN:
            groups[bot_id] = alone
    return groups


def publish_calls(calls: Sequence[TaskCall]) -> None:
    """Publish task calls: one round trip on a Redis broker, else through Celery."""
    app = current_tgfleet_app()
    if taskmsg.supports(app):
        taskmsg.publish(app, calls)
        return
    with app.producer_or_acquire() as producer:
        for call in calls:
            app.send_task(
                call.name,
                args=call.args,
                kwargs=call.kwargs,
                producer=producer,
                countdown=call.countdown,
            )
