"""Rollback's half: write a component's PostgreSQL rows back in the legacy layout.

The files are what docs/legacy-json.md describes (JSON arrays, UTC ISO dates), so the
old bot can resume from them, and re-importing them gives the same checksums. Rows are
streamed with a server-side cursor; files are written to a temporary name and renamed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path
from typing import IO, Any

from sqlalchemy import text

from tgfleet.db.session import session_scope
from tgfleet.legacy.format import CONVERSATIONS_DIR, Component, component_path
from tgfleet.legacy.targets import TARGETS
from tgfleet.legacy.validate import COLUMNS
from tgfleet.platform.settings import Settings

_ORDER = {
    Component.USERS: "t.user_id",
    Component.PROFILES: "t.user_id",
    Component.CONVERSATIONS: "t.chat_id, t.tg_message_id",
}


@dataclass
class ExportResult:
    bot_id: int
    component: Component
    rows: int = 0
    files: list[Path] = field(default_factory=list)
    #: Records written per file.
    counts: dict[Path, int] = field(default_factory=dict)


def _value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return value


def _record(component: Component, row: tuple[Any, ...]) -> dict[str, Any]:
    names = COLUMNS[component]
    if component is Component.CONVERSATIONS:
        names, row = names[1:], row[1:]  # the user is the file name
    return {name: _value(v) for name, v in zip(names, row, strict=True)}


class _ArrayFile:
    def __init__(self, fh: IO[str]) -> None:
        self.fh, self.count = fh, 0
        fh.write("[\n")

    def add(self, record: dict[str, Any]) -> None:
        if self.count:
            self.fh.write(",\n")
        self.fh.write(json.dumps(record, ensure_ascii=False))
        self.count += 1

    def close(self) -> None:
        self.fh.write("\n]\n")


@contextmanager
def _atomic(path: Path) -> Iterator[_ArrayFile]:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        writer = _ArrayFile(fh)
        yield writer
        writer.close()
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def export_component(
    settings: Settings, bot_id: int, component: Component, out_root: Path
) -> ExportResult:
    """Write one bot's component under ``out_root`` in the legacy layout."""
    result = ExportResult(bot_id, component)
    target = TARGETS[component]
    sql = text(f"{target.select} ORDER BY {_ORDER[component]}").execution_options(
        stream_results=True, yield_per=5_000
    )
    with session_scope(settings, bot_id=bot_id) as session:
        rows = session.execute(sql, {"bot": bot_id})
        if component is not Component.CONVERSATIONS:
            path = component_path(out_root, bot_id, component)
            with _atomic(path) as writer:
                for row in rows:
                    writer.add(_record(component, tuple(row)))
            result.rows = writer.count
            result.files.append(path)
            result.counts[path] = writer.count
            return result
        folder = out_root / str(bot_id) / CONVERSATIONS_DIR
        for chat, chat_rows in groupby(rows, key=lambda r: r[0]):
            path = folder / f"{chat}.json"
            with _atomic(path) as writer:
                for row in chat_rows:
                    writer.add(_record(component, tuple(row)))
            result.rows += writer.count
            result.files.append(path)
            result.counts[path] = writer.count
    return result
