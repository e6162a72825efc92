"""``migrate-json plan``: what a migration of a store would do, without touching PostgreSQL.

Counts files and bytes per component, estimates records from a sample, checks every
file's last byte for truncation, and validates the sampled records to show the kinds of
problems the quarantine will receive.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

from tgfleet.legacy.format import COMPONENT_ORDER, Component, SourceFile, source_files
from tgfleet.legacy.reader import RecordStream
from tgfleet.legacy.validate import InvalidRecord, validator_for

#: Rows per second a migration run reaches on a small machine (bench/migration.py).
PLAN_ROWS_PER_S = 40_000


@dataclass
class ComponentPlan:
    component: Component
    files: int = 0
    bytes: int = 0
    sampled: int = 0
    sample_invalid: int = 0
    estimated_records: int = 0
    problems: Counter[str] = field(default_factory=Counter)
    suspect_files: list[str] = field(default_factory=list)

    @property
    def estimated_seconds(self) -> float:
        return self.estimated_records / PLAN_ROWS_PER_S


def _tail_problem(path: Path) -> str | None:
    size = path.stat().st_size
    if size == 0:
        return "empty file"
    with path.open("rb") as fh:
        fh.seek(max(0, size - 64))
        tail = fh.read().rstrip()
    if not tail.endswith((b"]", b"}")):
        return "does not end with ] or }: probably truncated"
    return None


def _kind(reason: str) -> str:
    """The reason without its particulars, to group similar problems."""
    head = re.split(r", (?:expected|which|the limit|not a)", reason)[0]
    return re.sub(r"'[^']*'|\"[^\"]*\"|-?\d[\d:.T+-]*", "…", head)[:90]


def plan_component(
    root: Path, component: Component, *, sample_files: int = 20, sample_records: int = 200
) -> ComponentPlan:
    plan = ComponentPlan(component)
    files: list[SourceFile] = list(source_files(root, component))
    plan.files = len(files)
    for source in files:
        plan.bytes += source.path.stat().st_size
        problem = _tail_problem(source.path)
        if problem:
            plan.suspect_files.append(f"{source.relative_to(root)}: {problem}")
    step = max(1, len(files) // sample_files)
    sample_bytes = 0
    for source in files[::step][:sample_files]:
        validate = validator_for(component, bot_id=source.bot_id, user_id=source.user_id)
        stream = RecordStream(source.path)
        for record in islice(stream, sample_records):
            plan.sampled += 1
            sample_bytes += len(json.dumps(record.value, ensure_ascii=False).encode()) + 3
            try:
                validate(record.value, record.key)
            except InvalidRecord as exc:
                plan.sample_invalid += 1
                plan.problems[_kind(exc.reason)] += 1
        if stream.error is not None:
            plan.problems[_kind(stream.error.message)] += 1
    if plan.sampled:
        plan.estimated_records = int(plan.bytes / (sample_bytes / plan.sampled))
    return plan


def plan_store(root: Path) -> list[ComponentPlan]:
    return [plan_component(root, component) for component in COMPONENT_ORDER]
