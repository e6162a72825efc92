"""The ``tgfleet`` command line."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

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


#: Each area's commands, defined next to the code they drive, by the module that
#: registers them. Only the module of the command given is imported (``tgfleet status``
#: need not load the bot framework, Telethon and Celery); help and unknown commands
#: load them all.
AREA_COMMANDS = {
    "db": "tgfleet.db.cli",
    "dev": "tgfleet.dev.cli",
    "demo": "tgfleet.dev.cli",
    "bots": "tgfleet.bots.cli",
    "listen": "tgfleet.listeners.cli",
    "status": "tgfleet.ops.cli",
    "stats": "tgfleet.ops.cli",
    "poison": "tgfleet.ops.cli",
    "metrics": "tgfleet.ops.cli",
    "send": "tgfleet.sends.cli",
    "outbox": "tgfleet.sends.cli",
    "broadcast": "tgfleet.sends.cli",
    "simulator": "tgfleet.simulator.cli",
    "legacy": "tgfleet.legacy.cli",
    "migrate-json": "tgfleet.legacy.cli",
}


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser for ``argv``: with the commands of its area only, when it names one."""
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
    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    command = words[0] if words else None
    if command in ("ping", "flower"):
        return parser
    modules = dict.fromkeys(AREA_COMMANDS.values())
    if command in AREA_COMMANDS:
        modules = {AREA_COMMANDS[command]: None}
    for module in modules:
        _AREAS[module](sub)
    return parser


def _db(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from tgfleet.db import cli

    cli.add_parser(sub).set_defaults(func=cli.run, needs_settings=True)


def _simulator(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from tgfleet.simulator import cli

    cli.add_parser(sub)
    sub.choices["simulator"].set_defaults(func=cli.main, needs_settings=False)


def _legacy(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from tgfleet.legacy import cli

    cli.add_parser(sub)
    for name in ("legacy", "migrate-json"):
        sub.choices[name].set_defaults(func=cli.run, needs_settings=False)


def _area(module: str) -> Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]:
    """An area whose ``add_parsers(sub)`` registers its commands."""

    def add(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        importlib.import_module(module).add_parsers(sub)

    return add


_AREAS = {
    "tgfleet.db.cli": _db,
    "tgfleet.dev.cli": _area("tgfleet.dev.cli"),
    "tgfleet.bots.cli": _area("tgfleet.bots.cli"),
    "tgfleet.listeners.cli": _area("tgfleet.listeners.cli"),
    "tgfleet.ops.cli": _area("tgfleet.ops.cli"),
    "tgfleet.sends.cli": _area("tgfleet.sends.cli"),
    "tgfleet.simulator.cli": _simulator,
    "tgfleet.legacy.cli": _legacy,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
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
