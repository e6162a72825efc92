"""``tgfleet status`` and ``tgfleet stats``: the operator's view of the fleet."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from tgfleet.db import BotMetric, MetricBucket, session_scope
from tgfleet.db.rollups import METRICS
from tgfleet.ops.health import Snapshot, add_workers, collect_snapshot
from tgfleet.platform.errors import TgfleetError
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


# --- status ---------------------------------------------------------------------------------
def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from tgfleet.platform.celery_app import make_celery

    snap = collect_snapshot(settings)
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


def render_status(snap: Snapshot, console: Console) -> None:
    bots = Table(title="Bots", title_justify="left")
    for name in (
        "bot",
        "status",
        "listener",
        "heartbeat",
        "lease",
        "last update",
        "upd/s",
        "send/s",
        "flood pause",
        "backlog",
        "dead 24h",
    ):
        bots.add_column(name)
    for bot in snap.bots:
        bots.add_row(
            f"{bot.id} {bot.name}",
            bot.status,
            bot.listener_host or "[red]none[/red]" if bot.status == "active" else "-",
            _age(bot.heartbeat_age_s),
            f"{_age(bot.lease_age_s)} ({bot.lease_ttl_s:.0f}s left)" if bot.lease_ttl_s else "-",
            _age(bot.last_update_age_s),
            f"{bot.updates_per_s:.2f}",
            f"{bot.sends_per_s:.2f}",
            f"{bot.flood_pause_s:.0f}s" if bot.flood_pause_s else "-",
            str(bot.outbox_backlog),
            str(bot.dead_updates_24h + bot.outbox_dead_24h),
        )
    console.print(bots)
    queues = Table(title="Queues", title_justify="left")
    for name in ("queue", "depth", "oldest"):
        queues.add_column(name)
    for queue in snap.queues:
        queues.add_row(queue.name, str(queue.depth), _age(queue.oldest_age_s))
    console.print(queues)
    events = [name for name, on in snap.task_events.items() if on]
    console.print(
        f"Workers online: {len(snap.workers or [])} "
        f"({', '.join(snap.workers or []) or 'none'}); "
        f"task events on: {len(events)} (Flower turns them on; they cost throughput)"
    )
    parts = Table(title="Partitions", title_justify="left")
    for name in ("table", "months ahead", "oldest", "newest", "DEFAULT rows"):
        parts.add_column(name)
    for cov in snap.partitions:
        parts.add_row(
            cov["table_name"],
            str(cov["months_ahead"]),
            str(cov["oldest_month"]),
            str(cov["newest_month"]),
            str(cov["default_rows"]),
        )
    console.print(parts)
    if snap.migration:
        mig = Table(title="Legacy migration", title_justify="left")
        for name in ("bot", "component", "state", "records", "complete", "idle", "error"):
            mig.add_column(name)
        for row in snap.migration:
            mig.add_row(
                str(row["bot_id"]),
                row["component"],
                row["state"],
                str(row["records"]),
                "yes" if row["complete"] else "no",
                _age(row["idle_s"]),
                row["error"] or "",
            )
        console.print(mig)
    if snap.problems:
        console.print("[bold red]Needs attention:[/bold red]")
        for problem in snap.problems:
            console.print(f"  - {problem.text}")
    else:
        console.print("[bold green]All good.[/bold green]")


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
