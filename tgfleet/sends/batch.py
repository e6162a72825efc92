"""Delivering many plain sends of one bot at once: the fleet's fast path.

A broadcast, or a worker batch whose handlers replied to many users of one bot, queues
many sends to distinct chats in one commit. One ``deliver`` task per row pays, per
message, a task hop, a pacer slot, two transactions and a limiter call. A
``deliver_batch`` task carries up to ``BATCH_SIZE`` of them and pays those once per
round:

1. **Batch slot** (first round only): the batch books its messages' time on the bot's
   batch clock (``SendPacer.reserve_batch``) and comes back at its slot. A bot's batches
   then follow one another at its rate instead of all asking the limiter at once, and
   single sends (replies) keep slots of their own: they are not held up behind a
   broadcast.
2. **Tokens** for every message of the round, in one limiter call
   (``RateLimiter.acquire_many``): granted in order while the bot's bucket lasts, a chat
   without a token skipped. A broadcast of a bot that opted in to paid broadcasts takes
   them from ``acquire_paid`` instead, past the free rate within its Stars budget, and
   its messages go with ``allow_paid_floodskip`` (``tgfleet.sends.paid``).
3. **Claim** of the granted rows in one statement (``delivery.claim_many``: only plain
   sends; an upload goes the one-row way), their peers from one entity query.
4. **Send** every claimed message at once on the bot's client (Telethon packs them
   into containers), each with its row's ``random_id``.
5. **Mark** the sent rows in one statement. A row whose send or resolution failed gets
   exactly the one-row path's treatment (``Sender.send_failed`` and friends: FloodWait
   pauses the bot, a block marks the user, a transient error counts an attempt) and, when
   that says retry, a ``deliver`` task of its own.

What the round did not send (no token yet) comes back as the same task, later. Every
guarantee of the one-row path holds: a row is claimed before it is sent and marked after;
a worker killed in between leaves it ``sending`` until its lease ends, and the retry
reuses its ``random_id``, which Telegram deduplicates.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session
from telethon import TelegramClient, errors

from tgfleet.db import Outbox
from tgfleet.platform.names import DELIVER, RESOLVE_METRICS, SEND_METRICS, SENDS_QUEUE
from tgfleet.platform.taskmsg import TaskCall
from tgfleet.sends import delivery
from tgfleet.sends.loop import SenderUnavailable
from tgfleet.sends.outbox import publish_calls
from tgfleet.sends.paid import BALANCE_TOO_LOW, PAID_PER_S
from tgfleet.sends.ratelimit import SAFETY, ChatKind, Grant, PaidGrant
from tgfleet.sends.resolve import PeerNotFound, prefetch_peers, resolve_input_peer
from tgfleet.sends.sender import POSTPONE_AFTER_S, SEND_TIMEOUT_S, Outcome, Sender, trace_send
from tgfleet.sends.telegram_calls import build_request, sent_message_id

log = logging.getLogger(__name__)

#: (outbox_id, chat_id) of one row of a batch.
Item = tuple[int, int]
#: A batch that ran out of the bot's tokens comes back when this many seconds' worth
#: have come in again: well inside the bucket's ``BOT_BURST_S``, so the time a round
#: takes (a task hop, two transactions, the sends) is not time the bucket sits full.
ROUND_S = 0.25


@dataclass
class BatchOutcome:
    """What one round of a batch did; ``rest`` comes back after ``countdown`` seconds."""

    sent: int = 0
    rest: list[Item] = field(default_factory=list)
    countdown: float = 0.0
    #: Rows given to ``deliver`` tasks of their own (a failure to retry, not a plain send).
    handed_off: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    #: The broadcast all the batch's rows belong to (0: none), once looked up: the next
    #: rounds carry it (only a broadcast of a bot that opted in goes paid).
    broadcast_id: int | None = None
    #: Messages sent paid this round (0.1 Star each).
    paid: int = 0


@dataclass
class PaidRound:
    """A round of a paid broadcast: its messages go with ``allow_paid_floodskip``;
    ``booked`` of them were booked as paid (``tgfleet.sends.paid``)."""

    broadcast_id: int
    booked: int


def deliver_batch(
    sender: Sender,
    bot_id: int,
    items: Sequence[Item],
    *,
    reserved: bool = False,
    correlation_id: str | None = None,
    broadcast_id: int | None = None,
) -> BatchOutcome:
    """One round of a batch (see the module docstring)."""
    items = list(items)
    config = sender.bot_config(bot_id)
    if config is None:  # each row's own task fails it with the reason
        return hand_off(bot_id, items)
    limits, admins = config
    budget = sender.paid_budget(bot_id)
    if budget is not None and broadcast_id is None:
        with sender.claim_scope(bot_id, correlation_id) as s:
            broadcast_id = delivery.broadcast_of(s, bot_id, [i for i, _ in items])
    paid_per_s = PAID_PER_S if budget is not None and broadcast_id else None
    if not reserved:
        wait = sender.pacer.reserve_batch(bot_id, len(items), limits, per_s=paid_per_s)
        if wait > 0:  # the bot's booked time keeps the sweep away (booked_ahead)
            return BatchOutcome(rest=items, countdown=wait, broadcast_id=broadcast_id)
    try:  # connected before tokens are taken: they are spent on the wire at once
        client = sender.clients.get(bot_id)
    except (SenderUnavailable, OSError, TimeoutError, errors.RPCError):
        return hand_off(bot_id, items)  # counted against each row's attempts there
    chats = chat_kinds(items)
    paid_round = None
    rate = limits.bot_per_s * SAFETY
    if budget is not None and broadcast_id and sender.stars.usable(bot_id, broadcast_id, budget):
        books = sender.stars.books(bot_id, broadcast_id, budget)
        paid_grant = sender.limiter.acquire_paid(bot_id, chats, limits, PAID_PER_S, books)
        paid_round = PaidRound(broadcast_id, sum(paid_grant.paid))
        if not paid_grant.budget_out:
            rate = PAID_PER_S * SAFETY
        grant: Grant | PaidGrant = paid_grant
    else:
        grant = sender.limiter.acquire_many(bot_id, chats, limits)
    granted = [item for item, ok in zip(items, grant.granted, strict=True) if ok]
    outcome = BatchOutcome(rest=[i for i, ok in zip(items, grant.granted, strict=True) if not ok])
    outcome.broadcast_id = broadcast_id
    if granted:
        send_round(sender, client, bot_id, granted, admins, correlation_id, outcome, paid_round)
    come_back(sender, bot_id, grant, rate, outcome)
    return outcome


def chat_kinds(items: Sequence[Item]) -> list[tuple[int, ChatKind]]:
    """(chat_id, kind) of each item, for the limiter: users are private chats."""
    return [(chat_id, ChatKind.PRIVATE if chat_id > 0 else ChatKind.GROUP) for _, chat_id in items]


def come_back(
    sender: Sender, bot_id: int, grant: Grant | PaidGrant, rate: float, outcome: BatchOutcome
) -> None:
    """When what the round left (``outcome.rest``) is sent again: ``outcome.countdown``."""
    if not outcome.rest:
        return
    if grant.bot_wait > 0:  # the bot's bucket ran dry: back when it holds a round
        wanted = min(len(outcome.rest), max(1.0, rate * ROUND_S))
        outcome.countdown = grant.bot_wait + (wanted - 1) / rate
    else:  # only chats were short of tokens (or Telegram wants Stars: at once)
        outcome.countdown = grant.chat_wait
    outcome.countdown = max(outcome.countdown, sender.limiter.paused_for(bot_id))
    if outcome.countdown > POSTPONE_AFTER_S:  # beyond the bot's booked time, maybe
        _postpone(sender, bot_id, outcome)


def _postpone(sender: Sender, bot_id: int, outcome: BatchOutcome) -> None:
    """Write a long wait (a FloodWait pause) to the rest's rows: the sweep then knows
    they are waiting for this task, not lost. Shorter waits are within the time the
    bot's batches booked (``SendPacer.booked_ahead``), which the sweep reads too."""
    with sender.claim_scope(bot_id, None) as s:
        delivery.postpone(s, bot_id, [i for i, _ in outcome.rest], outcome.countdown)


