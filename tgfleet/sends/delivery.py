"""Outbox row state transitions for the sender, each one atomic SQL statement.

``queued``/``retrying`` --claim--> ``sending`` --> ``sent`` | ``retrying`` | ``failed`` | ``dead``

The claim records its time in ``updated_at`` (the lease): a row left in ``sending`` by a
killed worker is claimable again after ``send_lease_s``, and since the retry uses the same
``random_id`` Telegram drops it if the first attempt did get through.

The claim and the sent mark run for every message and callback answer the sender delivers,
in the one process whose pool threads and event loop share one interpreter lock: they are
prepared statements (``tgfleet.db.prepared``). Their two transactions took about 5 ms of
CPU as ORM statements (building, compiling and checking two UPDATEs), 1.6 ms now.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import struct
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, func, inspect, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, aliased, instrumentation

from tgfleet.db import Bot, Event, Outbox, OutboxOp, OutboxStatus, TgUser
from tgfleet.db.models import OPEN_REPLIES
from tgfleet.db.prepared import Prepared, execute
from tgfleet.platform.metrics import metrics
from tgfleet.platform.settings import Settings
from tgfleet.sends.paid import STARS_SPENT, stars

log = logging.getLogger(__name__)

#: Dedupe keys of the sender's own notices to admins start with this.
NOTICE_PREFIX = "notice:"
#: ``last_error`` of a send refused because the user blocked the bot.
BLOCKED_REASON = "the user blocked the bot"
#: What a later part of a text (or a later reply of one handler run) fails with.
EARLIER_FAILED = "an earlier part of this text (or a message it followed) failed"
_CLAIMABLE = (OutboxStatus.QUEUED, OutboxStatus.RETRYING)
#: (attribute, column) of every column of ``outbox``: the claim returns the whole row,
#: which the request is built from.
_FIELDS = tuple((prop.key, prop.columns[0].name) for prop in inspect(Outbox).column_attrs)
_COLUMNS = ", ".join(f'"{column}"' for _, column in _FIELDS)
_CLAIMABLE_SQL = ", ".join(f"'{status}'" for status in _CLAIMABLE)
#: ``claim`` ($4: the lease) and ``mark_sent``; ``updated_at`` is the ORM's ``onupdate``.
_CLAIM = Prepared(
    "tgfleet_outbox_claim",
    ("bigint", "bigint", "bigint", "interval"),
    f"UPDATE outbox SET status = '{OutboxStatus.SENDING}', updated_at = clock_timestamp(), "
    "random_id = $3 WHERE bot_id = $1 AND id = $2 "
    f"AND (status IN ({_CLAIMABLE_SQL}) "
    f"OR (status = '{OutboxStatus.SENDING}' AND updated_at < now() - $4)) "
    f"RETURNING {_COLUMNS}",
)
_MARK_SENT = Prepared(
    "tgfleet_outbox_sent",
    ("bigint", "bigint", "bigint"),
    f"UPDATE outbox SET status = '{OutboxStatus.SENT}', tg_message_id = $3, "
    "sent_at = clock_timestamp(), last_error = NULL, updated_at = now() "
    "WHERE bot_id = $1 AND id = $2",
)

#: The batch claim (``claim_many``): $2/$3 the ids and their random_ids, $4 the lease.
#: Plain sends only: a file to upload, an edit or a delete goes the one-row way.
_CLAIM_MANY = Prepared(
    "tgfleet_outbox_claim_many",
    ("bigint", "bigint[]", "bigint[]", "interval"),
    f"UPDATE outbox o SET status = '{OutboxStatus.SENDING}', updated_at = clock_timestamp(), "
    "random_id = v.rid FROM unnest($2, $3) AS v(id, rid) "
    f"WHERE o.bot_id = $1 AND o.id = v.id AND o.op = '{OutboxOp.SEND}' "
    "AND NOT coalesce(o.media ? 'upload', false) "
    f"AND (o.status IN ({_CLAIMABLE_SQL}) "
    f"OR (o.status = '{OutboxStatus.SENDING}' AND o.updated_at < now() - $4)) "
    "RETURNING " + ", ".join(f'o."{column}"' for _, column in _FIELDS),
)
#: The batch sent mark: $2/$3 the ids and the message ids Telegram gave them.
_MARK_SENT_MANY = Prepared(
    "tgfleet_outbox_sent_many",
    ("bigint", "bigint[]", "bigint[]"),
    f"UPDATE outbox o SET status = '{OutboxStatus.SENT}', tg_message_id = v.mid, "
    "sent_at = clock_timestamp(), last_error = NULL, updated_at = now() "
    "FROM unnest($2, $3) AS v(id, mid) WHERE o.bot_id = $1 AND o.id = v.id",
)


def random_id_for(settings: Settings, bot_id: int, outbox_id: int) -> int:
    """messages.sendMessage random_id for a row: a keyed hash, the same on every retry."""
    key = settings.secret_key.get_secret_value().encode()
    digest = hmac.new(key, f"random_id:{bot_id}:{outbox_id}".encode(), hashlib.sha256).digest()
    value: int = struct.unpack("<q", digest[:8])[0]
    return value or 1


def _lease(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.send_lease_s)


def claim(session: Session, settings: Settings, bot_id: int, outbox_id: int) -> Outbox | None:
    """``queued``/``retrying`` (or ``sending`` past its lease) -> ``sending``.

    Returns the claimed row (not attached to ``session``), or None when it is done or
    another worker holds it.
    """
    random_id = random_id_for(settings, bot_id, outbox_id)
    found = execute(session, _CLAIM, bot_id, outbox_id, random_id, _lease(settings))
    return _outbox(found[0]) if found else None


def claim_many(
    session: Session, settings: Settings, bot_id: int, outbox_ids: list[int]
) -> list[Outbox]:
    """``claim`` for many plain sends of one bot in one statement: the rows claimed, in
    id order (a row done, held by another worker, or not a plain send is left out)."""
    if not outbox_ids:
        return []
    random_ids = [random_id_for(settings, bot_id, i) for i in outbox_ids]
    found = execute(session, _CLAIM_MANY, bot_id, outbox_ids, random_ids, _lease(settings))
    return sorted((_outbox(row) for row in found), key=lambda row: row.id)


def still_claimable(session: Session, bot_id: int, outbox_ids: list[int]) -> list[int]:
    """Which of ``outbox_ids`` are ``queued`` or ``retrying``."""
    return list(
        session.scalars(
            select(Outbox.id).where(
                Outbox.bot_id == bot_id,
                Outbox.id.in_(outbox_ids),
                Outbox.status.in_(_CLAIMABLE),
            )
        )
    )


def broadcast_of(session: Session, bot_id: int, outbox_ids: list[int]) -> int:
    """The broadcast every one of ``outbox_ids`` belongs to (0: none, or several)."""
    found = set(
        session.scalars(
            select(Outbox.broadcast_id).where(Outbox.bot_id == bot_id, Outbox.id.in_(outbox_ids))
        )
    )
    one = found.pop() if len(found) == 1 else None
    return int(one or 0)


def record_stars_spent(session: Session, bot_id: int, broadcast_id: int, messages: int) -> None:
    """An event for the Stars ``messages`` paid broadcast messages cost (0.1 each)."""
    data = {"broadcast_id": broadcast_id, "messages": messages, "stars": stars(messages)}
    session.execute(
        insert(Event).values(bot_id=bot_id, kind=STARS_SPENT, data=data),
    )
    metrics().stars_spent.labels(str(bot_id)).inc(data["stars"])


def stars_spent(session: Session, bot_id: int, broadcast_id: int) -> tuple[int, float]:
    """(paid messages, Stars) the broadcast's ``stars_spent`` events add up to."""
    messages = func.coalesce(func.sum(Event.data["messages"].as_integer()), 0)
    spent = func.coalesce(func.sum(Event.data["stars"].as_float()), 0.0)
    row = session.execute(
        select(messages, spent).where(
            Event.bot_id == bot_id,
            Event.kind == STARS_SPENT,
            Event.data["broadcast_id"].as_integer() == broadcast_id,
        )
    ).one()
    return int(row[0]), float(row[1])


