"""Delivering one outbox row: resolve, take rate tokens, claim, send, record.

``Sender`` is the per-process service behind ``tgfleet.sends.deliver``; it owns the
event-loop thread with the bots' clients, the peer LRU, the limiter and the pacer.
``deliver()`` returns an :class:`Outcome`; the task turns ``retry`` outcomes into Celery
retries with the given countdown (never a sleep). See docs/sends.md.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import redis
from sqlalchemy.orm import Session
from telethon import errors

from tgfleet.db import (
    Outbox,
    OutboxOp,
    OutboxStatus,
    session_scope,
)
from tgfleet.platform.metrics import metrics
from tgfleet.platform.names import RESOLVE_METRICS, SEND_METRICS
from tgfleet.platform.settings import Settings
from tgfleet.platform.tracing import record_span
from tgfleet.sends import delivery
from tgfleet.sends.loop import (
    BotClients,
    DbSessionStore,
    SenderLoop,
    SenderUnavailable,
)
from tgfleet.sends.media import (
    LocalFile,
    MediaError,
    MediaFileError,
    StoredFile,
    check_readable,
    parse_media,
    with_reference,
)
from tgfleet.sends.pacing import SendPacer, Stage
from tgfleet.sends.paid import PaidBudget, PaidConfigError, StarsLedger
from tgfleet.sends.ratelimit import ChatKind, Limits, RateLimiter
from tgfleet.sends.resolve import PeerCache, PeerNotFound, resolve_input_peer
from tgfleet.sends.telegram_calls import ClientLookup, build_request, sent_message_id

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 30.0
#: How long one file's upload may take (a retry uploads it again).
UPLOAD_TIMEOUT_S = 300.0
_DONE = (OutboxStatus.SENT, OutboxStatus.FAILED, OutboxStatus.DEAD)
#: Waits for a chat slot longer than this are written to the row, so the sweep knows it is
#: waiting (the sweep knows bot slots from the pacer itself: ``SendPacer.booked_ahead``).
POSTPONE_AFTER_S = 2.0
#: Per-chat limits are used at this fraction: the chat bucket has no slack for the jitter
#: between taking a token and Telegram seeing the message (the bot bucket has some).
CHAT_MARGIN = 0.9
#: ...and the chat burst one message short of Telegram's: a burst's first message that
#: reaches Telegram late would otherwise leave the next one without a token (FLOOD_WAIT).
CHAT_BURST_SLACK = 1
BOT_CONFIG_TTL_S = 30.0

#: Telegram errors that retrying cannot fix (besides blocks, handled on their own).
PERMANENT_ERRORS: tuple[type[Exception], ...] = (
    errors.InputUserDeactivatedError,
    errors.UserDeactivatedError,
    errors.ChatWriteForbiddenError,
    errors.MessageEmptyError,
    errors.MessageTooLongError,
    errors.UserIsBotError,
    errors.ForbiddenError,
    errors.BadRequestError,
)


@dataclass
class Outcome:
    """What became of one delivery attempt."""

    status: str  # sent | noop | retry | failed | dead
    detail: str = ""
    countdown: float = 0.0
    stage: Stage = Stage.NONE
    extra: dict[str, Any] = field(default_factory=dict)


class Sender:
    """One per sender process (see ``tgfleet.sends.runtime.get_sender``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.redis = redis.Redis.from_url(settings.redis_url)
        self.limiter = RateLimiter(self.redis)
        self.pacer = SendPacer(self.redis)
        self.peers = PeerCache()
        self.loop = SenderLoop()
        self.store = DbSessionStore(settings)
        self.clients = BotClients(settings, self.loop, self.store)
        self.lookup = ClientLookup(self.clients, self.loop)
        self.stars = StarsLedger(self.redis)
        self._bots: dict[int, tuple[float, tuple[Limits, list[int]]]] = {}
        self._paid: dict[int, PaidBudget | None] = {}
        self._closed = threading.Event()

    # -- the flow ------------------------------------------------------------------------
    def deliver(
        self,
        outbox_id: int,
        bot_id: int,
        *,
        chat_id: int | None = None,
        stage: Stage = Stage.NONE,
        distrust_hash: int | None = None,
        correlation_id: str | None = None,
        op: str | None = None,
    ) -> Outcome:
        """One attempt: claim the row, resolve the peer, take a token, send, record."""
        settings = self.settings
        config = self.bot_config(bot_id)
        if config is None:
            with session_scope(settings, bot_id=bot_id, correlation_id=correlation_id) as s:
                delivery.mark_failed(s, bot_id, outbox_id, f"bot {bot_id} does not exist")
            return Outcome("failed", "no such bot")
        limits, admins = config
        if op == OutboxOp.ANSWER:
            return self._answer(outbox_id, bot_id, admins, correlation_id)
        if chat_id is None:  # re-driven by the sweep or the CLI
            chat_id = self._chat_of(bot_id, outbox_id)
            if chat_id is None:
                return Outcome("noop", "no such row, or already done")
        kind = ChatKind.PRIVATE if chat_id > 0 else ChatKind.GROUP
        if stage is not Stage.BOTH:
            slot = self.pacer.reserve(bot_id, chat_id, kind, limits, stage)
            if slot.wait > 0:  # not our turn yet: come back then (no claim, no token)
                if slot.stage is Stage.CHAT and slot.wait > POSTPONE_AFTER_S:
                    with session_scope(settings, bot_id=bot_id) as s:
                        delivery.postpone(s, bot_id, [outbox_id], slot.wait)
                return Outcome("retry", "rate limit", slot.wait, slot.stage, {"chat_id": chat_id})
        try:  # connected before a token is taken: a token is spent on the wire at once
            client = self.clients.get(bot_id)
        except (SenderUnavailable, OSError, TimeoutError, errors.RPCError) as exc:
            return self._cannot_connect(outbox_id, bot_id, exc)
        with self.claim_scope(bot_id, correlation_id) as s:
            row = delivery.claim(s, settings, bot_id, outbox_id)
            if row is None:
                return Outcome("noop", "already done or claimed by another worker")
            try:
                resolved = resolve_input_peer(
                    s,
                    bot_id,
                    row.chat_id,
                    cache=self.peers,
                    telegram=self.lookup,
                    distrust_hash=distrust_hash,
                )
            except PeerNotFound as exc:
                return self.attempt_failed(s, row, exc.reason, admins)
            except (SenderUnavailable, errors.RPCError, OSError, TimeoutError) as exc:
                return self.transient(s, row, exc, admins)
            try:
                local = _local_file(row)
                if local is None:
                    request = build_request(row, resolved.peer, row.random_id or 0)
            except MediaFileError as exc:  # missing or unreadable: a retry cannot help
                delivery.mark_failed(s, bot_id, row.id, str(exc)[:500], row)
                return Outcome("failed", str(exc))
            except (ValueError, TypeError) as exc:  # bad media/markup: a retry cannot help
                reason = f"cannot build the message: {exc}"[:500]
                delivery.mark_failed(s, bot_id, row.id, reason, row)
                return Outcome("failed", reason)
        if local is not None:  # uploaded outside any transaction, on the client's loop
            try:
                uploaded = self.loop.run(
                    client.upload_file(local.path, file_name=local.file_name), UPLOAD_TIMEOUT_S
                )
            except (FileNotFoundError, PermissionError, IsADirectoryError) as exc:
                reason = f"cannot read the file to upload ({exc.strerror}): {local.path}"
                with session_scope(settings, bot_id=bot_id, correlation_id=correlation_id) as s:
                    delivery.mark_failed(s, bot_id, row.id, reason, row)
                return Outcome("failed", reason)
            except Exception as exc:  # a retry uploads again; random_id keeps the send once
                return self.send_failed(row, exc, admins, correlation_id)
            request = build_request(row, resolved.peer, row.random_id or 0, uploaded)
        # (request is bound: built in the transaction, or just now after the upload)
        # The token is taken last, right before the request goes out: the time between the
        # two is all the slack Telegram's own buckets give (see docs/sends.md).
        wait = self.limiter.acquire(bot_id, chat_id, kind, limits)
        if wait > 0:
            return self._rate_wait(outbox_id, bot_id, chat_id, wait)
        started = time.time_ns()
        try:
            result = self.loop.run(client(request), SEND_TIMEOUT_S)
        except Exception as exc:  # mapped below; nothing is retried blindly
            trace_send(row, started, type(exc).__name__)
            return self.send_failed(row, exc, admins, correlation_id)
        trace_send(row, started, "sent")
        with self.claim_scope(bot_id, correlation_id) as s:
            delivery.mark_sent(s, row, sent_message_id(result, request))
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hincrby(RESOLVE_METRICS, resolved.source, 1)
            pipe.hincrby(SEND_METRICS, "sent", 1)
            pipe.execute()
        return Outcome("sent")

    def _answer(
        self, outbox_id: int, bot_id: int, admins: list[int], correlation_id: str | None
    ) -> Outcome:
        """A callback answer: no peer, no chat slot. The user's spinner is waiting, and
        Telegram does not count answers against the bot's sending rate."""
        try:
            client = self.clients.get(bot_id)
        except (SenderUnavailable, OSError, TimeoutError, errors.RPCError) as exc:
            return self._cannot_connect(outbox_id, bot_id, exc)
        with self.claim_scope(bot_id, correlation_id) as s:
            row = delivery.claim(s, self.settings, bot_id, outbox_id)
            if row is None:
                return Outcome("noop", "already done or claimed by another worker")
            request = build_request(row, None, 0)
        try:
            self.loop.run(client(request), SEND_TIMEOUT_S)
        except Exception as exc:
            return self.send_failed(row, exc, admins, correlation_id)
        with self.claim_scope(bot_id, correlation_id) as s:
            delivery.mark_sent(s, row, None)
        self.redis.hincrby(SEND_METRICS, "answered", 1)
        return Outcome("sent")

    def claim_scope(
        self, bot_id: int, correlation_id: str | None
    ) -> AbstractContextManager[Session]:
        """The transaction of a claim or a sent mark, which every delivery makes: its RLS
        context goes with its first statement, in one round trip (``lazy_context``)."""
        return session_scope(
            self.settings, bot_id=bot_id, correlation_id=correlation_id, lazy_context=True
        )

    def bot_config(self, bot_id: int) -> tuple[Limits, list[int]] | None:
        """The bot's limits and admin chats, cached for ``BOT_CONFIG_TTL_S``."""
        now = time.monotonic()
        cached = self._bots.get(bot_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        with session_scope(self.settings, bot_id=bot_id) as s:
            found = delivery.bot_config(s, bot_id)
        if found is None:
            return None
        bot_settings, admins = found
        raw = bot_settings.get("limits")
        limits = Limits.from_settings(self.settings, raw if isinstance(raw, dict) else None)
        limits = dataclasses.replace(
            limits,
            chat_per_s=limits.chat_per_s * CHAT_MARGIN,
            chat_burst=max(1, limits.chat_burst - CHAT_BURST_SLACK),
        )
        try:
            self._paid[bot_id] = PaidBudget.parse(bot_settings.get("paid_broadcasts"))
        except PaidConfigError as exc:  # `tgfleet bots paid` refuses these; a hand edit
            log.warning("bot %s: paid broadcasts are off: %s", bot_id, exc)
            self._paid[bot_id] = None
        self._bots[bot_id] = (now + BOT_CONFIG_TTL_S, (limits, admins))
        return limits, admins

    def paid_budget(self, bot_id: int) -> PaidBudget | None:
        """The bot's paid broadcast budget (None: it did not opt in), cached with
        :meth:`bot_config`."""
        if self.bot_config(bot_id) is None:
            return None
        return self._paid.get(bot_id)

    # -- waits and failures ----------------------------------------------------------------
    def _rate_wait(self, outbox_id: int, bot_id: int, chat_id: int, wait: float) -> Outcome:
        """The limiter said no (a FloodWait pause, or drift from the slot): give the claim
        back and come again through the pacer: after a pause from the start, else for a
        new bot slot (the chat's is kept). Straight back to the limiter, refused sends
        took the tokens of the paced ones, which were refused in turn: one bot's 600
        sends were refused 3,331 times, each a claim, a release and a task hop."""
        paused = self.limiter.paused_for(bot_id)
        self.redis.hincrby(SEND_METRICS, "limiter_refusals", 1)
        metrics().limiter_refusals.labels(str(bot_id)).inc()
        if paused > 0:
            jitter = random.uniform(0, min(5.0, 0.2 * paused + 0.5))
            countdown, stage = paused + jitter, Stage.NONE
        else:
            countdown, stage = wait, Stage.CHAT
        with session_scope(self.settings, bot_id=bot_id) as s:
            delivery.release(s, bot_id, [outbox_id], countdown)
        return Outcome("retry", "rate limit", countdown, stage, {"chat_id": chat_id})

    def _chat_of(self, bot_id: int, outbox_id: int) -> int | None:
        with session_scope(self.settings, bot_id=bot_id) as s:
            row = s.get(Outbox, (bot_id, outbox_id))
            return None if row is None or row.status in _DONE else row.chat_id

    def _cannot_connect(self, outbox_id: int, bot_id: int, exc: BaseException) -> Outcome:
        with session_scope(self.settings, bot_id=bot_id) as s:
            row = s.get(Outbox, (bot_id, outbox_id))
            if row is None or row.status in _DONE:
                return Outcome("noop", "already done")
            config = self.bot_config(bot_id)
            return self.transient(s, row, exc, config[1] if config else [])

    def backoff(self, attempts: int) -> float:
        """Capped exponential backoff with jitter for the ``attempts``-th failure."""
        base = self.settings.send_backoff_base_s * 2 ** max(0, attempts - 1)
        return min(self.settings.send_backoff_cap_s, base) * random.uniform(0.5, 1.0)

    def attempt_failed(
        self, s: Any, row: Outbox, reason: str, admins: list[int], **extra: Any
    ) -> Outcome:
        """A failure that counts against ``send_max_attempts``: retry later, or ``dead``."""
        attempts = row.attempts + 1
        if attempts >= self.settings.send_max_attempts:
            delivery.defer(s, row.bot_id, row.id, 0, reason, count_attempt=True)
            final = f"{reason} (gave up after {attempts} attempts)"
            delivery.mark_dead(s, row.bot_id, row, final, admins)
            self.redis.hincrby(SEND_METRICS, "dead", 1)
            return Outcome("dead", final)
        countdown = self.backoff(attempts)
        delivery.defer(s, row.bot_id, row.id, countdown, reason, count_attempt=True)
        return Outcome("retry", reason, countdown, Stage.NONE, dict(extra))

    def transient(self, s: Any, row: Outbox, exc: BaseException, admins: list[int]) -> Outcome:
        if isinstance(exc, SenderUnavailable) and exc.permanent:
            delivery.mark_failed(s, row.bot_id, row.id, exc.reason, row)
            return Outcome("failed", exc.reason)
        if isinstance(exc, errors.FloodWaitError):
            countdown = float(exc.seconds) + random.uniform(0, 1)
            delivery.defer(s, row.bot_id, row.id, countdown, "FLOOD_WAIT during lookup")
            return Outcome("retry", "flood wait (lookup)", countdown)
        return self.attempt_failed(s, row, f"{type(exc).__name__}: {exc}"[:500], admins)

    def send_failed(
        self, row: Outbox, exc: Exception, admins: list[int], correlation_id: str | None
    ) -> Outcome:
        bot_id = row.bot_id
        if isinstance(exc, errors.FileReferenceExpiredError):
            return self._reference_expired(row, correlation_id)
        with session_scope(self.settings, bot_id=bot_id, correlation_id=correlation_id) as s:
            if isinstance(exc, errors.FloodWaitError):
                seconds = float(exc.seconds)
                self.limiter.pause(bot_id, seconds)
                metrics().flood_waits.labels(str(bot_id)).inc()
                metrics().flood_wait_seconds.labels(str(bot_id)).inc(seconds)
                self.redis.hincrby(SEND_METRICS, "flood_wait", 1)
                countdown = seconds + random.uniform(0, min(5.0, 0.2 * seconds + 0.5))
                log.warning("bot %s: FLOOD_WAIT %ss; every sender pauses it", bot_id, exc.seconds)
                delivery.defer(s, bot_id, row.id, countdown, f"FLOOD_WAIT_{exc.seconds}")
                return Outcome("retry", f"flood wait {exc.seconds}s", countdown)
            if isinstance(exc, errors.UserIsBlockedError):
                delivery.mark_failed(s, bot_id, row.id, delivery.BLOCKED_REASON, row)
                if row.chat_id > 0:
                    delivery.mark_blocked(s, bot_id, row.chat_id)
                self.redis.hincrby(SEND_METRICS, "failed", 1)
                return Outcome("failed", "blocked")
            if isinstance(exc, errors.PeerIdInvalidError):
                self.peers.invalidate(bot_id, row.chat_id)
                bad = getattr(_peer_of(exc), "access_hash", None)
                reason = f"Telegram refused the peer of chat {row.chat_id} (PEER_ID_INVALID)"
                return self.attempt_failed(s, row, reason, admins, distrust_hash=bad)
            if isinstance(exc, errors.AuthKeyDuplicatedError | errors.UnauthorizedError):
                self.clients.forget(bot_id)
                if isinstance(exc, errors.AuthKeyDuplicatedError):
                    self.store.forget(bot_id)
                return self.attempt_failed(s, row, f"session rejected: {exc}"[:500], admins)
            if isinstance(exc, SenderUnavailable) and exc.permanent:
                delivery.mark_failed(s, bot_id, row.id, exc.reason, row)
                return Outcome("failed", exc.reason)
            if isinstance(exc, errors.MessageNotModifiedError):
                # An edit to what the message already shows: done, not failed.
                delivery.mark_sent(s, row, row.target_id)
                return Outcome("sent", "not modified")
            if isinstance(exc, errors.QueryIdInvalidError):
                reason = "the button press expired or was answered already (QUERY_ID_INVALID)"
                delivery.mark_failed(s, bot_id, row.id, reason, row)
                return Outcome("failed", reason)
            if isinstance(exc, PERMANENT_ERRORS):
                reason = f"{type(exc).__name__}: {exc}"[:500]
                delivery.mark_failed(s, bot_id, row.id, reason, row)
                self.redis.hincrby(SEND_METRICS, "failed", 1)
                return Outcome("failed", reason)
            if isinstance(exc, errors.RPCError | SenderUnavailable | OSError | TimeoutError):
                # Unknown whether it arrived: the retry reuses the random_id.
                return self.attempt_failed(s, row, f"{type(exc).__name__}: {exc}"[:500], admins)
            # Anything else is a bug, not weather: fail the row (no retry loop) and say so.
            log.error("outbox %s: unexpected error while sending", row.id, exc_info=exc)
            reason = f"unexpected {type(exc).__name__}: {exc}"[:500]
            delivery.mark_failed(s, bot_id, row.id, reason, row)
            return Outcome("failed", reason)

    def _reference_expired(self, row: Outbox, correlation_id: str | None) -> Outcome:
        """FILE_REFERENCE_EXPIRED: fetch the file's message again for a fresh reference and
        retry once at once; without one (or a second time) the row fails with the reason."""
        media = row.media or {}
        fresh: bytes | None = None
        why = "it was refreshed once already"
        try:
            spec = parse_media(media)
            if isinstance(spec, StoredFile) and not spec.refreshed:
                fresh, why = self.lookup.fresh_reference(row.bot_id, spec)
        except (MediaError, SenderUnavailable, errors.RPCError, OSError, TimeoutError) as exc:
            why = f"the look-up failed: {type(exc).__name__}: {exc}"
        with session_scope(self.settings, bot_id=row.bot_id, correlation_id=correlation_id) as s:
            if fresh is not None:
                delivery.replace_media(s, row.bot_id, row.id, with_reference(media, fresh))
                reason = "FILE_REFERENCE_EXPIRED: retrying with a fresh file reference"
                delivery.defer(s, row.bot_id, row.id, 0, reason)
                return Outcome("retry", reason, 0.0)
            reason = f"the file reference expired (FILE_REFERENCE_EXPIRED); no fresh one: {why}"
            delivery.mark_failed(s, row.bot_id, row.id, reason[:500], row)
            self.redis.hincrby(SEND_METRICS, "failed", 1)
            return Outcome("failed", reason)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self.clients.close()
        self.loop.stop()
        self.redis.close()


def _local_file(row: Outbox) -> LocalFile | None:
    """The local file a send or edit row uploads (checked readable now), or None."""
    media = getattr(row, "media", None)
    op = OutboxOp(getattr(row, "op", None) or OutboxOp.SEND)
    if not media or op not in (OutboxOp.SEND, OutboxOp.EDIT):
        return None
    spec = parse_media(media)
    if not isinstance(spec, LocalFile):
        return None
    check_readable(spec)
    return spec


def trace_send(row: Outbox, started_ns: int, outcome: str) -> None:
    """The ``tgfleet.send`` span of a row's Telegram call, in the trace of the handling
    that wrote the row (``tgfleet.platform.tracing``); rows written outside a trace (a
    broadcast from the CLI) make none."""
    if row.trace_parent is not None:
        attributes = {"tgfleet.bot": row.bot_id, "tgfleet.op": row.op, "tgfleet.outcome": outcome}
        record_span(
            "tgfleet.send", "client", started_ns, time.time_ns(), row.trace_parent, attributes
        )


def _peer_of(exc: Exception) -> Any:
    """The peer of the request Telegram refused. The sender's clients do not receive
    updates, so Telethon wraps every call in invokeWithoutUpdates and the error's request
    is the wrapper: the call itself is its ``query``."""
    request = getattr(exc, "request", None)
    while request is not None and not hasattr(request, "peer") and hasattr(request, "query"):
        request = request.query
    return getattr(request, "peer", None)
