"""``tgfleet listen``: listen for the fleet's updates and enqueue them."""

from __future__ import annotations

import argparse

from tgfleet.platform.settings import Settings


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


def cmd_listen(args: argparse.Namespace, settings: Settings) -> int:
    from tgfleet.listeners.process import ListenOptions, run_listener

    ids = None if args.bots == "all" else _ids(args.bots)
    return run_listener(
        settings, ListenOptions(bot_ids=ids, capacity=args.capacity, lease_ttl_s=args.lease_ttl)
    )
