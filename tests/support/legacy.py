"""The legacy JSON migration's tests: a migrated database of their own, stores, the CLI.

One database (and role prefix) for every legacy test, made by ``make_database`` and
dropped after the session; ``clean_db`` empties the migration's tables before a test.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from tests.support import REPO_ROOT
from tests.support.databases import superuser_engine
from tgfleet.legacy.generate import GenerateReport, generate_store
from tgfleet.platform.settings import Settings

#: ``python LEGACY_CLI <args>`` runs the legacy commands in a child process.
LEGACY_CLI = Path(__file__).with_name("legacy_cli.py")
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
    """Everything the migration writes, sorted, to compare two runs."""
    with owner.connect() as conn:
        return {
            name: sorted(
                (tuple(r) for r in conn.execute(text(sql))), key=lambda r: tuple(map(str, r))
            )
            for name, sql in SNAPSHOT_SQL.items()
        }


def run_cli(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``tgfleet <args>`` for the legacy commands, in a child process."""
    return subprocess.run(
        [sys.executable, str(LEGACY_CLI), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
    )


@pytest.fixture(scope="session")
def legacy_settings(make_database: Callable[..., Settings]) -> Settings:
    """Given a database of the legacy tests' own, migrated to head."""
    return make_database()


@pytest.fixture(scope="session")
def legacy_owner(legacy_settings: Settings) -> Iterator[Engine]:
    """A superuser engine on the legacy database (bypasses RLS) for arranging and asserting."""
    with superuser_engine(legacy_settings) as engine:
        yield engine


@pytest.fixture
def clean_db(legacy_settings: Settings, legacy_owner: Engine) -> Settings:
    """Given empty migration target tables."""
    with legacy_owner.begin() as conn:
        conn.execute(text(f"TRUNCATE {MIGRATED_TABLES}"))
    return legacy_settings


@pytest.fixture
def legacy_env(subprocess_env: dict[str, str], legacy_settings: Settings) -> dict[str, str]:
    """Environment for child processes pointed at the legacy tests' database."""
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
