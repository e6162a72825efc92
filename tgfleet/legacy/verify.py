"""Verification: does PostgreSQL hold exactly what the legacy files say, per bot and component?

The JSON side is read the way the engine reads it (validate, first valid record per id
wins, a truncated file's good prefix counts) and COPY'd into a temporary table next to
its row hashes. Then, inside the bot's RLS transaction:

* counts and order-independent checksums (``checksum.py``) are compared;
* a full outer join on the key lists every record missing on either side or different
  (the first ``LIST_LIMIT``, with the fields that differ);
* a random sample of records is compared field by field.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from tgfleet.db.session import session_scope
from tgfleet.legacy.checkpoints import load_checkpoints
from tgfleet.legacy.checksum import MOD, Checksum, row_hash
from tgfleet.legacy.engine import current_fingerprint, find_work
from tgfleet.legacy.format import Component, source_files
from tgfleet.legacy.loading import LoadBuffer, copy_stage
from tgfleet.legacy.reader import RecordStream
from tgfleet.legacy.targets import TARGETS, Target, copy_text
from tgfleet.legacy.validate import COLUMNS
from tgfleet.platform.settings import Settings

LIST_LIMIT = 20
SAMPLE_SIZE = 50


@dataclass
class Verification:
    """The outcome of verifying one component of one bot."""

    bot_id: int
    component: str
    json_count: int = 0
    json_checksum: str = ""
    pg_count: int = 0
    pg_checksum: str = ""
    differing: int = 0
    sampled: int = 0
    mismatches: list[str] = field(default_factory=list)
    pending_files: int = 0
    fingerprints: dict[str, str] = field(default_factory=dict)
    verified_at: str = ""

    @property
    def passed(self) -> bool:
        return (
            self.pending_files == 0
            and self.differing == 0
            and not self.mismatches
            and (self.json_count, self.json_checksum) == (self.pg_count, self.pg_checksum)
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}


def json_rows(
    root: Path, bot_id: int, component: Component, fingerprints: dict[str, str] | None = None
) -> Iterator[tuple[Any, ...]]:
    """The valid, de-duplicated rows of one bot's component, as the engine loads them."""
    for source in source_files(root, component, bot_id):
        rel = source.relative_to(root)
        if fingerprints is not None:
            fingerprints[rel] = current_fingerprint(source.path)
        buffer = LoadBuffer(component, bot_id, keep_raw=False)
        buffer.start_file(source, rel)
        for record in RecordStream(source.path):
            row = buffer.check(*record)
            if row is not None:
                yield row


def json_checksum(root: Path, bot_id: int, component: Component) -> Checksum:
    total = Checksum()
    for row in json_rows(root, bot_id, component):
        total.add(row_hash(row))
    return total


def pg_checksum(session: Session, bot_id: int, component: Component) -> Checksum:
    count, total = session.execute(text(TARGETS[component].checksum_sql()), {"bot": bot_id}).one()
    return Checksum(int(count), int(total) % MOD)


def verify_component(
    settings: Settings, root: Path, bot_id: int, component: Component, *, sample: int = SAMPLE_SIZE
) -> Verification:
    target = TARGETS[component]
    report = Verification(bot_id, component.value)
    json_sum = Checksum()

    def lines() -> Iterator[str]:
        for row in json_rows(root, bot_id, component, report.fingerprints):
            h = row_hash(row)
            json_sum.add(h)
            yield "\t".join([copy_text(v) for v in (*row, h)]) + "\n"

    with session_scope(settings, bot_id=bot_id) as session:
        checkpoints = load_checkpoints(session, bot_id, component)
        report.pending_files = sum(1 for _ in find_work(root, bot_id, component, checkpoints))
        copy_stage(session, target.with_hash(), lines())
        session.execute(text("ANALYZE stage"))
        report.json_count, report.json_checksum = json_sum.count, json_sum.as_text()
        pg_sum = pg_checksum(session, bot_id, component)
        report.pg_count, report.pg_checksum = pg_sum.count, pg_sum.as_text()
        _list_differences(session, target, bot_id, report)
        _compare_sample(session, target, bot_id, report, sample)
    report.verified_at = datetime.now(UTC).isoformat(timespec="seconds")
    return report


def _join(target: Target) -> str:
    return " AND ".join(f"p.{k} = j.{s}" for k, s in zip(target.key, target.stage_key, strict=True))


def _list_differences(session: Session, target: Target, bot_id: int, report: Verification) -> None:
    keys = ", ".join(
        f"coalesce(j.{s}, p.{k})" for k, s in zip(target.key, target.stage_key, strict=True)
    )
    sql = (
        f"SELECT {keys}, j.h IS NULL, p.h IS NULL FROM stage j FULL JOIN "
        f"(SELECT {', '.join(f't.{k}' for k in target.key)}, {target.hash_expr} AS h "
        f"FROM {target.table} t WHERE t.bot_id = :bot) p ON {_join(target)} "
        "WHERE j.h IS DISTINCT FROM p.h"
    )
    rows = session.execute(text(sql), {"bot": bot_id}).all()
    report.differing = len(rows)
    for *key, only_pg, only_json in rows[:LIST_LIMIT]:
        name = f"{report.component} bot {bot_id} id {'/'.join(map(str, key))}"
        if only_pg:
            report.mismatches.append(f"{name}: in PostgreSQL but not in the JSON files")
        elif only_json:
            report.mismatches.append(f"{name}: in the JSON files but missing from PostgreSQL")
        else:
            diff = _field_diff(session, target, bot_id, tuple(key))
            report.mismatches.append(f"{name}: {diff or 'row hash differs'}")


def _compare_sample(
    session: Session, target: Target, bot_id: int, report: Verification, size: int
) -> None:
    keys = ", ".join(f"j.{s}" for s in target.stage_key)
    picked = session.execute(
        text(f"SELECT {keys} FROM stage j ORDER BY random() LIMIT :n"), {"n": size}
    ).all()
    report.sampled = len(picked)
    for key in picked:
        diff = _field_diff(session, target, bot_id, tuple(key))
        name = f"{report.component} bot {bot_id} id {'/'.join(map(str, key))}"
        if diff and not any(m.startswith(name) for m in report.mismatches):
            report.mismatches.append(f"{name}: {diff}")


def _field_diff(session: Session, target: Target, bot_id: int, key: tuple[Any, ...]) -> str:
    """ "field: json X != postgres Y; ..." for one record, or "" if equal."""
    where_j = " AND ".join(f"j.{s} = :k{i}" for i, s in enumerate(target.stage_key))
    where_p = " AND ".join(f"t.{k} = :k{i}" for i, k in enumerate(target.key))
    params = {"bot": bot_id, **{f"k{i}": v for i, v in enumerate(key)}}
    cols = ", ".join(f"j.{c.split()[0]}" for c in target.stage_columns.split(", "))
    json_row = session.execute(text(f"SELECT {cols} FROM stage j WHERE {where_j}"), params).first()
    pg_row = session.execute(text(f"{target.select} AND {where_p}"), params).first()
    if json_row is None or pg_row is None:
        return "missing on one side"
    names = COLUMNS[Component(target.component)]
    diffs = [
        f"{name}: json {_short(a)} != postgres {_short(b)}"
        for name, a, b in zip(names, json_row, pg_row, strict=True)
        if a != b
    ]
    return "; ".join(diffs)


def _short(value: Any) -> str:
    text_value = repr(value)
    return text_value if len(text_value) <= 50 else text_value[:47] + "..."
