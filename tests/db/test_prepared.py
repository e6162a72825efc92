"""Prepared hot-path statements, lazy contexts and idle-connection pings, on PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError

from tgfleet.db import session as session_module
from tgfleet.db import session_scope
from tgfleet.db.prepared import Prepared, execute, execute_batch
from tgfleet.db.session import context_sent_with, make_engine
from tgfleet.platform.settings import Settings

_INSERT = Prepared(
    "test_prepared_insert",
    ("bigint", "bigint", "text"),
    "INSERT INTO conversations (bot_id, chat_id, state) VALUES ($1, $2, $3) "
    "RETURNING chat_id, state",
)
_COUNT = Prepared("test_prepared_count", (), "SELECT count(*) AS n FROM conversations")
_ECHO = Prepared("test_prepared_echo", ("text",), "SELECT $1 || '%' AS echoed")


@pytest.fixture
def one_connection_engine(db_settings: Settings) -> Iterator[Engine]:
    """An engine whose pool hands out the same connection every time (used one at a time)."""
    engine = make_engine(
        db_settings.database_url, pool_size=1, role_prefix=db_settings.db_role_prefix
    )
    yield engine
    engine.dispose()


def _prepared_names(session: object) -> set[str]:
    rows = session.execute(text("SELECT name FROM pg_prepared_statements"))  # type: ignore[attr-defined]
    return {row.name for row in rows}


def test_prepared_statements_run_under_rls_and_are_planned_once_per_connection(
    db_settings: Settings, make_bots: Callable[[int], list[int]]
) -> None:
    # Given two bots, each with one conversation written through a prepared insert
    mine, other = make_bots(2)
    for bot_id in (mine, other):
        with session_scope(db_settings, bot_id=bot_id) as session:
            rows = execute(session, _INSERT, bot_id, 1, "it's 100% 'quoted'")
        assert [tuple(r) for r in rows] == [(1, "it's 100% 'quoted'")]
    # When a bot counts conversations with a prepared statement, twice
    with session_scope(db_settings, bot_id=mine) as session:
        first = execute(session, _COUNT)[0].n
        names = _prepared_names(session)
    with session_scope(db_settings, bot_id=mine) as session:
        second = execute(session, _COUNT)[0].n
    # Then row-level security still applies, and the statement was prepared once
    assert first == second == 1
    assert {"test_prepared_insert", "test_prepared_count"} <= names


def test_a_batch_runs_in_order_in_one_round_trip_and_returns_the_last_rows(
    db_settings: Settings, make_bots: Callable[[int], list[int]]
) -> None:
    (bot_id,) = make_bots(1)
    with session_scope(db_settings, bot_id=bot_id) as session:
        rows = execute_batch(
            session, [(_INSERT, (bot_id, 7, "a")), (_INSERT, (bot_id, 8, "b")), (_COUNT, ())]
        )
    assert [tuple(r) for r in rows] == [(2,)]


def test_unprepared_mode_runs_the_same_sql(
    make_database: Callable[..., Settings], owner_engine: Engine
) -> None:
    # Given a database used as behind PgBouncer in transaction mode (no PREPARE)
    settings = make_database(db_prepare=False)
    with session_scope(settings, role="admin") as session:
        session.execute(text("INSERT INTO bots (id, name) VALUES (42, 'b')"))
    # When prepared statements run
    with session_scope(settings, bot_id=42) as session:
        execute(session, _INSERT, 42, 1, "x")
        echoed = execute(session, _ECHO, "50")[0].echoed
        names = _prepared_names(session)
    # Then they work and nothing was prepared on the server
    assert echoed == "50%"
    assert not any(name.startswith("test_prepared") for name in names)


def test_a_statement_the_server_forgot_is_prepared_again(
    one_connection_engine: Engine, make_bots: Callable[[int], list[int]]
) -> None:
    # Given a connection that prepared a statement, then lost it (DEALLOCATE ALL)
    (bot_id,) = make_bots(1)
    engine = one_connection_engine
    with session_scope(engine, bot_id=bot_id) as session:
        execute(session, _COUNT)
        session.execute(text("DEALLOCATE ALL"))
    # When it is used: the first transaction fails, the next one prepares it again
    with pytest.raises(DBAPIError), session_scope(engine, bot_id=bot_id) as session:
        execute(session, _COUNT)
    with session_scope(engine, bot_id=bot_id) as session:
        assert execute(session, _COUNT)[0].n == 0


def test_statement_definitions_are_checked() -> None:
    with pytest.raises(ValueError, match="parameters"):
        Prepared("test_prepared_bad", ("int",), "SELECT $1, $2")
    with pytest.raises(ValueError, match="named"):
        Prepared("test_prepared_count", (), "SELECT 2")
    with pytest.raises(TypeError, match="takes 1"):
        _ECHO.call_sql(None, (), prepared=True)


def test_lazy_context_applies_to_the_first_statement(
    db_settings: Settings, make_bots: Callable[[int], list[int]]
) -> None:
    # Given two bots with one conversation each
    mine, other = make_bots(2)
    for bot_id in (mine, other):
        with session_scope(db_settings, bot_id=bot_id) as session:
            execute(session, _INSERT, bot_id, 5, "s")
    # When a lazy scope's very first statement reads (ORM, text and prepared alike)
    with session_scope(db_settings, bot_id=mine, lazy_context=True) as session:
        who = session.execute(
            text(
                "SELECT current_user, current_setting('app.bot_id') AS bot, count(*) AS n "
                "FROM conversations"
            )
        ).one()
    with session_scope(db_settings, bot_id=mine, lazy_context=True) as session:
        prepared_count = execute(session, _COUNT)[0].n
    # Then the role and tenant were already in force for it
    assert tuple(who) == (db_settings.role("bot"), str(mine), 1)
    assert prepared_count == 1


def test_lazy_lock_timeout_is_told_apart_from_other_errors(
    db_settings: Settings, make_bots: Callable[[int], list[int]]
) -> None:
    # Given another transaction holding advisory lock 77
    (bot_id,) = make_bots(1)
    with session_scope(db_settings, bot_id=bot_id) as holder:
        holder.execute(text("SELECT pg_advisory_xact_lock(77)"))
        # When a lazy scope wants the same lock for at most 50 ms
        started = time.monotonic()
        with (
            pytest.raises(OperationalError) as caught,
            session_scope(
                db_settings, bot_id=bot_id, advisory_lock=77, lock_timeout_ms=50, lazy_context=True
            ) as session,
        ):
            execute(session, _COUNT)
        # Then it fails fast with lock_not_available, from the context's statement
        assert time.monotonic() - started < 5
        assert caught.value.orig.pgcode == "55P03"  # type: ignore[union-attr]
        assert context_sent_with(caught.value)
    # And a later error in the same kind of scope is not mistaken for it
    with (
        pytest.raises(DBAPIError) as later,
        session_scope(db_settings, bot_id=bot_id, advisory_lock=77, lazy_context=True) as session,
    ):
        session.execute(text("SELECT 1"))
        session.execute(text("SELECT 1 / 0"))
    assert not context_sent_with(later.value)


def test_an_idle_connection_the_server_dropped_is_replaced(
    one_connection_engine: Engine,
    make_bots: Callable[[int], list[int]],
    owner_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a pooled connection whose backend PostgreSQL terminated while it was idle
    (bot_id,) = make_bots(1)
    engine = one_connection_engine
    with session_scope(engine, bot_id=bot_id) as session:
        pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    with owner_engine.begin() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    monkeypatch.setattr(session_module, "PING_IDLE_S", 0.0)
    # When the next scope starts
    with session_scope(engine, bot_id=bot_id) as session:
        new_pid = session.execute(text("SELECT pg_backend_pid()")).scalar_one()
    # Then it got a working connection instead of an error
    assert new_pid != pid
