"""``tgfleet bots add|list|app|paid|disable|enable|remove``: the fleet's bots, their apps
and their paid broadcast budgets."""

from __future__ import annotations

import argparse
import asyncio

from rich.console import Console
from rich.table import Table

from tgfleet.bots.apps import DEFAULT_APP, load_app, registered_apps
from tgfleet.db import BotStatus, fleet
from tgfleet.platform.settings import Settings
from tgfleet.platform.telegram import make_client


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    bots = sub.add_parser("bots", help="manage the fleet's bots")
    actions = bots.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add a bot (the token is checked and stored encrypted)")
    add.add_argument("--token", required=True, help="the bot token from @BotFather")
    add.add_argument(
        "--admin", type=int, action="append", default=[], help="admin chat id (repeatable)"
    )
    add.add_argument(
        "--app",
        default=None,
        help=f"the bot's app: a registered name or a dotted path (default {DEFAULT_APP})",
    )
    add.add_argument("--name", default=None, help="display name (default: the bot's username)")
    add.add_argument(
        "--no-check",
        action="store_true",
        help="store without logging in to Telegram to validate the token",
    )
    actions.add_parser("list", help="list the fleet")
    app = actions.add_parser("app", help="change a bot's app (workers follow within seconds)")
    app.add_argument("bot_id", type=int)
    app.add_argument("app", help="a registered app name or mypkg.module:router")
    actions.add_parser("apps", help="list the registered apps")
    paid = actions.add_parser(
        "paid",
        help="paid broadcasts above the free rate (0.1 Star a message): show, set or turn off",
    )
    paid.add_argument("bot_id", type=int)
    paid.add_argument("--per-broadcast", type=float, help="Stars one broadcast may spend")
    paid.add_argument("--per-day", type=float, help="Stars the bot may spend a day (UTC)")
    paid.add_argument("--off", action="store_true", help="broadcasts go at the free rate")
    for action in ("disable", "enable", "remove"):
        one = actions.add_parser(action, help=f"{action} a bot")
        one.add_argument("bot_id", type=int)
    bots.set_defaults(func=cmd_bots, needs_settings=True)


async def _check_token(settings: Settings, token: str) -> str:
    """Log in with ``token`` and return the bot's username (raises on a bad token)."""
    client = make_client(settings, None, receive_updates=False)
    await client.connect()
    try:
        await client.sign_in(bot_token=token)
        me = await client.get_me()
        return str(getattr(me, "username", None) or getattr(me, "first_name", "") or me.id)
    finally:
        await client.disconnect()


def cmd_bots(args: argparse.Namespace, settings: Settings) -> int:
    console = Console()
    if args.action == "add":
        fleet.bot_id_from_token(args.token)  # format check before any network call
        if args.app is not None:
            load_app(args.app)  # a bad app is refused now, not when updates arrive
        name = args.name
        if not args.no_check:
            try:
                username = asyncio.run(_check_token(settings, args.token))
            except Exception as exc:
                console.print(
                    f"[red]the token was refused: {type(exc).__name__}[/] "
                    "(check it with @BotFather, or pass --no-check)"
                )
                return 1
            name = name or username
        info = fleet.save_bot(
            settings, args.token, name=name or "bot", admin_chat_ids=args.admin, app=args.app
        )
        console.print(
            f"bot {info.id} ({info.name}) is in the fleet, app "
            f"{info.app or DEFAULT_APP}, admins {list(info.admin_chat_ids)}"
        )
    elif args.action == "list":
        table = Table("id", "name", "status", "app", "admins")
        for bot in fleet.list_bots(settings):
            table.add_row(
                str(bot.id),
                bot.name,
                bot.status.value,
                bot.app or DEFAULT_APP,
                ", ".join(map(str, bot.admin_chat_ids)),
            )
        console.print(table)
    elif args.action == "app":
        router = load_app(args.app)
        fleet.set_app(settings, args.bot_id, args.app)
        console.print(f"bot {args.bot_id} now runs {args.app} (router {router.name!r})")
    elif args.action == "apps":
        for name, target in sorted(registered_apps().items()):
            console.print(f"{name:<16} {target}")
    elif args.action == "paid":
        return _paid(args, settings, console)
    elif args.action in ("disable", "enable"):
        status = BotStatus.DISABLED if args.action == "disable" else BotStatus.ACTIVE
        fleet.set_status(settings, args.bot_id, status)
        console.print(f"bot {args.bot_id} is {status.value}")
    elif args.action == "remove":
        fleet.remove_bot(settings, args.bot_id)
        console.print(f"bot {args.bot_id} and its data were removed")
    return 0


def _paid(args: argparse.Namespace, settings: Settings, console: Console) -> int:
    """Show, set or turn off the bot's paid broadcast budget (``tgfleet.sends.paid``)."""
    from tgfleet.platform.redis import redis_client
    from tgfleet.sends.paid import PaidBudget, StarsLedger

    if args.off:
        fleet.set_setting(settings, args.bot_id, "paid_broadcasts", None)
        console.print(f"bot {args.bot_id}: broadcasts go at the free rate")
        return 0
    if args.per_broadcast is not None or args.per_day is not None:
        raw = {"per_broadcast": args.per_broadcast, "per_day": args.per_day}
        budget: PaidBudget | None = PaidBudget.from_json(raw)  # names a missing or bad value
        fleet.set_setting(settings, args.bot_id, "paid_broadcasts", raw)
    else:
        budget = PaidBudget.parse(fleet.bot_settings(settings, args.bot_id).get("paid_broadcasts"))
    if budget is None:
        console.print(
            f"bot {args.bot_id}: paid broadcasts are off "
            "(turn them on with --per-broadcast STARS --per-day STARS)",
            soft_wrap=True,
        )
        return 0
    ledger = StarsLedger(redis_client(settings.redis_url))
    today = ledger.spent(args.bot_id, 0).today
    state = " (Telegram said its Stars ran out)" if ledger.is_out_of_stars(args.bot_id) else ""
    console.print(
        f"bot {args.bot_id}: paid broadcasts up to {budget.per_broadcast:g} Stars a broadcast, "
        f"{budget.per_day:g} a day; {today:g} spent today{state}",
        soft_wrap=True,
    )
    return 0
