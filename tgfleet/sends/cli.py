"""``tgfleet send``, ``tgfleet outbox status|retry|dead|scheduled|cancel`` and
``tgfleet broadcast status|pause|resume|cancel``.

``send`` creates outbox rows in batches (one transaction each, deliveries enqueued after
each commit) with a progress bar. Every row of a broadcast has the dedupe key
``broadcast:<id>:<chat>``, so re-running the same command with the same
``--broadcast-id`` after an interruption creates only what is missing. With ``--at``
the rows are scheduled: stored, and enqueued by the senders' scheduler on time.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from sqlalchemy import func, or_, select, update

from tgfleet.platform.errors import TgfleetError
from tgfleet.platform.settings import Settings

if TYPE_CHECKING:
    from tgfleet.sends.broadcasts import Progress as BroadcastProgress

BATCH = 500


class SendCliError(TgfleetError):
    """A ``tgfleet send``/``outbox`` argument cannot be used (the message says why)."""


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``send`` and ``outbox`` to the ``tgfleet`` command line."""
    send = sub.add_parser("send", help="queue a message to users of a bot (resumable)")
    send.add_argument("--bot", type=int, required=True, help="the bot's Telegram id")
    send.add_argument(
        "--to",
        action="append",
        default=[],
        help="USER_ID, @username or 'all' (every user who has not blocked the bot); repeatable",
    )
    send.add_argument("--file", type=Path, help="recipients, one USER_ID or @username a line")
    send.add_argument("--text", required=True, help="the message")
    send.add_argument("--parse-mode", choices=["markdown", "html"], default=None)
    send.add_argument(
        "--broadcast-id", type=int, default=None, help="re-use to resume an interrupted send"
    )
    send.add_argument(
        "--at", default=None, help="send at this time (ISO 8601: 2026-12-24T09:00), not now"
    )
    send.add_argument(
        "--tz", default=None, help="the time zone of --at (IANA: Europe/Berlin; default UTC)"
    )
    send.set_defaults(func=cmd_send, needs_settings=True)

    outbox = sub.add_parser("outbox", help="inspect and re-drive the outbox")
    outbox.add_argument("action", choices=["status", "retry", "dead", "scheduled", "cancel"])
    outbox.add_argument("--bot", type=int, default=None, help="one bot (default: all bots)")
    outbox.add_argument("--broadcast-id", type=int, default=None)
    outbox.add_argument(
        "--status",
        action="append",
        choices=["failed", "dead"],
        default=None,
        help="retry: which rows (default: dead)",
    )
    outbox.add_argument(
        "--id", type=int, action="append", default=None, help="retry, cancel: one row"
    )
    outbox.add_argument("--limit", type=int, default=50, help="dead, scheduled: rows to show")
    outbox.set_defaults(func=cmd_outbox, needs_settings=True)

    broadcast = sub.add_parser("broadcast", help="watch, pause, resume or cancel a broadcast")
    broadcast.add_argument("action", choices=["status", "pause", "resume", "cancel"])
    broadcast.add_argument("--bot", type=int, required=True, help="the bot's Telegram id")
    broadcast.add_argument("--id", type=int, required=True, help="the broadcast id")
    broadcast.add_argument(
        "--watch", action="store_true", help="status: refresh every 2 s until it is done"
    )
    broadcast.set_defaults(func=cmd_broadcast, needs_settings=True)


