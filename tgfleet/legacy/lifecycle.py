"""A component's life: json -> dual -> verify -> postgres, and rollback to json.

* ``start``: json -> dual. Batches (CLI ``run`` or beat) load and then keep re-scanning
  the files the old bot still writes.
* ``verify``: compares both sides; a bot whose component matches moves to ``verify``
  (one that does not goes back to ``dual``). The report and the files' fingerprints at
  that moment are kept in the component row.
* ``cutover``: verify -> postgres, refused (for every bot, all or nothing) unless the last
  verification passed and no file changed since.
* ``rollback``: exports PostgreSQL's rows to the legacy layout, records the exported files
  as loaded, and sets the state back to json.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from tgfleet.db.session import session_scope
from tgfleet.legacy.checkpoints import (
    FileCheckpoint,
    get_details,
    get_state,
    load_checkpoints,
    reset_files,
    save_checkpoints,
    set_state,
)
from tgfleet.legacy.engine import MIGRATING, BatchResult, Migrator, current_fingerprint
from tgfleet.legacy.export import ExportResult, export_component
from tgfleet.legacy.format import Component, ComponentState, bot_dirs, source_files
from tgfleet.legacy.loading import ensure_bot
from tgfleet.legacy.targets import TARGETS
from tgfleet.legacy.verify import Verification, verify_component
from tgfleet.platform.errors import TgfleetError
from tgfleet.platform.settings import Settings


class CutoverRefused(TgfleetError):
    """Cutover's preconditions do not hold; ``reasons`` lists each bot's problem."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("cutover refused:\n  " + "\n  ".join(reasons))
        self.reasons = reasons


@dataclass
class ComponentStatus:
    bot_id: int
    component: Component
    state: ComponentState
    files: int = 0
    files_loaded: int = 0
    records_read: int = 0
    migrated: int = 0
    quarantined: int = 0
    verified: bool | None = None
    errors: list[str] = field(default_factory=list)


def _bots(root: Path, bot_id: int | None) -> list[int]:
    return [b for b, _ in bot_dirs(root) if bot_id is None or b == bot_id]


def start(settings: Settings, root: Path, component: Component, bot_id: int | None = None) -> None:
    """json -> dual for every bot of the store (other states are left as they are)."""
    root = root.resolve()
    for bot in _bots(root, bot_id):
        ensure_bot(settings, bot)
        with session_scope(settings, bot_id=bot) as session:
            state = get_state(session, bot, component)
            new = ComponentState.DUAL if state is ComponentState.JSON else state
            set_state(session, bot, component, new, {"root": str(root)})


def migrating_roots(settings: Settings, component: Component) -> list[Path]:
    """Stores with at least one bot whose ``component`` is migrating (for beat)."""
    with session_scope(settings, role="admin") as session:
        rows = session.execute(
            text(
                "SELECT DISTINCT details->>'root' FROM migration_checkpoints "
                "WHERE file = '' AND component = :c AND state::text = ANY(:states) "
                "AND details ? 'root'"
            ),
            {"c": component.value, "states": [s.value for s in MIGRATING]},
        ).scalars()
        return [Path(r) for r in rows if r]


def known_roots(settings: Settings) -> list[Path]:
    """Every store a migration was started from (any state)."""
    with session_scope(settings, role="admin") as session:
        rows = session.execute(
            text(
                "SELECT DISTINCT details->>'root' FROM migration_checkpoints "
                "WHERE file = '' AND details ? 'root'"
            )
        ).scalars()
        return sorted(Path(r) for r in rows if r)


def run_until_idle(
    settings: Settings,
    root: Path,
    component: Component,
    *,
    batch_size: int,
    on_batch: Callable[[BatchResult], None] | None = None,
) -> BatchResult:
    """Run batches until nothing is left; returns the totals."""
    total = BatchResult(component)

    def add(result: BatchResult) -> None:
        for name in ("files", "read", "inserted", "updated", "deleted", "quarantined"):
            setattr(total, name, getattr(total, name) + getattr(result, name))
        total.errors.extend(result.errors)
        if on_batch is not None:
            on_batch(result)

    migrator = Migrator(settings, root)
    try:
        total.busy = not migrator.run_until_idle(component, batch_size=batch_size, on_batch=add)
    finally:
        migrator.close()
    return total


def status(settings: Settings, root: Path, component: Component) -> list[ComponentStatus]:
    root = root.resolve()
    report = []
    for bot in _bots(root, None):
        files = [f.relative_to(root) for f in source_files(root, component, bot)]
        with session_scope(settings, bot_id=bot) as session:
            item = ComponentStatus(
                bot, component, get_state(session, bot, component), files=len(files)
            )
            checkpoints = load_checkpoints(session, bot, component)
            for rel in files:
                cp = checkpoints.get(rel)
                if cp is not None and cp.complete and cp.fingerprint == _fp(root / rel):
                    item.files_loaded += 1
                if cp is not None:
                    item.records_read += cp.records
                    if cp.error:
                        item.errors.append(cp.error)
            item.migrated = session.execute(
                text(f"SELECT count(*) FROM {TARGETS[component].table} WHERE bot_id = :bot"),
                {"bot": bot},
            ).scalar_one()
            item.quarantined = quarantine_count(session, bot, component)
            verification = get_details(session, bot, component).get("verify")
            item.verified = None if verification is None else bool(verification["passed"])
        report.append(item)
    return report


