"""The pieces a batch is made of: validate into a buffer, COPY to staging, quarantine.

``LoadBuffer`` validates records as they are read, keeps valid rows (and, for
first-time loads, the raw records, so a row PostgreSQL already has can be quarantined
as a duplicate with its original text) and collects quarantine entries.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from tgfleet.db.partitions import create_month_partition, list_month_partitions
from tgfleet.db.session import owner_scope, session_scope
from tgfleet.legacy.checksum import row_hash
from tgfleet.legacy.format import MAX_TEXT, Component, SourceFile
from tgfleet.legacy.reader import RecordStream, SourceRecord
from tgfleet.legacy.targets import Target, copy_line, copy_text
from tgfleet.legacy.validate import (
    EARLIEST,
    MAX_BIGINT,
    InvalidRecord,
    Validator,
    latest_allowed,
    validator_for,
)
from tgfleet.platform.settings import Settings

log = logging.getLogger(__name__)

COPY_CHUNK = 1 << 20

_ONE_DAY = timedelta(days=1)
#: Characters that a message text must not have to take the inline path: those COPY
#: text format escapes, and those the validator rejects (NUL, lone surrogates).
_SPECIAL_TEXT = re.compile("[\x00\t\n\r\\\\\ud800-\udfff]")


def record_text(raw: Any) -> str:
    """The record as JSON, for the quarantine table."""
    try:
        dumped = json.dumps(raw, ensure_ascii=False, default=str)
        dumped.encode("utf-8")
        return dumped
    except UnicodeEncodeError:
        return json.dumps(raw, default=str)


class LoadBuffer:
    """Valid rows and quarantine entries of one batch of one bot."""

    def __init__(self, component: Component, bot_id: int, *, keep_raw: bool = True) -> None:
        self.component, self.bot_id, self.keep_raw = component, bot_id, keep_raw
        #: COPY text lines of the valid rows, their keys, and (first loads) the raw records.
        self.lines: list[str] = []
        self.keys: list[tuple[int, ...]] = []
        self.raws: list[tuple[str, int, Any]] = []
        #: Characters of COPY text held (batches are bounded by this too).
        self.size = 0
        self._line = copy_line(component)
        self.quarantine: list[dict[str, Any]] = []
        self._months: set[tuple[int, int]] = set()
        self._seen: dict[int, int] = {}
        self._key_index = 1 if component is Component.CONVERSATIONS else 0
        self._validate: Validator | None = None
        self._user_id: int | None = None
        self._latest = EARLIEST
        self._rel = ""
        #: Conversations: per chat [messages in, messages out, last date] of valid rows.
        self.chats: dict[int, list[Any]] = {}
        self._chat: list[Any] = [0, 0, None]

    def start_file(self, source: SourceFile, rel: str) -> None:
        self._validate = validator_for(self.component, bot_id=source.bot_id, user_id=source.user_id)
        self._rel = rel
        self._seen = {}
        self._user_id = source.user_id
        self._latest = latest_allowed()
        if source.user_id is not None:
            self._chat = self.chats.setdefault(source.user_id, [0, 0, None])

    def check(self, position: int, key: str | None, value: Any) -> tuple[Any, ...] | None:
        """The valid row for the record at ``position``, or None after quarantining it."""
        assert self._validate is not None, "start_file() first"
        try:
            row = self._validate(value, key)
        except InvalidRecord as exc:
            self._reject(position, value, exc.reason)
            return None
        ident = row[self._key_index]  # the id; the user is fixed per conversation file
        first = self._seen.get(ident)
        if first is not None:
            self._reject(
                position,
                value,
                f"duplicate id {ident}: the record at position {first} of "
                "this file has the same id and was kept",
            )
            return None
        self._seen[ident] = position
        if self.component is Component.CONVERSATIONS:
            when = row[4]
            self._months.add((when.year, when.month))
        return row

    def take(self, records: Iterator[SourceRecord], limit: int, max_chars: int) -> int:
        """Add records until ``limit`` were read or the COPY text reaches ``max_chars``;
        returns how many were read. This is the hot loop, hence the local names."""
        if self.component is Component.CONVERSATIONS:
            return self._take_messages(records, limit, max_chars)
        check, line_of, lines, keys, raws = self.check, self._line, self.lines, self.keys, self.raws
        keep_raw, rel = self.keep_raw, self._rel
        size, taken = self.size, 0
        for position, key, value in records:
            taken += 1
            row = check(position, key, value)
            if row is not None:
                line = line_of(row, value)
                lines.append(line)
                size += len(line)
                keys.append((row[0],))
                if keep_raw:
                    raws.append((rel, position, value))
            if taken >= limit or size >= max_chars:
                break
        self.size = size
        return taken

    def _take_messages(self, records: Iterator[SourceRecord], limit: int, max_chars: int) -> int:
        """``take`` for a conversation file. A clean record (an int id, the user or the bot
        as sender, a plain text, a "YYYY-MM-DDTHH:MM:SS+00:00" date: nearly all of them) is
        checked and formatted inline, with the result ``validate_message`` and
        ``copy_line`` would give; any other record goes through ``check``."""
        user_id = self._user_id
        assert user_id is not None, "start_file() of a conversation file first"
        check, line_of, lines, keys, raws = self.check, self._line, self.lines, self.keys, self.raws
        chat, bot_id, keep_raw, rel = self._chat, self.bot_id, self.keep_raw, self._rel
        seen, months, special = self._seen, self._months, _SPECIAL_TEXT.search
        parse, earliest, latest = datetime.fromisoformat, EARLIEST, self._latest
        senders, head, null = (user_id, bot_id), f"{user_id}\t", "\\N"
        size, taken = self.size, 0
        for position, key, raw in records:
            taken += 1
            if type(raw) is dict:
                mid, sender, text = raw.get("id"), raw.get("from"), raw.get("text")
                date = raw.get("date")
                if (
                    type(mid) is int
                    and 0 < mid <= MAX_BIGINT
                    and (key is None or key == str(mid))
                    and mid not in seen
                    and type(sender) is int
                    and sender in senders
                    and (text is None or (type(text) is str and len(text) <= MAX_TEXT))
                    and (text is None or special(text) is None)
                    and type(date) is str
                    and len(date) == 25
                    and date[10] == "T"
                    and date.endswith("+00:00")
                ):
                    try:
                        when = parse(date)
                    except ValueError:
                        when = earliest - _ONE_DAY  # invalid: let check() say why
                    if earliest <= when <= latest:
                        seen[mid] = position
                        months.add((when.year, when.month))
                        line = f"{head}{mid}\t{sender}\t{null if text is None else text}\t{date}\n"
                        lines.append(line)
                        size += len(line)
                        keys.append((user_id, mid))
                        chat[sender == bot_id] += 1  # [in, out]
                        if chat[2] is None or when > chat[2]:
                            chat[2] = when
                        if keep_raw:
                            raws.append((rel, position, raw))
                        if taken >= limit or size >= max_chars:
                            break
                        continue
            row = check(position, key, raw)
            if row is not None:
                line = line_of(row, raw)
                lines.append(line)
                size += len(line)
                keys.append((row[0], row[1]))
                chat[row[2] == bot_id] += 1
                if chat[2] is None or row[4] > chat[2]:
                    chat[2] = row[4]
                if keep_raw:
                    raws.append((rel, position, raw))
            if taken >= limit or size >= max_chars:
                break
        self.size = size
        return taken

    def payload(self) -> bytes:
        """The valid rows as one COPY text input (the lines are released)."""
        data = "".join(self.lines).encode("utf-8")
        self.lines = []
        return data

    def streamed_lines(self, stream: RecordStream) -> Iterator[str]:
        """Validate and emit COPY lines, each ending with the record's hash, straight from
        a reader (whole-file re-scans)."""
        for record in stream:
            row = self.check(*record)
            if row is not None:
                yield "\t".join([copy_text(v) for v in (*row, row_hash(row))]) + "\n"

    def months(self) -> set[tuple[int, int]]:
        return self._months

    def quarantine_conflicts(self, conflicts: set[tuple[Any, ...]]) -> None:
        """Rows PostgreSQL already had (same id earlier in the file, in an earlier batch)."""
        if not conflicts:
            return
        for key, (rel, position, raw) in zip(self.keys, self.raws, strict=True):
            if key in conflicts:
                self.quarantine.append(
                    {
                        "file": rel,
                        "position": position,
                        "record": record_text(raw),
                        "reason": f"duplicate id {_key_text(key)}: already loaded from an earlier "
                        "position of this file (or already in PostgreSQL); kept that one",
                    }
                )

    def _reject(self, position: int, raw: Any, reason: str) -> None:
        self.quarantine.append(
            {"file": self._rel, "position": position, "record": record_text(raw), "reason": reason}
        )


def _key_text(key: tuple[int, ...]) -> str:
    return str(key[-1])


class _LineReader:
    """A file-like view of an iterator of lines, for ``cursor.copy_expert``."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines = iter(lines)
        self._rest = ""

    def read(self, size: int = -1) -> str:
        parts = [self._rest]
        have = len(self._rest)
        for line in self._lines:
            parts.append(line)
            have += len(line)
            if 0 <= size <= have:
                break
        data = "".join(parts)
        if size < 0:
            self._rest = ""
            return data
        self._rest = data[size:]
        return data[:size]

    def readline(self) -> str:  # pragma: no cover - psycopg2 uses read()
        return self.read(COPY_CHUNK)