# -- send --------------------------------------------------------------------------------
def _targets(args: argparse.Namespace) -> list[str]:
    targets = [t.strip() for t in args.to if t.strip()]
    if args.file is not None:
        try:
            lines = args.file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise SendCliError(f"cannot read --file {args.file}: {exc.strerror}") from None
        targets += [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    if not targets:
        raise SendCliError("say who gets the message: --to USER_ID|@username|all or --file F")
    return targets


def recipients(settings: Settings, bot_id: int, targets: Sequence[str]) -> list[int]:
    """Chat ids for ``targets`` (ids, @usernames known to the bot, ``all``), in order."""
    from tgfleet.db import Bot, Entity, PeerType, TgUser, session_scope

    chat_ids: list[int] = []
    unknown: list[str] = []
    with session_scope(settings, bot_id=bot_id) as s:
        if s.get(Bot, bot_id) is None:
            raise SendCliError(
                f"bot {bot_id} is not in this fleet: `tgfleet bots list` shows the bots, "
                "`tgfleet bots add` adds one"
            )
        for target in targets:
            if target == "all":
                chat_ids += s.scalars(
                    select(TgUser.user_id)
                    .where(TgUser.bot_id == bot_id, TgUser.is_blocked.is_(False))
                    .order_by(TgUser.user_id)
                ).all()
            elif target.startswith("@"):
                name = target[1:].lower()
                found = (
                    s.scalars(
                        select(Entity.peer_id).where(
                            Entity.bot_id == bot_id,
                            Entity.peer_type == PeerType.USER,
                            func.lower(Entity.username) == name,
                        )
                    ).first()
                    or s.scalars(
                        select(TgUser.user_id).where(
                            TgUser.bot_id == bot_id, func.lower(TgUser.username) == name
                        )
                    ).first()
                )
                if found is None:
                    unknown.append(target)
                else:
                    chat_ids.append(int(found))
            else:
                try:
                    chat_ids.append(int(target))
                except ValueError:
                    unknown.append(target)
    if unknown:
        raise SendCliError(
            f"bot {bot_id} does not know {', '.join(unknown[:10])}: use numeric ids, or "
            "usernames of users who wrote to the bot"
        )
    return list(dict.fromkeys(chat_ids))


def _batches(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def queue_broadcast(
    settings: Settings,
    bot_id: int,
    chat_ids: Sequence[int],
    text: str,
    broadcast_id: int,
    *,
    parse_mode: str | None = None,
    progress: Progress | None = None,
    at: datetime | None = None,
) -> int:
    """Queue ``text`` for every chat in batches of ``BATCH`` (one statement and one
    commit each; at ``at``: scheduled); returns how many chats got a new message."""
    from tgfleet.db import session_scope
    from tgfleet.sends.outbox import queue_many

    task = progress.add_task("queueing", total=len(chat_ids)) if progress else None
    created = 0
    for batch in _batches(chat_ids, BATCH):
        with session_scope(settings, bot_id=bot_id) as s:
            created += queue_many(
                s,
                bot_id,
                batch,
                text,
                dedupe_prefix=f"broadcast:{broadcast_id}:",
                parse_mode=parse_mode,
                broadcast_id=broadcast_id,
                at=at,
            )
        if progress is not None and task is not None:
            progress.advance(task, len(batch))
    return created


def _require_broker(settings: Settings) -> None:
    """Fail before any row is written when Redis, which carries the deliveries, is down
    (the ``tgfleet`` command reports it in one line)."""
    from tgfleet.platform.redis import redis_client

    redis_client(settings.redis_url).ping()


def send_time(at: str | None, tz: str | None) -> datetime | None:
    """``--at`` in ``--tz`` (default UTC) as an aware datetime; None without ``--at``.
    A bad date, a bad zone, both an offset and a zone, or a time past: SendCliError."""
    if at is None:
        if tz is not None:
            raise SendCliError("--tz says the time zone of --at: give --at too")
        return None
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        raise SendCliError(
            f"--at {at!r} is not a date and time: use ISO 8601, e.g. 2026-12-24T09:00"
        ) from None
    zone: tzinfo = UTC
    if tz is not None:
        try:
            zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError):
            raise SendCliError(
                f"--tz {tz!r} is not a time zone: use an IANA name such as Europe/Berlin"
            ) from None
        if when.tzinfo is not None:
            raise SendCliError(f"--at {at!r} has its own offset: leave out --tz {tz!r}")
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone)
    from tgfleet.sends.outbox import check_send_time

    try:
        check_send_time(when)
    except ValueError as exc:
        raise SendCliError(f"--at {at!r}: {exc}") from None
    return when


