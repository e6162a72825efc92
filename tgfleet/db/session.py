"""Engines and transaction scopes.

* Engines are made lazily, one per (URL, process): a Celery prefork child never reuses
  its parent's pooled connections (they are dropped without closing after ``fork``).
* ``session_scope`` is the only way application code talks to the database: one
  transaction, with the role and the tenant set by ``set_config(..., true)`` (the
  equivalent of ``SET LOCAL``), so nothing outlives the transaction. That keeps pooled
  connections clean and works behind PgBouncer in transaction mode.
* ``owner_scope`` is for maintenance that needs the schema owner (partition management):
  it connects with the migrations URL and acts as ``<prefix>_super_admin``.
* A pooled connection is pinged before use only when it sat idle for more than
  ``PING_IDLE_S``: a busy worker does not pay a round trip per transaction, and a
  connection that PostgreSQL dropped while idle is replaced before it is used.
* A pool keeps a connection for each thread that may use one at once: ``pool_size``
  (``TGFLEET_DB_POOL_SIZE``, or ``DEFAULT_POOL_SIZE``, or a worker's threads plus
  ``POOL_SPARE`` once ``expect_threads`` was told them). A connection past that is
  closed when it comes back, and the next one costs PostgreSQL a new backend: a fork, a
  login and a cold catalogue cache.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any, Literal

from sqlalchemy import Connection, Engine, TextClause, create_engine, event, exc, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from tgfleet.platform.settings import Settings

AppRole = Literal["bot", "admin"]

_engines: dict[tuple[str, int, bool, int], Engine] = {}
_engines_lock = threading.Lock()
#: Role prefix of engines made from Settings, so ``session_scope(engine)`` knows it.
_role_prefixes: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()

DEFAULT_ROLE_PREFIX = "tgfleet"

_SET_CONTEXT = text(
    "SELECT set_config('role', :role, true), "
    "set_config('app.bot_id', :bot_id, true), "
    "set_config('app.correlation_id', :correlation_id, true)"
)
#: The context plus a transaction-level advisory lock, waiting at most lock_timeout.
#: The hot paths that lock use prepared statements whose generic plans PostgreSQL
#: estimates dearer than custom ones (it cannot prune partitions at plan time), so it
#: would re-plan them on every call; force_generic_plan keeps the plan (run-time
#: pruning still applies). It only affects prepared statements.
_SET_CONTEXT_AND_LOCK = text(
    "SELECT set_config('role', :role, true), "
    "set_config('app.bot_id', :bot_id, true), "
    "set_config('app.correlation_id', :correlation_id, true), "
    "set_config('plan_cache_mode', 'force_generic_plan', true), "
    "set_config('lock_timeout', :lock_timeout, true), pg_advisory_xact_lock(:lock_key)"
)
#: ``connection.info`` key: a lazy context statement waiting for the first query.
_PENDING_CONTEXT = "tgfleet.pending_context"
_CONTEXT_PREFIX = "SELECT set_config('role', "
#: ``record.info`` key: whether this connection prepares hot-path statements.
PREPARE_ENABLED = "tgfleet.prepare"
#: A pooled connection idle for longer than this is pinged before it is handed out.
PING_IDLE_S = 5.0
#: Connections a pool keeps when neither TGFLEET_DB_POOL_SIZE nor ``expect_threads``
#: says more (a prefork pool process runs one task at a time).
DEFAULT_POOL_SIZE = 5
#: Connections kept besides a worker's pool threads: a sender's event loop, its sweep
#: and its scheduler use the database too.
POOL_SPARE = 4
_expected_threads = 0


def sqlalchemy_url(url: str) -> str:
    """``url`` with an explicit driver: SQLAlchemy 2.1 maps bare ``postgresql://`` to
    psycopg 3, while tgfleet ships psycopg2."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


def make_engine(
    url: str,
    *,
    pool_size: int = DEFAULT_POOL_SIZE,
    role_prefix: str = DEFAULT_ROLE_PREFIX,
    prepare: bool = True,
) -> Engine:
    """A new engine (callers usually want the cached ``get_engine``); ``prepare`` says
    whether ``tgfleet.db.prepared`` statements are prepared on its connections."""
    engine = create_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        connect_args={"application_name": "tgfleet"},
    )
    event.listen(engine, "connect", partial(_init_connection, prepare=prepare))
    event.listen(engine, "checkin", _note_checkin)
    event.listen(engine, "before_cursor_execute", _send_pending_context, retval=True)
    event.listen(engine, "checkout", _ping_if_idle)
    _role_prefixes[engine] = role_prefix
    return engine


def _init_connection(dbapi_connection: object, record: Any, *, prepare: bool) -> None:
    record.info[PREPARE_ENABLED] = prepare


def _note_checkin(dbapi_connection: object, record: Any) -> None:
    record.info["idle_since"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, proxy: object) -> None:
    """SQLAlchemy's pessimistic disconnect handling, for idle connections only: raising
    DisconnectionError makes the pool drop this connection and hand out a new one."""
    idle_since = record.info.get("idle_since")
    if idle_since is None or time.monotonic() - idle_since < PING_IDLE_S:
        return
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
    except Exception as error:
        raise exc.DisconnectionError(f"pooled connection is gone: {error}") from error


