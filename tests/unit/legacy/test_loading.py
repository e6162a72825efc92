"""The load buffer's inline path for clean messages gives what the validator and
copy_line give record by record (no database: the buffer only prepares COPY lines)."""

from __future__ import annotations

from pathlib import Path

from tgfleet.legacy.format import Component, source_files
from tgfleet.legacy.generate import generate_store
from tgfleet.legacy.loading import LoadBuffer
from tgfleet.legacy.reader import RecordStream
from tgfleet.legacy.targets import copy_line
from tgfleet.legacy.validate import InvalidRecord, validator_for


def test_inline_message_path_matches_the_validator_and_copy_line(tmp_path: Path) -> None:
    # Given a messy store's conversation files
    generate_store(tmp_path, bots=2, users=80, messages=12, messy=True, seed=12)
    line_of = copy_line(Component.CONVERSATIONS)
    for source in source_files(tmp_path, Component.CONVERSATIONS):
        assert source.user_id is not None
        # When a buffer takes the file (inline path for clean records)
        buffer = LoadBuffer(Component.CONVERSATIONS, source.bot_id)
        buffer.start_file(source, "f")
        buffer.take(iter(RecordStream(source.path)), 10**9, 10**9)
        # Then its lines, keys and quarantine are what validate_message and copy_line
        # give record by record
        validate = validator_for(
            Component.CONVERSATIONS, bot_id=source.bot_id, user_id=source.user_id
        )
        lines, keys, rejected, seen = [], [], [], set()
        for record in RecordStream(source.path):
            try:
                row = validate(record.value, record.key)
            except InvalidRecord:
                rejected.append(record.position)
                continue
            if row[1] in seen:
                rejected.append(record.position)
                continue
            seen.add(row[1])
            lines.append(line_of(row, record.value))
            keys.append((row[0], row[1]))
        assert buffer.lines == lines and buffer.keys == keys
        assert [q["position"] for q in buffer.quarantine] == rejected
