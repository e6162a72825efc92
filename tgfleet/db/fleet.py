"""The fleet in PostgreSQL: bots, their tokens and per-node sessions, update state.

Tokens and Telethon session strings are stored encrypted (``tgfleet.db.crypto``) and
never logged. A session belongs to one node (a listener host or a sender host):
Telegram kills an auth key used from two places at once.
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert

from tgfleet.db import (
    Bot,
    BotKind,
    BotSession,
    BotStatus,
    UpdateState,
    decrypt_secret,
    encrypt_secret,
    session_scope,
    token_fingerprint,
)
from tgfleet.db.prepared import Prepared, execute
from tgfleet.platform.errors import TgfleetError
from tgfleet.platform.settings import Settings

#: "<bot id>:<secret>", as BotFather hands them out.
TOKEN_RE = re.compile(r"^(\d{1,15}):([A-Za-z0-9_-]{30,64})$")


class FleetError(TgfleetError):
    """A fleet operation failed; the message says what to do."""


@dataclass(frozen=True)
class BotInfo:
    id: int
    name: str
    status: BotStatus
    admin_chat_ids: tuple[int, ...]
    app: str | None


@dataclass(frozen=True)
class SavedState:
    pts: int
    qts: int
    date: datetime | None
    seq: int


#: Every listener saves every bot's state up to twice a second: a prepared statement (as
#: an ORM upsert, compiling it was two fifths of a listener's CPU with 20 busy bots).
#: The chain tails (``save_update_state``) go with the state they belong to.
_SAVE_STATE = Prepared(
    "tgfleet_save_update_state_v2",
    ("bigint", "bigint", "bigint", "timestamptz", "bigint", "jsonb"),
    "INSERT INTO update_state (bot_id, pts, qts, date, seq, chains) "
    "VALUES ($1, $2, $3, $4, $5, $6) "
    "ON CONFLICT (bot_id) DO UPDATE SET pts = excluded.pts, qts = excluded.qts, "
    "date = excluded.date, seq = excluded.seq, chains = excluded.chains, updated_at = now() "
    "WHERE update_state.pts <= excluded.pts",
)


def node_name(role: str) -> str:
    """The session-owner name of this machine for ``role`` (listener, sender)."""
    return f"{role}@{socket.gethostname()}"


def bot_id_from_token(token: str) -> int:
    match = TOKEN_RE.match(token.strip())
    if match is None:
        raise FleetError(
            "that is not a bot token: expected '<digits>:<30+ letters, digits, - or _>' "
            "as @BotFather gives it"
        )
    return int(match.group(1))


def _info(bot: Bot) -> BotInfo:
    return BotInfo(
        id=bot.id,
        name=bot.name,
        status=bot.status,
        admin_chat_ids=tuple(bot.admin_chat_ids or ()),
        app=(bot.settings or {}).get("app"),
    )


def list_bots(settings: Settings, ids: list[int] | None = None) -> list[BotInfo]:
    with session_scope(settings, role="admin") as session:
        query = select(Bot).where(Bot.kind == BotKind.BOT).order_by(Bot.id)
        if ids:
            query = query.where(Bot.id.in_(ids))
        return [_info(bot) for bot in session.execute(query).scalars()]


def active_bots(settings: Settings, ids: list[int] | None = None) -> list[BotInfo]:
    return [bot for bot in list_bots(settings, ids) if bot.status is BotStatus.ACTIVE]


def save_bot(
    settings: Settings,
    token: str,
    *,
    name: str,
    admin_chat_ids: list[int],
    app: str | None = None,
) -> BotInfo:
    """Add a bot (or update its token, admins and app); the token is stored encrypted."""
    bot_id = bot_id_from_token(token)
    values = {
        "id": bot_id,
        "name": name,
        "status": BotStatus.ACTIVE,
        "admin_chat_ids": admin_chat_ids,
        "settings": {"app": app} if app else {},
        "token_encrypted": encrypt_secret(settings, token.strip()),
        "token_fingerprint": token_fingerprint(settings, token.strip()),
    }
    with session_scope(settings, role="admin", bot_id=bot_id) as session:
        stmt = insert(Bot).values(values)
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=[Bot.id],
                set_={k: stmt.excluded[k] for k in values if k != "id"},
            )
        )
        return _info(session.get_one(Bot, bot_id, populate_existing=True))


def set_status(settings: Settings, bot_id: int, status: BotStatus) -> None:
    with session_scope(settings, role="admin", bot_id=bot_id) as session:
        bot = session.get(Bot, bot_id)
        if bot is None:
            raise FleetError(f"bot {bot_id} is not in the fleet (see `tgfleet bots list`)")
        bot.status = status


def set_app(settings: Settings, bot_id: int, app: str) -> None:
    """Make ``bot_id`` run ``app`` (update workers follow within their bot cache's TTL)."""
    with session_scope(settings, bot_id=bot_id) as session:
        bot = session.get(Bot, bot_id)
        if bot is None:
            raise FleetError(f"bot {bot_id} is not in this fleet: `tgfleet bots list` shows it")
        bot.settings = {**(bot.settings or {}), "app": app}


def set_setting(settings: Settings, bot_id: int, name: str, value: Any) -> None:
    """Set (``value`` None: remove) one of the bot's settings (``bots.settings[name]``);
    workers and senders follow within their bot cache's TTL."""
    with session_scope(settings, bot_id=bot_id) as session:
        bot = session.get(Bot, bot_id)
        if bot is None:
            raise FleetError(f"bot {bot_id} is not in this fleet: `tgfleet bots list` shows it")
        changed = {k: v for k, v in (bot.settings or {}).items() if k != name}
        if value is not None:
            changed[name] = value
        bot.settings = changed


def bot_settings(settings: Settings, bot_id: int) -> dict[str, Any]:
    """The bot's settings (``bots.settings``)."""
    with session_scope(settings, bot_id=bot_id) as session:
        bot = session.get(Bot, bot_id)
        if bot is None:
            raise FleetError(f"bot {bot_id} is not in this fleet: `tgfleet bots list` shows it")
        return dict(bot.settings or {})


def remove_bot(settings: Settings, bot_id: int) -> None:
    """Delete a bot and, by cascade, everything stored for it."""
    with session_scope(settings, role="admin", bot_id=bot_id) as session:
        if session.execute(delete(Bot).where(Bot.id == bot_id)).rowcount == 0:  # type: ignore[attr-defined]
            raise FleetError(f"bot {bot_id} is not in the fleet (see `tgfleet bots list`)")


def bot_token(settings: Settings, bot_id: int) -> str:
    with session_scope(settings, bot_id=bot_id) as session:
        bot = session.get(Bot, bot_id)
        if bot is None or bot.token_encrypted is None:
            raise FleetError(f"bot {bot_id} has no token: add it with `tgfleet bots add`")
        return decrypt_secret(settings, bot.token_encrypted).decode()


def load_session(settings: Settings, bot_id: int, node: str) -> str | None:
    with session_scope(settings, bot_id=bot_id) as session:
        row = session.get(BotSession, (bot_id, node))
        return None if row is None else decrypt_secret(settings, row.session_encrypted).decode()


def save_session(settings: Settings, bot_id: int, node: str, session_string: str) -> None:
    with session_scope(settings, bot_id=bot_id) as session:
        stmt = insert(BotSession).values(
            bot_id=bot_id,
            node=node,
            session_encrypted=encrypt_secret(settings, session_string),
        )
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=[BotSession.bot_id, BotSession.node],
                set_={
                    "session_encrypted": stmt.excluded.session_encrypted,
                    "updated_at": datetime.now(UTC),
                },
            )
        )