def quarantine_count(session: Session, bot_id: int, component: Component) -> int:
    return int(
        session.execute(
            text(
                "SELECT count(*) FROM migration_quarantine WHERE bot_id = :bot AND component = :c"
            ),
            {"bot": bot_id, "c": component.value},
        ).scalar_one()
    )


def _fp(path: Path) -> str | None:
    try:
        return current_fingerprint(path)
    except FileNotFoundError:
        return None


def verify(
    settings: Settings, root: Path, component: Component, *, sample: int = 50
) -> list[Verification]:
    root = root.resolve()
    reports = []
    for bot in _bots(root, None):
        report = verify_component(settings, root, bot, component, sample=sample)
        with session_scope(settings, bot_id=bot) as session:
            state = get_state(session, bot, component)
            if state in MIGRATING:
                state = ComponentState.VERIFY if report.passed else ComponentState.DUAL
            set_state(session, bot, component, state, {"verify": report.as_dict()})
        reports.append(report)
    return reports


def cutover(settings: Settings, root: Path, component: Component) -> list[int]:
    """verify -> postgres for every bot, or CutoverRefused listing what is wrong."""
    root = root.resolve()
    reasons: list[str] = []
    bots = _bots(root, None)
    for bot in bots:
        with session_scope(settings, bot_id=bot) as session:
            state = get_state(session, bot, component)
            verification = get_details(session, bot, component).get("verify")
        name = f"bot {bot} {component.value}"
        if state is ComponentState.POSTGRES:
            continue
        if state is not ComponentState.VERIFY or not verification or not verification["passed"]:
            reasons.append(
                f"{name}: state is {state.value} and verification has not passed; "
                f"run `tgfleet migrate-json verify --component {component.value}`"
            )
            continue
        now = {
            f.relative_to(root): current_fingerprint(f.path)
            for f in source_files(root, component, bot)
        }
        if now != verification["fingerprints"]:
            changed = sorted(
                k
                for k in now.keys() | verification["fingerprints"].keys()
                if now.get(k) != verification["fingerprints"].get(k)
            )
            reasons.append(
                f"{name}: {len(changed)} file(s) changed since verification at "
                f"{verification['verified_at']} (e.g. {changed[0]}); let the batches "
                "catch up and verify again"
            )
    if reasons:
        raise CutoverRefused(reasons)
    for bot in bots:
        with session_scope(settings, bot_id=bot) as session:
            set_state(session, bot, component, ComponentState.POSTGRES)
    return bots


def rollback(
    settings: Settings, root: Path, component: Component, *, out: Path | None = None
) -> list[ExportResult]:
    """Export PostgreSQL's rows to the legacy layout and set the state back to json.

    By default the files are written into the store itself (the files they replace are
    moved to ``<root>/.rollback/<time>/``) and recorded as loaded, so a later migration
    starts from them without reloading. ``out`` writes a copy elsewhere instead.
    """
    root = root.resolve()
    out = (out or root).resolve()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    results = []
    for bot in _bots(root, None):
        if out == root:
            _back_up(root, bot, component, root / ".rollback" / stamp)
        result = export_component(settings, bot, component, out)
        with session_scope(settings, bot_id=bot) as session:
            if out == root:
                _record_exported(session, bot, component, root, result)
            set_state(session, bot, component, ComponentState.JSON)
        results.append(result)
    return results


def _record_exported(
    session: Session, bot: int, component: Component, root: Path, result: ExportResult
) -> None:
    reset_files(session, bot, component)
    save_checkpoints(
        session,
        bot,
        component,
        [
            (
                FileCheckpoint(
                    path.relative_to(root).as_posix(),
                    current_fingerprint(path),
                    count,
                    True,
                    None,
                    count,
                ),
                None,
            )
            for path, count in result.counts.items()
        ],
    )


def _back_up(root: Path, bot_id: int, component: Component, backup: Path) -> None:
    for source in list(source_files(root, component, bot_id)):
        dest = backup / source.relative_to(root)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(source.path, dest)


def quarantine_rows(
    settings: Settings, root: Path, component: Component | None = None, *, limit: int | None = None
) -> Iterator[dict[str, Any]]:
    """Quarantined records of every bot of the store, oldest first."""
    for bot in _bots(root.resolve(), None):
        sql = (
            "SELECT bot_id, component, file, position, reason, record, created_at "
            "FROM migration_quarantine WHERE bot_id = :bot "
            "AND (CAST(:c AS text) IS NULL OR component = :c) ORDER BY id"
        )
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with session_scope(settings, bot_id=bot) as session:
            for row in session.execute(
                text(sql), {"bot": bot, "c": component.value if component else None}
            ):
                data = dict(row._mapping)
                data["created_at"] = data["created_at"].isoformat()
                yield data