def copy_stage(session: Session, target: Target, lines: Iterable[str] | bytes) -> None:
    """Create this transaction's staging table and COPY ``lines`` (or a prepared payload
    of COPY text, which sends without holding the GIL for formatting) into it."""
    cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    source = io.BytesIO(lines) if isinstance(lines, bytes) else _LineReader(lines)
    try:
        cursor.execute(target.stage_ddl())
        cursor.copy_expert("COPY stage FROM STDIN", source, size=COPY_CHUNK)
    finally:
        cursor.close()


def insert_quarantine(
    session: Session, bot_id: int, component: Component, entries: list[dict[str, Any]]
) -> int:
    if not entries:
        return 0
    session.execute(
        text(
            "INSERT INTO migration_quarantine (bot_id, component, file, position, record, reason)"
            " VALUES (:bot, :component, :file, :position, :record, :reason)"
        ),
        [{"bot": bot_id, "component": component.value, **entry} for entry in entries],
    )
    return len(entries)


def ensure_bot(settings: Settings, bot_id: int) -> None:
    """The ``bots`` row every migrated row refers to (created as the admin role)."""
    with session_scope(settings, bot_id=bot_id, role="admin") as session:
        session.execute(
            text("INSERT INTO bots (id, name) VALUES (:id, :name) ON CONFLICT (id) DO NOTHING"),
            {"id": bot_id, "name": f"legacy bot {bot_id}"},
        )


_PARTITION_LOCK = "tgfleet.partitions"  # the key tgfleet.db.partitions serialises DDL with


def ensure_month_partitions(
    settings: Settings, months: set[tuple[int, int]], known: set[Any]
) -> None:
    """Monthly ``messages`` partitions for historical legacy dates, made ahead of the
    insert (as the schema owner) so old messages do not pile up in the DEFAULT partition.
    ``known`` caches the months that have one."""
    missing = months - known
    if not missing:
        return
    try:
        with owner_scope(settings) as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": _PARTITION_LOCK})
            known.update(
                (p.start.year, p.start.month) for p in list_month_partitions(conn, "messages")
            )
            for year, month in sorted(missing - known):
                create_month_partition(conn, "messages", date(year, month, 1))
    except Exception as exc:
        log.warning(
            "could not create messages partitions for %s (%s); rows go to the DEFAULT "
            "partition until `tgfleet db partitions` makes them",
            ", ".join(f"{y}-{m:02d}" for y, m in sorted(missing - known)),
            exc,
        )
    known.update(missing)
