"""A bot's replies, delivered in rounds: ``tgfleet.sends.deliver_ready(bot_id)``.

Handlers reply to one user at a time, but a bot with many users writes replies to many
chats within milliseconds. Each used to be a ``deliver`` task of its own: a task hop, a
pacer slot, a limiter call and two transactions per message, about 5 ms of a sender's
CPU. Now a committed reply only wakes its bot (``tgfleet.sends.wake``); the bot's one
``deliver_ready`` task takes every reply that is ready and sends them as one round of a
batch (``tgfleet.sends.batch``): one limiter call for the round's tokens, one claim, the
sends at once on the bot's client, one sent mark. At a few replies a second a round is
one reply and costs what the ``deliver`` task did; under load the replies that came in
while a round ran make the next one, and a reply costs a fraction of that.

**Ready** rows are found in the database, not carried in the task: the first open row of
each chat (``queued``, ``retrying`` or ``sending``; a plain send, ``PLAIN_SEND``), when it
is ``queued`` and due. A chat whose first open row is retrying, being sent, held (the
next part of a text), or a file still to upload (a ``deliver`` task of its own) waits:
replies to one chat go out in the order they were written, also across handler runs, and
also when the first of them met a fault. When that row is done, its ``deliver`` task
wakes the bot again.

A round that could not send everything (no tokens yet, or more rows behind the round's
chats) comes back as the same task after the limiter's wait; one that saw wakes while it
ran goes again at once; otherwise the task ends and the next reply wakes a new one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy.orm import Session
from telethon import errors

from tgfleet.db import Outbox
from tgfleet.db.models import OPEN_REPLIES
from tgfleet.db.prepared import Prepared, execute
from tgfleet.sends import delivery, wake
from tgfleet.sends.batch import BatchOutcome, chat_kinds, come_back, hand_off, send_round
from tgfleet.sends.loop import SenderUnavailable
from tgfleet.sends.outbox import BATCH_SIZE
from tgfleet.sends.ratelimit import SAFETY, Grant
from tgfleet.sends.sender import Sender

log = logging.getLogger(__name__)

#: (id, chat_id, more) of up to $2 chats' first open replies (``OPEN_REPLIES``, the
#: predicate of the index it reads) that are ready, oldest first; ``more``: the chat has
#: other open rows behind it.
_READY = Prepared(
    "tgfleet_outbox_ready_v1",
    ("bigint", "integer"),
    "SELECT id, chat_id, open > 1 AS more FROM ("
    " SELECT DISTINCT ON (chat_id) id, chat_id, status, next_attempt_at, media,"
    "  count(*) OVER (PARTITION BY chat_id) AS open"
    f" FROM outbox WHERE bot_id = $1 AND {OPEN_REPLIES}"
    " ORDER BY chat_id, id"
    ") AS first"
    " WHERE status = 'queued' AND next_attempt_at <= now()"
    " AND NOT coalesce(media ? 'upload', false)"
    " ORDER BY id LIMIT $2",
)


@dataclass
class ReadyOutcome:
    """What one round did; ``again`` (seconds, or None: done) is when the task comes back."""

    ready: int = 0
    batch: BatchOutcome = field(default_factory=lambda: BatchOutcome(broadcast_id=0))
    again: float | None = None

    @property
    def sent(self) -> int:
        return self.batch.sent


def deliver_ready(sender: Sender, bot_id: int, correlation_id: str | None = None) -> ReadyOutcome:
    """One round of the bot's ready replies (see the module docstring): in its first
    transaction the ready rows are found, their tokens taken (one limiter call) and the
    granted ones claimed; then they are sent at once and marked (``batch.send_round``)."""
    outcome = ReadyOutcome()
    config = sender.bot_config(bot_id)
    if config is None:  # the bot is gone, and its rows with it
        wake.finish(sender.redis, bot_id)
        return outcome
    limits, admins = config
    try:  # connected before tokens are taken: they are spent on the wire at once
        client = sender.clients.get(bot_id)
    except (SenderUnavailable, OSError, TimeoutError, errors.RPCError):
        _hand_off_ready(sender, bot_id, correlation_id, outcome)
        return outcome
    grants: list[Grant] = []
    more = False

    def claim(s: Session) -> list[Outbox]:
        nonlocal more
        ready = execute(s, _READY, bot_id, BATCH_SIZE)
        outcome.ready = len(ready)
        more = len(ready) == BATCH_SIZE or any(row.more for row in ready)
        items = [(int(row.id), int(row.chat_id)) for row in ready]
        if not items:
            return []
        grant = sender.limiter.acquire_many(bot_id, chat_kinds(items), limits)
        grants.append(grant)
        granted = [item[0] for item, ok in zip(items, grant.granted, strict=True) if ok]
        outcome.batch.rest = [item for item, ok in zip(items, grant.granted, strict=True) if not ok]
        return delivery.claim_many(s, sender.settings, bot_id, granted) if granted else []

    send_round(sender, client, bot_id, [], admins, correlation_id, outcome.batch, claim=claim)
    if grants:
        come_back(sender, bot_id, grants[0], limits.bot_per_s * SAFETY, outcome.batch)
    if outcome.batch.rest:  # no tokens yet: the limiter says when
        outcome.again = outcome.batch.countdown
    elif more:
        outcome.again = 0.0
    if wake.finish(sender.redis, bot_id, outcome.again) and outcome.again is None:
        outcome.again = 0.0  # replies came in during the round
    return outcome


def _hand_off_ready(
    sender: Sender, bot_id: int, correlation_id: str | None, outcome: ReadyOutcome
) -> None:
    """The bot's client cannot connect: its ready rows go to ``deliver`` tasks, which
    count the failure against each row's attempts (and give up in the end)."""
    with sender.claim_scope(bot_id, correlation_id) as s:
        ready = execute(s, _READY, bot_id, BATCH_SIZE)
    outcome.ready = len(ready)
    items = [(int(row.id), int(row.chat_id)) for row in ready]
    outcome.batch.handed_off = hand_off(bot_id, items).handed_off
    wake.finish(sender.redis, bot_id)
