"""tgfleet's configuration: the one place that reads the environment.

Build ``Settings`` once at an entry point (``load_settings()``) and pass it into
factories such as ``make_celery(settings)``. Invalid or missing values stop the
program with exit code 2 and one line per problem naming the variable and what a
valid value looks like; secret values are never echoed.
"""

from __future__ import annotations

import base64
import binascii
import socket
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from tgfleet.platform.errors import ConfigError

#: Variables whose values must never appear in messages.
SECRET_FIELDS = frozenset(
    {
        "secret_key",
        "tg_api_hash",
        "flower_password",
        "database_url",
        "migrate_database_url",
        "redis_url",
        "result_backend",
    }
)


class LogFormat(StrEnum):
    PLAIN = "plain"
    JSON = "json"


#: What a good value looks like, per field, for error messages.
_EXAMPLES: dict[str, str] = {
    "database_url": "postgresql://user:password@127.0.0.1:5432/tgfleet",
    "migrate_database_url": "postgresql://owner:password@127.0.0.1:5432/tgfleet",
    "redis_url": "redis://127.0.0.1:6379/0",
    "result_backend": "redis://127.0.0.1:6379/1 (or leave unset)",
    "secret_key": "a Fernet key: 32 url-safe base64 bytes, e.g. from "
    "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`",
    "tg_api_id": "the integer api_id from https://my.telegram.org, e.g. 123456",
    "tg_api_hash": "the 32-character hex api_hash from https://my.telegram.org",
    "tg_server": "host:port of an MTProto server, e.g. 149.154.167.40:443 (unset: Telegram)",
    "tg_server_rsa_key_file": "path to the server's PKCS#1 RSA public key PEM file",
    "tg_server_dc": "a DC id from 1 to 5, e.g. 2",
    "log_format": "plain or json",
    "flower_password": "8+ characters without a comma",
    "flower_user": "a user name without ',' or ':', e.g. admin",
    "node_name": "a stable machine name of letters, digits, '_.@-', e.g. sender-1",
    "log_level": "DEBUG, INFO, WARNING, ERROR or CRITICAL",
    "db_role_prefix": "lower-case letters, digits and '_', not starting with a digit, e.g. tgfleet",
}


