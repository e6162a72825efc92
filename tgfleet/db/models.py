"""SQLAlchemy 2 typed models: the schema tgfleet's migrations create.

Layout (see docs/database.md):

* Tenant tables carry ``bot_id`` in every primary key. The big ones are
  ``PARTITION BY HASH (bot_id)`` (``HASH_PARTITIONED``); tiny per-bot tables
  (one row per bot or node) are plain tables. All of them have row-level security.
* ``messages``, ``events`` and ``audit_log`` are ``PARTITION BY RANGE`` on their
  timestamp, one partition per month plus a DEFAULT partition (``tgfleet.db.partitions``).
  Their primary keys include the timestamp (PostgreSQL requires the partition key in
  every unique index), so uniqueness that must hold across months (dedupe keys) lives in
  hash-partitioned tables such as ``processed_updates`` and ``outbox``.
* Telegram ids (bots, users, chats, messages, access hashes) are BIGINT.
* The time-series models live in ``tgfleet.db.timeseries`` (re-exported here); the
  shared base and column helpers in ``tgfleet.db.base``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from tgfleet.db.base import (
    Base,
    bot_fk,
    hash_partitioned,
    now_column,
    pg_enum,
    updated_column,
)
from tgfleet.db.enums import (
    BotKind,
    BotStatus,
    MetricBucket,
    MigrationState,
    OutboxOp,
    OutboxStatus,
    PeerType,
    ProfileVisibility,
)
from tgfleet.db.timeseries import AuditLog, Event, Message

__all__ = [
    "TENANT_COLUMNS",
    "AuditLog",
    "Base",
    "Bot",
    "BotMetric",
    "BotSession",
    "Conversation",
    "ConversationState",
    "DeadUpdate",
    "Entity",
    "Event",
    "Like",
    "Message",
    "MigrationCheckpoint",
    "MigrationQuarantine",
    "Outbox",
    "ProcessedUpdate",
    "Profile",
    "TgUser",
    "UpdateState",
]


# --- the fleet ------------------------------------------------------------------------
class Bot(Base):
    """One Telegram bot (or user account) the fleet runs; ``id`` is its Telegram id."""

    __tablename__ = "bots"
    __table_args__ = (hash_partitioned("id"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[BotKind] = mapped_column(pg_enum(BotKind), server_default=BotKind.BOT.value)
    status: Mapped[BotStatus] = mapped_column(
        pg_enum(BotStatus), server_default=BotStatus.ACTIVE.value
    )
    admin_chat_ids: Mapped[list[int]] = mapped_column(
        ARRAY(BigInteger), server_default=text("'{}'::bigint[]")
    )
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    #: Fernet ciphertext of the bot token (``tgfleet.db.crypto``); never the token itself.
    token_encrypted: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: HMAC of the token, to recognise a token without decrypting anything.
    token_fingerprint: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = now_column()
    updated_at: Mapped[datetime] = updated_column()


class BotSession(Base):
    """A Telethon session (encrypted) per bot per sender node: never shared between nodes."""

    __tablename__ = "bot_sessions"

    bot_id: Mapped[int] = bot_fk()
    node: Mapped[str] = mapped_column(Text, primary_key=True)
    session_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = now_column()
    updated_at: Mapped[datetime] = updated_column()


class UpdateState(Base):
    """The listener's update state (pts/qts/date/seq), saved after a publish succeeded."""

    __tablename__ = "update_state"

    bot_id: Mapped[int] = bot_fk()
    pts: Mapped[int] = mapped_column(BigInteger, server_default="0")
    qts: Mapped[int] = mapped_column(BigInteger, server_default="0")
    date: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    seq: Mapped[int] = mapped_column(BigInteger, server_default="0")
    #: Chat id -> [the last inbound message id published for it, unix time], for the
    #: chats published to in the last ``CHAIN_KEEP_S``: where a listener that takes over
    #: goes on with each chat's order chain (``prev``).
    chains: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = updated_column()


