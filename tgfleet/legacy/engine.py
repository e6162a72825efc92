"""The migration engine: batches of one component, resumable at any point.

``Migrator.run_batch(component)`` does one batch for the first bot (in id order) whose
component is migrating (state ``dual`` or ``verify``); ``run_until_idle`` keeps going,
reading and validating the next batch in a thread while the current one is written.

* Files never loaded, or loaded part way, are read from their checkpoint in batches of
  up to ``batch_size`` records (spanning several small files of the same bot):
  ``tgfleet.legacy.batch``.
* Files whose fingerprint changed since their last complete scan (the old bot wrote
  them during ``dual``) are re-scanned whole in one transaction: changed records are
  updated, new ones inserted, records gone from the file deleted.

Inside the bot's RLS transaction, valid rows are COPY'd into a temporary staging table
and inserted/updated from there; invalid records go to ``migration_quarantine`` with
the file, position, record and reason; the checkpoints move in the same transaction.
A crash at any point leaves the last committed checkpoint, so nothing is skipped or
loaded twice. A session-level advisory lock keeps to one batch per component.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, text
from sqlalchemy.orm import Session

from tgfleet.db.session import get_engine, session_scope
from tgfleet.legacy.batch import (
    ASYNC_COMMIT,
    BatchResult,
    PreparedBatch,
    StreamCache,
    WorkFile,
    assemble,
    current_fingerprint,
    find_work,
    write_batch,
)
from tgfleet.legacy.checkpoints import (
    FileCheckpoint,
    delete_checkpoint,
    get_state,
    load_checkpoints,
    save_checkpoint,
)
from tgfleet.legacy.format import Component, ComponentState, bot_dirs
from tgfleet.legacy.loading import (
    LoadBuffer,
    copy_stage,
    ensure_bot,
    ensure_month_partitions,
    insert_quarantine,
)
from tgfleet.legacy.reader import RecordStream
from tgfleet.legacy.targets import REFRESH_CONVERSATIONS, TARGETS
from tgfleet.platform.metrics import metrics
from tgfleet.platform.settings import Settings

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "MIGRATING",
    "BatchResult",
    "Migrator",
    "component_lock",
    "current_fingerprint",
    "find_work",
]

log = logging.getLogger(__name__)

MIGRATING = (ComponentState.DUAL, ComponentState.VERIFY)
DEFAULT_BATCH_SIZE = 50_000
#: Records in the first batch of a ``run_until_idle`` pass (see ``Migrator._pass``).
FIRST_BATCH = 5_000


class Migrator:
    """Runs batches against one legacy store; keeps open readers between batches so a
    multi-GB file is read once, not re-skipped from its start every batch."""

    def __init__(self, settings: Settings, root: Path) -> None:
        self.settings = settings
        self.root = root.resolve()
        self._streams = StreamCache()
        self._bots_ready: set[int] = set()
        self._months: set[Any] = set()
        self._quiet: dict[Component, set[int]] = {}

    # -- public ------------------------------------------------------------------------
    def run_batch(
        self,
        component: Component,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        correlation_id: str | None = None,
    ) -> BatchResult:
        """One batch (or one whole-file re-scan); ``idle`` if nothing was left."""
        with component_lock(self.settings, component) as acquired, fewer_full_collections():
            if not acquired:
                return BatchResult(component, busy=True)
            try:
                found = self._next_work(component)
                if found is None:
                    return BatchResult(component, idle=True)
                bot_id, first, rest = found
                if first.rescan:
                    result = self._rescan(bot_id, component, first, correlation_id)
                else:
                    batch = assemble(self._streams, bot_id, component, first, rest, batch_size)
                    result = write_batch(self.settings, batch, self._months, correlation_id)
            except BaseException:
                self.close()  # readers may be ahead of the rolled-back checkpoint
                raise
        _count(result)
        return result

    def run_until_idle(
        self,
        component: Component,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        on_batch: Callable[[BatchResult], None] | None = None,
    ) -> bool:
        """Batches until nothing is left, each prepared (read, validated, formatted) in a
        thread while the one before it is written; False if another process holds the
        component's lock."""
        report = on_batch or (lambda _result: None)
        with component_lock(self.settings, component) as acquired, fewer_full_collections():
            if not acquired:
                return False
            try:
                with ThreadPoolExecutor(1, thread_name_prefix="legacy-read") as reader:
                    while self._pass(reader, component, batch_size, report):
                        pass
            except BaseException:
                self.close()
                raise
        return True

    def close(self) -> None:
        self._streams.close()

    # -- internals -----------------------------------------------------------------------
    def _pass(
        self,
        reader: ThreadPoolExecutor,
        component: Component,
        batch_size: int,
        report: Callable[[BatchResult], None],
    ) -> bool:
        """One pipelined pass over every bot with work; False if there was none.

        The reader thread walks the bots, assembles batches one step ahead of the writer
        and makes the monthly partitions they need. The pass's first batch is small
        (``FIRST_BATCH``) and the writer makes its partitions: a store spanning years
        needs dozens (~10 ms of DDL each), which then start after a few milliseconds
        of reading, while the reader assembles the next batch. A bot is visited once per pass (its
        checkpoints are read before its batches are written), so nothing is assembled
        twice; what a pass leaves (files that changed meanwhile, re-scans found after
        fresh files) the next pass finds.
        """
        visited: set[int] = set()

        def produce() -> Iterator[PreparedBatch | tuple[int, WorkFile]]:
            opening = True  # the pass's first batch
            while (found := self._next_work(component, skip=visited)) is not None:
                bot_id, first, rest = found
                visited.add(bot_id)
                if first.rescan:
                    yield bot_id, first
                    continue
                work: WorkFile | None = first
                while work is not None:
                    size = min(batch_size, FIRST_BATCH) if opening else batch_size
                    batch = assemble(self._streams, bot_id, component, work, rest, size)
                    if component is Component.CONVERSATIONS and not opening:
                        # ahead of the writer, which would otherwise wait for the DDL
                        ensure_month_partitions(self.settings, batch.buffer.months(), self._months)
                    yield batch
                    work, opening = batch.next_work, False

        items = produce()
        pending: Future[Any] = reader.submit(next, items, None)
        progressed = False
        while (item := pending.result()) is not None:
            pending = reader.submit(next, items, None)
            progressed = True
            try:
                if isinstance(item, PreparedBatch):
                    report(write_batch(self.settings, item, self._months, None))
                    # Freeing a batch (tens of thousands of parsed records) takes the
                    # GIL for ~15 ms: let the reader do it, between its reads.
                    reader.submit(_release, item)
                else:
                    report(self._rescan(item[0], component, item[1], None))
            except BaseException:
                pending.cancel()
                pending.exception()  # let a running read finish before readers close
                raise
        return progressed

    def _next_work(
        self, component: Component, skip: set[int] | None = None
    ) -> tuple[int, WorkFile, Iterator[WorkFile]] | None:
        # Bots found with nothing to do are skipped until a pass finds no work anywhere;
        # then a second look covers the bots the first one skipped, before reporting idle.
        quiet = self._quiet.setdefault(component, set())
        looked: set[int] = set()
        skipped_quiet = False
        for full_pass in (False, True):
            if full_pass:
                if not skipped_quiet:
                    break
                quiet.clear()
            for bot_id, _folder in bot_dirs(self.root):
                if (skip and bot_id in skip) or bot_id in looked:
                    continue
                if bot_id in quiet:
                    skipped_quiet = True
                    continue
                looked.add(bot_id)
                with session_scope(self.settings, bot_id=bot_id) as session:
                    if get_state(session, bot_id, component) not in MIGRATING:
                        quiet.add(bot_id)
                        continue
                    checkpoints = load_checkpoints(session, bot_id, component)
                work = find_work(self.root, bot_id, component, checkpoints)
                first = next(work, None)
                if first is None:
                    quiet.add(bot_id)
                    continue
                if bot_id not in self._bots_ready:
                    ensure_bot(self.settings, bot_id)
                    self._bots_ready.add(bot_id)
                return bot_id, first, work
        return None

    def _rescan(
        self, bot_id: int, component: Component, work: WorkFile, cid: str | None
    ) -> BatchResult:
        """Re-read a changed file whole and make PostgreSQL match it, in one transaction."""
        if work.gone:
            return self._forget_file(bot_id, component, work, cid)
        result = BatchResult(component, bot_id, rescan=True, files=1)
        target = TARGETS[component]
        stream = RecordStream(work.source.path)
        buffer = LoadBuffer(component, bot_id, keep_raw=False)
        buffer.start_file(work.source, work.rel)
        with session_scope(self.settings, bot_id=bot_id, correlation_id=cid) as session:
            session.execute(text(ASYNC_COMMIT))
            copy_stage(session, target.with_hash(), buffer.streamed_lines(stream))
            result.read = stream.position
            if component is Component.CONVERSATIONS:
                ensure_month_partitions(self.settings, buffer.months(), self._months)
            session.execute(text("ANALYZE stage"))
            result.updated = _rowcount(session, target.update_if_hash_differs, {"bot": bot_id})
            result.inserted = len(session.execute(text(target.insert_new), {"bot": bot_id}).all())
            complete = stream.error is None
            if complete:
                params = {"bot": bot_id, "chat": work.source.user_id}
                result.deleted = _rowcount(session, target.delete_missing, params)
            else:  # caught mid-write: keep what lies beyond the damage for next time
                result.errors.append(str(stream.error))
            _forget_quarantine(
                session, bot_id, component, work.rel, None if complete else stream.position
            )
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

    def _forget_file(
        self, bot_id: int, component: Component, work: WorkFile, cid: str | None
    ) -> BatchResult:
        """A conversation file deleted during ``dual``: delete the chat's messages, its
        conversations row, the file's quarantine entries and checkpoint, in one
        transaction (the file is the chat's source of truth until cutover)."""
        result = BatchResult(component, bot_id, rescan=True, files=1)
        assert work.checkpoint is not None and work.source.user_id is not None
        if work.source.path.exists():  # written again meanwhile: the next pass re-scans it
            return result
        params = {"bot": bot_id, "chat": work.source.user_id}
        with session_scope(self.settings, bot_id=bot_id, correlation_id=cid) as session:
            result.deleted = _rowcount(
                session, "DELETE FROM messages WHERE bot_id = :bot AND chat_id = :chat", params
            )
            session.execute(
                text("DELETE FROM conversations WHERE bot_id = :bot AND chat_id = :chat"), params
            )
            _forget_quarantine(session, bot_id, component, work.rel, None)
            delete_checkpoint(session, bot_id, component, work.checkpoint)
        log.info("migration file gone bot=%s file=%s deleted=%d", bot_id, work.rel, result.deleted)
        return result


