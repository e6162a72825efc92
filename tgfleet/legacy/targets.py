"""Where each legacy component lands in PostgreSQL, as SQL.

Why raw SQL: the load path is COPY into a temporary staging table followed by one
set-based INSERT/UPDATE/DELETE per batch, and checksums are computed by PostgreSQL
over whole tables; the ORM has no constructs for COPY and would load rows one by one.

Mapping (docs/legacy-json.md has the field definitions):

* users         -> tg_users (user_id, username, first_name, language_code, first_seen_at)
* profiles      -> profiles (user_id, display_name, age, city, bio, looking_for,
                             photo_file_id, visibility 'visible'/'hidden')
* conversations -> messages (chat_id = the user, tg_message_id, sender_id, direction,
                             text, created_at, processed_at = created_at so handlers
                             never run on history) + one conversations row per chat.

Every statement runs inside the bot's RLS context and also filters on ``bot_id``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from tgfleet.legacy.format import Component

_NULL = "'\\N'"


def _hash_expr(*exprs: str) -> str:
    """SQL for the signed 64-bit row hash of checksum.row_hash over ``exprs``."""
    parts = ", ".join(f"coalesce(({e})::text, {_NULL})" for e in exprs)
    return f"('x' || substr(md5(concat_ws(chr(31), {parts})), 1, 16))::bit(64)::bigint"


def _us(column: str) -> str:
    return f"((extract(epoch from {column}) * 1000000)::bigint)"


def _tf(column: str) -> str:
    return f"(CASE WHEN {column} THEN 't' WHEN NOT {column} THEN 'f' END)"


@dataclass(frozen=True)
class Target:
    """The SQL that loads, compares and exports one component."""

    component: Component
    table: str
    #: Staging table columns, in the validators' tuple order.
    stage_columns: str
    #: Key columns in the target table, and matching staging columns.
    key: tuple[str, ...]
    stage_key: tuple[str, ...]
    #: The component's rows as validator-ordered tuples (for export/sample/checksum).
    select: str
    hash_expr: str
    #: ``INSERT ... SELECT ... FROM stage`` skipping rows whose key exists already.
    insert_plain: str
    #: ``UPDATE <table> t ... FROM stage s WHERE <same key>``: see ``update_if_hash_differs``.
    update_matching: str
    delete_missing: str

    @property
    def insert_new(self) -> str:
        """Insert the staged rows that are new; returns the keys inserted."""
        keys = ", ".join(f"t.{k}" for k in self.key)
        return f"{self.insert_plain} RETURNING {keys}"

    @property
    def conflicts(self) -> str:
        """After ``insert_plain``: the staged keys this transaction did not insert (they
        existed already). Only run when the insert's row count says there are some."""
        join = " AND ".join(
            f"t.{k} = s.{sk}" for k, sk in zip(self.key, self.stage_key, strict=True)
        )
        keys = ", ".join(f"s.{sk}" for sk in self.stage_key)
        return (
            f"SELECT {keys} FROM stage s WHERE NOT EXISTS (SELECT 1 FROM {self.table} t "
            f"WHERE t.bot_id = :bot AND {join} AND t.xmin = pg_current_xact_id()::xid)"
        )

    @property
    def update_if_hash_differs(self) -> str:
        """Update the rows whose record hash (``checksum.row_hash``, staged in ``s.h``)
        differs from the hash of what PostgreSQL holds: re-scans rewrite only changes."""
        return f"{self.update_matching} AND {self.hash_expr} <> s.h"

    def with_hash(self) -> Target:
        """This target with a ``h bigint`` (record hash) column on the staging table."""
        return replace(self, stage_columns=self.stage_columns + ", h bigint")

    def stage_ddl(self) -> str:
        return f"CREATE TEMP TABLE stage ({self.stage_columns}) ON COMMIT DROP"

    def checksum_sql(self) -> str:
        return (
            f"SELECT count(*), coalesce(sum({self.hash_expr}::numeric), 0) "
            f"FROM {self.table} t WHERE t.bot_id = :bot"
        )


USERS = Target(
    component=Component.USERS,
    table="tg_users",
    stage_columns="id bigint, username text, first_name text, language text, created timestamptz",
    key=("user_id",),
    stage_key=("id",),
    select=(
        "SELECT t.user_id, t.username, t.first_name, t.language_code, t.first_seen_at "
        "FROM tg_users t WHERE t.bot_id = :bot"
    ),
    hash_expr=_hash_expr(
        "t.user_id", "t.username", "t.first_name", "t.language_code", _us("t.first_seen_at")
    ),
    insert_plain=(
        "INSERT INTO tg_users AS t (bot_id, user_id, username, first_name, language_code, "
        "first_seen_at, last_seen_at) "
        "SELECT :bot, s.id, s.username, s.first_name, s.language, s.created, s.created "
        "FROM stage s ON CONFLICT (bot_id, user_id) DO NOTHING"
    ),
    update_matching=(
        "UPDATE tg_users t SET username = s.username, first_name = s.first_name, "
        "language_code = s.language, first_seen_at = s.created FROM stage s "
        "WHERE t.bot_id = :bot AND t.user_id = s.id"
    ),
    delete_missing=(
        "DELETE FROM tg_users t WHERE t.bot_id = :bot "
        "AND NOT EXISTS (SELECT 1 FROM stage s WHERE s.id = t.user_id)"
    ),
)

