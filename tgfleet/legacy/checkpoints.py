"""Checkpoints (per file) and component states (per bot), in ``migration_checkpoints``.

A file's row says how far its current scan got (``position``), which version of the file
that scan is reading (``fingerprint``), whether the scan reached the end (``complete``)
and why it stopped early (``error``). The row with ``file = ''`` holds the component's
state for that bot (json -> dual -> verify -> postgres) and, in ``details``, the last
verification report. Rows are written in the same transaction as the batch they describe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from tgfleet.legacy.format import Component, ComponentState
from tgfleet.legacy.targets import array_literal
from tgfleet.platform.errors import TgfleetError


class ConcurrentBatchError(TgfleetError):
    """Another batch moved this checkpoint first; this batch was rolled back."""


@dataclass(frozen=True, slots=True)
class FileCheckpoint:
    file: str
    fingerprint: str | None
    position: int
    complete: bool
    error: str | None
    records: int


def load_checkpoints(
    session: Session, bot_id: int, component: Component
) -> dict[str, FileCheckpoint]:
    rows = session.execute(
        text(
            "SELECT file, fingerprint, position, complete, error, records "
            "FROM migration_checkpoints WHERE bot_id = :bot AND component = :c AND file <> ''"
        ),
        {"bot": bot_id, "c": component.value},
    )
    return {r.file: FileCheckpoint(*r) for r in rows}


def save_checkpoint(
    session: Session,
    bot_id: int,
    component: Component,
    new: FileCheckpoint,
    previous: FileCheckpoint | None,
) -> None:
    """Write ``new``; if the row moved since ``previous`` was read, raise ConcurrentBatchError."""
    params = {
        "bot": bot_id,
        "c": component.value,
        "file": new.file,
        "fp": new.fingerprint,
        "pos": new.position,
        "complete": new.complete,
        "error": new.error,
        "records": new.records,
        "old_pos": previous.position if previous else 0,
        "old_fp": previous.fingerprint if previous else None,
    }
    row = session.execute(
        text(
            "INSERT INTO migration_checkpoints AS m (bot_id, component, file, fingerprint, "
            "position, complete, error, records, state) "
            "VALUES (:bot, :c, :file, :fp, :pos, :complete, :error, :records, 'dual') "
            "ON CONFLICT (bot_id, component, file) DO UPDATE SET "
            "fingerprint = excluded.fingerprint, position = excluded.position, "
            "complete = excluded.complete, error = excluded.error, "
            "records = excluded.records, updated_at = now() "
            "WHERE m.position = :old_pos AND m.fingerprint IS NOT DISTINCT FROM :old_fp "
            "RETURNING 1"
        ),
        params,
    ).first()
    if row is None:
        raise ConcurrentBatchError(
            f"checkpoint of {new.file} changed under this batch (another batch of "
            f"{component.value} for bot {bot_id} ran at the same time); it was rolled back"
        )


def delete_checkpoint(
    session: Session, bot_id: int, component: Component, previous: FileCheckpoint
) -> None:
    """Delete a file's checkpoint; if the row moved since ``previous`` was read, raise
    ConcurrentBatchError."""
    row = session.execute(
        text(
            "DELETE FROM migration_checkpoints WHERE bot_id = :bot AND component = :c "
            "AND file = :file AND position = :pos AND fingerprint IS NOT DISTINCT FROM :fp "
            "RETURNING 1"
        ),
        {
            "bot": bot_id,
            "c": component.value,
            "file": previous.file,
            "pos": previous.position,
            "fp": previous.fingerprint,
        },
    ).first()
    if row is None:
        raise ConcurrentBatchError(
            f"checkpoint of {previous.file} changed under this batch (another batch of "
            f"{component.value} for bot {bot_id} ran at the same time); it was rolled back"
        )


def save_checkpoints(
    session: Session,
    bot_id: int,
    component: Component,
    pairs: list[tuple[FileCheckpoint, FileCheckpoint | None]],
) -> None:
    """Write many (new, previous) checkpoints in two statements (a batch touches hundreds of
    small files); raise ConcurrentBatchError if any row moved since it was read."""
    moved = [(new, old) for new, old in pairs if old is not None]
    fresh = [new for new, old in pairs if old is None]
    base = {"bot": bot_id, "c": component.value}
    if moved:
        updated = session.execute(
            text(
                "UPDATE migration_checkpoints m SET fingerprint = s.fp, position = s.pos, "
                "complete = s.complete, error = s.error, records = s.records, updated_at = now() "
                "FROM unnest(CAST(:files AS text[]), CAST(:fps AS text[]), CAST(:pos AS bigint[]),"
                " CAST(:complete AS boolean[]), CAST(:errors AS text[]), "
                "CAST(:records AS bigint[]), CAST(:old_pos AS bigint[]), CAST(:old_fps AS text[]))"
                " AS s(file, fp, pos, complete, error, records, old_pos, old_fp) "
                "WHERE m.bot_id = :bot AND m.component = :c AND m.file = s.file "
                "AND m.position = s.old_pos AND m.fingerprint IS NOT DISTINCT FROM s.old_fp "
                "RETURNING m.file"
            ),
            {
                **base,
                **_columns([n for n, _ in moved]),
                "old_pos": array_literal(o.position for _, o in moved if o is not None),
                "old_fps": array_literal(o.fingerprint for _, o in moved if o is not None),
            },
        ).all()
        if len(updated) != len(moved):
            raise ConcurrentBatchError(
                f"{len(moved) - len(updated)} checkpoint(s) of {component.value} for bot "
                f"{bot_id} changed under this batch (another batch ran at the same time); "
                "it was rolled back"
            )
    if fresh:
        inserted = session.execute(
            text(
                "INSERT INTO migration_checkpoints (bot_id, component, file, fingerprint, "
                "position, complete, error, records, state) "
                "SELECT :bot, :c, s.file, s.fp, s.pos, s.complete, s.error, s.records, 'dual' "
                "FROM unnest(CAST(:files AS text[]), CAST(:fps AS text[]), "
                "CAST(:pos AS bigint[]), CAST(:complete AS boolean[]), CAST(:errors AS text[]), "
                "CAST(:records AS bigint[])) AS s(file, fp, pos, complete, error, records) "
                "ON CONFLICT (bot_id, component, file) DO NOTHING RETURNING file"
            ),
            {**base, **_columns(fresh)},
        ).all()
        if len(inserted) != len(fresh):
            raise ConcurrentBatchError(
                f"{len(fresh) - len(inserted)} new checkpoint(s) of {component.value} for bot "
                f"{bot_id} were written by another batch first; this one was rolled back"
            )


def _columns(checkpoints: list[FileCheckpoint]) -> dict[str, str]:
    return {
        "files": array_literal(c.file for c in checkpoints),
        "fps": array_literal(c.fingerprint for c in checkpoints),
        "pos": array_literal(c.position for c in checkpoints),
        "complete": array_literal(c.complete for c in checkpoints),
        "errors": array_literal(c.error for c in checkpoints),
        "records": array_literal(c.records for c in checkpoints),
    }


def get_state(session: Session, bot_id: int, component: Component) -> ComponentState:
    value = session.execute(
        text(
            "SELECT state FROM migration_checkpoints "
            "WHERE bot_id = :bot AND component = :c AND file = ''"
        ),
        {"bot": bot_id, "c": component.value},
    ).scalar_one_or_none()
    return ComponentState(value) if value is not None else ComponentState.JSON


def get_details(session: Session, bot_id: int, component: Component) -> dict[str, Any]:
    value = session.execute(
        text(
            "SELECT details FROM migration_checkpoints "
            "WHERE bot_id = :bot AND component = :c AND file = ''"
        ),
        {"bot": bot_id, "c": component.value},
    ).scalar_one_or_none()
    return dict(value or {})


def set_state(
    session: Session,
    bot_id: int,
    component: Component,
    state: ComponentState,
    details: dict[str, Any] | None = None,
) -> None:
    session.execute(
        text(
            "INSERT INTO migration_checkpoints AS m (bot_id, component, file, state, details) "
            "VALUES (:bot, :c, '', :state, CAST(:details AS jsonb)) "
            "ON CONFLICT (bot_id, component, file) DO UPDATE SET state = excluded.state, "
            "details = coalesce(m.details, '{}'::jsonb) "
            "|| coalesce(excluded.details, '{}'::jsonb), "
            "updated_at = now()"
        ),
        {
            "bot": bot_id,
            "c": component.value,
            "state": state.value,
            "details": None if details is None else json.dumps(details),
        },
    )


def reset_files(session: Session, bot_id: int, component: Component) -> None:
    """Forget every file checkpoint of the component (the next scan starts over)."""
    session.execute(
        text(
            "DELETE FROM migration_checkpoints "
            "WHERE bot_id = :bot AND component = :c AND file <> ''"
        ),
        {"bot": bot_id, "c": component.value},
    )