def cmd_send(args: argparse.Namespace, settings: Settings) -> int:
    from tgfleet.platform.celery_app import make_celery

    at = send_time(args.at, args.tz)  # a bad time fails before anything else
    make_celery(settings)  # the app deliveries are enqueued through
    _require_broker(settings)
    chat_ids = recipients(settings, args.bot, _targets(args))
    broadcast_id = args.broadcast_id or int(time.time() * 1000)
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeRemainingColumn(), console=console) as progress:
        created = queue_broadcast(
            settings,
            args.bot,
            chat_ids,
            args.text,
            broadcast_id,
            parse_mode=args.parse_mode,
            progress=progress,
            at=at,
        )
    skipped = len(chat_ids) - created
    verb = "queued" if at is None else f"scheduled for {at.isoformat()}"
    if at is not None and at.utcoffset():
        verb += f" ({at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC)"
    print(
        f"broadcast {broadcast_id}: {verb} {created} message(s) for {len(chat_ids)} chat(s)"
        + (f", {skipped} already queued earlier" if skipped else "")
    )
    if not args.broadcast_id:
        print(f"re-run with --broadcast-id {broadcast_id} to resume it if interrupted")
    return 0


# -- outbox ------------------------------------------------------------------------------
def cmd_outbox(args: argparse.Namespace, settings: Settings) -> int:
    from tgfleet.db import Outbox, OutboxStatus, session_scope
    from tgfleet.db.session import AppRole

    role: AppRole = "admin" if args.bot is None else "bot"
    where = []
    if args.bot is not None:
        where.append(Outbox.bot_id == args.bot)
    if args.broadcast_id is not None:
        where.append(Outbox.broadcast_id == args.broadcast_id)
    if args.action == "status":
        with session_scope(settings, bot_id=args.bot, role=role) as s:
            rows = s.execute(
                select(Outbox.bot_id, Outbox.status, func.count())
                .where(*where)
                .group_by(Outbox.bot_id, Outbox.status)
                .order_by(Outbox.bot_id)
            ).all()
        counts: dict[int, dict[str, int]] = {}
        for bot_id, status, n in rows:
            counts.setdefault(bot_id, {})[status.value] = n
        # The statuses some bot has, in their order: eight columns would not fit 80.
        shown = [st.value for st in OutboxStatus if any(st.value in c for c in counts.values())]
        table = Table("bot", *shown)
        table.columns[0].no_wrap = True
        for bot_id, by_status in counts.items():
            table.add_row(str(bot_id), *[str(by_status.get(st, 0)) for st in shown])
        Console().print(table)
        return 0
    if args.bot is None and args.action != "scheduled":
        raise SendCliError(f"`tgfleet outbox {args.action}` needs --bot ID")
    if args.action == "scheduled":
        return _scheduled(settings, args)
    if args.action == "cancel":
        return _cancel(settings, args, where)
    if args.action == "dead":
        with session_scope(settings, bot_id=args.bot) as s:
            dead = s.execute(
                select(Outbox.id, Outbox.chat_id, Outbox.attempts, Outbox.last_error)
                .where(*where, Outbox.status == OutboxStatus.DEAD)
                .order_by(Outbox.id.desc())
                .limit(args.limit)
            ).all()
        table = Table("id", "chat", "attempts", "reason")
        for row in dead:
            table.add_row(str(row.id), str(row.chat_id), str(row.attempts), row.last_error or "")
        Console().print(table)
        return 0
    return _retry(settings, args, where)


def _retry(settings: Settings, args: argparse.Namespace, where: list[object]) -> int:
    from tgfleet.db import Outbox, OutboxStatus, session_scope
    from tgfleet.platform.celery_app import make_celery
    from tgfleet.sends.outbox import enqueue_after_commit

    make_celery(settings)
    _require_broker(settings)
    statuses = [OutboxStatus(s) for s in (args.status or ["dead"])]
    conditions = [*where, Outbox.status.in_(statuses)]
    if args.id:
        conditions.append(or_(*[Outbox.id == i for i in args.id]))
    with session_scope(settings, bot_id=args.bot) as s:
        ids = s.scalars(
            update(Outbox)
            .where(*conditions)  # type: ignore[arg-type]
            .values(
                status=OutboxStatus.RETRYING,
                attempts=0,
                last_error=None,
                next_attempt_at=func.now(),
            )
            .returning(Outbox.id)
        ).all()
        enqueue_after_commit(s, [(i, args.bot) for i in ids])
    print(f"re-queued {len(ids)} row(s) of bot {args.bot}")
    return 0


