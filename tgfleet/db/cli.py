"""``tgfleet db upgrade [REV] | downgrade REV | current | history | check | partitions``.

``add_parser(subparsers)`` registers the ``db`` command on the ``tgfleet`` parser;
``run(args, settings)`` executes it and returns the exit code. An unreachable database
is reported by the ``tgfleet`` command's error boundary (``tgfleet.cli``).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from alembic import command
from alembic.util.exc import CommandError

from tgfleet.db import partitions
from tgfleet.db.migrate import (
    MigrationDriftError,
    alembic_config,
    check_database,
    current_revision,
)
from tgfleet.db.session import owner_scope
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
    partitions = commands.add_parser(
        "partitions", help="show monthly partition coverage; --ensure / --retention fix it"
    )
    partitions.add_argument(
        "--ensure", action="store_true", help="create this month + TGFLEET_PARTITION_PREMAKE"
    )
    partitions.add_argument(
        "--retention", action="store_true", help="drop months older than the retention settings"
    )
    partitions.add_argument(
        "--keep-detached",
        action="store_true",
        help="with --retention: detach old months but keep them as tables",
    )
    return parser


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Run the ``db`` sub-command in ``args``; 0 on success."""
    config = alembic_config(settings, stdout=sys.stdout)
    try:
        match args.db_command:
            case "upgrade":
                command.upgrade(config, args.revision)
                print(f"database at revision {current_revision(settings)}")
            case "downgrade":
                command.downgrade(config, args.revision)
                print(f"database at revision {current_revision(settings) or 'base'}")
            case "current":
                command.current(config, verbose=False)
            case "history":
                command.history(config, indicate_current=False)
            case "check":
                check_database(settings)
                print("models and migrations agree")
            case "partitions":
                return _partitions(args, settings)
            case other:
                print(f"tgfleet db: unknown command {other!r}", file=sys.stderr)
                return 2
    except MigrationDriftError as exc:
        print(f"tgfleet db check: {exc}", file=sys.stderr)
        return 1
    except CommandError as exc:
        print(f"tgfleet db {args.db_command}: {exc}", file=sys.stderr)
        return 1
    return 0


def _partitions(args: argparse.Namespace, settings: Settings) -> int:
    with owner_scope(settings) as conn:
        if args.ensure:
            for name in partitions.ensure_partitions(conn, settings.partition_premake):
                print(f"created {name}")
        if args.retention:
            removed = partitions.apply_retention(
                conn, partitions.retention_months(settings), drop=not args.keep_detached
            )
            verb = "detached" if args.keep_detached else "dropped"
            for name in removed:
                print(f"{verb} {name}")
        report = partitions.coverage(conn)
    print(
        f"{'table':<12} {'months':>6} {'oldest':>10} {'newest':>10} {'ahead':>5} {'in DEFAULT':>10}"
    )
    for row in report:
        print(
            f"{row.table:<12} {row.partitions:>6} {row.oldest_month or '-'!s:>10} "
            f"{row.newest_month or '-'!s:>10} {row.months_ahead:>5} {row.default_rows:>10}"
        )
    short = [r.table for r in report if r.months_ahead < settings.partition_premake]
    if short:
        print(
            f"fewer than {settings.partition_premake} months ahead: {', '.join(short)} "
            "(run `tgfleet db partitions --ensure`)",
            file=sys.stderr,
        )
        return 1
    return 0
