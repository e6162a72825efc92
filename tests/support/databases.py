"""Databases of a test's own, on the session's services, and ways to look into them.

* ``make_database`` makes fresh PostgreSQL databases, each with its own role prefix (roles
  are cluster-wide), created with the superuser and dropped after the session, so test
  modules cannot disturb each other or the shared ``tgfleet`` database. ``db_settings``,
  ``owner_engine`` and ``make_bots`` are one such database per test module.
* ``ops_db`` is a fresh database whose Redis is ``OPS_REDIS_DB``, which ``ops_redis``
  empties before and after each test: heartbeats, leases, queues and incidents that other
  tests leave behind cannot leak in.
* ``query`` reads (or writes) as the superuser, bypassing row-level security.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg2
import pytest
import redis
from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url

from tgfleet.db import dispose_engines, upgrade_database
from tgfleet.db.security import ROLE_NAMES
from tgfleet.db.session import sqlalchemy_url
from tgfleet.platform.celery_app import make_celery
from tgfleet.platform.settings import Settings

#: Redis database number the ops tests may flush (the session's services use 0 and 1).
OPS_REDIS_DB = 11


def new_bot_id() -> int:
    """A fresh bot id, far from the simulator's."""
    return uuid.uuid4().int % 10**12 + 10**12


def query(settings: Settings, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Run ``sql`` as the superuser and return its rows (``%s`` placeholders take ``args``;
    without args a ``%`` is literal)."""
    with psycopg2.connect(settings.owner_database_url) as conn, conn.cursor() as cur:
        cur.execute(sql, args or None)
        return list(cur.fetchall())


@contextmanager
def superuser_engine(settings: Settings) -> Iterator[Engine]:
    """A superuser engine on the settings' database (bypasses RLS: seeding, asserting)."""
    engine = create_engine(sqlalchemy_url(settings.owner_database_url), pool_size=2)
    try:
        yield engine
    finally:
        engine.dispose()


def act_as(conn: Connection, role_name: str, bot_id: int | None = None) -> None:
    """Inside a transaction: become ``role_name`` with tenant ``bot_id`` (SET LOCAL)."""
    conn.execute(
        text("SELECT set_config('role', :r, true), set_config('app.bot_id', :b, true)"),
        {"r": role_name, "b": "" if bot_id is None else str(bot_id)},
    )


def redis_url_with_db(url: str, db: int) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{db}"


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


# -- one database per test module --------------------------------------------------------


@pytest.fixture(scope="module")
def db_settings(make_database: Callable[..., Settings]) -> Settings:
    """Given a database migrated to head (one per test module)."""
    return make_database()


@pytest.fixture(scope="module")
def owner_engine(db_settings: Settings) -> Iterator[Engine]:
    """A superuser engine on the module's database (bypasses RLS: for seeding/asserting)."""
    with superuser_engine(db_settings) as engine:
        yield engine


@pytest.fixture
def make_bots(owner_engine: Engine) -> Iterator[Callable[[int], list[int]]]:
    """Factory: ``make_bots(n)`` inserts n bots with fresh ids; deleted (cascade) after."""
    made: list[int] = []

    def make(count: int) -> list[int]:
        ids = [new_bot_id() for _ in range(count)]
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


# -- the operations tests' database and Redis ----------------------------------------------


@pytest.fixture
def ops_redis(settings: Settings) -> Iterator[redis.Redis]:
    """An empty Redis database for this test (flushed before and after)."""
    client = redis.Redis.from_url(redis_url_with_db(settings.redis_url, OPS_REDIS_DB))
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(scope="module")
def ops_db(make_database: Callable[..., Settings]) -> Settings:
    """A fresh database migrated to head, with the ops Redis database."""
    fresh = make_database()
    return fresh.model_copy(update={"redis_url": redis_url_with_db(fresh.redis_url, OPS_REDIS_DB)})


@pytest.fixture(scope="module")
def ops_owner(ops_db: Settings) -> Iterator[Engine]:
    """Superuser engine on the ops database (bypasses RLS: seeding and asserting)."""
    with superuser_engine(ops_db) as engine:
        yield engine


@pytest.fixture
def make_ops_bot(ops_owner: Engine) -> Iterator[Callable[..., int]]:
    """Factory: ``make_ops_bot(admins=[...], status="active") -> bot id``; deleted after."""
    made: list[int] = []

    def make(admins: list[int] | None = None, status: str = "active") -> int:
        bot_id = new_bot_id()
        with ops_owner.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO bots (id, name, status, admin_chat_ids) "
                    "VALUES (:id, :name, CAST(:status AS bot_status), :admins)"
                ),
                {"id": bot_id, "name": f"ops {bot_id}", "status": status, "admins": admins or []},
            )
        made.append(bot_id)
        return bot_id

    yield make
    with ops_owner.begin() as conn:
        conn.execute(text("DELETE FROM bots WHERE id = ANY(:ids)"), {"ids": made})


@pytest.fixture
def ops_app_factory() -> Callable[[Settings], Any]:
    """Factory: a Celery app for ``settings``, made current (admin notices enqueue on it);
    its Redis is the ops database."""

    def make(settings: Settings) -> Any:
        app = make_celery(
            settings.model_copy(
                update={"redis_url": redis_url_with_db(settings.redis_url, OPS_REDIS_DB)}
            )
        )
        app.set_current()
        return app

    return make


def is_blocked(settings: Settings, bot_id: int, user_id: int) -> bool | None:
    """Whether the bot has marked the user blocked (None: the bot has no such user)."""
    rows = query(
        settings,
        "SELECT is_blocked FROM tg_users WHERE bot_id = %s AND user_id = %s",
        bot_id,
        user_id,
    )
    return rows[0][0] if rows else None
