"""Value sets stored as PostgreSQL enum types.

Each Python enum maps to a native PostgreSQL ``ENUM`` type named in ``PG_TYPE_NAMES``;
the database stores the lower-case ``value`` (not the member name).
"""

from __future__ import annotations

from enum import StrEnum


class BotKind(StrEnum):
    BOT = "bot"
    USER = "user"


class BotStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"
    REVOKED = "revoked"


class PeerType(StrEnum):
    USER = "user"
    CHAT = "chat"
    CHANNEL = "channel"


class ProfileVisibility(StrEnum):
    VISIBLE = "visible"
    HIDDEN = "hidden"
    PAUSED = "paused"


class OutboxStatus(StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    RETRYING = "retrying"
    FAILED = "failed"
    DEAD = "dead"
    #: Waiting for its time (``next_attempt_at``); the scheduler makes it ``queued``.
    SCHEDULED = "scheduled"
    #: Taken back before it went out (``tgfleet outbox cancel``, ``broadcast cancel``).
    CANCELLED = "cancelled"
    #: Held by ``tgfleet broadcast pause`` until ``broadcast resume``.
    PAUSED = "paused"


class OutboxOp(StrEnum):
    """Which Telegram call an outbox row makes."""

    SEND = "send"  # messages.sendMessage / sendMedia
    EDIT = "edit"  # messages.editMessage (text and/or keyboard of target_id)
    DELETE = "delete"  # messages.deleteMessages (options["ids"])
    ANSWER = "answer"  # messages.setBotCallbackAnswer (query target_id)


class MessageDirection(StrEnum):
    IN = "in"
    OUT = "out"


class MetricBucket(StrEnum):
    HOUR = "hour"
    DAY = "day"


class MigrationState(StrEnum):
    """Where a legacy-JSON component lives: json -> dual -> verify -> postgres."""

    JSON = "json"
    DUAL = "dual"
    VERIFY = "verify"
    POSTGRES = "postgres"


PG_TYPE_NAMES: dict[type[StrEnum], str] = {
    BotKind: "bot_kind",
    BotStatus: "bot_status",
    PeerType: "peer_type",
    ProfileVisibility: "profile_visibility",
    OutboxStatus: "outbox_status",
    MessageDirection: "message_direction",
    MetricBucket: "metric_bucket",
    MigrationState: "migration_state",
}