def mark_sent_many(session: Session, rows: list[tuple[Outbox, int | None]]) -> None:
    """``mark_sent`` for many rows of one bot: one statement, and one more to release the
    next parts of split texts (each then enqueued after the commit)."""
    if not rows:
        return
    bot_id = rows[0][0].bot_id
    ids = [row.id for row, _ in rows]
    execute(session, _MARK_SENT_MANY, bot_id, ids, [message_id for _, message_id in rows])
    _count_sent([row for row, _ in rows])
    keys = [row.dedupe_key for row, _ in rows if row.dedupe_key is not None]
    if keys:
        _release_next_parts(session, bot_id, keys)


def _release_next_parts(session: Session, bot_id: int, keys: list[str]) -> None:
    """The parts that follow the rows with dedupe keys ``keys``, if any, are due now and
    enqueued once ``session`` commits."""
    from tgfleet.sends.outbox import (
        enqueue_after_commit,
        is_plain_send,
        next_part_key,
        wake_after_commit,
    )

    released = session.execute(
        update(Outbox)
        .where(
            Outbox.bot_id == bot_id,
            Outbox.dedupe_key.in_([next_part_key(key) for key in keys]),
            Outbox.status == OutboxStatus.QUEUED,
        )
        .values(next_attempt_at=func.now())
        .returning(Outbox.id, Outbox.chat_id, Outbox.op, Outbox.broadcast_id, Outbox.media)
    ).all()
    if any(is_plain_send(r) for r in released):
        wake_after_commit(session, [bot_id])
    others = [(r.id, bot_id, r.chat_id) for r in released if not is_plain_send(r)]
    if others:
        enqueue_after_commit(session, others)


