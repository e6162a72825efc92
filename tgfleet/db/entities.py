"""The entity store: the one module that writes ``entities``.

Access hashes are per account: a hash any update brought is valid for every session of
that bot, on every node, so the sender resolves peers from here. The inbox writes the
peers every update brings (``upsert_entities``, which also keeps their ``tg_users`` rows);
the sender writes what it learns from Telegram (``remember_entity``); a user's new
username follows (``rename_user``).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict

from sqlalchemy import event, func
from sqlalchemy import update as update_stmt
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from tgfleet.db.enums import PeerType
from tgfleet.db.models import Entity, TgUser
from tgfleet.db.prepared import Call, Prepared, execute_batch
from tgfleet.platform.envelope import EntityRecord

#: Peers written recently by this process: (bot, type, id) -> (record, when). Unchanged
#: peers seen within ENTITY_FRESH_S are not written again (one user, many messages).
_recent: OrderedDict[tuple[int, str, int], tuple[EntityRecord, float]] = OrderedDict()
ENTITY_FRESH_S = 60.0
_RECENT_MAX = 50_000


# Every update a worker handles may bring new peers: these run as prepared statements
# (planned once per connection; built with the ORM, compiling the multi-row upsert and
# its ``excluded`` columns cost half of an update worker's CPU when most senders were new).
_UPSERT_ENTITIES = Prepared(
    "tgfleet_upsert_entities",
    ("bigint", "jsonb"),
    "INSERT INTO entities (bot_id, peer_type, peer_id, access_hash, username) "
    "SELECT $1, r.peer_type::peer_type, r.peer_id, r.access_hash, r.username "
    "FROM jsonb_to_recordset($2) AS r(peer_type text, peer_id bigint, access_hash bigint, "
    "username text) "
    "ON CONFLICT (bot_id, peer_type, peer_id) DO UPDATE SET "
    "access_hash = excluded.access_hash, username = excluded.username, updated_at = now() "
    "WHERE (entities.access_hash, entities.username) IS DISTINCT FROM "
    "(excluded.access_hash, excluded.username)",
)
_UPSERT_USERS = Prepared(
    "tgfleet_upsert_tg_users",
    ("bigint", "jsonb"),
    "INSERT INTO tg_users (bot_id, user_id, first_name, last_name, username, language_code) "
    "SELECT $1, r.user_id, r.first_name, r.last_name, r.username, r.language_code "
    "FROM jsonb_to_recordset($2) AS r(user_id bigint, first_name text, last_name text, "
    "username text, language_code text) "
    "ON CONFLICT (bot_id, user_id) DO UPDATE SET first_name = excluded.first_name, "
    "last_name = excluded.last_name, username = excluded.username, "
    "language_code = coalesce(excluded.language_code, tg_users.language_code), "
    "last_seen_at = now()",
)


def _stale(bot_id: int, records: tuple[EntityRecord, ...]) -> list[EntityRecord]:
    now = time.monotonic()
    out = []
    for record in {(r.peer_type, r.peer_id): r for r in records}.values():
        seen = _recent.get((bot_id, record.peer_type, record.peer_id))
        if seen is None or seen[0] != record or now - seen[1] > ENTITY_FRESH_S:
            out.append(record)
    return out


def _remember_after_commit(session: Session, bot_id: int, records: list[EntityRecord]) -> None:
    """Cache the peers once their rows are committed (a rollback must not be cached)."""

    def remember(_: Session) -> None:
        now = time.monotonic()
        for record in records:
            key = (bot_id, record.peer_type, record.peer_id)
            _recent[key] = (record, now)
            _recent.move_to_end(key)
        while len(_recent) > _RECENT_MAX:
            _recent.popitem(last=False)

    event.listen(session, "after_commit", remember, once=True)


def upsert_entities(session: Session, bot_id: int, records: tuple[EntityRecord, ...]) -> None:
    """Entity store + tg_users from the peers an update brought (hashes are per account)."""
    stale = _stale(bot_id, records)
    if not stale:
        return
    _remember_after_commit(session, bot_id, stale)
    records = tuple(stale)
    peers = [
        {
            "peer_type": str(PeerType(r.peer_type)),
            "peer_id": r.peer_id,
            "access_hash": r.access_hash,
            "username": r.username,
        }
        for r in {(r.peer_type, r.peer_id): r for r in records}.values()
    ]
    calls: list[Call] = [(_UPSERT_ENTITIES, (bot_id, json.dumps(peers)))]
    users = [
        {
            "user_id": r.peer_id,
            "first_name": r.first_name,
            "last_name": r.last_name,
            "username": r.username,
            "language_code": r.lang,
        }
        for r in {r.peer_id: r for r in records if r.peer_type == "user"}.values()
    ]
    if users:
        calls.append((_UPSERT_USERS, (bot_id, json.dumps(users))))
    execute_batch(session, calls)


def remember_entity(
    session: Session,
    bot_id: int,
    kind: PeerType,
    peer_id: int,
    access_hash: int | None,
    username: str | None,
) -> None:
    """Upsert one peer the sender learnt from Telegram (keeps a known username when none
    is given)."""
    stmt = insert(Entity).values(
        bot_id=bot_id, peer_type=kind, peer_id=peer_id, access_hash=access_hash, username=username
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["bot_id", "peer_type", "peer_id"],
        set_={
            "access_hash": stmt.excluded.access_hash,
            "username": func.coalesce(stmt.excluded.username, Entity.username),
            "updated_at": func.now(),
        },
    )
    session.execute(stmt)


def rename_user(session: Session, bot_id: int, user_id: int, username: str | None) -> None:
    """A user's username changed: the stored peer follows."""
    session.execute(
        update_stmt(Entity)
        .where(
            Entity.bot_id == bot_id,
            Entity.peer_type == PeerType.USER,
            Entity.peer_id == user_id,
        )
        .values(username=username, updated_at=func.now())
    )


def choose_language(session: Session, bot_id: int, user_id: int, lang: str) -> None:
    """Store the language ``user_id`` chose in this bot (``tg_users.chosen_lang``); the
    drain reads it before Telegram's ``language_code``. In the caller's transaction."""
    stmt = insert(TgUser).values(bot_id=bot_id, user_id=user_id, chosen_lang=lang)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[TgUser.bot_id, TgUser.user_id], set_={"chosen_lang": lang}
        )
    )
