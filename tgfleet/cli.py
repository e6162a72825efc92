"""The ``tgfleet`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from tgfleet.platform.errors import ConfigError, TgfleetError
from tgfleet.platform.settings import Settings, load_settings, settings_or_exit

log = logging.getLogger(__name__)


def cmd_ping(args: argparse.Namespace, settings: Settings) -> int:
    from tgfleet.ops.ping import ping_round_trip
    from tgfleet.platform.celery_app import make_celery

    seconds, answer = ping_round_trip(make_celery(settings), timeout=args.timeout)
    print(f"{answer} ({seconds * 1000:.1f} ms round trip)")
    return 0


def cmd_flower(args: argparse.Namespace, settings: Settings) -> int:
    from tgfleet.ops.flower import run_flower

    return run_flower(settings, dev=args.dev, port=args.port, address=args.address)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tgfleet", description="Run a fleet of Telegram bots on Celery."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ping = sub.add_parser("ping", help="round-trip a task through a worker")
    ping.add_argument("--timeout", type=float, default=30.0)
    ping.set_defaults(func=cmd_ping, needs_settings=True)

    flower = sub.add_parser("flower", help="Flower monitoring with authentication")
    flower.add_argument(
        "--dev", action="store_true", help="generate and print credentials when none are configured"
    )
    flower.add_argument("--port", type=int, default=None)
    flower.add_argument("--address", default="127.0.0.1")
    flower.set_defaults(func=cmd_flower, needs_settings=True)
    _add_area_parsers(sub)
    return parser


def _add_area_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Each area's own commands, defined next to the code they drive."""
    from tgfleet.bots import cli as bots_cli
    from tgfleet.db import cli as db_cli
    from tgfleet.dev import cli as dev_cli
    from tgfleet.legacy import cli as legacy_cli
    from tgfleet.listeners import cli as listen_cli
    from tgfleet.ops import cli as ops_cli
    from tgfleet.sends import cli as send_cli
    from tgfleet.simulator import cli as simulator_cli

    db_cli.add_parser(sub).set_defaults(func=db_cli.run, needs_settings=True)
    dev_cli.add_parsers(sub)
    bots_cli.add_parsers(sub)
    listen_cli.add_parsers(sub)
    ops_cli.add_parsers(sub)
    send_cli.add_parsers(sub)
    simulator_cli.add_parser(sub)
    sub.choices["simulator"].set_defaults(func=simulator_cli.main, needs_settings=False)
    legacy_cli.add_parser(sub)
    for name in ("legacy", "migrate-json"):
        sub.choices[name].set_defaults(func=legacy_cli.run, needs_settings=False)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings: Settings | None = None
    try:
        if args.needs_settings:
            settings = settings_or_exit()
            from tgfleet.platform.logconfig import configure_logging

            configure_logging(settings)
            return int(args.func(args, settings))
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        message = _one_line(exc, settings)
        if message is None:
            raise
        print(f"tgfleet: {message}", file=sys.stderr)
        return 1


def _one_line(exc: Exception, settings: Settings | None) -> str | None:
    """The error boundary: what to tell the user about ``exc`` in one line, or None for
    a bug (which keeps its traceback)."""
    if isinstance(exc, TgfleetError):
        return str(exc)
    from tgfleet.platform.reachability import unreachable_service

    if settings is None:  # a command that reads its settings itself, if at all
        try:
            settings = load_settings()
        except ConfigError:
            settings = None
    unreachable = unreachable_service(exc, settings) if settings is not None else None
    if unreachable is not None:
        return str(unreachable)
    if isinstance(exc, TimeoutError | RuntimeError):
        return str(exc)
    return None


if __name__ == "__main__":
    sys.exit(main())