def _count(result: BatchResult) -> None:
    """``tgfleet_migration_records`` of a committed batch, by what became of the records."""
    records = metrics().migration_records
    for outcome in ("inserted", "updated", "deleted", "quarantined"):
        count = getattr(result, outcome)
        if count:
            records.labels(result.component.value, outcome).inc(count)


def _release(_batch: PreparedBatch) -> None:
    """Drops the last reference to a written batch (in the reader thread)."""


def _rowcount(session: Session, sql: str, params: dict[str, Any]) -> int:
    result = session.execute(text(sql), params)
    return int(cast("CursorResult[Any]", result).rowcount)


def _forget_quarantine(
    session: Session, bot_id: int, component: Component, rel: str, before: int | None
) -> None:
    """Drop a re-scanned file's quarantine entries (those before ``before`` if given):
    the re-scan inserts the current ones."""
    session.execute(
        text(
            "DELETE FROM migration_quarantine WHERE bot_id = :bot AND component = :c "
            "AND file = :file AND (CAST(:before AS bigint) IS NULL OR position < :before)"
        ),
        {"bot": bot_id, "c": component.value, "file": rel, "before": before},
    )


_gc_lock = threading.Lock()
_gc_users = 0
_gc_saved: tuple[int, int, int] = (0, 0, 0)


@contextmanager
def fewer_full_collections() -> Iterator[None]:
    """Collect the older GC generations less often while batches run.

    A batch allocates millions of short-lived objects without reference cycles (parsed
    records, rows, COPY lines), so at the default thresholds (700, 10, 10) the collector
    keeps walking every object of the process (SQLAlchemy's, the batch's) in older
    generations: a third of the reader's CPU time. Young collections go on as usual;
    the previous thresholds come back when the last batch in the process ends.
    """
    global _gc_users, _gc_saved
    with _gc_lock:
        if _gc_users == 0:
            _gc_saved = gc.get_threshold()
            young, middle, old = _gc_saved
            gc.set_threshold(young, max(middle, 50), max(old, 100))
        _gc_users += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0:
                gc.set_threshold(*_gc_saved)


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


#: Open readers survive between batches in one worker process, one Migrator per store.
_migrators: dict[tuple[str, str], Migrator] = {}


def migrator_for(settings: Settings, root: Path) -> Migrator:
    """This process's Migrator of the store at ``root`` for ``settings``' database."""
    key = (settings.database_url, str(root))
    migrator = _migrators.get(key)
    if migrator is None:
        migrator = _migrators[key] = Migrator(settings, root)
    return migrator
