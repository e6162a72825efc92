"""Row-level security: every role x SELECT/INSERT/UPDATE/DELETE x own/other bot."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, ProgrammingError

from tests.support.databases import act_as
from tgfleet.db import get_engine, session_scope
from tgfleet.platform.settings import Settings

ROLES = ("super_admin", "admin", "bot", "app_base")
OPS = ("select", "insert", "update", "delete")

#: (role, sees/changes the other bot's rows?) -> own, other.
#: super_admin owns the tables (FORCE'd, fleet-wide policy); admin is fleet-wide; bot only
#: its tenant; app_base holds the grants but no policy, so it sees and writes nothing.
ALLOWED = {
    "super_admin": (True, True),
    "admin": (True, True),
    "bot": (True, False),
    "app_base": (False, False),
}


@pytest.fixture
def two_bots(
    make_bots: Callable[[int], list[int]], owner_engine: Engine
) -> Iterator[tuple[int, int]]:
    """Given bots A and B, each with one conversation (chat 1)."""
    own, other = make_bots(2)
    with owner_engine.begin() as conn:
        for bot_id in (own, other):
            conn.execute(
                text("INSERT INTO conversations (bot_id, chat_id) VALUES (:b, 1)"), {"b": bot_id}
            )
    yield own, other


def _attempt(engine: Engine, role_name: str, tenant: int, op: str, target: int) -> bool:
    """Run ``op`` on bot ``target``'s rows as ``role_name`` with tenant ``tenant``;
    True if it read or changed a row, False if it saw nothing or was refused by RLS."""
    with engine.connect() as conn, conn.begin():
        act_as(conn, role_name, tenant)
        try:
            if op == "select":
                rows = conn.execute(
                    text("SELECT chat_id FROM conversations WHERE bot_id = :t"), {"t": target}
                ).all()
                return len(rows) == 1
            if op == "insert":
                conn.execute(
                    text("INSERT INTO conversations (bot_id, chat_id) VALUES (:t, 2)"),
                    {"t": target},
                )
                return True
            sql = {
                "update": "UPDATE conversations SET state = 'x' WHERE bot_id = :t",
                "delete": "DELETE FROM conversations WHERE bot_id = :t",
            }[op]
            return conn.execute(text(sql), {"t": target}).rowcount == 1
        except ProgrammingError as exc:
            assert "row-level security" in str(exc.orig)
            return False
        finally:
            conn.rollback()


@pytest.mark.parametrize(("role_name", "op"), list(itertools.product(ROLES, OPS)))
def test_rls_matrix(
    db_settings: Settings,
    owner_engine: Engine,
    two_bots: tuple[int, int],
    role_name: str,
    op: str,
) -> None:
    # Given bots A (the tenant) and B, and a role acting for A
    own, other = two_bots
    full_role = db_settings.role(role_name)
    # the owner role is reachable only from the migrations login; others from the app login
    engine = owner_engine if role_name == "super_admin" else get_engine(db_settings)

    # When the role runs op on A's rows and on B's rows
    on_own = _attempt(engine, full_role, own, op, own)
    on_other = _attempt(engine, full_role, own, op, other)

    # Then exactly what the policy matrix allows happens
    assert (on_own, on_other) == ALLOWED[role_name]


def test_bot_cannot_move_a_row_to_another_bot(
    db_settings: Settings, two_bots: tuple[int, int]
) -> None:
    # Given bot A's conversation
    own, other = two_bots
    # When bot A updates its row's bot_id to B, Then WITH CHECK rejects it
    with pytest.raises(ProgrammingError, match="row-level security"):  # noqa: SIM117
        with session_scope(db_settings, bot_id=own) as session:
            session.execute(text("UPDATE conversations SET bot_id = :o"), {"o": other})


def test_no_tenant_sees_zero_rows_without_error(
    db_settings: Settings, two_bots: tuple[int, int]
) -> None:
    # Given rows for two bots; When the bot role has no app.bot_id set
    with get_engine(db_settings).connect() as conn, conn.begin():
        act_as(conn, db_settings.role("bot"), None)
        # Then every tenant table reads as empty
        for table in ("conversations", "bots", "profiles", "messages", "audit_log"):
            assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 0


def test_login_role_without_a_role_set_has_no_access(db_settings: Settings) -> None:
    # Given the app login (NOINHERIT member of admin and bot); When it queries without
    # session_scope, Then it is refused: memberships only count after SET ROLE
    with get_engine(db_settings).connect() as conn, pytest.raises(DBAPIError, match="permission"):
        conn.execute(text("SELECT count(*) FROM conversations"))


def test_partitions_are_not_directly_accessible(
    db_settings: Settings, two_bots: tuple[int, int]
) -> None:
    # Given a bot session; When it reads a hash partition directly, Then permission denied
    with (
        pytest.raises(ProgrammingError, match="permission denied"),
        session_scope(db_settings, bot_id=two_bots[0]) as session,
    ):
        session.execute(text("SELECT count(*) FROM conversations_p0"))


def test_bot_role_cannot_create_bots(db_settings: Settings) -> None:
    # Given the bot role for bot 42; When it inserts its own bots row, Then it is refused
    with (
        pytest.raises(ProgrammingError, match="permission denied"),
        session_scope(db_settings, bot_id=42) as session,
    ):
        session.execute(text("INSERT INTO bots (id, name) VALUES (42, 'x')"))