def _scheduled(settings: Settings, args: argparse.Namespace) -> int:
    from tgfleet.db import session_scope
    from tgfleet.db.session import AppRole
    from tgfleet.sends.schedule import scheduled

    role: AppRole = "admin" if args.bot is None else "bot"
    with session_scope(settings, bot_id=args.bot, role=role) as s:
        rows = scheduled(s, args.bot, args.limit)
    table = Table("id", "bot", "chat", "at (UTC)", "text")
    for row in rows:
        at = f"{row.next_attempt_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}"
        table.add_row(str(row.id), str(row.bot_id), str(row.chat_id), at, row.text[:40])
    Console().print(table)
    return 0


def _cancel(settings: Settings, args: argparse.Namespace, where: list[object]) -> int:
    from tgfleet.db import Outbox, session_scope
    from tgfleet.sends.schedule import cancel

    if not args.id and args.broadcast_id is None:
        raise SendCliError("`tgfleet outbox cancel` needs --id N (repeatable) or --broadcast-id")
    with session_scope(settings, bot_id=args.bot) as s:
        ids = list(args.id or [])
        if args.broadcast_id is not None:
            ids += s.scalars(select(Outbox.id).where(*where)).all()  # type: ignore[arg-type]
        cancelled = cancel(s, args.bot, ids)
    print(f"cancelled {len(cancelled)} scheduled row(s) of bot {args.bot}")
    return 0


# -- broadcast ---------------------------------------------------------------------------
def cmd_broadcast(args: argparse.Namespace, settings: Settings) -> int:
    from tgfleet.db import session_scope
    from tgfleet.sends import broadcasts

    if args.action == "status":
        return _watch(settings, args) if args.watch else _show(settings, args.bot, args.id)
    if args.action == "resume":
        from tgfleet.platform.celery_app import make_celery

        make_celery(settings)
        _require_broker(settings)
    change = {
        "pause": broadcasts.pause,
        "resume": broadcasts.resume,
        "cancel": broadcasts.cancel,
    }[args.action]
    with session_scope(settings, bot_id=args.bot) as s:
        moved = change(s, args.bot, args.id)
    done = {"pause": "paused", "resume": "queued again", "cancel": "cancelled"}[args.action]
    print(f"broadcast {args.id} of bot {args.bot}: {moved} message(s) {done}")
    return 0


def _show(settings: Settings, bot_id: int, broadcast_id: int) -> int:
    from tgfleet.db import session_scope
    from tgfleet.sends.broadcasts import progress

    with session_scope(settings, bot_id=bot_id) as s:
        now = progress(s, bot_id, broadcast_id)
    if now.total == 0:
        raise SendCliError(f"bot {bot_id} has no broadcast {broadcast_id}")
    print(broadcast_line(broadcast_id, now))
    return 0


def _watch(settings: Settings, args: argparse.Namespace) -> int:
    from tgfleet.db import session_scope
    from tgfleet.sends.broadcasts import progress

    while True:
        with session_scope(settings, bot_id=args.bot) as s:
            now = progress(s, args.bot, args.id)
        if now.total == 0:
            raise SendCliError(f"bot {args.bot} has no broadcast {args.id}")
        print(broadcast_line(args.id, now), flush=True)
        if now.done or now.counts.get("paused"):
            return 0
        time.sleep(2)


def broadcast_line(broadcast_id: int, now: BroadcastProgress) -> str:
    """One line: delivered, failed (blocked), waiting, rate, time left."""
    c = now.counts
    failed = c.get("failed", 0) + c.get("dead", 0)
    parts = [
        f"broadcast {broadcast_id}: {c.get('sent', 0)}/{now.total} delivered",
        f"{failed} failed ({now.blocked} blocked the bot)",
        f"{now.pending} to go",
    ]
    for extra in ("paused", "cancelled"):
        if c.get(extra):
            parts.append(f"{c[extra]} {extra}")
    if now.paid:
        parts.append(f"{now.paid} paid ({now.stars:.1f} Stars)")
    parts.append(f"{now.rate:.1f}/s")
    eta = now.eta_s
    parts.append("done" if now.done else "ETA -" if eta is None else f"ETA {eta:.0f} s")
    return ", ".join(parts)