PROFILES = Target(
    component=Component.PROFILES,
    table="profiles",
    stage_columns=(
        "user_id bigint, name text, age smallint, city text, bio text, looking_for text, "
        "photo text, visible boolean"
    ),
    key=("user_id",),
    stage_key=("user_id",),
    select=(
        "SELECT t.user_id, t.display_name, t.age, t.city, t.bio, t.looking_for, "
        "t.photo_file_id, t.visibility = 'visible' FROM profiles t WHERE t.bot_id = :bot"
    ),
    hash_expr=_hash_expr(
        "t.user_id",
        "t.display_name",
        "t.age",
        "t.city",
        "t.bio",
        "t.looking_for",
        "t.photo_file_id",
        _tf("t.visibility = 'visible'"),
    ),
    insert_plain=(
        "INSERT INTO profiles AS t (bot_id, user_id, display_name, age, city, bio, "
        "looking_for, photo_file_id, visibility) "
        "SELECT :bot, s.user_id, s.name, s.age, s.city, s.bio, s.looking_for, s.photo, "
        "(CASE WHEN s.visible THEN 'visible' ELSE 'hidden' END)::profile_visibility "
        "FROM stage s ON CONFLICT (bot_id, user_id) DO NOTHING"
    ),
    update_matching=(
        "UPDATE profiles t SET display_name = s.name, age = s.age, city = s.city, "
        "bio = s.bio, looking_for = s.looking_for, photo_file_id = s.photo, "
        "visibility = (CASE WHEN s.visible THEN 'visible' ELSE 'hidden' END)"
        "::profile_visibility, version = t.version + 1, updated_at = now() FROM stage s "
        "WHERE t.bot_id = :bot AND t.user_id = s.user_id"
    ),
    delete_missing=(
        "DELETE FROM profiles t WHERE t.bot_id = :bot "
        "AND NOT EXISTS (SELECT 1 FROM stage s WHERE s.user_id = t.user_id)"
    ),
)

#: The enum constants are typed in the SQL, so PostgreSQL folds them once per statement
#: instead of casting text to the enum for every row.
_DIRECTION = (
    "(CASE WHEN s.sender = :bot THEN 'out'::message_direction ELSE 'in'::message_direction END)"
)
_MESSAGES_INSERT = (
    "INSERT INTO messages AS t (bot_id, created_at, direction, chat_id, sender_id, "
    f"tg_message_id, text, processed_at) SELECT :bot, s.date, {_DIRECTION}, s.user_id, "
    "s.sender, s.id, s.text, s.date FROM stage s"
)
_MESSAGE_IS_NEW = (
    "NOT EXISTS (SELECT 1 FROM messages m WHERE m.bot_id = :bot AND m.chat_id = s.user_id "
    "AND m.tg_message_id = s.id)"
)
#: First loads read conversation files in chat id order, so the chats whose files start
#: in a batch lie above every chat loaded before: one probe of their id range (a few
#: index descents) usually shows that none of them has a message in PostgreSQL yet.
ANY_MESSAGE_BETWEEN = (
    "SELECT EXISTS (SELECT 1 FROM messages m WHERE m.bot_id = :bot "
    "AND m.chat_id BETWEEN :lo AND :hi)"
)
#: Otherwise, the chats of ``:chats`` that have one (a probe per chat and partition).
CHATS_WITH_MESSAGES = (
    "SELECT c FROM unnest(CAST(:chats AS bigint[])) AS c "
    "WHERE EXISTS (SELECT 1 FROM messages m WHERE m.bot_id = :bot AND m.chat_id = c)"
)
#: Every staged message, without probing for existing ids (no chat of the batch needs it).
INSERT_MESSAGES = _MESSAGES_INSERT
#: The staged messages of chats outside ``:probed`` (files loaded whole from their first
#: record, into chats with no message yet: ids are unique within a file) without the
#: probe, and those of the ``:probed`` chats with it.
INSERT_UNPROBED_MESSAGES = f"{_MESSAGES_INSERT} WHERE NOT (s.user_id = ANY(:probed))"
INSERT_PROBED_MESSAGES = f"{_MESSAGES_INSERT} WHERE s.user_id = ANY(:probed) AND {_MESSAGE_IS_NEW}"

