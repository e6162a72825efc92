"""``tgfleet status``, ``tgfleet stats`` and ``tgfleet poison``: the operator's view of the
fleet."""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from rich import box
from rich.console import Console, JustifyMethod
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text
from sqlalchemy import select

from tgfleet.db import BotMetric, MetricBucket, session_scope
from tgfleet.db.rollups import METRICS
from tgfleet.ops.health import BotState, Snapshot, add_workers, collect_snapshot
from tgfleet.platform.errors import TgfleetError
from tgfleet.platform.metrics import endpoints, file_sd
from tgfleet.platform.poison import PoisonMessage, poison_messages, take_poison_messages
from tgfleet.platform.reachability import Service
from tgfleet.platform.redis import redis_client
from tgfleet.platform.settings import Settings

#: The roll-up columns `tgfleet stats` shows: every metric the roll-up computes.
STATS_COLUMNS = METRICS


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = sub.add_parser("status", help="is everything all right? (exit 1 if not)")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "--timeout", type=float, default=1.0, help="seconds to wait for workers to answer"
    )
    status.set_defaults(func=cmd_status, needs_settings=True)

    stats = sub.add_parser("stats", help="a bot's daily roll-ups (bot_metrics)")
    stats.add_argument("--bot", type=int, required=True, help="the bot's Telegram id")
    stats.add_argument("--days", type=int, default=14, help="how many days back (default 14)")
    stats.add_argument("--plot", type=Path, default=None, help="also draw the series to a PNG")
    stats.add_argument("--json", action="store_true", help="machine-readable output")
    stats.set_defaults(func=cmd_stats, needs_settings=True)

    poison = sub.add_parser(
        "poison", help="messages no worker could run, set aside with their reasons"
    )
    poison.add_argument("--limit", type=int, default=20, help="the newest N (default 20)")
    poison.add_argument(
        "--json", action="store_true", help="machine-readable output, raw bytes in base64"
    )
    poison.add_argument(
        "--clear", action="store_true", help="print every one and remove them (once handled)"
    )
    poison.set_defaults(func=cmd_poison, needs_settings=True)

    metrics = sub.add_parser("metrics", help="where the processes serve Prometheus metrics")
    metrics_sub = metrics.add_subparsers(dest="metrics_command", required=True)
    targets = metrics_sub.add_parser(
        "targets", help="the live endpoints as a Prometheus file_sd list (JSON)"
    )
    targets.add_argument(
        "--file", type=Path, default=None, help="write it here (atomically) instead of stdout"
    )
    targets.add_argument(
        "--every",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with --file: write it again every SECONDS until stopped",
    )
    targets.set_defaults(func=cmd_metrics_targets, needs_settings=True)


# --- metrics --------------------------------------------------------------------------------
def cmd_metrics_targets(args: argparse.Namespace, settings: Settings) -> int:
    if args.every is not None and (args.file is None or args.every <= 0):
        raise TgfleetError("--every needs --file and a positive number of seconds")
    while True:
        listed = json.dumps(file_sd(endpoints(settings)), indent=2)
        if args.file is None:
            print(listed)
            return 0
        partial = args.file.with_name(args.file.name + ".tmp")
        partial.write_text(listed + "\n")
        partial.replace(args.file)  # Prometheus never reads half a file
        if args.every is None:
            return 0
        time.sleep(args.every)


# --- status ---------------------------------------------------------------------------------
def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from tgfleet.platform.celery_app import make_celery

    snap = collect_snapshot(settings, tolerate_outages=True)
    if Service.REDIS not in snap.unreachable:  # workers answer through Redis
        add_workers(snap, make_celery(settings), timeout=args.timeout)
    if args.json:
        print(json.dumps(snap.as_dict(), default=str, indent=2))
    else:
        render_status(snap, Console())
    return 1 if snap.problems else 0


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


