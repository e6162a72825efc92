"""One first-time load batch, in two halves that can overlap in time.

``assemble`` reads and validates up to K records from a bot's files (no database);
``write_batch`` loads them in one transaction (COPY to staging, insert, quarantine,
checkpoints). The engine runs ``assemble`` for batch N+1 in a thread while batch N is
written, so parsing and PostgreSQL work use both cores; a crash still loses nothing,
since only ``write_batch`` commits and it commits data and checkpoints together.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, cast

from sqlalchemy import CursorResult, text
from sqlalchemy.orm import Session

from tgfleet.db.session import session_scope
from tgfleet.legacy.checkpoints import FileCheckpoint, save_checkpoints
from tgfleet.legacy.format import Component, SourceFile, source_files
from tgfleet.legacy.loading import (
    LoadBuffer,
    copy_stage,
    ensure_month_partitions,
    insert_quarantine,
)
from tgfleet.legacy.reader import RecordStream, SourceRecord
from tgfleet.legacy.targets import (
    ADD_TO_CONVERSATIONS,
    ANY_MESSAGE_BETWEEN,
    CHATS_WITH_MESSAGES,
    INSERT_MESSAGES,
    INSERT_PROBED_MESSAGES,
    INSERT_UNPROBED_MESSAGES,
    REFRESH_CONVERSATIONS,
    TARGETS,
    array_literal,
)
from tgfleet.platform.settings import Settings

log = logging.getLogger(__name__)

#: A batch's commit does not wait for its WAL to reach disk. Atomicity is unchanged: a
#: crash can lose only the last batches committed (at most ~3 x wal_writer_delay), and
#: their checkpoints with them, so the next run loads them again; any later commit that
#: does wait (verify, cutover, an application write) makes them durable first, since
#: WAL is flushed in order.
ASYNC_COMMIT = "SET LOCAL synchronous_commit = off"

#: A batch also ends once its rows make this much COPY text, so memory stays flat
#: whatever the record size (1 KB messages: ~8k rows a batch).
MAX_BATCH_CHARS = 8 * 1024 * 1024


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
    #: A conversation file loaded before and deleted since (``rescan`` is True too).
    gone: bool = False

    @property
    def start(self) -> int:
        return 0 if self.rescan or self.checkpoint is None else self.checkpoint.position


def current_fingerprint(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}:{stat.st_mtime_ns}"


def find_work(
    root: Path, bot_id: int, component: Component, checkpoints: dict[str, FileCheckpoint]
) -> Iterator[WorkFile]:
    """Files of one bot that need loading, in order (stat only; nothing is read); then
    the conversation files loaded before that are gone (the old bot deleted them)."""
    listed: set[str] = set()
    for source in source_files(root, component, bot_id):
        rel = source.relative_to(root)
        listed.add(rel)
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
    if component is not Component.CONVERSATIONS:
        return  # a missing users.json / profiles.json is never taken as "delete them all"
    for rel, cp in checkpoints.items():
        name = PurePosixPath(rel)
        if rel not in listed and name.suffix == ".json" and name.stem.isdigit():
            source = SourceFile(bot_id, component, root / rel, user_id=int(name.stem))
            yield WorkFile(source, rel, "", cp, rescan=True, gone=True)


Reader = tuple[str, RecordStream, Iterator[SourceRecord]]


class StreamCache:
    """Open readers kept between batches, so a big file is read once, not re-skipped."""

    def __init__(self) -> None:
        self._open: dict[Path, Reader] = {}

    def reader(self, work: WorkFile) -> tuple[RecordStream, Iterator[SourceRecord]]:
        cached = self._open.pop(work.source.path, None)
        if cached is not None:
            fp, stream, it = cached
            if fp == work.fingerprint and stream.position == work.start:
                return stream, it
        stream = RecordStream(work.source.path, skip=work.start)
        return stream, iter(stream)

    def keep(self, work: WorkFile, stream: RecordStream, it: Iterator[SourceRecord]) -> None:
        self._open[work.source.path] = (work.fingerprint, stream, it)

    def close(self) -> None:
        self._open.clear()


@dataclass
class PreparedBatch:
    bot_id: int
    component: Component
    buffer: LoadBuffer
    result: BatchResult
    saves: list[tuple[WorkFile, FileCheckpoint]] = field(default_factory=list)
    #: Where this bot's next batch starts (None: nothing more, or a re-scan comes next).
    next_work: WorkFile | None = None
    #: The valid rows as COPY text, formatted while the previous batch was written.
    payload: bytes = b""
    #: Conversations read from their first record in this batch.
    whole_chats: list[int] = field(default_factory=list)


def assemble(
    cache: StreamCache,
    bot_id: int,
    component: Component,
    first: WorkFile,
    rest: Iterator[WorkFile],
    batch_size: int,
) -> PreparedBatch:
    """Read and validate up to ``batch_size`` records of fresh files, starting at ``first``."""
    batch = PreparedBatch(
        bot_id, component, LoadBuffer(component, bot_id), BatchResult(component, bot_id)
    )
    budget = batch_size
    work: WorkFile | None = first
    while work is not None and not work.rescan:
        stream, it = cache.reader(work)
        batch.buffer.start_file(work.source, work.rel)
        if work.start == 0 and work.source.user_id is not None:
            batch.whole_chats.append(work.source.user_id)
        taken = batch.buffer.take(it, budget, MAX_BATCH_CHARS)
        budget = 0 if batch.buffer.size >= MAX_BATCH_CHARS else budget - taken
        done = stream.complete or stream.error is not None
        error = str(stream.error) if stream.error else None
        if error:
            batch.result.errors.append(error)
        checkpoint = FileCheckpoint(
            work.rel, work.fingerprint, stream.position, done, error, stream.position
        )
        batch.saves.append((work, checkpoint))
        batch.result.files += 1
        batch.result.read += taken
        if not done:
            cache.keep(work, stream, it)
            work = WorkFile(work.source, work.rel, work.fingerprint, checkpoint, rescan=False)
        else:
            work = next(rest, None)
        if budget <= 0:
            break
    batch.next_work = work if work is not None and not work.rescan else None
    batch.payload = batch.buffer.payload()
    return batch


def write_batch(
    settings: Settings, batch: PreparedBatch, months_known: set[Any], cid: str | None
) -> BatchResult:
    """Load a prepared batch and move its checkpoints, in one transaction."""
    bot_id, component, result = batch.bot_id, batch.component, batch.result
    target = TARGETS[component]
    if component is Component.CONVERSATIONS:
        ensure_month_partitions(settings, batch.buffer.months(), months_known)
    with session_scope(settings, bot_id=bot_id, correlation_id=cid) as session:
        session.execute(text(ASYNC_COMMIT))
        copy_stage(session, target, batch.payload)
        batch.payload = b""
        inserted = _insert(session, batch)
        result.inserted = inserted
        if inserted < len(batch.buffer.keys):
            rejected = session.execute(text(target.conflicts), {"bot": bot_id})
            batch.buffer.quarantine_conflicts({tuple(r) for r in rejected})
        if component is Component.CONVERSATIONS:
            _count_conversations(session, batch, exact=inserted == len(batch.buffer.keys))
        result.quarantined = insert_quarantine(session, bot_id, component, batch.buffer.quarantine)
        save_checkpoints(
            session,
            bot_id,
            component,
            [(checkpoint, work.checkpoint) for work, checkpoint in batch.saves],
        )
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


def _insert(session: Session, batch: PreparedBatch) -> int:
    """Insert the staged rows that are new; the number inserted.

    Messages of chats whose file starts in this batch and that have no message in
    PostgreSQL yet skip the per-row "does this id exist" probe (the reader already
    dropped duplicates within the file), which is most of a first load.
    """
    params: dict[str, Any] = {"bot": batch.bot_id}
    target = TARGETS[batch.component]
    whole = batch.whole_chats
    if batch.component is not Component.CONVERSATIONS or not whole:
        return _rowcount(session, target.insert_plain, params)
    busy: set[int] = set()
    if session.execute(
        text(ANY_MESSAGE_BETWEEN), {**params, "lo": min(whole), "hi": max(whole)}
    ).scalar():
        busy.update(
            session.execute(text(CHATS_WITH_MESSAGES), {**params, "chats": whole}).scalars()
        )
    fresh = set(whole) - busy
    probed = [chat for chat in batch.buffer.chats if chat not in fresh]
    if not probed:
        return _rowcount(session, INSERT_MESSAGES, params)
    params["probed"] = probed
    return _rowcount(session, INSERT_UNPROBED_MESSAGES, params) + _rowcount(
        session, INSERT_PROBED_MESSAGES, params
    )


def _rowcount(session: Session, sql: str, params: dict[str, Any]) -> int:
    return int(cast("CursorResult[Any]", session.execute(text(sql), params)).rowcount)


def _count_conversations(session: Session, batch: PreparedBatch, *, exact: bool) -> None:
    """Add the batch's messages to their conversations rows; recount the chats instead if
    some rows were duplicates (then the Python tallies overcount)."""
    chats = {chat: n for chat, n in batch.buffer.chats.items() if n[0] or n[1]}
    if not chats:
        return
    if not exact:
        session.execute(text(REFRESH_CONVERSATIONS), {"bot": batch.bot_id, "chats": list(chats)})
        return
    session.execute(
        text(ADD_TO_CONVERSATIONS),
        {
            "bot": batch.bot_id,
            "chats": array_literal(chats),
            "n_in": array_literal(n[0] for n in chats.values()),
            "n_out": array_literal(n[1] for n in chats.values()),
            "last": array_literal(n[2] for n in chats.values()),
        },
    )
