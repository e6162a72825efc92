"""Migrations: a full round trip on an empty database, drift detection, the CLI."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.support import REPO_ROOT
from tests.support.databases import query, superuser_engine
from tgfleet.db import (
    MigrationDriftError,
    check_database,
    current_revision,
    downgrade_database,
    head_revision,
    upgrade_database,
)
from tgfleet.db.cli import add_parser, run
from tgfleet.platform.settings import Settings


def _scalar(settings: Settings, sql: str) -> object:
    return query(settings, sql)[0][0]


def _public_relations(settings: Settings) -> int:
    count = _scalar(
        settings,
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relname NOT LIKE 'alembic_version%'",
    )
    assert isinstance(count, int)
    return count


def test_upgrade_downgrade_upgrade_round_trip_is_clean(
    make_database: Callable[..., Settings],
) -> None:
    # Given an empty database
    settings = make_database(migrate=False)
    assert _public_relations(settings) == 0

    # When migrated to head, back to base, and to head again
    upgrade_database(settings)
    first = _public_relations(settings)
    downgrade_database(settings, "base")
    after_downgrade = _public_relations(settings)
    roles_left = _scalar(
        settings, f"SELECT count(*) FROM pg_roles WHERE rolname LIKE '{settings.db_role_prefix}_%'"
    )
    upgrade_database(settings)

    # Then base leaves nothing behind, head is reached twice identically, and no drift
    assert after_downgrade == 0
    assert roles_left == 0
    assert first > 100  # tables, hash and monthly partitions, indexes
    assert _public_relations(settings) == first
    assert current_revision(settings) == head_revision()
    check_database(settings)


def test_check_fails_when_database_drifts_from_models(
    make_database: Callable[..., Settings],
) -> None:
    # Given a migrated database with a column the models don't have
    settings = make_database()
    with superuser_engine(settings) as engine, engine.begin() as conn:
        conn.execute(text("ALTER TABLE bots ADD COLUMN surprise text"))

    # When checked, Then the drift is reported, by the API and by the CLI exit code
    with pytest.raises(MigrationDriftError, match="surprise"):
        check_database(settings)
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    assert run(parser.parse_args(["db", "check"]), settings) == 1
    assert run(parser.parse_args(["db", "current"]), settings) == 0


def test_plain_alembic_from_repo_root_uses_settings(
    db_settings: Settings, subprocess_env: dict[str, str]
) -> None:
    # Given the environment pointing at a migrated database
    env = dict(subprocess_env)
    env["DATABASE_URL"] = db_settings.database_url
    env["MIGRATE_DATABASE_URL"] = db_settings.owner_database_url
    env["TGFLEET_DB_ROLE_PREFIX"] = db_settings.db_role_prefix

    # When `alembic current` runs from the repository root
    done = subprocess.run(
        [str(Path(sys.executable).parent / "alembic"), "current"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    # Then it finds the head revision through Settings
    assert done.returncode == 0, done.stderr
    assert f"{head_revision()} (head)" in done.stdout


def test_cli_partitions_ensures_and_reports_coverage(
    db_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a migrated database; When `tgfleet db partitions --ensure` runs
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    code = run(parser.parse_args(["db", "partitions", "--ensure"]), db_settings)
    # Then it succeeds and lists every range-partitioned table
    out = capsys.readouterr().out
    assert code == 0
    assert all(table in out for table in ("messages", "events", "audit_log"))


def test_first_migration_takes_the_hash_modulus_from_settings(
    make_database: Callable[..., Settings],
) -> None:
    # Given TGFLEET_HASH_PARTITIONS=4; When a fresh database is migrated
    settings = make_database(hash_partitions=4)
    # Then every hash-partitioned table has exactly 4 partitions
    counts = _scalar(
        settings,
        "SELECT array_agg(DISTINCT n) FROM (SELECT count(*) AS n FROM pg_inherits i "
        "JOIN pg_partitioned_table p ON p.partrelid = i.inhparent AND p.partstrat = 'h' "
        "GROUP BY i.inhparent) per_table",
    )
    assert counts == [4]
