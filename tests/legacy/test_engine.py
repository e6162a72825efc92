"""The batch engine on real PostgreSQL: completeness, quarantine, truncation, checksums."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from sqlalchemy import Engine, text

from tgfleet.db.session import session_scope
from tgfleet.legacy import engine
from tgfleet.legacy.checksum import row_hash
from tgfleet.legacy.format import Component
from tgfleet.legacy.generate import GenerateReport
from tgfleet.legacy.lifecycle import run_until_idle, start, status
from tgfleet.legacy.loading import copy_stage, ensure_bot
from tgfleet.legacy.reader import RecordStream
from tgfleet.legacy.targets import TARGETS
from tgfleet.legacy.verify import json_checksum, pg_checksum
from tgfleet.platform.settings import Settings

TABLE = {
    Component.USERS: "tg_users",
    Component.PROFILES: "profiles",
    Component.CONVERSATIONS: "messages",
}


def migrate_all(settings: Settings, root: Path, batch_size: int = 300) -> None:
    for component in Component:
        start(settings, root, component)
        run_until_idle(settings, root, component, batch_size=batch_size)


def test_messy_store_migrates_completely(
    clean_db: Settings, legacy_owner: Engine, make_store: Callable[..., tuple[Path, GenerateReport]]
) -> None:
    # Given a messy store (bad types, bad dates, duplicates, huge texts, truncated files)
    root, report = make_store(bots=2, users=60)
    # When every component is migrated in small batches
    migrate_all(clean_db, root)
    with legacy_owner.connect() as conn:
        for component, table in TABLE.items():
            tally = report.tally[component]
            migrated = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            quarantined = conn.execute(
                text(
                    "SELECT count(*) FROM migration_quarantine WHERE component = :c "
                    "AND reason <> ''"
                ),
                {"c": component.value},
            ).scalar_one()
            # Then every valid record is there, every invalid one quarantined with a reason,
            # and migrated + quarantined = the records the files hold
            assert (migrated, quarantined) == (tally.records - tally.invalid, tally.invalid)
            assert migrated + quarantined == tally.records
        duplicates = conn.execute(
            text(
                "SELECT count(*) FROM (SELECT 1 FROM messages GROUP BY bot_id, chat_id, "
                "tg_message_id HAVING count(*) > 1) d"
            )
        ).scalar_one()
        assert duplicates == 0
        # And the quarantine keeps the file, the position and the record as found
        row = conn.execute(
            text(
                "SELECT file, position, record, reason FROM migration_quarantine "
                "WHERE reason LIKE 'age is%' LIMIT 1"
            )
        ).one_or_none()
        if row is not None:
            assert row.file.endswith("profiles.json") and row.position >= 0
            assert "age" in json.loads(row.record)
        # And handlers will never run on history: every message is already processed
        assert (
            conn.execute(
                text("SELECT count(*) FROM messages WHERE processed_at IS NULL")
            ).scalar_one()
            == 0
        )
    # And both sides' checksums agree per bot and component
    for bot in report.bots:
        with session_scope(clean_db, bot_id=bot) as session:
            for component in Component:
                assert json_checksum(root, bot, component) == pg_checksum(session, bot, component)


def test_truncated_file_good_prefix_migrates_rest_reported(
    clean_db: Settings, legacy_owner: Engine, make_store: Callable[..., tuple[Path, GenerateReport]]
) -> None:
    # Given a clean store, then one conversation file cut in its middle
    root, report = make_store(bots=1, users=10, messages=20, messy=False)
    victim = sorted((root / str(report.bots[0]) / "conversations").glob("*.json"))[0]
    messages = [r.value for r in RecordStream(victim)]
    data = json.dumps(messages)
    cut = data.index(json.dumps(messages[len(messages) // 2]))
    victim.write_text(data[: cut + 15])
    # When the conversations are migrated
    start(clean_db, root, Component.CONVERSATIONS)
    total = run_until_idle(clean_db, root, Component.CONVERSATIONS, batch_size=50)
    # Then the records before the cut are in PostgreSQL, and the error is reported
    chat = int(victim.stem)
    with legacy_owner.connect() as conn:
        ids = (
            conn.execute(
                text("SELECT tg_message_id FROM messages WHERE chat_id = :c ORDER BY 1"),
                {"c": chat},
            )
            .scalars()
            .all()
        )
    assert ids == [m["id"] for m in messages[: len(messages) // 2]]
    assert any(victim.name in e and "truncated" in e for e in total.errors)
    [item] = status(clean_db, root, Component.CONVERSATIONS)
    assert any("truncated" in e for e in item.errors)
    assert item.files_loaded == item.files


def test_second_run_changes_nothing(
    clean_db: Settings, legacy_owner: Engine, make_store: Callable[..., tuple[Path, GenerateReport]]
) -> None:
    root, _ = make_store(bots=1, users=30)
    migrate_all(clean_db, root)
    with legacy_owner.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM migration_quarantine")).scalar_one()
    # When run again with no file changed, Then no batch does anything
    for component in Component:
        total = run_until_idle(clean_db, root, component, batch_size=300)
        assert (total.files, total.read, total.inserted) == (0, 0, 0)
    with legacy_owner.connect() as conn:
        assert (
            conn.execute(text("SELECT count(*) FROM migration_quarantine")).scalar_one() == before
        )


_texts = st.one_of(
    st.none(),
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
        max_size=40,
    ),
)


@hyp_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=st.lists(
        st.tuples(
            st.integers(1, 2**63 - 1),
            _texts,
            _texts,
            _texts,
            st.datetimes(
                min_value=datetime(2013, 1, 1),
                max_value=datetime(2030, 1, 1),
                timezones=st.just(UTC),
            ),
        ),
        min_size=1,
        max_size=8,
        unique_by=lambda r: r[0],
    )
)
def test_python_and_sql_row_hashes_agree(clean_db: Settings, rows: list[tuple[Any, ...]]) -> None:
    # Given arbitrary users (odd Unicode, tabs, backslashes, NULLs, any timestamp)
    target = TARGETS[Component.USERS]
    with session_scope(clean_db, bot_id=1) as session:
        # When PostgreSQL hashes them after a COPY round trip
        from tgfleet.legacy.targets import copy_text

        copy_stage(session, target, ("\t".join(copy_text(v) for v in r) + "\n" for r in rows))
        expr = target.hash_expr.replace("t.user_id", "t.id").replace(
            "t.language_code", "t.language"
        )
        expr = expr.replace("t.first_seen_at", "t.created")
        got = dict(session.execute(text(f"SELECT t.id, {expr} FROM stage t")).all())
    # Then every row hash equals Python's
    assert got == {r[0]: row_hash(r) for r in rows}


def test_messages_already_in_postgresql_are_quarantined_not_doubled(
    clean_db: Settings, legacy_owner: Engine, make_store: Callable[..., tuple[Path, GenerateReport]]
) -> None:
    # Given a clean store, and one of its messages already in PostgreSQL (the platform
    # wrote it, or an earlier import did)
    root, report = make_store(bots=1, users=8, messages=10, messy=False)
    bot = report.bots[0]
    conv = sorted((root / str(bot) / "conversations").glob("*.json"))[0]
    first = next(iter(RecordStream(conv))).value
    ensure_bot(clean_db, bot)
    with legacy_owner.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO messages (bot_id, created_at, direction, chat_id, sender_id, "
                "tg_message_id, text, processed_at) VALUES (:b, now(), 'in', :c, :c, :m, "
                "'from the platform', now())"
            ),
            {"b": bot, "c": int(conv.stem), "m": first["id"]},
        )
    # When the conversations are migrated
    start(clean_db, root, Component.CONVERSATIONS)
    total = run_until_idle(clean_db, root, Component.CONVERSATIONS, batch_size=1000)
    # Then that record is quarantined as a duplicate, every other one loaded once
    valid = report.valid(Component.CONVERSATIONS)
    assert (total.inserted, total.quarantined) == (valid - 1, 1)
    with legacy_owner.connect() as conn:
        reason = conn.execute(text("SELECT reason FROM migration_quarantine")).scalar_one()
        assert "already in PostgreSQL" in reason
        assert conn.execute(text("SELECT count(*) FROM messages")).scalar_one() == valid
        # And the chat's conversations row counts what the table holds
        counted = conn.execute(
            text("SELECT messages_in + messages_out FROM conversations WHERE chat_id = :c"),
            {"c": int(conv.stem)},
        ).scalar_one()
        in_table = conn.execute(
            text("SELECT count(*) FROM messages WHERE chat_id = :c"), {"c": int(conv.stem)}
        ).scalar_one()
        assert counted == in_table


def test_a_run_opens_with_a_small_batch_then_full_ones(
    clean_db: Settings,
    legacy_owner: Engine,
    make_store: Callable[..., tuple[Path, GenerateReport]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a clean store spanning years, and a first batch of at most 100 records
    monkeypatch.setattr(engine, "FIRST_BATCH", 100)
    root, report = make_store(bots=2, users=40, messages=20, messy=False)
    start(clean_db, root, Component.CONVERSATIONS)
    # When the conversations are migrated in batches of 300
    reads: list[int] = []
    total = run_until_idle(
        clean_db,
        root,
        Component.CONVERSATIONS,
        batch_size=300,
        on_batch=lambda result: reads.append(result.read),
    )
    # Then the first batch is the small one (the writer makes its partitions while the
    # reader reads on), later ones are full-size, and every record arrives once
    assert reads[0] == 100
    assert max(reads) == 300
    records = report.tally[Component.CONVERSATIONS].records
    assert sum(reads) == total.read == total.inserted == records
    with legacy_owner.connect() as conn:
        # and no message waits in the DEFAULT partition: each month got its own
        assert conn.execute(text("SELECT count(*) FROM messages_default")).scalar_one() == 0
        assert conn.execute(text("SELECT count(*) FROM messages")).scalar_one() == total.inserted