class Settings(BaseSettings):
    """Every setting tgfleet reads; see the README's settings table."""

    model_config = SettingsConfigDict(
        env_prefix="",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    # --- services -------------------------------------------------------------
    database_url: str = Field(alias="DATABASE_URL")
    migrate_database_url: str | None = Field(default=None, alias="MIGRATE_DATABASE_URL")
    redis_url: str = Field(alias="REDIS_URL")
    result_backend: str | None = Field(default=None, alias="TGFLEET_RESULT_BACKEND")

    # --- secrets --------------------------------------------------------------
    secret_key: SecretStr = Field(alias="TGFLEET_SECRET_KEY")

    # --- Telegram -------------------------------------------------------------
    tg_api_id: Annotated[int, Field(gt=0)] = Field(alias="TG_API_ID")
    tg_api_hash: SecretStr = Field(alias="TG_API_HASH")
    tg_server: str | None = Field(default=None, alias="TG_SERVER")
    tg_server_rsa_key_file: Path | None = Field(default=None, alias="TG_SERVER_RSA_KEY_FILE")
    tg_server_dc: Annotated[int, Field(ge=1, le=5)] = Field(default=2, alias="TG_SERVER_DC")

    # --- Flower ---------------------------------------------------------------
    flower_user: str = Field(default="admin", alias="TGFLEET_FLOWER_USER")
    flower_password: SecretStr | None = Field(default=None, alias="TGFLEET_FLOWER_PASSWORD")
    flower_port: Annotated[int, Field(gt=0, lt=65536)] = Field(
        default=5555, alias="TGFLEET_FLOWER_PORT"
    )

    # --- rate limits (Telegram's published limits) -----------------------------
    rate_bot_per_s: Annotated[float, Field(gt=0)] = Field(
        default=30.0, alias="TGFLEET_RATE_BOT_PER_S"
    )
    rate_chat_per_s: Annotated[float, Field(gt=0)] = Field(
        default=1.0, alias="TGFLEET_RATE_CHAT_PER_S"
    )
    rate_chat_burst: Annotated[int, Field(ge=1)] = Field(default=3, alias="TGFLEET_RATE_CHAT_BURST")
    rate_group_per_min: Annotated[float, Field(gt=0)] = Field(
        default=20.0, alias="TGFLEET_RATE_GROUP_PER_MIN"
    )

    # --- sending (tgfleet.sends.sender) ------------------------------------------
    #: This machine's name: each node keeps its own Telethon session per bot.
    node_name: str = Field(
        default_factory=socket.gethostname,
        alias="TGFLEET_NODE_NAME",
        pattern=r"^[A-Za-z0-9_.@-]{1,100}$",
    )
    send_max_attempts: Annotated[int, Field(ge=1, le=100)] = Field(
        default=8, alias="TGFLEET_SEND_MAX_ATTEMPTS"
    )
    send_backoff_base_s: Annotated[float, Field(gt=0)] = Field(
        default=2.0, alias="TGFLEET_SEND_BACKOFF_BASE_S"
    )
    send_backoff_cap_s: Annotated[float, Field(gt=0)] = Field(
        default=600.0, alias="TGFLEET_SEND_BACKOFF_CAP_S"
    )
    #: A row stays claimed (``sending``) this long before another worker may take it over.
    send_lease_s: Annotated[float, Field(ge=1)] = Field(default=15.0, alias="TGFLEET_SEND_LEASE_S")
    #: How often a sender process looks for overdue rows (lost tasks, killed workers).
    send_sweep_interval_s: Annotated[float, Field(ge=0.5)] = Field(
        default=5.0, alias="TGFLEET_SEND_SWEEP_INTERVAL_S"
    )

    # --- database layout --------------------------------------------------------
    db_role_prefix: str = Field(
        default="tgfleet", alias="TGFLEET_DB_ROLE_PREFIX", pattern=r"^[a-z_][a-z0-9_]{0,40}$"
    )
    hash_partitions: Annotated[int, Field(ge=1, le=256)] = Field(
        default=10, alias="TGFLEET_HASH_PARTITIONS"
    )
    partition_premake: Annotated[int, Field(ge=1, le=36)] = Field(
        default=3, alias="TGFLEET_PARTITION_PREMAKE"
    )
    retention_months_messages: Annotated[int, Field(ge=1)] = Field(
        default=12, alias="TGFLEET_RETENTION_MONTHS_MESSAGES"
    )
    retention_months_events: Annotated[int, Field(ge=1)] = Field(
        default=24, alias="TGFLEET_RETENTION_MONTHS_EVENTS"
    )
    retention_months_audit: Annotated[int, Field(ge=1)] = Field(
        default=36, alias="TGFLEET_RETENTION_MONTHS_AUDIT"
    )
    #: Connections each process keeps (None: 5, or a threads-pool worker's threads + 4;
    #: ``tgfleet.db.session.pool_size``).
    db_pool_size: Annotated[int | None, Field(ge=1, le=200)] = Field(
        default=None, alias="TGFLEET_DB_POOL_SIZE"
    )
    #: Server-side prepared statements on the hot paths; false behind a pooler in
    #: transaction mode (PgBouncer), which hands each transaction another connection.
    db_prepare: bool = Field(default=True, alias="TGFLEET_DB_PREPARE")

    # --- operations (beat schedules, maintenance, health; docs/operations.md) --------
    beat_lock_ttl_s: Annotated[float, Field(ge=2)] = Field(
        default=30.0, alias="TGFLEET_BEAT_LOCK_TTL_S"
    )
    partitions_every_s: Annotated[float, Field(ge=1)] = Field(
        default=3600.0, alias="TGFLEET_PARTITIONS_EVERY_S"
    )
    rollup_every_s: Annotated[float, Field(ge=1)] = Field(
        default=300.0, alias="TGFLEET_ROLLUP_EVERY_S"
    )
    cleanup_every_s: Annotated[float, Field(ge=1)] = Field(
        default=3600.0, alias="TGFLEET_CLEANUP_EVERY_S"
    )
    health_every_s: Annotated[float, Field(ge=1)] = Field(
        default=60.0, alias="TGFLEET_HEALTH_EVERY_S"
    )
    #: Maintenance DDL waits at most this long for a table lock, so ingest never queues
    #: behind it for longer; a step that times out is retried at the next run.
    maintenance_lock_timeout_ms: Annotated[int, Field(ge=10)] = Field(
        default=2000, alias="TGFLEET_MAINTENANCE_LOCK_TIMEOUT_MS"
    )
    maintenance_batch_rows: Annotated[int, Field(ge=1)] = Field(
        default=5000, alias="TGFLEET_MAINTENANCE_BATCH_ROWS"
    )
    #: Retention detaches old monthly partitions and keeps them as plain tables
    #: instead of dropping them.
    retention_keep_detached: bool = Field(default=False, alias="TGFLEET_RETENTION_KEEP_DETACHED")
    retention_days_processed_updates: Annotated[int, Field(ge=1)] = Field(
        default=30, alias="TGFLEET_RETENTION_DAYS_PROCESSED_UPDATES"
    )
    retention_days_sent_outbox: Annotated[int, Field(ge=1)] = Field(
        default=30, alias="TGFLEET_RETENTION_DAYS_SENT_OUTBOX"
    )
    retention_days_entities: Annotated[int, Field(ge=1)] = Field(
        default=180, alias="TGFLEET_RETENTION_DAYS_ENTITIES"
    )
    rollup_lookback_hours: Annotated[int, Field(ge=1, le=24 * 31)] = Field(
        default=3, alias="TGFLEET_ROLLUP_LOOKBACK_HOURS"
    )
    health_heartbeat_stale_s: Annotated[float, Field(gt=0)] = Field(
        default=90.0, alias="TGFLEET_HEALTH_HEARTBEAT_STALE_S"
    )
    health_queue_stuck_s: Annotated[float, Field(gt=0)] = Field(
        default=300.0, alias="TGFLEET_HEALTH_QUEUE_STUCK_S"
    )
    health_migration_stale_s: Annotated[float, Field(gt=0)] = Field(
        default=3600.0, alias="TGFLEET_HEALTH_MIGRATION_STALE_S"
    )

    # --- Celery -----------------------------------------------------------------
    #: Redis redelivers an unacked task after this many seconds; it must exceed
    #: every countdown/ETA the code schedules (see celeryconfig.MAX_COUNTDOWN_S).
    visibility_timeout_s: Annotated[int, Field(ge=600)] = Field(
        default=43_200, alias="TGFLEET_VISIBILITY_TIMEOUT_S"
    )

    #: Unacknowledged ``updates`` messages older than this go back to their queue
    #: (worker killed, or lost its broker mid-task); must exceed the countdowns updates
    #: use (at most UPDATES_MAX_COUNTDOWN_S, 60 s).
    redeliver_after_s: Annotated[int, Field(ge=5)] = Field(
        default=120, alias="TGFLEET_REDELIVER_AFTER_S"
    )
    redeliver_every_s: Annotated[int, Field(ge=1)] = Field(
        default=60, alias="TGFLEET_REDELIVER_EVERY_S"
    )
    #: Workers take messages onto in-flight lists and give back what a dead worker held
    #: (platform/handoff.py; needs Redis >= 6.2); false: kombu's own BRPOP, which loses
    #: a message taken by a worker killed at that instant.
    broker_handoff: bool = Field(default=True, alias="TGFLEET_BROKER_HANDOFF")

    # --- Prometheus metrics (tgfleet.platform.metrics; docs/operations.md) ------------
    #: Every long-running process (listener, workers, beat) serves /metrics; false: none
    #: does, and nothing is counted.
    metrics_enabled: bool = Field(default=True, alias="TGFLEET_METRICS")
    #: The address the endpoints listen on: this machine only unless you widen it.
    metrics_host: str = Field(default="127.0.0.1", alias="TGFLEET_METRICS_HOST")
    #: The port of this process's endpoint; 0: a free port, printed at start and listed
    #: by ``tgfleet status --json`` and ``tgfleet metrics targets``.
    metrics_port: Annotated[int, Field(ge=0, lt=65536)] = Field(
        default=0, alias="TGFLEET_METRICS_PORT"
    )
    #: Where a Celery worker's pool processes write their metrics for the worker to serve
    #: (one directory per worker under it, emptied at its start and removed at its end).
    metrics_dir: Path | None = Field(default=None, alias="TGFLEET_METRICS_DIR")

    #: OpenTelemetry traces over OTLP (``tgfleet[tracing]``; OTEL_EXPORTER_OTLP_ENDPOINT).
    tracing: bool = Field(default=False, alias="TGFLEET_TRACING")

    # --- logging ------------------------------------------------------------------
    log_format: LogFormat = Field(default=LogFormat.PLAIN, alias="TGFLEET_LOG_FORMAT")
    log_level: str = Field(
        default="INFO",
        alias="TGFLEET_LOG_LEVEL",
        pattern=r"(?i)^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$",
    )
    #: Celery's lines about every task ("Task ... received", "... succeeded in ...s",
    #: "... retry: ...") at INFO too; without it they show at DEBUG only.
    log_tasks: bool = Field(default=False, alias="TGFLEET_LOG_TASKS")

    # --- validators ---------------------------------------------------------------
    @field_validator("database_url", "migrate_database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgresql+psycopg2://")):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("redis_url", "result_backend")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis:// URL")
        return value

    @field_validator("secret_key")
    @classmethod
    def _fernet_key(cls, value: SecretStr) -> SecretStr:
        try:
            raw = base64.urlsafe_b64decode(value.get_secret_value().encode())
        except (binascii.Error, ValueError):
            raise ValueError("is not url-safe base64") from None
        if len(raw) != 32:
            raise ValueError("must decode to exactly 32 bytes")
        return value

    @field_validator("tg_api_hash")
    @classmethod
    def _api_hash(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if len(secret) != 32 or any(c not in "0123456789abcdefABCDEF" for c in secret):
            raise ValueError("must be 32 hexadecimal characters")
        return value

    @field_validator("flower_password")
    @classmethod
    def _flower_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and ("," in value.get_secret_value() or len(value) < 8):
            raise ValueError("must be at least 8 characters and contain no comma")
        return value

    @field_validator("flower_user")
    @classmethod
    def _flower_user(cls, value: str) -> str:
        if not value or any(c in value for c in ",:"):
            raise ValueError("must be non-empty, without ',' or ':'")
        return value

    @field_validator("tg_server")
    @classmethod
    def _server(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("must be host:port")
        return value

    # --- derived ------------------------------------------------------------------
    @property
    def owner_database_url(self) -> str:
        """URL migrations run with (the schema owner); the app URL when unset."""
        return self.migrate_database_url or self.database_url

    @property
    def tg_server_address(self) -> tuple[str, int] | None:
        if self.tg_server is None:
            return None
        host, _, port = self.tg_server.rpartition(":")
        return host, int(port)

    def role(self, name: str) -> str:
        """The PostgreSQL role name for ``name`` (super_admin, admin, bot, app_base)."""
        return f"{self.db_role_prefix}_{name}"


_FIELD_BY_ALIAS = {
    (info.alias or name).upper(): name for name, info in Settings.model_fields.items()
}


def _describe(error: dict[str, Any]) -> str:
    loc = error.get("loc") or ("?",)
    variable = str(loc[0])
    field = _FIELD_BY_ALIAS.get(variable.upper(), variable)
    if field in Settings.model_fields:
        variable = Settings.model_fields[field].alias or field.upper()
    if error.get("type") == "missing":
        problem = "is not set"
    else:
        if error.get("type") == "string_pattern_mismatch":
            problem = "is not in the expected form"  # the example says which
        else:
            problem = str(error.get("msg", "is invalid")).removeprefix("Value error, ")
        if field not in SECRET_FIELDS and "input" in error:
            problem = f"{problem} (got {error['input']!r})"
    example = _EXAMPLES.get(field)
    hint = f"; expected {example}" if example else ""
    return f"{variable} {problem}{hint}"


def load_settings(**overrides: Any) -> Settings:
    """Build Settings from the environment, raising ConfigError with readable lines."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = [_describe(dict(err)) for err in exc.errors(include_input=True)]
        raise ConfigError("; ".join(lines)) from None


def settings_or_exit(**overrides: Any) -> Settings:
    """Entry-point helper: Settings, or exit code 2 with the problem on stderr."""
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        print(f"tgfleet: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


class DevSettings(BaseSettings):
    """Settings of the embedded dev services; readable without the main ones."""

    model_config = SettingsConfigDict(extra="ignore")

    home: Path = Field(default=Path(".tgfleet"), alias="TGFLEET_HOME")
