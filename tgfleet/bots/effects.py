"""What a handler asks for besides its own writes: replies (outbox rows) and events.

A handler's ``ctx.reply()``, ``ctx.send()`` and ``ctx.event()`` land in an ``Effects``
buffer; the inbox writes them together with the message's processed mark, in the
same transaction and in one round trip, when the handler returns. Deliveries of the
new outbox rows are enqueued after that transaction commits, as ``queue_message``
does.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row
from sqlalchemy.orm import Session

from tgfleet.db import OutboxStatus
from tgfleet.db.prepared import Call, Prepared
from tgfleet.platform.tracing import current_traceparent
from tgfleet.sends.outbox import (
    HELD_UNTIL,
    answer_row,
    delete_row,
    edit_row,
    enqueue_after_commit,
    next_part_key,
    outbox_rows,
    wake_after_commit,
)
from tgfleet.sends.wake import PLAIN_SEND

_INSERT_EVENTS = Prepared(
    "tgfleet_effects_events",
    ("bigint", "jsonb"),
    "INSERT INTO events (bot_id, kind, user_id, data) "
    "SELECT $1, r.kind, r.user_id, coalesce(r.data, '{}') "
    "FROM jsonb_to_recordset($2) AS r(kind text, user_id bigint, data jsonb)",
)
_INSERT_OUTBOX = Prepared(
    "tgfleet_effects_outbox_ops_v4",
    ("bigint", "jsonb", "timestamptz"),
    "INSERT INTO outbox (bot_id, chat_id, text, parse_mode, reply_to, dedupe_key, "
    "broadcast_id, media, op, target_id, reply_markup, options, trace_parent, "
    "next_attempt_at, status) "
    "SELECT $1, r.chat_id, r.text, r.parse_mode, r.reply_to, r.dedupe_key, r.broadcast_id, "
    "r.media, coalesce(r.op, 'send'), r.target_id, r.reply_markup, r.options, r.trace_parent, "
    "CASE WHEN r.held THEN $3 ELSE coalesce(r.at, now()) END, "
    f"(CASE WHEN r.at IS NULL OR r.held THEN '{OutboxStatus.QUEUED}' "
    f"ELSE '{OutboxStatus.SCHEDULED}' END)::outbox_status "
    "FROM ROWS FROM (jsonb_to_recordset($2) AS (chat_id bigint, text text, "
    "parse_mode text, reply_to bigint, dedupe_key text, broadcast_id bigint, media jsonb, "
    "op text, target_id bigint, reply_markup jsonb, options jsonb, trace_parent text, "
    "held boolean, at timestamptz)) "
    "WITH ORDINALITY AS r(chat_id, text, parse_mode, reply_to, dedupe_key, broadcast_id, "
    "media, op, target_id, reply_markup, options, trace_parent, held, at, ord) "
    "ORDER BY r.ord "
    "ON CONFLICT (bot_id, dedupe_key) DO NOTHING "
    f"RETURNING id, chat_id, op, next_attempt_at = $3 OR status = '{OutboxStatus.SCHEDULED}' "
    f"AS held, {PLAIN_SEND} AS plain",
)


@dataclass
class Effects:
    """The outbox rows and events one handler run produced, not yet written."""

    bot_id: int
    outbox: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    #: The last send row of each chat in this run (the next one to that chat follows it).
    _last_send: dict[int, dict[str, Any]] = field(default_factory=dict, repr=False)

    def queue(self, chat_id: int, text: str, **options: Any) -> None:
        """``queue_message``'s rows for ``text`` (split, held parts, dedupe key; a keyboard
        with ``reply_markup``).

        A message to a chat this run already sent to follows the one before it: it is held
        until that one is sent, linked as the next part of its chain (as a long text's
        parts are), so ``ctx.reply(a); ctx.reply(b)`` arrive as a, b. (Not when it has a
        dedupe key or a time of its own, or is itself split: it goes on its own.)"""
        rows = outbox_rows(self.bot_id, chat_id, text, **options)
        last = self._last_send.get(chat_id)
        if (
            last is not None
            and len(rows) == 1
            and rows[0]["dedupe_key"] is None
            and options.get("at") is None
        ):
            if last["dedupe_key"] is None:
                last["dedupe_key"] = f"chain:{uuid.uuid4().hex}"
            rows[0]["dedupe_key"] = next_part_key(last["dedupe_key"])
            rows[0]["next_attempt_at"] = HELD_UNTIL
        for row in rows:
            self._add(row)
        if options.get("at") is None:  # nothing waits hours behind a scheduled send
            self._last_send[chat_id] = self.outbox[-1]

    def edit(
        self,
        chat_id: int,
        message_id: int,
        text: str | None,
        reply_markup: dict[str, Any] | None,
        **options: Any,
    ) -> None:
        """Change message ``message_id``'s text, keyboard and/or media (``media=``, an
        outbox media value; through the outbox)."""
        self._add(
            edit_row(self.bot_id, chat_id, message_id, text, reply_markup=reply_markup, **options)
        )

    def delete(self, chat_id: int, message_ids: list[int]) -> None:
        """Delete messages of ``chat_id`` for everyone (through the outbox)."""
        self._add(delete_row(self.bot_id, chat_id, message_ids))

    def answer_callback(
        self, query_id: int, text: str | None, alert: bool, url: str | None, chat_id: int = 0
    ) -> None:
        """Answer a button press: stops the user's spinner, shows ``text`` if given."""
        self._add(answer_row(self.bot_id, chat_id, query_id, text, alert=alert, url=url))

    def _add(self, row: dict[str, Any]) -> None:
        due = row.pop("next_attempt_at", None)
        held = due == HELD_UNTIL
        at = due.isoformat() if due is not None and not held else None  # scheduled
        row.pop("bot_id")
        row.pop("status")
        self.outbox.append({**row, "held": held, "at": at, "trace_parent": current_traceparent()})

    def event(self, kind: str, user_id: int | None, data: dict[str, Any]) -> None:
        self.events.append({"kind": kind, "user_id": user_id, "data": data})

    def calls(self, first: Sequence[Call] = ()) -> list[Call]:
        """``first``, then the statements that write these effects (the outbox insert,
        whose rows ``written`` wants, comes last)."""
        calls = list(first)
        if self.events:
            calls.append((_INSERT_EVENTS, (self.bot_id, json.dumps(self.events))))
        if self.outbox:
            calls.append((_INSERT_OUTBOX, (self.bot_id, json.dumps(self.outbox), HELD_UNTIL)))
        return calls

    def written(self, session: Session, rows: Sequence[Row[Any]]) -> None:
        """After ``calls`` ran: once ``session`` commits, wake the bot's ready-sends task
        for plain sends (``tgfleet.sends.ready``) and enqueue the other new rows (not a
        held part, nor a scheduled send: the scheduler enqueues it on time)."""
        if not self.outbox:
            return
        due = [row for row in rows if not row.held]
        if any(row.plain for row in due):
            wake_after_commit(session, [self.bot_id])
        others = [(row.id, self.bot_id, row.chat_id, row.op) for row in due if not row.plain]
        if others:
            enqueue_after_commit(session, others)