MESSAGES = Target(
    component=Component.CONVERSATIONS,
    table="messages",
    stage_columns="user_id bigint, id bigint, sender bigint, text text, date timestamptz",
    key=("chat_id", "tg_message_id"),
    stage_key=("user_id", "id"),
    select=(
        "SELECT t.chat_id, t.tg_message_id, t.sender_id, t.text, t.created_at "
        "FROM messages t WHERE t.bot_id = :bot"
    ),
    hash_expr=_hash_expr(
        "t.chat_id", "t.tg_message_id", "t.sender_id", "t.text", _us("t.created_at")
    ),
    insert_plain=f"{_MESSAGES_INSERT} WHERE {_MESSAGE_IS_NEW}",
    update_matching=(
        f"UPDATE messages t SET created_at = s.date, direction = {_DIRECTION}, "
        "sender_id = s.sender, text = s.text, processed_at = s.date FROM stage s "
        "WHERE t.bot_id = :bot AND t.chat_id = s.user_id AND t.tg_message_id = s.id"
    ),
    delete_missing=(
        "DELETE FROM messages t WHERE t.bot_id = :bot AND t.chat_id = :chat "
        "AND NOT EXISTS (SELECT 1 FROM stage s WHERE s.user_id = t.chat_id "
        "AND s.id = t.tg_message_id)"
    ),
)

#: Adds a batch's new messages to their chats' conversations rows (counted in Python).
ADD_TO_CONVERSATIONS = (
    "INSERT INTO conversations AS c (bot_id, chat_id, messages_in, messages_out, "
    "last_message_at) SELECT :bot, u.chat, u.n_in, u.n_out, u.last FROM unnest("
    "CAST(:chats AS bigint[]), CAST(:n_in AS int[]), CAST(:n_out AS int[]), "
    "CAST(:last AS timestamptz[])) AS u(chat, n_in, n_out, last) "
    "ON CONFLICT (bot_id, chat_id) DO UPDATE SET "
    "messages_in = c.messages_in + excluded.messages_in, "
    "messages_out = c.messages_out + excluded.messages_out, "
    "last_message_at = greatest(c.last_message_at, excluded.last_message_at), "
    "updated_at = now()"
)

#: Recounts chats' conversations rows (after a re-scan, or a batch with duplicates).
REFRESH_CONVERSATIONS = (
    "INSERT INTO conversations AS c (bot_id, chat_id, messages_in, messages_out, "
    "last_message_at, last_processed_message_id) "
    "SELECT :bot, m.chat_id, count(*) FILTER (WHERE m.direction = 'in'), "
    "count(*) FILTER (WHERE m.direction = 'out'), max(m.created_at), max(m.id) "
    "FROM messages m WHERE m.bot_id = :bot AND m.chat_id = ANY(:chats) GROUP BY m.chat_id "
    "ON CONFLICT (bot_id, chat_id) DO UPDATE SET messages_in = excluded.messages_in, "
    "messages_out = excluded.messages_out, last_message_at = excluded.last_message_at, "
    "updated_at = now()"
)

TARGETS: dict[Component, Target] = {t.component: t for t in (USERS, PROFILES, MESSAGES)}


def array_literal(values: Iterable[object]) -> str:
    """``values`` as one PostgreSQL array literal (pass it as ``CAST(:x AS type[])``).

    For the arrays of hundreds of elements a batch sends (checkpoints, conversation
    counts): PostgreSQL reads one literal much faster than the ``ARRAY[...]`` expression
    of one parameter per element that psycopg2 makes of a list, and so does Python.
    """
    return "{" + ",".join([_array_element(v) for v in values]) + "}"


def _array_element(value: object) -> str:
    if value is None:
        return "NULL"
    if value is True or value is False:
        return "t" if value else "f"
    if isinstance(value, int):
        return str(value)
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def copy_text(value: object) -> str:
    """One field in PostgreSQL COPY text format."""
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, str):
        if "\\" in value:
            value = value.replace("\\", "\\\\")
        if "\t" in value or "\n" in value or "\r" in value:
            value = value.replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _message_line(row: tuple[Any, ...], raw: Any = None) -> str:
    # The hot path (millions of rows): ids never need escaping, and a date written as
    # "YYYY-MM-DDTHH:MM:SS+00:00" (what tgfleet and most old bots write) goes through as
    # it was found: PostgreSQL reads it as the same instant, and datetime.isoformat()
    # would cost as much as the whole rest of the line.
    date = raw.get("date") if type(raw) is dict else None
    if not (type(date) is str and len(date) == 25 and date[10] == "T" and date.endswith("+00:00")):
        date = row[4].isoformat()
    return f"{row[0]}\t{row[1]}\t{row[2]}\t{copy_text(row[3])}\t{date}\n"


def _generic_line(row: tuple[Any, ...], raw: Any = None) -> str:
    return "\t".join([copy_text(v) for v in row]) + "\n"


def copy_line(component: Component) -> Callable[[tuple[Any, ...], Any], str]:
    """Formats a validated row (and the raw record it came from) as a COPY text line."""
    return _message_line if component is Component.CONVERSATIONS else _generic_line
