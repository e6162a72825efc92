"""The messy-store generator: deterministic, and its tally is what the validators find."""

from __future__ import annotations

from pathlib import Path

from tgfleet.legacy.format import Component, source_files
from tgfleet.legacy.generate import generate_store
from tgfleet.legacy.reader import RecordStream
from tgfleet.legacy.validate import InvalidRecord, record_key, validator_for


def test_generator_tally_matches_what_the_validators_find(tmp_path: Path) -> None:
    # Given a messy generated store
    report = generate_store(tmp_path, bots=2, users=120, messages=6, messy=True, seed=4)
    assert report.truncated_files, "the messy store should include truncated files"
    for component in Component:
        records = invalid = 0
        # When every file is read and validated (first valid record per id wins)
        for source in source_files(tmp_path, component):
            validate = validator_for(component, bot_id=source.bot_id, user_id=source.user_id)
            seen: set[tuple[int, ...]] = set()
            for record in RecordStream(source.path):
                records += 1
                try:
                    key = record_key(component, validate(record.value, record.key))
                except InvalidRecord:
                    invalid += 1
                    continue
                invalid += key in seen
                seen.add(key)
        # Then the counts are the generator's, and the mess is really there
        tally = report.tally[component]
        assert (records, invalid) == (tally.records, tally.invalid), component
        assert invalid > 0


def test_generator_is_deterministic(tmp_path: Path) -> None:
    a = generate_store(tmp_path / "a", bots=1, users=30, messy=True, seed=9)
    b = generate_store(tmp_path / "b", bots=1, users=30, messy=True, seed=9)
    assert a.tally == b.tally
    assert (tmp_path / "a" / str(a.bots[0]) / "users.json").read_bytes() == (
        tmp_path / "b" / str(b.bots[0]) / "users.json"
    ).read_bytes()