#: An Outbox without its __init__, as the ORM makes the rows it loads.
_new_outbox = instrumentation.manager_of_class(Outbox).new_instance
_KEYS = tuple(key for key, _ in _FIELDS)


def _outbox(found: Row[Any]) -> Outbox:
    """A claimed row as an Outbox attached to no session. Its values go straight into
    the instance's dict, as the ORM's own loading does: ``Outbox(**values)`` ran an
    attribute event per column, 35 us a row against 3, and made a fifth of a sender's
    CPU with the limits off."""
    row = _new_outbox()
    values = row.__dict__
    values.update(zip(_KEYS, found, strict=True))
    values["status"] = OutboxStatus(values["status"])
    return row


def _count_sent(rows: list[Outbox]) -> None:
    """``tgfleet_sends`` and ``tgfleet_send_latency_seconds`` of rows just marked sent."""
    m = metrics()
    now = datetime.now(UTC)
    bot = str(rows[0].bot_id)
    m.sends.labels(bot, "sent").inc(len(rows))
    latency: dict[str, Any] = {}  # each kind's series, looked up once a batch
    for row in rows:
        if row.created_at is not None:
            kind = "broadcast" if row.broadcast_id else "reply"
            series = latency.get(kind)
            if series is None:
                series = latency[kind] = m.send_latency.labels(bot, kind)
            series.observe((now - row.created_at).total_seconds())


def mark_sent(session: Session, row: Outbox, tg_message_id: int | None) -> None:
    """``sent``; the next part of a split text, if any, is released and enqueued."""
    execute(session, _MARK_SENT, row.bot_id, row.id, tg_message_id)
    _count_sent([row])
    if row.dedupe_key is not None:
        _release_next_parts(session, row.bot_id, [row.dedupe_key])
    _done(session, row)


def _done(session: Session, row: Outbox) -> None:
    """A plain send is done (sent on the one-row path, a retry say, or failed, or dead):
    the replies its chat held back behind it are ready, and the bot's ready-sends task is
    woken for them (``tgfleet.sends.ready``)."""
    from tgfleet.sends.outbox import is_plain_send, wake_after_commit

    if is_plain_send(row):
        wake_after_commit(session, [row.bot_id])


def fail_later_parts(session: Session, row: Outbox, status: OutboxStatus, reason: str) -> int:
    """A part that failed or died takes the rest of its text with it."""
    if row.dedupe_key is None:
        return 0
    from tgfleet.sends.outbox import next_part_key

    count, key = 0, next_part_key(row.dedupe_key)
    while True:
        done = session.execute(
            update(Outbox)
            .where(
                Outbox.bot_id == row.bot_id,
                Outbox.dedupe_key == key,
                Outbox.status == OutboxStatus.QUEUED,
            )
            .values(status=status, last_error=f"{EARLIER_FAILED}: {reason}"[:2000])
            .returning(Outbox.id)
        ).first()
        if done is None:
            return count
        count += 1
        key = next_part_key(key)