# --- people and chats ------------------------------------------------------------------
class TgUser(Base):
    """A person a bot has seen."""

    __tablename__ = "tg_users"
    __table_args__ = (hash_partitioned(),)

    bot_id: Mapped[int] = bot_fk()
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    first_name: Mapped[str | None] = mapped_column(Text)
    last_name: Mapped[str | None] = mapped_column(Text)
    username: Mapped[str | None] = mapped_column(Text)
    language_code: Mapped[str | None] = mapped_column(Text)
    #: The language the user chose in this bot (``ctx.set_language``); it wins over
    #: Telegram's ``language_code``.
    chosen_lang: Mapped[str | None] = mapped_column(Text)
    is_blocked: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    first_seen_at: Mapped[datetime] = now_column()
    last_seen_at: Mapped[datetime] = now_column()


class Profile(Base):
    """A user's matchmaking profile with one bot. ``version`` is an optimistic lock."""

    __tablename__ = "profiles"
    __table_args__ = (
        CheckConstraint("age IS NULL OR age BETWEEN 13 AND 120", name="age_range"),
        CheckConstraint("gender IN ('male', 'female')", name="gender_kind"),
        CheckConstraint("moderation IN ('pending', 'approved', 'banned')", name="moderation_kind"),
        hash_partitioned(),
    )

    bot_id: Mapped[int] = bot_fk()
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    display_name: Mapped[str | None] = mapped_column(Text)
    age: Mapped[int | None] = mapped_column(SmallInteger)
    city: Mapped[str | None] = mapped_column(Text)
    bio: Mapped[str | None] = mapped_column(Text)
    #: ``male`` or ``female`` (None: never asked, e.g. a profile from the legacy store).
    gender: Mapped[str | None] = mapped_column(Text)
    #: Whom the user wants to meet: ``male``, ``female`` or ``any``.
    looking_for: Mapped[str | None] = mapped_column(Text)
    #: The admins' verdict: ``pending`` (new, changed or reported), ``approved`` or
    #: ``banned`` (never shown to others).
    moderation: Mapped[str] = mapped_column(Text, server_default="approved")
    visibility: Mapped[ProfileVisibility] = mapped_column(
        pg_enum(ProfileVisibility), server_default=ProfileVisibility.VISIBLE.value
    )
    #: The profile photo as this bot saw it, enough to re-send it (InputPhoto).
    photo_id: Mapped[int | None] = mapped_column(BigInteger)
    photo_access_hash: Mapped[int | None] = mapped_column(BigInteger)
    photo_file_reference: Mapped[bytes | None] = mapped_column(LargeBinary)
    #: A Bot API file_id string (profiles migrated from the legacy JSON store).
    photo_file_id: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    created_at: Mapped[datetime] = now_column()
    updated_at: Mapped[datetime] = updated_column()

    __mapper_args__ = {"version_id_col": version}


class Conversation(Base):
    """Per-chat dialogue state; ``last_processed_message_id`` orders handler runs."""

    __tablename__ = "conversations"
    __table_args__ = (hash_partitioned(),)

    bot_id: Mapped[int] = bot_fk()
    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    state: Mapped[str] = mapped_column(Text, server_default="start")
    state_data: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    messages_in: Mapped[int] = mapped_column(Integer, server_default="0")
    messages_out: Mapped[int] = mapped_column(Integer, server_default="0")
    last_processed_message_id: Mapped[int | None] = mapped_column(BigInteger)
    last_message_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = now_column()
    updated_at: Mapped[datetime] = updated_column()


class ConversationState(Base):
    """One user's conversation state in one chat (``tgfleet.bots.fsm``): the state's name
    (NULL: none), the data collected on the way, and when it expires (NULL: never)."""

    __tablename__ = "conversation_states"
    __table_args__ = (hash_partitioned(),)

    bot_id: Mapped[int] = bot_fk()
    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    state: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = updated_column()