@dataclass(frozen=True)
class Col:
    """A column of a status table. On a narrow terminal the columns with the highest
    ``priority`` numbers are left out first (0: always shown). A ``wrap`` column may wrap
    its values at spaces; the others keep each value on one line (headers may wrap).
    ``room`` is the width a ``wrap`` column asks for before less important columns are
    shown (a value narrower than that needs only its own width)."""

    header: str
    priority: int
    justify: JustifyMethod = "left"
    wrap: bool = False
    room: int = 0


#: The bots table, in display order; at 80 columns the last priorities give way.
BOT_COLUMNS = (
    Col("bot", 0, wrap=True, room=22),  # the id, then the name (wrapped when narrow)
    Col("status", 1),
    Col("listener", 2),
    Col("heartbeat", 2, "right"),
    Col("lease", 7),
    Col("last update", 6, "right"),
    Col("upd/s", 8, "right"),
    Col("send/s", 8, "right"),
    Col("flood pause", 5, "right"),
    Col("backlog", 3, "right"),
    Col("dead 24h", 3, "right"),
)
QUEUE_COLUMNS = (Col("queue", 0), Col("depth", 0, "right"), Col("oldest", 0, "right"))
PARTITION_COLUMNS = (
    Col("table", 0),
    Col("months ahead", 0, "right"),
    Col("oldest", 2),
    Col("newest", 2),
    Col("DEFAULT rows", 1, "right"),
)
MIGRATION_COLUMNS = (
    Col("bot", 0),
    Col("component", 0),
    Col("state", 0),
    Col("records", 2, "right"),
    Col("complete", 1),
    Col("idle", 3, "right"),
    Col("error", 0, wrap=True, room=30),
)
#: Status tables' style: a rule under the header, no outer edge, 2 spaces between columns
#: (each column's right padding, then the box's blank separator).
_COLUMN_GAP = 2


def fit_table(
    console: Console, title: str, columns: Sequence[Col], rows: Sequence[Sequence[Text]]
) -> Table:
    """A table of ``rows`` as wide as ``console`` allows. Every column is shown when each
    fits uncut (a ``wrap`` column needs its longest word, the others their longest value);
    otherwise the columns that matter least are left out until the rest fit, ``wrap``
    columns with their ``room``. The caption names what was left out."""
    extents = [_measure(console, col, [row[i] for row in rows]) for i, col in enumerate(columns)]
    shown = list(range(len(columns)))
    if not _fits(console, [extents[i].least for i in shown]):
        while not _fits(console, [extents[i].wanted for i in shown]):
            droppable = [i for i in shown if columns[i].priority > 0]
            if not droppable:
                break
            shown.remove(max(droppable, key=lambda i: (columns[i].priority, i)))
    order = sorted(range(len(shown)), key=lambda n: columns[shown[n]].priority)
    widths = _spread(
        [extents[i].least for i in shown],
        [extents[i].widest for i in shown],
        order,
        console.width - _COLUMN_GAP * (len(shown) - 1),
    )
    table = Table(
        title=title,
        title_justify="left",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 1, 0, 0),
    )
    for i, width in zip(shown, widths, strict=True):
        table.add_column(columns[i].header, justify=columns[i].justify, width=width)
    for row in rows:
        table.add_row(*(row[i] for i in shown))
    hidden = [col.header for i, col in enumerate(columns) if i not in shown]
    if hidden:
        table.caption = (
            f"not shown at {console.width} columns: {', '.join(hidden)} "
            "(a wider terminal or --json shows them)"
        )
    return table


class _Extent(NamedTuple):
    least: int  # the width below which a value would be cut
    wanted: int  # with the column's room
    widest: int  # every value on one line


def _measure(console: Console, col: Col, cells: Sequence[Text]) -> _Extent:
    """How wide a column's content is: its longest word (the header's, and the values' of
    a ``wrap`` column) or longest value (the other columns)."""
    header = Measurement.get(console, console.options, Text(col.header))
    least, widest = header.minimum, header.maximum
    for cell in cells:
        measured = Measurement.get(console, console.options, cell)
        least = max(least, measured.minimum if col.wrap else measured.maximum)
        widest = max(widest, measured.maximum)
    return _Extent(least, max(least, min(widest, col.room)), widest)


