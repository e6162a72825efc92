"""``tgfleet db upgrade [REV] | downgrade REV | current | history | check``.

``add_parser(subparsers)`` registers the ``db`` command on the ``tgfleet`` parser;
``run(args, settings)`` executes it and returns the exit code.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from alembic import command
from alembic.util.exc import CommandError
from sqlalchemy.exc import OperationalError

from tgfleet.db.migrate import MigrationDriftError, alembic_config, check_database
from tgfleet.platform.settings import Settings


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``db`` and its sub-commands to an ``argparse`` sub-parsers object."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "db", help="database migrations (Alembic)", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="db_command", required=True, metavar="COMMAND")
    upgrade = commands.add_parser("upgrade", help="apply migrations (default: to head)")
    upgrade.add_argument("revision", nargs="?", default="head")
    downgrade = commands.add_parser("downgrade", help="revert migrations down to REVISION")
    downgrade.add_argument("revision", help="a revision id, -1, or base")
    commands.add_parser("current", help="show the database's revision")
    commands.add_parser("history", help="list the revisions")
    commands.add_parser("check", help="fail if the models and the migrations differ")
    parser.set_defaults(handler=run)
    return parser


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the ``db`` sub-command in ``args``; 0 on success."""
    config = alembic_config(settings, stdout=sys.stdout)
    try:
        match args.db_command:
            case "upgrade":
                command.upgrade(config, args.revision)
            case "downgrade":
                command.downgrade(config, args.revision)
            case "current":
                command.current(config, verbose=False)
            case "history":
                command.history(config, indicate_current=False)
            case "check":
                check_database(settings)
                print("models and migrations agree")
            case other:
                print(f"tgfleet db: unknown command {other!r}", file=sys.stderr)
                return 2
    except MigrationDriftError as exc:
        print(f"tgfleet db check: {exc}", file=sys.stderr)
        return 1
    except CommandError as exc:
        print(f"tgfleet db {args.db_command}: {exc}", file=sys.stderr)
        return 1
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "connection failed"
        print(
            f"tgfleet db {args.db_command}: cannot reach the database ({reason}); "
            "check MIGRATE_DATABASE_URL / DATABASE_URL",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m tgfleet.db.cli``) until the tgfleet CLI wires it."""
    from tgfleet.platform.settings import settings_or_exit

    parser = argparse.ArgumentParser(prog="tgfleet")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return run(args, settings_or_exit())


if __name__ == "__main__":
    raise SystemExit(main())
