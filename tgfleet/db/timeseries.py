"""Monthly range-partitioned tables: messages, events, audit_log.

Their primary keys include the timestamp (PostgreSQL requires the partition key in every
unique index), so uniqueness that must hold across months (dedupe keys) lives in the
hash-partitioned tables (``processed_updates``, ``outbox``). They have no foreign keys:
they take the write volume and lose whole partitions to retention.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Identity, Index, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from tgfleet.db.base import Base, pg_enum, range_partitioned
from tgfleet.db.enums import MessageDirection


class Message(Base):
    """An inbound or outbound message; inbound rows are handled in order per chat."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_bot_id_chat_id_tg_message_id", "bot_id", "chat_id", "tg_message_id"),
        Index(
            "ix_messages_unprocessed",
            "bot_id",
            "chat_id",
            "tg_message_id",
            postgresql_where=text("processed_at IS NULL AND direction = 'in'"),
        ),
        range_partitioned("created_at"),
    )

    bot_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), primary_key=True, server_default=func.now()
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    direction: Mapped[MessageDirection] = mapped_column(pg_enum(MessageDirection))
    chat_id: Mapped[int] = mapped_column(BigInteger)
    sender_id: Mapped[int | None] = mapped_column(BigInteger)
    tg_message_id: Mapped[int | None] = mapped_column(BigInteger)
    text: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Event(Base):
    """An analytics fact (``kind`` plus free-form ``data``)."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_bot_id_kind_at", "bot_id", "kind", "at"),
        range_partitioned("at"),
    )

    bot_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), primary_key=True, server_default=func.now()
    )
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    user_id: Mapped[int | None] = mapped_column(BigInteger)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))


class AuditLog(Base):
    """Written only by the audit trigger; app roles may read their own bot's rows."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_bot_id_at", "bot_id", "at"),
        Index("ix_audit_log_correlation_id", "correlation_id"),
        range_partitioned("at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), primary_key=True, server_default=func.now()
    )
    bot_id: Mapped[int] = mapped_column(BigInteger)
    table_name: Mapped[str] = mapped_column(Text)
    op: Mapped[str] = mapped_column(Text)
    row_key: Mapped[dict[str, Any]] = mapped_column(JSONB)
    old_values: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    new_values: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    actor_role: Mapped[str] = mapped_column(Text)
    login_role: Mapped[str] = mapped_column(Text)
    txid: Mapped[int] = mapped_column(BigInteger)
    correlation_id: Mapped[str | None] = mapped_column(Text)