def send_round(
    sender: Sender,
    client: TelegramClient,
    bot_id: int,
    granted: list[Item],
    admins: list[int],
    correlation_id: str | None,
    outcome: BatchOutcome,
    paid_round: PaidRound | None = None,
    claim: Callable[[Session], list[Outbox]] | None = None,
) -> None:
    """Claim, resolve, send and mark the rows that have their tokens (``granted``; or
    what ``claim`` claims in the round's first transaction, which then finds the rows)."""
    failed: list[tuple[Outbox, Outcome]] = []
    ready: list[tuple[Outbox, Any, str]] = []
    with sender.claim_scope(bot_id, correlation_id) as s:
        if claim is None:
            rows = delivery.claim_many(s, sender.settings, bot_id, [i for i, _ in granted])
        else:
            rows = claim(s)
            granted = [(row.id, row.chat_id) for row in rows]
        stored = prefetch_peers(s, bot_id, [row.chat_id for row in rows], sender.peers)
        for row in rows:
            try:
                resolved = resolve_input_peer(
                    s, bot_id, row.chat_id, cache=sender.peers, telegram=sender.lookup
                )
            except PeerNotFound as exc:
                failed.append((row, sender.attempt_failed(s, row, exc.reason, admins)))
                continue
            except (SenderUnavailable, errors.RPCError, OSError, TimeoutError) as exc:
                failed.append((row, sender.transient(s, row, exc, admins)))
                continue
            try:
                request = build_request(row, resolved.peer, row.random_id or 0)
            except (ValueError, TypeError) as exc:  # bad markup or media: a retry cannot help
                reason = f"cannot build the message: {exc}"[:500]
                delivery.mark_failed(s, bot_id, row.id, reason, row)
                failed.append((row, Outcome("failed", reason)))
                continue
            if paid_round is not None:  # Telegram charges only what is over the free rate
                request.allow_paid_floodskip = True
            source = "store" if row.chat_id in stored else resolved.source
            ready.append((row, request, source))
        claimed = {row.id for row in rows}
        # Not claimed: done, paused, cancelled or held by a live claim elsewhere (dropped
        # here), or still claimable but not a plain send, an upload (to a task of its own).
        missed = [i for i, _ in granted if i not in claimed]
        open_ids = set(delivery.still_claimable(s, bot_id, missed)) if missed else set()
    others = [item for item in granted if item[0] in open_ids]
    if others:
        outcome.handed_off += hand_off(bot_id, others).handed_off
    results: list[Any] = []
    started = time.time_ns()
    if ready:
        requests = [request for _, request, _ in ready]
        try:
            results = sender.loop.run(_send_all(client, requests), SEND_TIMEOUT_S)
        except Exception as exc:  # unknown which arrived: each retry keeps its random_id
            results = [exc] * len(ready)
    sent: list[tuple[Outbox, int | None]] = []
    unsent: list[Outbox] = []
    sources: Counter[str] = Counter()
    out_of_stars = False
    for (row, request, source), result in zip(ready, results, strict=True):
        trace_send(row, started, _outcome_of(result))
        if result is None:
            unsent.append(row)
        elif isinstance(result, errors.RPCError) and result.message == BALANCE_TOO_LOW:
            out_of_stars = True  # the rest of the broadcast goes at the free rate
            unsent.append(row)
        elif isinstance(result, BaseException):
            if not isinstance(result, Exception):  # cancelled: as if it timed out
                result = TimeoutError(f"the send was cancelled ({type(result).__name__})")
            failed.append((row, sender.send_failed(row, result, admins, correlation_id)))
        else:
            sent.append((row, sent_message_id(result, request)))
            sources[source] += 1
    if out_of_stars:
        log.warning("bot %s has no Stars left: its broadcasts go at the free rate", bot_id)
        sender.stars.out_of_stars(bot_id)
    charged = 0
    if paid_round is not None:  # what was booked but not sent was not charged
        charged = min(paid_round.booked, len(sent))
        sender.stars.refund(bot_id, paid_round.broadcast_id, paid_round.booked - charged)
    if unsent:  # the bot is paused (or out of Stars): back with the rest of the batch
        with sender.claim_scope(bot_id, correlation_id) as s:
            pause = sender.limiter.paused_for(bot_id)
            delivery.release(s, bot_id, [row.id for row in unsent], pause)
        outcome.rest = sorted(outcome.rest + [(row.id, row.chat_id) for row in unsent])
    if sent:
        with sender.claim_scope(bot_id, correlation_id) as s:
            delivery.mark_sent_many(s, sent)
            if paid_round is not None and charged:
                delivery.record_stars_spent(s, bot_id, paid_round.broadcast_id, charged)
        with sender.redis.pipeline(transaction=False) as pipe:
            for source, count in sources.items():
                pipe.hincrby(RESOLVE_METRICS, source, count)
            pipe.hincrby(SEND_METRICS, "sent", len(sent))
            pipe.hincrby(SEND_METRICS, "batched", len(sent))
            if charged:
                pipe.hincrby(SEND_METRICS, "paid", charged)
            pipe.execute()
    outcome.sent += len(sent)
    outcome.paid += charged
    outcome.outcomes["sent"] += len(sent)
    retries = []
    for row, result in failed:
        outcome.outcomes[result.status] += 1
        if result.status == "retry":
            kwargs: dict[str, Any] = {"outbox_id": row.id, "bot_id": bot_id}
            kwargs |= {"chat_id": row.chat_id, **result.extra}
            call = TaskCall(DELIVER, SENDS_QUEUE, kwargs=kwargs, countdown=result.countdown)
            retries.append(call)
    if retries:
        publish_calls(retries)
        outcome.handed_off += len(retries)


def _outcome_of(result: Any) -> str:
    """What a round's send came to, for its span: sent, not sent, or the error's name."""
    if result is None:
        return "not sent"
    return type(result).__name__ if isinstance(result, BaseException) else "sent"


async def _send_all(client: TelegramClient, requests: list[Any]) -> list[Any]:
    """The answers to ``requests`` (an exception in place of a failed one's): the first
    goes alone, then the rest at once. When the first meets a FloodWait the rest are not
    sent (None): a flood costs one refused request, not one per message of the round."""
    answers = await asyncio.gather(client(requests[0]), return_exceptions=True)
    first = answers[0]
    if isinstance(first, errors.FloodWaitError):
        return [first] + [None] * (len(requests) - 1)
    rest = await asyncio.gather(*(client(r) for r in requests[1:]), return_exceptions=True)
    return [first, *rest]


def hand_off(bot_id: int, items: list[Item]) -> BatchOutcome:
    """Give rows to one-row ``deliver`` tasks, which handle every case there is."""
    calls = [
        TaskCall(DELIVER, SENDS_QUEUE, kwargs={"outbox_id": i, "bot_id": bot_id, "chat_id": c})
        for i, c in items
    ]
    publish_calls(calls)
    return BatchOutcome(handed_off=len(calls))
