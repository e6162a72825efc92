"""Legacy JSON store -> PostgreSQL migration (docs/legacy-json.md, docs/migration.md)."""

from tgfleet.legacy.engine import BatchResult, Migrator
from tgfleet.legacy.format import Component, ComponentState, LegacyStoreError
from tgfleet.legacy.generate import GenerateReport, generate_store
from tgfleet.legacy.reader import RecordStream, SourceError, SourceRecord
from tgfleet.legacy.validate import InvalidRecord

__all__ = [
    "BatchResult",
    "Component",
    "ComponentState",
    "GenerateReport",
    "InvalidRecord",
    "LegacyStoreError",
    "Migrator",
    "RecordStream",
    "SourceError",
    "SourceRecord",
    "generate_store",
]
