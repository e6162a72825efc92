"""The entity store: the one module that writes ``entities``.

Access hashes are per account: a hash any update brought is valid for every session of
that bot, on every node, so the sender resolves peers from here. The inbox writes the
peers every update brings (``upsert_entities``, which also keeps their ``tg_users`` rows);
the sender writes what it learns from Telegram (``remember_entity``); a user's new
username follows (``rename_user``).
"""

from __future__ import annotations

import time
from collections import OrderedDict

from sqlalchemy import event, func, text
from sqlalchemy import update as update_stmt
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from tgfleet.db.enums import PeerType
from tgfleet.db.models import Entity, TgUser
from tgfleet.platform.envelope import EntityRecord

#: Peers written recently by this process: (bot, type, id) -> (record, when). Unchanged
#: peers seen within ENTITY_FRESH_S are not written again (one user, many messages).
_recent: OrderedDict[tuple[int, str, int], tuple[EntityRecord, float]] = OrderedDict()
ENTITY_FRESH_S = 60.0
_RECENT_MAX = 50_000


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
    rows = [
        {
            "bot_id": bot_id,
            "peer_type": PeerType(r.peer_type),
            "peer_id": r.peer_id,
            "access_hash": r.access_hash,
            "username": r.username,
        }
        for r in {(r.peer_type, r.peer_id): r for r in records}.values()
    ]
    stmt = insert(Entity).values(rows)
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Entity.bot_id, Entity.peer_type, Entity.peer_id],
            set_={
                "access_hash": stmt.excluded.access_hash,
                "username": stmt.excluded.username,
                "updated_at": func.now(),
            },
            where=text(
                "(entities.access_hash, entities.username) IS DISTINCT FROM "
                "(excluded.access_hash, excluded.username)"
            ),
        )
    )
    users = [
        {
            "bot_id": bot_id,
            "user_id": r.peer_id,
            "first_name": r.first_name,
            "last_name": r.last_name,
            "username": r.username,
            "language_code": r.lang,
        }
        for r in {r.peer_id: r for r in records if r.peer_type == "user"}.values()
    ]
    if users:
        ustmt = insert(TgUser).values(users)
        session.execute(
            ustmt.on_conflict_do_update(
                index_elements=[TgUser.bot_id, TgUser.user_id],
                set_={
                    "first_name": ustmt.excluded.first_name,
                    "last_name": ustmt.excluded.last_name,
                    "username": ustmt.excluded.username,
                    "language_code": func.coalesce(
                        ustmt.excluded.language_code, TgUser.language_code
                    ),
                    "last_seen_at": func.now(),
                },
            )
        )


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
