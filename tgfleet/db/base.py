"""Declarative base and the column/table helpers every model module shares."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, DateTime, Enum, ForeignKey, MetaData, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from tgfleet.db.enums import PG_TYPE_NAMES

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def pg_enum(enum_cls: type[StrEnum]) -> Enum:
    """A native PostgreSQL enum storing the members' values."""
    return Enum(
        enum_cls,
        name=PG_TYPE_NAMES[enum_cls],
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


def hash_partitioned(column: str = "bot_id") -> dict[str, Any]:
    """``__table_args__`` entry: ``PARTITION BY HASH`` (partitions: migrations)."""
    return {"postgresql_partition_by": f"HASH ({column})", "info": {"partition": "hash"}}


def range_partitioned(column: str) -> dict[str, Any]:
    """``__table_args__`` entry: monthly ``PARTITION BY RANGE`` (tgfleet.db.partitions)."""
    return {"postgresql_partition_by": f"RANGE ({column})", "info": {"partition": "range"}}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def now_column() -> Mapped[datetime]:
    """``timestamptz NOT NULL DEFAULT now()``."""
    return mapped_column(DateTime(timezone=True), server_default=func.now(), nullable=False)


def updated_column() -> Mapped[datetime]:
    """Like ``now_column``, and the ORM sets it to ``now()`` on every UPDATE."""
    return mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )


def bot_fk() -> Mapped[int]:
    """The tenant column: part of the primary key, references ``bots(id)``."""
    return mapped_column(BigInteger, ForeignKey("bots.id", ondelete="CASCADE"), primary_key=True)