class Entity(Base):
    """Peer store: access hashes are per account and valid for every session of that bot."""

    __tablename__ = "entities"
    __table_args__ = (
        Index("ix_entities_bot_id_username", "bot_id", text("lower(username)")),
        hash_partitioned(),
    )

    bot_id: Mapped[int] = bot_fk()
    peer_type: Mapped[PeerType] = mapped_column(pg_enum(PeerType), primary_key=True)
    peer_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    access_hash: Mapped[int | None] = mapped_column(BigInteger)
    username: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = updated_column()


# --- delivery ------------------------------------------------------------------------
#: The open plain sends (``tgfleet.sends.wake.PLAIN_SEND``, less the upload test, which
#: an index predicate cannot make): the ready-sends task looks up each chat's first one.
OPEN_REPLIES = (
    "status IN ('queued', 'retrying', 'sending') AND op = 'send' AND broadcast_id IS NULL"
)


class Outbox(Base):
    """An outgoing message and its delivery state."""

    __tablename__ = "outbox"
    __table_args__ = (
        UniqueConstraint("bot_id", "dedupe_key"),
        Index(
            "ix_outbox_due",
            "bot_id",
            "next_attempt_at",
            postgresql_where=text("status IN ('queued', 'retrying')"),
        ),
        Index("ix_outbox_bot_id_broadcast_id", "bot_id", "broadcast_id"),
        Index(
            "ix_outbox_open_replies",
            "bot_id",
            "chat_id",
            "id",
            postgresql_where=text(OPEN_REPLIES),
        ),
        Index(
            "ix_outbox_scheduled",
            "next_attempt_at",
            postgresql_where=text("status = 'scheduled'"),
        ),
        CheckConstraint("op IN (" + ", ".join(f"'{op.value}'" for op in OutboxOp) + ")", name="op"),
        hash_partitioned(),
    )

    bot_id: Mapped[int] = bot_fk()
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    chat_id: Mapped[int] = mapped_column(BigInteger)
    text: Mapped[str] = mapped_column(Text)
    parse_mode: Mapped[str | None] = mapped_column(Text)
    reply_to: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[OutboxStatus] = mapped_column(
        pg_enum(OutboxStatus), server_default=OutboxStatus.QUEUED.value
    )
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    #: messages.sendMessage random_id; derived from the outbox id so retries dedupe.
    random_id: Mapped[int | None] = mapped_column(BigInteger)
    tg_message_id: Mapped[int | None] = mapped_column(BigInteger)
    broadcast_id: Mapped[int | None] = mapped_column(BigInteger)
    dedupe_key: Mapped[str | None] = mapped_column(Text)
    #: Media to send with the text, e.g. {"photo": [id, access_hash, file_reference_b64]}.
    media: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    #: Which call the row makes (see OutboxOp); sends unless said otherwise.
    op: Mapped[str] = mapped_column(Text, server_default=OutboxOp.SEND.value)
    #: The message an edit changes, or the callback query an answer answers.
    target_id: Mapped[int | None] = mapped_column(BigInteger)
    #: The keyboard, in the JSON form tgfleet.sends.markup reads.
    reply_markup: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    #: What one operation alone needs: {"ids": [...]} to delete; {"alert", "url"} to answer.
    options: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    #: The W3C traceparent of the handling that wrote the row, when traces are on.
    trace_parent: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = now_column()
    created_at: Mapped[datetime] = now_column()
    updated_at: Mapped[datetime] = updated_column()
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ProcessedUpdate(Base):
    """Dedupe keys of updates already handled (uniqueness across all time)."""

    __tablename__ = "processed_updates"
    __table_args__ = (
        Index("ix_processed_updates_bot_id_processed_at", "bot_id", "processed_at"),
        hash_partitioned(),
    )

    bot_id: Mapped[int] = bot_fk()
    dedupe_key: Mapped[str] = mapped_column(Text, primary_key=True)
    processed_at: Mapped[datetime] = now_column()


