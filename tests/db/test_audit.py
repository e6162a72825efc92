"""Audit rows: who, what, which transaction and correlation id; immutable for the app."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.exc import ProgrammingError

from tgfleet.db import AuditLog, Outbox, Profile, encrypt_secret, session_scope
from tgfleet.platform.settings import Settings


def _audit_rows(owner_engine: Engine, correlation_id: str) -> list[dict[str, object]]:
    with owner_engine.connect() as conn:
        rows = conn.execute(
            text("SELECT * FROM audit_log WHERE correlation_id = :c ORDER BY id"),
            {"c": correlation_id},
        )
        return [dict(row._mapping) for row in rows]


def test_writes_record_role_correlation_id_and_changed_columns(
    db_settings: Settings, owner_engine: Engine, make_bots: Callable[[int], list[int]]
) -> None:
    # Given a bot; When its task creates then edits a profile and queues a message
    (bot_id,) = make_bots(1)
    cid = f"task-{uuid.uuid4()}"
    with session_scope(db_settings, bot_id=bot_id, correlation_id=cid) as session:
        session.add(Profile(bot_id=bot_id, user_id=7, display_name="Ann", age=30))
        session.add(Outbox(bot_id=bot_id, chat_id=7, text="hello"))
    with session_scope(db_settings, bot_id=bot_id, correlation_id=cid) as session:
        profile = session.get(Profile, (bot_id, 7))
        assert profile is not None
        profile.city = "Oslo"

    # Then three audit rows carry the correlation id, the acting role and the login
    rows = _audit_rows(owner_engine, cid)
    assert sorted((r["table_name"], r["op"]) for r in rows[:2]) == [
        ("outbox", "INSERT"),
        ("profiles", "INSERT"),
    ]
    assert (rows[2]["table_name"], rows[2]["op"]) == ("profiles", "UPDATE")
    assert {r["actor_role"] for r in rows} == {db_settings.role("bot")}
    assert {r["login_role"] for r in rows} == {"tgfleet_app"}
    assert {r["bot_id"] for r in rows} == {bot_id}
    assert rows[0]["txid"] == rows[1]["txid"] != rows[2]["txid"]
    update = rows[2]
    assert update["row_key"] == {"bot_id": bot_id, "user_id": 7}
    old, new = update["old_values"], update["new_values"]
    assert isinstance(old, dict) and isinstance(new, dict)
    assert old["city"] is None and new["city"] == "Oslo"
    assert (old["version"], new["version"]) == (1, 2)
    assert "display_name" not in new  # only changed columns


def test_rolled_back_write_leaves_no_audit_row(
    db_settings: Settings, owner_engine: Engine, make_bots: Callable[[int], list[int]]
) -> None:
    # Given a bot; When a transaction writes a profile and then fails
    (bot_id,) = make_bots(1)
    cid = f"task-{uuid.uuid4()}"
    with (
        pytest.raises(RuntimeError),
        session_scope(db_settings, bot_id=bot_id, correlation_id=cid) as session,
    ):
        session.add(Profile(bot_id=bot_id, user_id=8))
        session.flush()
        raise RuntimeError("handler failed")

    # Then neither the profile nor its audit row exists
    assert _audit_rows(owner_engine, cid) == []


def test_admin_writes_to_bots_are_audited_with_token_redacted(
    db_settings: Settings, owner_engine: Engine
) -> None:
    # Given an admin creating a bot with an encrypted token
    bot_id = uuid.uuid4().int % 10**12
    cid = f"cli-{uuid.uuid4()}"
    with session_scope(db_settings, role="admin", correlation_id=cid) as session:
        session.execute(
            text("INSERT INTO bots (id, name, token_encrypted) VALUES (:i, 'b', :t)"),
            {"i": bot_id, "t": encrypt_secret(db_settings, "123:secret")},
        )
    try:
        # Then the audit row names the admin role and never holds the ciphertext
        (row,) = _audit_rows(owner_engine, cid)
        assert row["actor_role"] == db_settings.role("admin")
        assert isinstance(row["new_values"], dict)
        assert row["new_values"]["token_encrypted"] == "[redacted]"
    finally:
        with owner_engine.begin() as conn:
            conn.execute(text("DELETE FROM bots WHERE id = :i"), {"i": bot_id})


def test_noop_update_writes_no_audit_row(
    db_settings: Settings, owner_engine: Engine, make_bots: Callable[[int], list[int]]
) -> None:
    # Given a queued message; When an UPDATE changes nothing, Then nothing is audited
    (bot_id,) = make_bots(1)
    with session_scope(db_settings, bot_id=bot_id) as session:
        session.add(Outbox(bot_id=bot_id, chat_id=1, text="x"))
    cid = f"noop-{uuid.uuid4()}"
    with session_scope(db_settings, bot_id=bot_id, correlation_id=cid) as session:
        session.execute(text("UPDATE outbox SET text = text"))
    assert _audit_rows(owner_engine, cid) == []


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET op = 'DELETE'",
        "DELETE FROM audit_log",
        "INSERT INTO audit_log (bot_id, table_name, op, row_key, actor_role, login_role, txid)"
        " VALUES (:b, 'profiles', 'INSERT', '{}', 'x', 'x', 1)",
        "TRUNCATE audit_log",
    ],
)
@pytest.mark.parametrize("role_name", ["bot", "admin"])
def test_app_roles_cannot_alter_audit_rows(
    db_settings: Settings,
    make_bots: Callable[[int], list[int]],
    statement: str,
    role_name: str,
) -> None:
    # Given a bot with audit rows of its own
    (bot_id,) = make_bots(1)
    with session_scope(db_settings, bot_id=bot_id) as session:
        session.add(Outbox(bot_id=bot_id, chat_id=1, text="x"))
    # When the app changes audit_log directly, Then permission is denied
    with (
        pytest.raises(ProgrammingError, match="permission denied"),
        session_scope(db_settings, bot_id=bot_id, role=role_name) as session,  # type: ignore[arg-type]
    ):
        session.execute(text(statement), {"b": bot_id})


def test_bot_reads_only_its_own_audit_rows(
    db_settings: Settings, make_bots: Callable[[int], list[int]]
) -> None:
    # Given audited writes for bots A and B
    a, b = make_bots(2)
    for bot_id in (a, b):
        with session_scope(db_settings, bot_id=bot_id) as session:
            session.add(Outbox(bot_id=bot_id, chat_id=1, text="x"))
    # When A reads the audit log, Then it sees its rows and none of B's
    with session_scope(db_settings, bot_id=a) as session:
        seen = set(session.scalars(select(AuditLog.bot_id)).all())
    assert seen == {a}


AUDITED_TABLES = ("bots", "profiles", "outbox")


def _audit_function_misses(conn: Connection, table: str) -> list[str]:
    """The columns of ``table`` that its audit trigger's function does not compare."""
    source = conn.execute(
        text(
            "SELECT pg_get_functiondef(tgfoid) FROM pg_trigger "
            "WHERE tgrelid = to_regclass(:t) AND tgname = 'audit_row_change'"
        ),
        {"t": table},
    ).scalar_one()
    columns = conn.execute(
        text(
            "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(:t) "
            "AND attnum > 0 AND NOT attisdropped"
        ),
        {"t": table},
    ).scalars()
    return [c for c in columns if f"OLD.{c} IS DISTINCT FROM NEW.{c}" not in source]