def _fits(console: Console, widths: list[int]) -> bool:
    return sum(widths) + _COLUMN_GAP * (len(widths) - 1) <= console.width


def _spread(least: list[int], widest: list[int], order: list[int], room: int) -> list[int]:
    """Column widths: each its least, then the room left given out in ``order`` (most
    important column first), each up to its widest."""
    widths = list(least)
    spare = room - sum(widths)
    for i in order:
        extra = max(0, min(spare, widest[i] - widths[i]))
        widths[i] += extra
        spare -= extra
    return widths


def _bot_row(bot: BotState, listeners_known: bool) -> list[Text]:
    unknown = Text("?", style="dim")
    listener: Text = unknown
    heartbeat = lease = last = flood = unknown
    if listeners_known:
        if bot.status != "active":
            listener = Text("-")
        elif bot.listener_host:
            listener = Text(bot.listener_host)
        else:
            listener = Text("none", style="red")
        heartbeat = Text(_age(bot.heartbeat_age_s))
        lease = Text(
            f"{_age(bot.lease_age_s)} ({bot.lease_ttl_s:.0f}s left)" if bot.lease_ttl_s else "-"
        )
        last = Text(_age(bot.last_update_age_s))
        flood = Text(f"{bot.flood_pause_s:.0f}s" if bot.flood_pause_s else "-")
    return [
        Text.assemble((str(bot.id), "bold"), " ", bot.name),
        Text(bot.status),
        listener,
        heartbeat,
        lease,
        last,
        Text(f"{bot.updates_per_s:.2f}"),
        Text(f"{bot.sends_per_s:.2f}"),
        flood,
        Text(str(bot.outbox_backlog)),
        Text(str(bot.dead_updates_24h + bot.outbox_dead_24h)),
    ]


def render_status(snap: Snapshot, console: Console) -> None:
    """The snapshot as tables that fit ``console``'s width (see ``fit_table``)."""
    database = Service.POSTGRESQL not in snap.unreachable
    redis_known = Service.REDIS not in snap.unreachable
    if database:
        rows = [_bot_row(bot, redis_known) for bot in snap.bots]
        console.print(fit_table(console, "Bots", BOT_COLUMNS, rows))
    else:
        _not_known(console, "Bots, partitions, legacy migration", Service.POSTGRESQL)
    if redis_known:
        rows = [[Text(q.name), Text(str(q.depth)), Text(_age(q.oldest_age_s))] for q in snap.queues]
        console.print(fit_table(console, "Queues", QUEUE_COLUMNS, rows))
        events = [name for name, on in snap.task_events.items() if on]
        console.print(
            Text(
                f"Workers online: {len(snap.workers or [])} "
                f"({', '.join(snap.workers or []) or 'none'}); "
                f"task events on: {len(events)} (Flower turns them on; they cost throughput)"
            )
        )
        roles = Counter(str(e["role"]) for e in snap.metrics_endpoints)
        console.print(
            Text(
                f"Metrics endpoints: {len(snap.metrics_endpoints)} "
                f"({', '.join(f'{n} {role}' for role, n in sorted(roles.items())) or 'none'}; "
                "`tgfleet metrics targets` lists them for Prometheus)"
            )
        )
    else:
        _not_known(console, "Queues and workers", Service.REDIS)
    if database:
        _render_partitions(snap, console)
    if snap.problems:
        console.print(Text("Needs attention:", style="bold red"))
        problems = Table.grid(padding=(0, 1))
        problems.add_column(no_wrap=True)
        problems.add_column(overflow="fold")
        for problem in snap.problems:
            problems.add_row(" -", Text(problem.text))
        console.print(problems)
    else:
        console.print(Text("All good.", style="bold green"))


def _not_known(console: Console, what: str, service: Service) -> None:
    console.print(Text(f"{what}: not known, {service} cannot be reached (see below)", "yellow"))