class DeadUpdate(Base):
    """An update that could not be handled, kept with the reason for inspection/replay."""

    __tablename__ = "dead_updates"
    __table_args__ = (hash_partitioned(),)

    bot_id: Mapped[int] = bot_fk()
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    dedupe_key: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = now_column()


class BotMetric(Base):
    """Roll-ups per bot per hour or day bucket."""

    __tablename__ = "bot_metrics"

    bot_id: Mapped[int] = bot_fk()
    bucket: Mapped[MetricBucket] = mapped_column(pg_enum(MetricBucket), primary_key=True)
    bucket_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    messages_in: Mapped[int] = mapped_column(Integer, server_default="0")
    messages_out: Mapped[int] = mapped_column(Integer, server_default="0")
    new_users: Mapped[int] = mapped_column(Integer, server_default="0")
    active_users: Mapped[int] = mapped_column(Integer, server_default="0")
    sends_ok: Mapped[int] = mapped_column(Integer, server_default="0")
    sends_failed: Mapped[int] = mapped_column(Integer, server_default="0")
    updated_at: Mapped[datetime] = updated_column()
    profile_updates: Mapped[int] = mapped_column(Integer, server_default="0")
    likes: Mapped[int] = mapped_column(Integer, server_default="0")
    matches: Mapped[int] = mapped_column(Integer, server_default="0")
    flood_waits: Mapped[int] = mapped_column(Integer, server_default="0")
    #: Inbound message stored -> handled, milliseconds (None: nothing handled).
    latency_p50_ms: Mapped[int | None] = mapped_column(Integer)
    latency_p95_ms: Mapped[int | None] = mapped_column(Integer)


# --- the matchmaking app ---------------------------------------------------------------
class Like(Base):
    """A user's verdict on another user's profile (``like`` or ``skip``) with one bot."""

    __tablename__ = "likes"
    __table_args__ = (
        CheckConstraint("verdict IN ('like', 'skip')", name="verdict_kind"),
        Index("ix_likes_bot_id_target_id", "bot_id", "target_id"),
        hash_partitioned(),
    )

    bot_id: Mapped[int] = bot_fk()
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    target_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    verdict: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = now_column()


# --- legacy JSON migration -------------------------------------------------------------
class MigrationQuarantine(Base):
    """A legacy record that failed validation, with where it came from and why."""

    __tablename__ = "migration_quarantine"
    __table_args__ = (
        Index("ix_migration_quarantine_bot_id_component_file", "bot_id", "component", "file"),
    )

    bot_id: Mapped[int] = bot_fk()
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    component: Mapped[str] = mapped_column(Text)
    file: Mapped[str] = mapped_column(Text)
    position: Mapped[int] = mapped_column(BigInteger)
    record: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = now_column()


class MigrationCheckpoint(Base):
    """How far a component's legacy file has been loaded, and the component's state."""

    __tablename__ = "migration_checkpoints"

    bot_id: Mapped[int] = bot_fk()
    component: Mapped[str] = mapped_column(Text, primary_key=True)
    file: Mapped[str] = mapped_column(Text, primary_key=True)
    fingerprint: Mapped[str | None] = mapped_column(Text)
    position: Mapped[int] = mapped_column(BigInteger, server_default="0")
    state: Mapped[MigrationState] = mapped_column(
        pg_enum(MigrationState), server_default=MigrationState.JSON.value
    )
    #: The scan reached the end of the file (``error`` says if it stopped early).
    complete: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    error: Mapped[str | None] = mapped_column(Text)
    records: Mapped[int] = mapped_column(BigInteger, server_default="0")
    #: On the component row (file ''): the store's path and the last verification.
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = updated_column()


#: Every table with row-level security, and the column holding the tenant (bot) id.
TENANT_COLUMNS: dict[str, str] = {
    table.name: ("id" if table.name == "bots" else "bot_id")
    for table in Base.metadata.sorted_tables
}
