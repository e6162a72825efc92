"""``tgfleet listen`` and ``tgfleet bots add|list|disable|enable|remove``."""

from __future__ import annotations

import argparse
import asyncio

from rich.console import Console
from rich.table import Table

from tgfleet.db import BotStatus, fleet
from tgfleet.platform.settings import Settings
from tgfleet.platform.telegram import make_client


def _ids(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError("expected comma-separated bot ids, e.g. 12,34") from None


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    listen = sub.add_parser("listen", help="listen for the fleet's updates and enqueue them")
    listen.add_argument("--bots", default="all", help="'all' or comma-separated bot ids")
    listen.add_argument("--capacity", type=int, default=1000, help="most bots in this process")
    listen.add_argument("--lease-ttl", type=float, default=10.0, help="lease TTL, seconds")
    listen.set_defaults(func=cmd_listen, needs_settings=True)

    bots = sub.add_parser("bots", help="manage the fleet's bots")
    actions = bots.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add a bot (the token is checked and stored encrypted)")
    add.add_argument("--token", required=True, help="the bot token from @BotFather")
    add.add_argument(
        "--admin", type=int, action="append", default=[], help="admin chat id (repeatable)"
    )
    add.add_argument("--app", default=None, help="bot app: matchmaking (default) or echo")
    add.add_argument("--name", default=None, help="display name (default: the bot's username)")
    add.add_argument(
        "--no-check",
        action="store_true",
        help="store without logging in to Telegram to validate the token",
    )
    actions.add_parser("list", help="list the fleet")
    for action in ("disable", "enable", "remove"):
        one = actions.add_parser(action, help=f"{action} a bot")
        one.add_argument("bot_id", type=int)
    bots.set_defaults(func=cmd_bots, needs_settings=True)


def cmd_listen(args: argparse.Namespace, settings: Settings) -> int:
    from tgfleet.listeners.process import ListenOptions, run_listener

    ids = None if args.bots == "all" else _ids(args.bots)
    return run_listener(
        settings, ListenOptions(bot_ids=ids, capacity=args.capacity, lease_ttl_s=args.lease_ttl)
    )


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
            f"{info.app or 'matchmaking'}, admins {list(info.admin_chat_ids)}"
        )
    elif args.action == "list":
        table = Table("id", "name", "status", "app", "admins")
        for bot in fleet.list_bots(settings):
            table.add_row(
                str(bot.id),
                bot.name,
                bot.status.value,
                bot.app or "matchmaking",
                ", ".join(map(str, bot.admin_chat_ids)),
            )
        console.print(table)
    elif args.action in ("disable", "enable"):
        status = BotStatus.DISABLED if args.action == "disable" else BotStatus.ACTIVE
        fleet.set_status(settings, args.bot_id, status)
        console.print(f"bot {args.bot_id} is {status.value}")
    elif args.action == "remove":
        fleet.remove_bot(settings, args.bot_id)
        console.print(f"bot {args.bot_id} and its data were removed")
    return 0