def expect_threads(count: int) -> None:
    """This process runs ``count`` threads that may each hold a connection at once (a
    Celery worker's threads pool): engines made from now on keep one for each, plus
    ``POOL_SPARE``, unless TGFLEET_DB_POOL_SIZE says otherwise."""
    global _expected_threads
    if count < 1:
        raise ValueError(f"expect_threads needs a positive count, not {count!r}")
    _expected_threads = count


def pool_size(settings: Settings) -> int:
    """How many connections this process's engines keep (and may open as many again
    beyond, for a moment)."""
    if settings.db_pool_size is not None:
        return settings.db_pool_size
    if _expected_threads:
        return _expected_threads + POOL_SPARE
    return DEFAULT_POOL_SIZE


def get_engine(settings: Settings, *, owner: bool = False) -> Engine:
    """This process's engine for the app URL (or the owner URL), made on first use."""
    url = settings.owner_database_url if owner else settings.database_url
    size = pool_size(settings)
    key = (url, size, settings.db_prepare, os.getpid())
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            engine = make_engine(
                url,
                pool_size=size,
                role_prefix=settings.db_role_prefix,
                prepare=settings.db_prepare,
            )
            _engines[key] = engine
        return engine


def dispose_engines() -> None:
    """Close every cached engine of this process (tests, shutdown)."""
    with _engines_lock:
        engines = [e for (*_, pid), e in _engines.items() if pid == os.getpid()]
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
    advisory_lock: int | None = None,
    lock_timeout_ms: int = 0,
    lazy_context: bool = False,
) -> Iterator[Session]:
    """One transaction acting as ``<prefix>_<role>`` for ``bot_id``; commits at the end.

    ``role="bot"`` needs a ``bot_id`` and sees only that bot's rows. ``role="admin"``
    sees every bot; ``bot_id`` is still recorded (audit) when given. An exception rolls
    everything back. Do not call ``session.commit()`` inside: the scope is the boundary.

    ``advisory_lock`` takes ``pg_advisory_xact_lock(advisory_lock)`` in the same round
    trip as the context, waiting at most ``lock_timeout_ms`` (0: no limit; the limit
    stays for the whole transaction). A time-out raises OperationalError with pgcode
    55P03 (lock_not_available).

    ``lazy_context`` saves the hot paths a round trip: the context (and lock) statement
    is not sent on its own but put in front of the transaction's first statement, in
    the same query string (``context_sent_with`` tells whether an error came from it).
    Only for code that talks to the database through SQLAlchemy, never a raw cursor.
    """
    if role not in ("bot", "admin"):
        raise ValueError(f"role must be 'bot' or 'admin', not {role!r}")
    if role == "bot" and bot_id is None:
        raise ValueError("session_scope(role='bot') needs a bot_id")
    engine, prefix = _resolve(target)
    params: dict[str, Any] = {
        "role": f"{prefix}_{role}",
        "bot_id": "" if bot_id is None else str(int(bot_id)),
        "correlation_id": correlation_id or "",
    }
    statement = _SET_CONTEXT
    if advisory_lock is not None:
        statement = _SET_CONTEXT_AND_LOCK
        params.update(lock_key=advisory_lock, lock_timeout=f"{int(lock_timeout_ms)}ms")
    with Session(engine, expire_on_commit=False) as session, session.begin():
        if not lazy_context:
            session.execute(statement, params)
            yield session
            return
        info = session.connection().connection.info
        info[_PENDING_CONTEXT] = _literal_sql(session, statement, params)
        try:
            yield session
        finally:
            info.pop(_PENDING_CONTEXT, None)


def context_sent_with(error: DBAPIError) -> bool:
    """True when ``error`` came from a statement that carried a lazy context."""
    return str(error.statement or "").startswith(_CONTEXT_PREFIX)


#: The driver's SQL of the context statements (compiled once, not per transaction),
#: by ``id``; each entry keeps its statement alive, so an id is never reused for another.
_compiled: dict[int, tuple[TextClause, str]] = {}


def _literal_sql(session: Session, statement: TextClause, params: dict[str, Any]) -> str:
    """``statement`` with ``params`` bound as literals (psycopg2 quotes them)."""
    cached = _compiled.get(id(statement))
    if cached is None:
        sql = str(statement.compile(dialect=session.get_bind().dialect))
        _compiled[id(statement)] = (statement, sql)
    else:
        sql = cached[1]
    cursor = session.connection().connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        return bytes(cursor.mogrify(sql, params)).decode()
    finally:
        cursor.close()


def _send_pending_context(
    conn: Connection,
    cursor: Any,
    statement: str,
    parameters: Any,
    context: Any,
    executemany: bool,
) -> tuple[str, Any]:
    """before_cursor_execute: put a lazy context in front of the first statement."""
    pending = conn.connection.info.pop(_PENDING_CONTEXT, None)
    if pending is None:
        return statement, parameters
    if executemany:  # one context, not one per parameter set
        cursor.execute(pending)
        return statement, parameters
    if parameters is not None:
        pending = pending.replace("%", "%%")
    return f"{pending}; {statement}", parameters


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
