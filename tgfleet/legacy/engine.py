"""The migration engine: one batch of one component at a time, resumable at any point.

``Migrator.run_batch(component)`` finds the next work for the first bot (in id order)
whose component is migrating (state ``dual`` or ``verify``):

* files never loaded, or loaded part way, are read from their checkpoint in batches of
  up to ``batch_size`` records (spanning several small files of the same bot);
* files whose fingerprint changed since their last complete scan (the old bot wrote
  them during ``dual``) are re-scanned whole in one transaction: changed records are
  updated, new ones inserted, records gone from the file deleted.

Inside the bot's RLS transaction, valid rows are COPY'd into a temporary staging table
and inserted/updated from there; invalid records go to ``migration_quarantine`` with
the file, position, record and reason; the checkpoints move in the same transaction.
A crash at any point leaves the last committed checkpoint, so nothing is skipped or
loaded twice. A session-level advisory lock keeps to one batch per component.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, text
from sqlalchemy.orm import Session

from tgfleet.db.session import get_engine, session_scope
from tgfleet.legacy.checkpoints import (
    FileCheckpoint,
    get_state,
    load_checkpoints,
    save_checkpoint,
)
from tgfleet.legacy.format import Component, ComponentState, SourceFile, bot_dirs, source_files
from tgfleet.legacy.loading import (
    LoadBuffer,
    copy_stage,
    ensure_bot,
    ensure_month_partitions,
    insert_quarantine,
)
from tgfleet.legacy.reader import RecordStream, SourceRecord
from tgfleet.legacy.targets import REFRESH_CONVERSATIONS, TARGETS
from tgfleet.platform.settings import Settings

log = logging.getLogger(__name__)

MIGRATING = (ComponentState.DUAL, ComponentState.VERIFY)
DEFAULT_BATCH_SIZE = 20_000


@dataclass
class BatchResult:
    """What one batch did; ``idle`` means nothing was left to do, ``busy`` that the lock
    was held by another batch of the same component."""

    component: Component
    bot_id: int | None = None
    rescan: bool = False
    files: int = 0
    read: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    quarantined: int = 0
    errors: list[str] = field(default_factory=list)
    idle: bool = False
    busy: bool = False

    def as_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["component"] = self.component.value
        return data


@dataclass
class WorkFile:
    source: SourceFile
    rel: str
    fingerprint: str
    checkpoint: FileCheckpoint | None
    rescan: bool

    @property
    def start(self) -> int:
        return 0 if self.rescan or self.checkpoint is None else self.checkpoint.position


def current_fingerprint(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def find_work(
    root: Path, bot_id: int, component: Component, checkpoints: dict[str, FileCheckpoint]
) -> Iterator[WorkFile]:
    """Files of one bot that need loading, in order (stat only; nothing is read)."""
    for source in source_files(root, component, bot_id):
        rel = source.relative_to(root)
        try:
            fp = current_fingerprint(source.path)
        except FileNotFoundError:
            continue
        cp = checkpoints.get(rel)
        if cp is None:
            yield WorkFile(source, rel, fp, None, rescan=False)
        elif cp.fingerprint != fp:
            yield WorkFile(source, rel, fp, cp, rescan=True)
        elif not cp.complete:
            yield WorkFile(source, rel, fp, cp, rescan=False)


class Migrator:
    """Runs batches against one legacy store; keeps open readers between batches so a
    multi-GB file is read once, not re-skipped from its start every batch."""

    def __init__(self, settings: Settings, root: Path) -> None:
        self.settings = settings
        self.root = root.resolve()
        self._streams: dict[Path, tuple[str, RecordStream, Iterator[SourceRecord]]] = {}
        self._bots_ready: set[int] = set()
        self._months: set[Any] = set()

    # -- public ------------------------------------------------------------------------
    def run_batch(
        self,
        component: Component,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        correlation_id: str | None = None,
    ) -> BatchResult:
        with component_lock(self.settings, component) as acquired:
            if not acquired:
                return BatchResult(component, busy=True)
            try:
                return self._run(component, batch_size, correlation_id)
            except BaseException:
                self.close()  # readers may be ahead of the rolled-back checkpoint
                raise

    def close(self) -> None:
        for _fp, stream, it in self._streams.values():
            if hasattr(it, "close"):
                it.close()
            del stream
        self._streams.clear()

    # -- internals -----------------------------------------------------------------------
    def _run(self, component: Component, batch_size: int, cid: str | None) -> BatchResult:
        for bot_id, _folder in bot_dirs(self.root):
            with session_scope(self.settings, bot_id=bot_id) as session:
                if get_state(session, bot_id, component) not in MIGRATING:
                    continue
                checkpoints = load_checkpoints(session, bot_id, component)
            work = find_work(self.root, bot_id, component, checkpoints)
            first = next(work, None)
            if first is None:
                continue
            if bot_id not in self._bots_ready:
                ensure_bot(self.settings, bot_id)
                self._bots_ready.add(bot_id)
            if first.rescan:
                return self._rescan(bot_id, component, first, cid)
            return self._fresh(bot_id, component, first, work, batch_size, cid)
        return BatchResult(component, idle=True)

    def _reader(self, work: WorkFile) -> tuple[RecordStream, Iterator[SourceRecord]]:
        cached = self._streams.pop(work.source.path, None)
        if cached is not None:
            fp, stream, it = cached
            if fp == work.fingerprint and stream.position == work.start:
                return stream, it
        stream = RecordStream(work.source.path, skip=work.start)
        return stream, iter(stream)

    def _fresh(
        self,
        bot_id: int,
        component: Component,
        first: WorkFile,
        rest: Iterator[WorkFile],
        batch_size: int,
        cid: str | None,
    ) -> BatchResult:
        result = BatchResult(component, bot_id)
        buffer = LoadBuffer(component, bot_id)
        saves: list[tuple[WorkFile, FileCheckpoint]] = []
        completed_chats: list[int] = []
        kept: dict[Path, tuple[str, RecordStream, Iterator[SourceRecord]]] = {}
        budget = batch_size
        work: WorkFile | None = first
        while work is not None and budget > 0 and not work.rescan:
            stream, it = self._reader(work)
            buffer.start_file(work.source, work.rel)
            taken = 0
            for record in islice(it, budget):
                buffer.add(record)
                taken += 1
            budget -= taken
            done = stream.complete or stream.error is not None
            if not done:
                kept[work.source.path] = (work.fingerprint, stream, it)
            error = str(stream.error) if stream.error else None
            if error:
                result.errors.append(error)
            saves.append(
                (
                    work,
                    FileCheckpoint(
                        work.rel, work.fingerprint, stream.position, done, error, stream.position
                    ),
                )
            )
            if done and work.source.user_id is not None:
                completed_chats.append(work.source.user_id)
            result.files += 1
            result.read += taken
            work = next(rest, None) if budget > 0 else None

        target = TARGETS[component]
        if component is Component.CONVERSATIONS:
            ensure_month_partitions(self.settings, buffer.months(), self._months)
        with session_scope(self.settings, bot_id=bot_id, correlation_id=cid) as session:
            copy_stage(session, target, buffer.lines())
            inserted = {tuple(r) for r in session.execute(text(target.insert_new), {"bot": bot_id})}
            buffer.quarantine_conflicts(inserted)
            result.inserted = len(inserted)
            result.quarantined = insert_quarantine(session, bot_id, component, buffer.quarantine)
            for done_work, checkpoint in saves:
                save_checkpoint(session, bot_id, component, checkpoint, done_work.checkpoint)
            if completed_chats:
                session.execute(
                    text(REFRESH_CONVERSATIONS), {"bot": bot_id, "chats": completed_chats}
                )
        self._streams.update(kept)
        log.info(
            "migration batch bot=%s component=%s files=%d read=%d inserted=%d quarantined=%d",
            bot_id,
            component.value,
            result.files,
            result.read,
            result.inserted,
            result.quarantined,
        )
        return result

    def _rescan(
        self, bot_id: int, component: Component, work: WorkFile, cid: str | None
    ) -> BatchResult:
        """Re-read a changed file whole and make PostgreSQL match it, in one transaction."""
        result = BatchResult(component, bot_id, rescan=True, files=1)
        target = TARGETS[component]
        stream = RecordStream(work.source.path)
        buffer = LoadBuffer(component, bot_id, keep_raw=False)
        buffer.start_file(work.source, work.rel)
        with session_scope(self.settings, bot_id=bot_id, correlation_id=cid) as session:
            copy_stage(session, target, buffer.streamed_lines(stream))
            result.read = stream.position
            if component is Component.CONVERSATIONS:
                ensure_month_partitions(self.settings, buffer.months(), self._months)
            session.execute(text("ANALYZE stage"))
            result.updated = _rowcount(session, target.update_changed, {"bot": bot_id})
            result.inserted = len(session.execute(text(target.insert_new), {"bot": bot_id}).all())
            complete = stream.error is None
            if complete:
                params = {"bot": bot_id, "chat": work.source.user_id}
                result.deleted = _rowcount(session, target.delete_missing, params)
                _forget_quarantine(session, bot_id, component, work.rel)
            else:
                result.errors.append(str(stream.error))
            result.quarantined = insert_quarantine(session, bot_id, component, buffer.quarantine)
            checkpoint = FileCheckpoint(
                work.rel,
                work.fingerprint,
                stream.position,
                True,
                None if complete else str(stream.error),
                stream.position,
            )
            save_checkpoint(session, bot_id, component, checkpoint, work.checkpoint)
            if work.source.user_id is not None:
                session.execute(
                    text(REFRESH_CONVERSATIONS), {"bot": bot_id, "chats": [work.source.user_id]}
                )
        log.info(
            "migration rescan bot=%s file=%s inserted=%d updated=%d deleted=%d",
            bot_id,
            work.rel,
            result.inserted,
            result.updated,
            result.deleted,
        )
        return result


def _rowcount(session: Session, sql: str, params: dict[str, Any]) -> int:
    result = session.execute(text(sql), params)
    return int(cast("CursorResult[Any]", result).rowcount)


def _forget_quarantine(session: Session, bot_id: int, component: Component, rel: str) -> None:
    session.execute(
        text(
            "DELETE FROM migration_quarantine WHERE bot_id = :bot AND component = :c "
            "AND file = :file"
        ),
        {"bot": bot_id, "c": component.value, "file": rel},
    )


@contextmanager
def component_lock(settings: Settings, component: Component) -> Iterator[bool]:
    """A session-level advisory lock per component, held on its own connection (so a
    killed process releases it with its connection)."""
    engine = get_engine(settings)
    with engine.connect() as conn:
        key = f"tgfleet.migration.{component.value}"
        got = bool(
            conn.execute(text("SELECT pg_try_advisory_lock(hashtext(:k))"), {"k": key}).scalar()
        )
        conn.commit()
        try:
            yield got
        finally:
            if got:
                conn.execute(text("SELECT pg_advisory_unlock(hashtext(:k))"), {"k": key})
                conn.commit()