def _render_partitions(snap: Snapshot, console: Console) -> None:
    rows = [
        [
            Text(cov["table_name"]),
            Text(str(cov["months_ahead"])),
            Text(str(cov["oldest_month"])),
            Text(str(cov["newest_month"])),
            Text(str(cov["default_rows"])),
        ]
        for cov in snap.partitions
    ]
    console.print(fit_table(console, "Partitions", PARTITION_COLUMNS, rows))
    if snap.migration:
        rows = [
            [
                Text(str(row["bot_id"])),
                Text(row["component"]),
                Text(row["state"]),
                Text(str(row["records"])),
                Text("yes" if row["complete"] else "no"),
                Text(_age(row["idle_s"])),
                Text(row["error"] or ""),
            ]
            for row in snap.migration
        ]
        console.print(fit_table(console, "Legacy migration", MIGRATION_COLUMNS, rows))


# --- poison ---------------------------------------------------------------------------------
POISON_COLUMNS = (
    Col("set aside", 0),
    Col("queue", 2),
    Col("task", 3),
    Col("size", 4, "right"),
    Col("reason", 0, wrap=True, room=40),
    Col("starts with", 1, wrap=True, room=40),
)


def cmd_poison(args: argparse.Namespace, settings: Settings) -> int:
    if args.limit < 1:
        raise TgfleetError("--limit must be at least 1")
    client = redis_client(settings.redis_url)
    messages = take_poison_messages(client) if args.clear else poison_messages(client, args.limit)
    if args.json:
        print(json.dumps([m.as_dict() for m in messages], indent=2))
        return 0
    console = Console()
    if messages:
        rows = [_poison_row(m) for m in messages]
        console.print(fit_table(console, "Poison messages, newest first", POISON_COLUMNS, rows))
    if args.clear:
        console.print(f"removed {len(messages)} poison messages")
    elif not messages:
        console.print("no poison messages")
    return 0


def _poison_row(message: PoisonMessage) -> list[Text]:
    at = datetime.fromtimestamp(message.at, UTC).strftime("%Y-%m-%d %H:%M:%S")
    size = f"{message.size}" + (f" (kept {len(message.raw)})" if message.truncated else "")
    return [
        Text(at),
        Text(message.queue or "-"),
        Text(message.task or "-"),
        Text(size),
        Text(message.reason),
        Text(message.preview(40)),
    ]


# --- stats ----------------------------------------------------------------------------------
def daily_metrics(settings: Settings, bot_id: int, days: int) -> list[dict[str, Any]]:
    """The bot's day buckets of the last ``days`` days, oldest first."""
    since = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    since -= timedelta(days=days - 1)
    with session_scope(settings, bot_id=bot_id) as session:
        rows = session.scalars(
            select(BotMetric)
            .where(
                BotMetric.bot_id == bot_id,
                BotMetric.bucket == MetricBucket.DAY,
                BotMetric.bucket_start >= since,
            )
            .order_by(BotMetric.bucket_start)
        ).all()
        return [
            {"day": row.bucket_start.date().isoformat()}
            | {name: getattr(row, name) for name in STATS_COLUMNS}
            for row in rows
        ]


def cmd_stats(args: argparse.Namespace, settings: Settings) -> int:
    if args.days < 1:
        raise TgfleetError("--days must be at least 1")
    rows = daily_metrics(settings, args.bot, args.days)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        table = Table(title=f"bot {args.bot}: last {args.days} days", title_justify="left")
        table.add_column("day")
        for name in STATS_COLUMNS:
            table.add_column(name.replace("_", " "), justify="right")
        for row in rows:
            table.add_row(
                row["day"], *("-" if row[n] is None else str(row[n]) for n in STATS_COLUMNS)
            )
        Console().print(table)
        if not rows:
            print(
                "no roll-ups yet for this bot: is beat running tgfleet.analytics.rollup "
                "(and is the bot id right)?"
            )
    if args.plot is not None:
        from tgfleet.ops.plot import plot_daily

        plot_daily(rows, args.plot, title=f"tgfleet bot {args.bot}")
        print(f"plot written to {args.plot}")
    return 0