def mark_failed(
    session: Session, bot_id: int, outbox_id: int, reason: str, row: Outbox | None = None
) -> None:
    session.execute(
        update(Outbox)
        .where(Outbox.bot_id == bot_id, Outbox.id == outbox_id)
        .values(status=OutboxStatus.FAILED, last_error=reason[:2000])
    )
    outcome = "blocked" if reason == BLOCKED_REASON else "failed"
    metrics().sends.labels(str(bot_id), outcome).inc()
    if row is not None:
        fail_later_parts(session, row, OutboxStatus.FAILED, reason)
        _done(session, row)


def defer(
    session: Session,
    bot_id: int,
    outbox_id: int,
    countdown: float,
    reason: str | None = None,
    *,
    count_attempt: bool = False,
) -> int:
    """Back to ``retrying`` due in ``countdown`` s; returns the attempts made so far."""
    values: dict[str, object] = {
        "status": OutboxStatus.RETRYING,
        "next_attempt_at": func.now() + timedelta(seconds=countdown),
    }
    if reason is not None:
        values["last_error"] = reason[:2000]
    if count_attempt:
        values["attempts"] = Outbox.attempts + 1
    attempts = session.execute(
        update(Outbox)
        .where(
            Outbox.bot_id == bot_id,
            Outbox.id == outbox_id,
            Outbox.status.in_((*_CLAIMABLE, OutboxStatus.SENDING)),
        )
        .values(**values)
        .returning(Outbox.attempts)
    ).scalar_one_or_none()
    return int(attempts or 0)


def release(session: Session, bot_id: int, outbox_ids: list[int], countdown: float) -> None:
    """Give claims back for a rate-limit wait: ``retrying``, due in ``countdown`` s."""
    session.execute(
        update(Outbox)
        .where(
            Outbox.bot_id == bot_id,
            Outbox.id.in_(outbox_ids),
            Outbox.status == OutboxStatus.SENDING,
        )
        .values(
            status=OutboxStatus.RETRYING,
            next_attempt_at=func.now() + timedelta(seconds=countdown),
        )
    )


def postpone(session: Session, bot_id: int, outbox_ids: list[int], countdown: float) -> None:
    """Record a long wait for a slot, so the sweep does not take the rows for lost."""
    session.execute(
        update(Outbox)
        .where(Outbox.bot_id == bot_id, Outbox.id.in_(outbox_ids), Outbox.status.in_(_CLAIMABLE))
        .values(next_attempt_at=func.now() + timedelta(seconds=countdown))
    )


def replace_media(session: Session, bot_id: int, outbox_id: int, media: dict[str, Any]) -> None:
    """The row's media with a fresh file reference (``tgfleet.sends.media.with_reference``)."""
    session.execute(
        update(Outbox).where(Outbox.bot_id == bot_id, Outbox.id == outbox_id).values(media=media)
    )


def mark_blocked(session: Session, bot_id: int, user_id: int) -> None:
    """The user blocked the bot: remember it on ``tg_users``."""
    stmt = insert(TgUser).values(bot_id=bot_id, user_id=user_id, is_blocked=True)
    session.execute(
        stmt.on_conflict_do_update(index_elements=["bot_id", "user_id"], set_={"is_blocked": True})
    )


def mark_dead(
    session: Session, bot_id: int, row: Outbox, reason: str, admin_chat_ids: list[int]
) -> int:
    """``dead`` with ``reason``; tells the bot's admins (once per incident). Returns notices."""
    session.execute(
        update(Outbox)
        .where(Outbox.bot_id == bot_id, Outbox.id == row.id)
        .values(status=OutboxStatus.DEAD, last_error=reason[:2000])
    )
    metrics().sends.labels(str(bot_id), "dead").inc()
    fail_later_parts(session, row, OutboxStatus.DEAD, reason)
    _done(session, row)
    log.warning("outbox %s (bot %s, chat %s) is dead: %s", row.id, bot_id, row.chat_id, reason)
    if (row.dedupe_key or "").startswith(NOTICE_PREFIX):
        return 0  # never notify about a notice: no loops
    from tgfleet.sends.outbox import queue_message

    incident = f"broadcast:{row.broadcast_id}" if row.broadcast_id else f"row:{row.id}"
    if row.broadcast_id:
        text = (
            f"Broadcast {row.broadcast_id}: messages could not be delivered (first: outbox "
            f"{row.id} to {row.chat_id}: {reason}). See `tgfleet outbox dead --bot {bot_id}`."
        )
    else:
        text = f"Could not deliver outbox message {row.id} to {row.chat_id}: {reason}"
    sent = 0
    for admin in admin_chat_ids:
        if admin == row.chat_id:
            continue
        queue_message(
            session,
            bot_id,
            admin,
            text[:4000],
            dedupe_key=f"{NOTICE_PREFIX}dead:{incident}:{admin}",
        )
        sent += 1
    return sent