def delete_session(settings: Settings, bot_id: int, node: str) -> None:
    with session_scope(settings, bot_id=bot_id) as session:
        session.execute(
            delete(BotSession).where(BotSession.bot_id == bot_id, BotSession.node == node)
        )


def load_update_state(settings: Settings, bot_id: int) -> SavedState | None:
    with session_scope(settings, bot_id=bot_id) as session:
        row = session.get(UpdateState, bot_id)
        if row is None or row.pts <= 0:
            return None
        return SavedState(row.pts, row.qts, row.date, row.seq)


def save_update_state(
    settings: Settings,
    bot_id: int,
    state: SavedState,
    chains: Mapping[int, tuple[int, float]] | None = None,
) -> None:
    """Persist the state of updates already published (never ahead of them), with the
    chain tails published up to it: ``chains`` maps a chat to (the last inbound message
    id published for it, when: unix seconds)."""
    tails = (
        None if chains is None else json.dumps({str(c): [m, at] for c, (m, at) in chains.items()})
    )
    with session_scope(settings, bot_id=bot_id) as session:
        execute(session, _SAVE_STATE, bot_id, state.pts, state.qts, state.date, state.seq, tails)


def load_chain_tails(
    settings: Settings, bot_id: int, max_age_s: float
) -> dict[int, tuple[int, float]]:
    """The chain tails saved with the bot's update state that are at most ``max_age_s``
    old, oldest first: chat id -> (the last inbound message id a listener published for
    it, when)."""
    with session_scope(settings, bot_id=bot_id) as session:
        row = session.get(UpdateState, bot_id)
        chains = row.chains if row is not None else None
    if not isinstance(chains, dict):
        return {}
    oldest = time.time() - max_age_s
    tails = [
        (int(chat), (int(tail[0]), float(tail[1])))
        for chat, tail in chains.items()
        if isinstance(tail, list) and len(tail) == 2 and float(tail[1]) >= oldest
    ]
    return dict(sorted(tails, key=lambda item: item[1][1]))
