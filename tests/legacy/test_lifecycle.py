"""dual re-scans, verify, cutover and rollback on real PostgreSQL."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from tgfleet.db.session import session_scope
from tgfleet.legacy.checkpoints import get_state
from tgfleet.legacy.format import Component, ComponentState
from tgfleet.legacy.generate import GenerateReport
from tgfleet.legacy.lifecycle import (
    CutoverRefused,
    cutover,
    rollback,
    run_until_idle,
    start,
    verify,
)
from tgfleet.legacy.reader import RecordStream
from tgfleet.legacy.verify import json_checksum, pg_checksum
from tgfleet.platform.settings import Settings

Store = Callable[..., tuple[Path, GenerateReport]]


def _migrate(settings: Settings, root: Path, component: Component) -> None:
    start(settings, root, component)
    run_until_idle(settings, root, component, batch_size=200)


def _rewrite(path: Path, records: list[dict[str, object]]) -> None:
    path.write_text(json.dumps(records))
    stat = path.stat()  # same-second edits must still change the fingerprint
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_changes_during_dual_are_picked_up(
    clean_db: Settings, legacy_owner: Engine, make_store: Store
) -> None:
    # Given users and conversations migrated and in dual
    root, report = make_store(bots=1, users=20, messy=False)
    bot = report.bots[0]
    for component in (Component.USERS, Component.CONVERSATIONS):
        _migrate(clean_db, root, component)
    users_file = root / str(bot) / "users.json"
    users = [r.value for r in RecordStream(users_file)]
    conv = sorted((root / str(bot) / "conversations").glob("*.json"))[0]
    messages = [r.value for r in RecordStream(conv)]
    # When the old bot renames a user, deletes one, adds one, and appends a message
    users[0]["first_name"] = "Renamed"
    gone = users.pop(1)
    users.append({"id": 999_999_999, "first_name": "New", "created": "2024-02-02T10:00:00Z"})
    _rewrite(users_file, users)
    messages.append(
        {"id": 10_000, "from": bot, "text": "still here?", "date": "2025-03-01T12:00:00Z"}
    )
    _rewrite(conv, messages)
    rescans = [
        run_until_idle(clean_db, root, c, batch_size=200)
        for c in (Component.USERS, Component.CONVERSATIONS)
    ]
    # Then PostgreSQL follows the files
    assert (rescans[0].inserted, rescans[0].updated, rescans[0].deleted) == (1, 1, 1)
    assert rescans[1].inserted == 1
    with legacy_owner.connect() as conn:
        names = dict(conn.execute(text("SELECT user_id, first_name FROM tg_users")).all())
        assert names[users[0]["id"]] == "Renamed" and names[999_999_999] == "New"
        assert gone["id"] not in names
        assert (
            conn.execute(text("SELECT text FROM messages WHERE tg_message_id = 10000")).scalar_one()
            == "still here?"
        )
        counts = conn.execute(
            text("SELECT messages_out + messages_in FROM conversations WHERE chat_id = :c"),
            {"c": int(conv.stem)},
        ).scalar_one()
        assert counts == len(messages)
    # And verification passes
    assert all(r.passed for r in verify(clean_db, root, Component.USERS))


def test_verify_detects_tampered_row_and_cutover_waits_for_it(
    clean_db: Settings, legacy_owner: Engine, make_store: Store
) -> None:
    root, report = make_store(bots=2, users=15)
    _migrate(clean_db, root, Component.PROFILES)
    # Given cutover before any verification: refused, saying what to do
    with pytest.raises(CutoverRefused, match="migrate-json verify --component profiles"):
        cutover(clean_db, root, Component.PROFILES)
    # When a row is changed behind the migration's back
    with legacy_owner.begin() as conn:
        victim = conn.execute(
            text(
                "UPDATE profiles SET city = 'Atlantis' WHERE bot_id = :b "
                "AND user_id = (SELECT min(user_id) FROM profiles "
                "WHERE bot_id = :b) RETURNING user_id"
            ),
            {"b": report.bots[0]},
        ).scalar_one()
    reports = verify(clean_db, root, Component.PROFILES)
    # Then verify fails for that bot only and lists the record and the field
    failed = [r for r in reports if not r.passed]
    assert [r.bot_id for r in failed] == [report.bots[0]]
    assert failed[0].json_checksum != failed[0].pg_checksum and failed[0].differing == 1
    assert any(
        str(victim) in m and "city: json" in m and "'Atlantis'" in m for m in failed[0].mismatches
    )
    with pytest.raises(CutoverRefused):
        cutover(clean_db, root, Component.PROFILES)
    # When the row is repaired and verify passes, Then cutover goes through
    with legacy_owner.begin() as conn:
        conn.execute(
            text(
                "UPDATE migration_checkpoints SET fingerprint = 'stale' "
                "WHERE bot_id = :b AND component = 'profiles' AND file <> ''"
            ),
            {"b": report.bots[0]},
        )
    run_until_idle(clean_db, root, Component.PROFILES, batch_size=200)  # re-scan repairs it
    assert all(r.passed for r in verify(clean_db, root, Component.PROFILES))
    assert cutover(clean_db, root, Component.PROFILES) == report.bots
    with session_scope(clean_db, bot_id=report.bots[0]) as session:
        assert get_state(session, report.bots[0], Component.PROFILES) is ComponentState.POSTGRES


def test_cutover_refused_when_files_change_after_verify(
    clean_db: Settings, make_store: Store
) -> None:
    root, report = make_store(bots=1, users=10, messy=False)
    _migrate(clean_db, root, Component.USERS)
    assert all(r.passed for r in verify(clean_db, root, Component.USERS))
    users_file = root / str(report.bots[0]) / "users.json"
    _rewrite(users_file, [r.value for r in RecordStream(users_file)][:-1])
    with pytest.raises(CutoverRefused, match="changed since verification"):
        cutover(clean_db, root, Component.USERS)


def test_rollback_round_trip_is_checksum_identical(
    clean_db: Settings, legacy_owner: Engine, make_store: Store, tmp_path: Path
) -> None:
    # Given a messy store fully migrated and verified
    root, report = make_store(bots=2, users=25)
    for component in Component:
        _migrate(clean_db, root, component)
        assert all(r.passed for r in verify(clean_db, root, component))
    before = {}
    for bot in report.bots:
        with session_scope(clean_db, bot_id=bot) as session:
            for component in Component:
                before[bot, component] = pg_checksum(session, bot, component)
    # When every component is rolled back into a fresh directory
    out = tmp_path / "exported"
    for component in Component:
        rollback(clean_db, root, component, out=out)
    # Then the exported files hash to PostgreSQL's checksums, and state is json again
    for bot in report.bots:
        for component in Component:
            assert json_checksum(out, bot, component) == before[bot, component]
        with session_scope(clean_db, bot_id=bot) as session:
            assert get_state(session, bot, Component.USERS) is ComponentState.JSON
    # When PostgreSQL is emptied and the export re-imported
    with legacy_owner.begin() as conn:
        conn.execute(
            text(
                "TRUNCATE tg_users, profiles, messages, conversations, "
                "migration_checkpoints, migration_quarantine"
            )
        )
    for component in Component:
        _migrate(clean_db, out, component)
    # Then PostgreSQL's checksums are identical to before, and nothing was quarantined
    for bot in report.bots:
        with session_scope(clean_db, bot_id=bot) as session:
            for component in Component:
                assert pg_checksum(session, bot, component) == before[bot, component]
    with legacy_owner.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM migration_quarantine")).scalar_one() == 0


def test_rollback_in_place_backs_up_files_and_resumes_without_reload(
    clean_db: Settings, legacy_owner: Engine, make_store: Store
) -> None:
    # Given users migrated and cut over
    root, report = make_store(bots=1, users=20)
    _migrate(clean_db, root, Component.USERS)
    assert all(r.passed for r in verify(clean_db, root, Component.USERS))
    cutover(clean_db, root, Component.USERS)
    original = (root / str(report.bots[0]) / "users.json").read_bytes()
    # When rolled back into the store itself
    [result] = rollback(clean_db, root, Component.USERS)
    # Then the old file is kept under .rollback/, the new one holds PostgreSQL's rows,
    # and the state is json
    [backup] = list((root / ".rollback").glob(f"*/{report.bots[0]}/users.json"))
    assert backup.read_bytes() == original
    assert result.rows == report.valid(Component.USERS)
    with session_scope(clean_db, bot_id=report.bots[0]) as session:
        assert get_state(session, report.bots[0], Component.USERS) is ComponentState.JSON
    # And migrating again later reloads nothing, and still verifies
    start(clean_db, root, Component.USERS)
    again = run_until_idle(clean_db, root, Component.USERS, batch_size=200)
    assert (again.files, again.inserted, again.updated, again.deleted) == (0, 0, 0, 0)
    assert all(r.passed for r in verify(clean_db, root, Component.USERS))


def test_file_caught_mid_write_during_dual_deletes_nothing_then_converges(
    clean_db: Settings, legacy_owner: Engine, make_store: Store
) -> None:
    # Given users migrated and in dual
    root, report = make_store(bots=1, users=30, messy=False)
    _migrate(clean_db, root, Component.USERS)
    users_file = root / str(report.bots[0]) / "users.json"
    users = [r.value for r in RecordStream(users_file)]
    users[0]["first_name"] = "Renamed"
    # When the old bot is caught half way through rewriting the file
    text_full = json.dumps(users)
    _rewrite(users_file, users)
    users_file.write_text(text_full[: len(text_full) // 2])
    partial = run_until_idle(clean_db, root, Component.USERS, batch_size=200)
    # Then the good prefix is applied, nothing is deleted, and the damage is reported
    assert (partial.updated, partial.deleted) == (1, 0)
    assert any("truncated" in e for e in partial.errors)
    with legacy_owner.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM tg_users")).scalar_one() == len(users)
    # When the write completes, Then PostgreSQL matches the file again
    _rewrite(users_file, users)
    run_until_idle(clean_db, root, Component.USERS, batch_size=200)
    assert all(r.passed for r in verify(clean_db, root, Component.USERS))


def test_conversation_file_deleted_during_dual_is_deleted_in_postgresql(
    clean_db: Settings, legacy_owner: Engine, make_store: Store
) -> None:
    # Given conversations migrated and in dual, one of whose files has a quarantined record
    root, report = make_store(bots=1, users=12, messages=10, messy=False)
    bot = report.bots[0]
    files = sorted((root / str(bot) / "conversations").glob("*.json"))
    victim, kept = files[0], files[1]
    messages = [r.value for r in RecordStream(victim)]
    _rewrite(victim, [*messages, {"id": "not a number", "from": bot, "text": "x"}])
    _migrate(clean_db, root, Component.CONVERSATIONS)
    chat = int(victim.stem)
    with legacy_owner.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM messages")).scalar_one()
        assert (
            conn.execute(
                text("SELECT count(*) FROM migration_quarantine WHERE file LIKE :f"),
                {"f": f"%/{victim.name}"},
            ).scalar_one()
            == 1
        )
    # When the old bot deletes the file (and no other)
    victim.unlink()
    # Then verify sees the file as pending before the next batch
    assert not any(r.passed for r in verify(clean_db, root, Component.CONVERSATIONS))
    total = run_until_idle(clean_db, root, Component.CONVERSATIONS, batch_size=200)
    # And the batch deletes the chat's messages, its conversation, quarantine and checkpoint
    assert (total.files, total.deleted, total.inserted) == (1, len(messages), 0)
    with legacy_owner.connect() as conn:
        counts = {
            table: conn.execute(
                text(f"SELECT count(*) FROM {table} WHERE chat_id = :c"), {"c": chat}
            ).scalar_one()
            for table in ("messages", "conversations")
        }
        assert counts == {"messages": 0, "conversations": 0}
        assert conn.execute(text("SELECT count(*) FROM messages")).scalar_one() == before - len(
            messages
        )
        assert (
            conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM migration_checkpoints WHERE file LIKE :f) "
                    "+ (SELECT count(*) FROM migration_quarantine WHERE file LIKE :f)"
                ),
                {"f": f"%/{victim.name}"},
            ).scalar_one()
            == 0
        )
        assert conn.execute(
            text("SELECT count(*) FROM messages WHERE chat_id = :c"), {"c": int(kept.stem)}
        ).scalar_one() == len(list(RecordStream(kept)))
    # And verification passes; a second run has nothing to do
    assert all(r.passed for r in verify(clean_db, root, Component.CONVERSATIONS))
    again = run_until_idle(clean_db, root, Component.CONVERSATIONS, batch_size=200)
    assert (again.files, again.deleted) == (0, 0)
    # When the file comes back, Then its chat loads again from its first record
    _rewrite(victim, messages)
    back = run_until_idle(clean_db, root, Component.CONVERSATIONS, batch_size=200)
    assert back.inserted == len(messages)
    assert all(r.passed for r in verify(clean_db, root, Component.CONVERSATIONS))
