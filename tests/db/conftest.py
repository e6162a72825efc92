"""Fixtures for the database tests: fresh databases on the session's PostgreSQL.

Each test module that needs a schema gets its own database and its own role prefix
(roles are cluster-wide), created with the superuser and dropped afterwards, so the
modules cannot disturb each other or the shared ``tgfleet`` database.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg2
import pytest
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url

from tgfleet.db import dispose_engines, upgrade_database
from tgfleet.db.security import ROLE_NAMES
from tgfleet.db.session import sqlalchemy_url
from tgfleet.platform.settings import Settings


@dataclass
class _Created:
    database: str
    prefix: str


def _superuser_exec(settings: Settings, sql: str, database: str = "postgres") -> None:
    url = make_url(settings.owner_database_url)
    conn = psycopg2.connect(
        host=url.host, port=url.port, user=url.username, password=url.password, dbname=database
    )
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


@pytest.fixture(scope="session")
def make_database(settings: Settings) -> Iterator[Callable[..., Settings]]:
    """Factory: ``make_database(migrate=True, **setting_overrides) -> Settings`` for a new,
    empty database (migrated to head unless ``migrate=False``) with a unique role prefix."""
    created: list[_Created] = []

    def make(*, migrate: bool = True, **overrides: Any) -> Settings:
        tag = uuid.uuid4().hex[:8]
        entry = _Created(database=f"tgfleet_test_{tag}", prefix=f"t{tag}")
        _superuser_exec(settings, f'CREATE DATABASE "{entry.database}"')
        created.append(entry)
        app = make_url(settings.database_url).set(database=entry.database)
        owner = make_url(settings.owner_database_url).set(database=entry.database)
        fresh = settings.model_copy(
            update={
                "database_url": app.render_as_string(hide_password=False),
                "migrate_database_url": owner.render_as_string(hide_password=False),
                "db_role_prefix": entry.prefix,
                **overrides,
            }
        )
        if migrate:
            upgrade_database(fresh)
        return fresh

    yield make
    dispose_engines()
    for entry in created:
        _superuser_exec(settings, f'DROP DATABASE IF EXISTS "{entry.database}" WITH (FORCE)')
        for name in reversed(ROLE_NAMES):
            _superuser_exec(settings, f'DROP ROLE IF EXISTS "{entry.prefix}_{name}"')


@pytest.fixture(scope="module")
def db_settings(make_database: Callable[..., Settings]) -> Settings:
    """Given a database migrated to head (one per test module)."""
    return make_database()


@pytest.fixture(scope="module")
def owner_engine(db_settings: Settings) -> Iterator[Engine]:
    """A superuser engine on the module's database (bypasses RLS: for seeding/asserting)."""
    engine = create_engine(sqlalchemy_url(db_settings.owner_database_url), pool_size=2)
    yield engine
    engine.dispose()


@pytest.fixture
def make_bots(owner_engine: Engine) -> Iterator[Callable[[int], list[int]]]:
    """Factory: ``make_bots(n)`` inserts n bots with fresh ids; deleted (cascade) after."""
    made: list[int] = []

    def make(count: int) -> list[int]:
        ids = [uuid.uuid4().int % 10**12 + 10**12 for _ in range(count)]
        with owner_engine.begin() as conn:
            for bot_id in ids:
                conn.execute(
                    text("INSERT INTO bots (id, name) VALUES (:id, :name)"),
                    {"id": bot_id, "name": f"bot {bot_id}"},
                )
        made.extend(ids)
        return ids

    yield make
    if made:
        with owner_engine.begin() as conn:
            conn.execute(text("DELETE FROM bots WHERE id = ANY(:ids)"), {"ids": made})


def act_as(conn: Connection, role_name: str, bot_id: int | None = None) -> None:
    """Inside a transaction: become ``role_name`` with tenant ``bot_id`` (SET LOCAL)."""
    conn.execute(
        text("SELECT set_config('role', :r, true), set_config('app.bot_id', :b, true)"),
        {"r": role_name, "b": "" if bot_id is None else str(bot_id)},
    )
