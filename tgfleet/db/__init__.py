"""tgfleet's database layer: models, sessions with row-level security, partitions.

Application code opens every transaction with ``session_scope(settings, bot_id=...)``;
maintenance that needs the schema owner uses ``owner_scope(settings)``. Migrations run
through ``upgrade_database(settings)`` or ``tgfleet db upgrade``. See docs/database.md.
"""

from tgfleet.db.crypto import (
    SecretDecryptError,
    decrypt_secret,
    encrypt_secret,
    token_fingerprint,
)
from tgfleet.db.enums import (
    BotKind,
    BotStatus,
    MessageDirection,
    MetricBucket,
    MigrationState,
    OutboxOp,
    OutboxStatus,
    PeerType,
    ProfileVisibility,
)
from tgfleet.db.migrate import (
    MigrationDriftError,
    check_database,
    current_revision,
    downgrade_database,
    head_revision,
    upgrade_database,
)
from tgfleet.db.models import (
    AuditLog,
    Base,
    Bot,
    BotMetric,
    BotSession,
    Conversation,
    DeadUpdate,
    Entity,
    Event,
    Like,
    Message,
    MigrationCheckpoint,
    MigrationQuarantine,
    Outbox,
    ProcessedUpdate,
    Profile,
    TgUser,
    UpdateState,
)
from tgfleet.db.session import (
    dispose_engines,
    get_engine,
    owner_scope,
    session_scope,
)

__all__ = [
    "AuditLog",
    "Base",
    "Bot",
    "BotKind",
    "BotMetric",
    "BotSession",
    "BotStatus",
    "Conversation",
    "DeadUpdate",
    "Entity",
    "Event",
    "Like",
    "Message",
    "MessageDirection",
    "MetricBucket",
    "MigrationCheckpoint",
    "MigrationDriftError",
    "MigrationQuarantine",
    "MigrationState",
    "Outbox",
    "OutboxOp",
    "OutboxStatus",
    "PeerType",
    "ProcessedUpdate",
    "Profile",
    "ProfileVisibility",
    "SecretDecryptError",
    "TgUser",
    "UpdateState",
    "check_database",
    "current_revision",
    "decrypt_secret",
    "dispose_engines",
    "downgrade_database",
    "encrypt_secret",
    "get_engine",
    "head_revision",
    "owner_scope",
    "session_scope",
    "token_fingerprint",
    "upgrade_database",
]