def bot_config(session: Session, bot_id: int) -> tuple[dict[str, object], list[int]] | None:
    """(the bot's settings, its admin chat ids), or None when the bot does not exist."""
    found = session.execute(
        select(Bot.settings, Bot.admin_chat_ids).where(Bot.id == bot_id)
    ).first()
    if found is None:
        return None
    return dict(found.settings or {}), list(found.admin_chat_ids or [])


def _overdue_condition(settings: Settings, extra_s: float) -> ColumnElement[bool]:
    grace = _lease(settings) + timedelta(seconds=extra_s)
    return or_(
        and_(Outbox.status.in_(_CLAIMABLE), Outbox.next_attempt_at < func.now() - grace),
        and_(Outbox.status == OutboxStatus.SENDING, Outbox.updated_at < func.now() - grace),
    )


def overdue_bots(session: Session, settings: Settings, extra_s: float = 0.0) -> list[int]:
    """Bots with rows overdue by more than the lease + ``extra_s`` (see :func:`overdue`)."""
    due = _overdue_condition(settings, extra_s)
    found = session.scalars(select(Outbox.bot_id).where(due).distinct())
    return list(found)


def overdue(
    session: Session,
    settings: Settings,
    bot_ids: list[int],
    extra_s: float = 0.0,
    limit: int = 1000,
) -> tuple[list[tuple[int, int]], list[int]]:
    """Rows whose task was lost (killed worker, failed enqueue): ((outbox_id, bot_id) of
    the rows that need a ``deliver`` task, the bots whose ready-sends task is overdue).

    Each of the first becomes ``retrying``, due now: the next sweep leaves it alone for
    ``send_lease_s`` while its new task is on its way. A queued plain send (a reply) is
    left as it is: its bot's ready-sends task sends it in its chat's order (a ``deliver``
    task of its own could overtake the replies before it), and one behind an earlier open
    reply to its chat is not overdue at all: it waits for that one (retried, say).
    Run with ``role="admin"``.
    """
    from tgfleet.sends.outbox import is_plain_send

    earlier = aliased(Outbox)
    behind = (
        select(earlier.id)
        .where(
            earlier.bot_id == Outbox.bot_id,
            earlier.chat_id == Outbox.chat_id,
            earlier.id < Outbox.id,
            text(OPEN_REPLIES),  # (its bare column names are the subquery's own rows')
        )
        .exists()
    )
    found = session.execute(
        select(Outbox.bot_id, Outbox.id, Outbox.status, Outbox.op, Outbox.broadcast_id)
        .add_columns(Outbox.media, behind.label("behind"))
        .where(_overdue_condition(settings, extra_s), Outbox.bot_id.in_(bot_ids))
        .order_by(Outbox.next_attempt_at)
        .limit(limit)
        .with_for_update(of=Outbox, skip_locked=True)
    ).all()
    waiting = [r.status == OutboxStatus.QUEUED and is_plain_send(r) for r in found]
    replies = {r.bot_id for r, reply in zip(found, waiting, strict=True) if reply and not r.behind}
    rows = [(r.id, r.bot_id) for r, reply in zip(found, waiting, strict=True) if not reply]
    for outbox_id, bot_id in rows:
        # A stale ``sending`` claim is released here (its worker is gone).
        session.execute(
            update(Outbox)
            .where(Outbox.bot_id == bot_id, Outbox.id == outbox_id)
            .values(status=OutboxStatus.RETRYING, next_attempt_at=func.now())
        )
    return rows, sorted(replies)