def test_each_audited_table_s_function_compares_every_column_of_it(owner_engine: Engine) -> None:
    with owner_engine.connect() as conn:
        # Given the audited tables, Then each one's function compares all its columns
        for table in AUDITED_TABLES:
            assert _audit_function_misses(conn, table) == [], (
                f"audit_{table}_change() misses columns of {table}: a migration that adds a "
                "column must make the function again (migration 0110's audit_function_sql)"
            )
        # And a column added without doing so is caught (rolled back)
        conn.rollback()
        conn.execute(text("ALTER TABLE outbox ADD COLUMN note text"))
        assert _audit_function_misses(conn, "outbox") == ["note"]
        conn.rollback()


def test_the_per_table_functions_write_what_the_generic_one_did(
    owner_engine: Engine, make_bots: Callable[[int], list[int]]
) -> None:
    # Given a bot, and writes of every kind to the three audited tables (a token set,
    # changed and cleared; columns changed to and from null; jsonb; a no-op update)
    (bot_id,) = make_bots(1)
    other = bot_id + 1
    at = {"t": "2026-12-08T01:00:00+00", "t2": "2026-12-08T01:00:05+00"}
    writes = [
        "INSERT INTO bots (id, name, token_encrypted, created_at, updated_at) "
        "VALUES (:o, 'x', '\\x01', :t, :t)",
        "UPDATE bots SET name = 'y', token_encrypted = '\\x02', settings = '{\"a\": 1}' "
        "WHERE id = :o",
        "UPDATE bots SET token_encrypted = NULL, admin_chat_ids = '{5,6}' WHERE id = :o",
        "INSERT INTO profiles (bot_id, user_id, display_name, age, created_at, updated_at) "
        "VALUES (:b, 5, 'Ann', 30, :t, :t)",
        "UPDATE profiles SET city = 'Oslo', age = NULL WHERE bot_id = :b AND user_id = 5",
        "INSERT INTO outbox (bot_id, id, chat_id, text, created_at, updated_at, next_attempt_at) "
        "OVERRIDING SYSTEM VALUE VALUES (:b, 999999999, 5, 'hi', :t, :t, :t)",
        "UPDATE outbox SET status = 'sending', random_id = 42, updated_at = :t2 WHERE bot_id = :b",
        "UPDATE outbox SET status = 'sent', media = '{\"photo\": [1, 2, \"x\"]}', sent_at = :t2 "
        "WHERE bot_id = :b",
        "UPDATE outbox SET text = text WHERE bot_id = :b",
        "DELETE FROM outbox WHERE bot_id = :b",
        "DELETE FROM profiles WHERE bot_id = :b",
        "DELETE FROM bots WHERE id = :o",
    ]

    def audited(generic: bool) -> list[tuple[object, ...]]:
        with owner_engine.connect() as conn:  # one transaction, rolled back
            if generic:  # the triggers as 0109 left them (rolled back)
                for table, args in {
                    "bots": "'bots', 'id', 'id'",
                    "profiles": "'profiles', 'bot_id', 'bot_id', 'user_id'",
                    "outbox": "'outbox', 'bot_id', 'bot_id', 'id'",
                }.items():
                    conn.execute(text(f"DROP TRIGGER audit_row_change ON {table}"))
                    conn.execute(
                        text(
                            f"CREATE TRIGGER audit_row_change AFTER INSERT OR UPDATE OR DELETE "
                            f"ON {table} FOR EACH ROW EXECUTE FUNCTION audit_row_change({args})"
                        )
                    )
            since = conn.execute(text("SELECT coalesce(max(id), 0) FROM audit_log")).scalar()
            for write in writes:
                conn.execute(text(write), {"b": bot_id, "o": other, **at})
            rows = conn.execute(
                text(
                    "SELECT bot_id, table_name, op, row_key, old_values, new_values, "
                    "actor_role, login_role FROM audit_log WHERE id > :s ORDER BY id"
                ),
                {"s": since},
            ).all()
            conn.rollback()
        return [tuple(row) for row in rows]

    # When they run under each table's own function, and under the generic one
    per_table, generic = audited(generic=False), audited(generic=True)
    # Then the audit rows are the same: all but the no-op update, tokens redacted
    assert per_table == generic
    assert len(per_table) == len(writes) - 1
    assert per_table[1][4] == {"name": "x", "token_encrypted": "[redacted]", "settings": {}}
    assert per_table[2][5] == {"token_encrypted": None, "admin_chat_ids": [5, 6]}
