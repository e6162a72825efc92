"""Legacy JSON store -> PostgreSQL migration (docs/legacy-json.md, docs/migration.md).

``Migrator`` runs batches; ``lifecycle`` moves components through
json -> dual -> verify -> postgres and back; ``cli`` is ``tgfleet legacy`` and
``tgfleet migrate-json``; the Celery task lives in ``tgfleet.tasks.migration``.
"""

from tgfleet.legacy.engine import DEFAULT_BATCH_SIZE, BatchResult, Migrator
from tgfleet.legacy.format import Component, ComponentState, LegacyStoreError
from tgfleet.legacy.generate import GenerateReport, generate_store
from tgfleet.legacy.lifecycle import (
    ComponentStatus,
    CutoverRefused,
    cutover,
    rollback,
    run_until_idle,
    start,
    status,
    verify,
)
from tgfleet.legacy.reader import RecordStream, SourceError, SourceRecord
from tgfleet.legacy.validate import InvalidRecord
from tgfleet.legacy.verify import Verification

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "BatchResult",
    "Component",
    "ComponentState",
    "ComponentStatus",
    "CutoverRefused",
    "GenerateReport",
    "InvalidRecord",
    "LegacyStoreError",
    "Migrator",
    "RecordStream",
    "SourceError",
    "SourceRecord",
    "Verification",
    "cutover",
    "generate_store",
    "rollback",
    "run_until_idle",
    "start",
    "status",
    "verify",
]
