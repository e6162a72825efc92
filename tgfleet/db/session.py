"""Engines and transaction scopes.

* Engines are made lazily, one per (URL, process): a Celery prefork child never reuses
  its parent's pooled connections (they are dropped without closing after ``fork``).
* ``session_scope`` is the only way application code talks to the database: one
  transaction, with the role and the tenant set by ``set_config(..., true)`` (the
  equivalent of ``SET LOCAL``), so nothing outlives the transaction. That keeps pooled
  connections clean and works behind PgBouncer in transaction mode.
* ``owner_scope`` is for maintenance that needs the schema owner (partition management):
  it connects with the migrations URL and acts as ``<prefix>_super_admin``.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.orm import Session

from tgfleet.platform.settings import Settings

AppRole = Literal["bot", "admin"]

_engines: dict[tuple[str, int, int], Engine] = {}
_engines_lock = threading.Lock()
#: Role prefix of engines made from Settings, so ``session_scope(engine)`` knows it.
_role_prefixes: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()

DEFAULT_ROLE_PREFIX = "tgfleet"

_SET_CONTEXT = text(
    "SELECT set_config('role', :role, true), "
    "set_config('app.bot_id', :bot_id, true), "
    "set_config('app.correlation_id', :correlation_id, true)"
)


def sqlalchemy_url(url: str) -> str:
    """``url`` with an explicit driver: SQLAlchemy 2.1 maps bare ``postgresql://`` to
    psycopg 3, while tgfleet ships psycopg2."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def make_engine(url: str, *, pool_size: int = 5, role_prefix: str = DEFAULT_ROLE_PREFIX) -> Engine:
    """A new engine (callers usually want the cached ``get_engine``)."""
    engine = create_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args={"application_name": "tgfleet"},
    )
    _role_prefixes[engine] = role_prefix
    return engine


def get_engine(settings: Settings, *, owner: bool = False) -> Engine:
    """This process's engine for the app URL (or the owner URL), made on first use."""
    url = settings.owner_database_url if owner else settings.database_url
    key = (url, settings.db_pool_size, os.getpid())
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = make_engine(
                url, pool_size=settings.db_pool_size, role_prefix=settings.db_role_prefix
            )
            _engines[key] = engine
        return engine


def dispose_engines() -> None:
    """Close every cached engine of this process (tests, shutdown)."""
    with _engines_lock:
        engines = [e for (_, _, pid), e in _engines.items() if pid == os.getpid()]
        _engines.clear()
    for engine in engines:
        engine.dispose()


def _forget_parent_engines() -> None:
    # After fork the child must not touch the parent's sockets: drop the pools
    # without closing their connections (closing would end the parent's sessions).
    for engine in list(_engines.values()):
        engine.dispose(close=False)
    _engines.clear()


os.register_at_fork(after_in_child=_forget_parent_engines)


def _resolve(target: Settings | Engine) -> tuple[Engine, str]:
    if isinstance(target, Engine):
        return target, _role_prefixes.get(target, DEFAULT_ROLE_PREFIX)
    return get_engine(target), target.db_role_prefix


@contextmanager
def session_scope(
    target: Settings | Engine,
    *,
    bot_id: int | None = None,
    correlation_id: str | None = None,
    role: AppRole = "bot",
) -> Iterator[Session]:
    """One transaction acting as ``<prefix>_<role>`` for ``bot_id``; commits at the end.

    ``role="bot"`` needs a ``bot_id`` and sees only that bot's rows. ``role="admin"``
    sees every bot; ``bot_id`` is still recorded (audit) when given. An exception rolls
    everything back. Do not call ``session.commit()`` inside: the scope is the boundary.
    """
    if role not in ("bot", "admin"):
        raise ValueError(f"role must be 'bot' or 'admin', not {role!r}")
    if role == "bot" and bot_id is None:
        raise ValueError("session_scope(role='bot') needs a bot_id")
    engine, prefix = _resolve(target)
    with Session(engine, expire_on_commit=False) as session, session.begin():
        session.execute(
            _SET_CONTEXT,
            {
                "role": f"{prefix}_{role}",
                "bot_id": "" if bot_id is None else str(int(bot_id)),
                "correlation_id": correlation_id or "",
            },
        )
        yield session


@contextmanager
def owner_scope(settings: Settings) -> Iterator[Connection]:
    """One transaction as the schema owner (``<prefix>_super_admin``), for maintenance."""
    engine = get_engine(settings, owner=True)
    with engine.begin() as conn:
        conn.execute(
            text("SELECT set_config('role', :role, true)"),
            {"role": settings.role("super_admin")},
        )
        yield conn
