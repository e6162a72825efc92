"""Fixtures for the legacy migration tests: a migrated database of their own.

One database (and role prefix, roles being cluster-wide) for the whole legacy suite,
created on the session's PostgreSQL and dropped afterwards; ``clean_db`` empties the
migration's tables before a test.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from tgfleet.db import dispose_engines, upgrade_database
from tgfleet.db.security import ROLE_NAMES
from tgfleet.db.session import sqlalchemy_url
from tgfleet.legacy.generate import GenerateReport, generate_store
from tgfleet.platform.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI_MAIN = Path(__file__).with_name("cli_main.py")
MIGRATED_TABLES = (
    "tg_users, profiles, messages, conversations, migration_quarantine, migration_checkpoints"
)

SNAPSHOT_SQL = {
    "users": "SELECT bot_id, user_id, username, first_name, language_code, first_seen_at "
    "FROM tg_users",
    "profiles": "SELECT bot_id, user_id, display_name, age, city, bio, looking_for, "
    "photo_file_id, visibility FROM profiles",
    "messages": "SELECT bot_id, chat_id, tg_message_id, sender_id, direction, text, created_at "
    "FROM messages",
    "conversations": "SELECT bot_id, chat_id, messages_in, messages_out, last_message_at "
    "FROM conversations",
    "quarantine": "SELECT bot_id, component, file, position, record, reason "
    "FROM migration_quarantine",
    "checkpoints": "SELECT bot_id, component, file, fingerprint, position, complete, error "
    "FROM migration_checkpoints WHERE file <> ''",
}


def snapshot(owner: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with owner.connect() as conn:
        return {
            name: sorted(
                (tuple(r) for r in conn.execute(text(sql))), key=lambda r: tuple(map(str, r))
            )
            for name, sql in SNAPSHOT_SQL.items()
        }


def _superuser(settings: Settings, sql: str) -> None:
    url = make_url(settings.owner_database_url)
    conn = psycopg2.connect(host=url.host, port=url.port, user=url.username, dbname="postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


@pytest.fixture(scope="session")
def legacy_settings(settings: Settings) -> Iterator[Settings]:
    """Given a database of its own, migrated to head."""
    tag = uuid.uuid4().hex[:8]
    database, prefix = f"tgfleet_legacy_{tag}", f"l{tag}"
    _superuser(settings, f'CREATE DATABASE "{database}"')
    fresh = settings.model_copy(
        update={
            "database_url": make_url(settings.database_url)
            .set(database=database)
            .render_as_string(hide_password=False),
            "migrate_database_url": make_url(settings.owner_database_url)
            .set(database=database)
            .render_as_string(hide_password=False),
            "db_role_prefix": prefix,
        }
    )
    upgrade_database(fresh)
    yield fresh
    dispose_engines()
    _superuser(settings, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    for name in reversed(ROLE_NAMES):
        _superuser(settings, f'DROP ROLE IF EXISTS "{prefix}_{name}"')


@pytest.fixture(scope="session")
def owner(legacy_settings: Settings) -> Iterator[Engine]:
    """A superuser engine (bypasses RLS) for arranging and asserting."""
    engine = create_engine(sqlalchemy_url(legacy_settings.owner_database_url), pool_size=2)
    yield engine
    engine.dispose()


@pytest.fixture
def clean_db(legacy_settings: Settings, owner: Engine) -> Settings:
    """Given empty migration target tables."""
    with owner.begin() as conn:
        conn.execute(text(f"TRUNCATE {MIGRATED_TABLES}"))
    return legacy_settings


@pytest.fixture
def legacy_env(subprocess_env: dict[str, str], legacy_settings: Settings) -> dict[str, str]:
    """Environment for child processes pointed at the legacy suite's database."""
    return {
        **subprocess_env,
        "DATABASE_URL": legacy_settings.database_url,
        "MIGRATE_DATABASE_URL": legacy_settings.owner_database_url,
        "TGFLEET_DB_ROLE_PREFIX": legacy_settings.db_role_prefix,
    }


@pytest.fixture
def make_store(tmp_path: Path) -> Callable[..., tuple[Path, GenerateReport]]:
    """Factory: ``make_store(bots=2, users=50, messy=True)`` -> (root, report)."""
    counter = 0

    def make(**kwargs: object) -> tuple[Path, GenerateReport]:
        nonlocal counter
        counter += 1
        root = tmp_path / f"store{counter}"
        options = {"bots": 2, "users": 50, "messages": 8, "messy": True, "seed": 11} | kwargs
        return root, generate_store(root, **options)  # type: ignore[arg-type]

    return make


def run_cli(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``tgfleet <args>`` for the legacy commands, in a child process."""
    return subprocess.run(
        [sys.executable, str(CLI_MAIN), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
    )
