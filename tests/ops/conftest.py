"""Fixtures for the operations tests: fresh databases and a Redis database of their own.

``make_database`` (tests/db/conftest.py) gives control over partitions; ``ops_redis``
gives each test an empty Redis database, so heartbeats, leases, queues and incidents
left by other tests cannot leak in.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, create_engine, text

from tests.db.conftest import make_database  # noqa: F401 (re-exported fixture)
from tgfleet.db.session import sqlalchemy_url
from tgfleet.platform.celery_app import make_celery
from tgfleet.platform.settings import Settings

#: Redis database numbers these tests may flush (the session's services use 0 and 1).
OPS_REDIS_DB = 11


def redis_url_with_db(url: str, db: int) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{db}"


@pytest.fixture
def ops_redis(settings: Settings) -> Iterator[redis.Redis]:
    """An empty Redis database for this test (flushed before and after)."""
    client = redis.Redis.from_url(redis_url_with_db(settings.redis_url, OPS_REDIS_DB))
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture(scope="module")
def ops_db(make_database: Callable[..., Settings]) -> Settings:  # noqa: F811
    """A fresh database migrated to head, with the ops Redis database."""
    fresh = make_database()
    return fresh.model_copy(update={"redis_url": redis_url_with_db(fresh.redis_url, OPS_REDIS_DB)})


@pytest.fixture(scope="module")
def ops_owner(ops_db: Settings) -> Iterator[Engine]:
    """Superuser engine on the fresh database (bypasses RLS: seeding and asserting)."""
    engine = create_engine(sqlalchemy_url(ops_db.owner_database_url), pool_size=2)
    yield engine
    engine.dispose()


@pytest.fixture
def ops_app(ops_db: Settings) -> Any:
    """A Celery app on the ops Redis, current in this process (admin notices enqueue)."""
    app = make_celery(ops_db)
    app.set_current()
    return app


@pytest.fixture
def make_ops_bot(ops_owner: Engine) -> Iterator[Callable[..., int]]:
    """Factory: ``make_ops_bot(admins=[...], status="active") -> bot id``; deleted after."""
    made: list[int] = []

    def make(admins: list[int] | None = None, status: str = "active") -> int:
        bot_id = uuid.uuid4().int % 10**12 + 10**12
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
