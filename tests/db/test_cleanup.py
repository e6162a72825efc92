"""Clean-up deletes what is past retention and nothing else."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, text

from tgfleet.db.cleanup import expire_rows
from tgfleet.platform.settings import Settings


def test_cleanup_expires_old_rows_and_keeps_admin_entities(
    ops_db: Settings, ops_owner: Engine, make_ops_bot: Callable[..., int]
) -> None:
    # Given old and fresh processed updates, sent/failed outbox rows and entities
    bot = make_ops_bot(admins=[500])
    old = "now() - interval '400 days'"
    with ops_owner.begin() as conn:
        for key, when in (("old", old), ("new", "now()")):
            conn.execute(
                text(
                    "INSERT INTO processed_updates (bot_id, dedupe_key, processed_at) "
                    f"VALUES (:b, :k, {when})"
                ),
                {"b": bot, "k": key},
            )
        for status, when in (("sent", old), ("sent", "now()"), ("failed", old)):
            conn.execute(
                text(
                    "INSERT INTO outbox (bot_id, chat_id, text, status, sent_at) "
                    f"VALUES (:b, 1, :s, CAST(:s AS outbox_status), {when})"
                ),
                {"b": bot, "s": status},
            )
        for peer, when in ((500, old), (501, old), (502, "now()")):
            conn.execute(
                text(
                    "INSERT INTO entities (bot_id, peer_type, peer_id, updated_at) "
                    f"VALUES (:b, 'user', :p, {when})"
                ),
                {"b": bot, "p": peer},
            )
    # When clean-up runs with batches of one row
    deleted = expire_rows(ops_db.model_copy(update={"maintenance_batch_rows": 1}))
    # Then only the old processed update, the old sent row and the stale non-admin entity went
    assert deleted == {"processed_updates": 1, "outbox": 1, "entities": 1}
    with ops_owner.connect() as conn:
        keys = (
            conn.execute(
                text("SELECT dedupe_key FROM processed_updates WHERE bot_id = :b"), {"b": bot}
            )
            .scalars()
            .all()
        )
        statuses = (
            conn.execute(
                text("SELECT status::text FROM outbox WHERE bot_id = :b ORDER BY id"), {"b": bot}
            )
            .scalars()
            .all()
        )
        peers = (
            conn.execute(
                text("SELECT peer_id FROM entities WHERE bot_id = :b ORDER BY peer_id"), {"b": bot}
            )
            .scalars()
            .all()
        )
    assert (keys, statuses, peers) == (["new"], ["sent", "failed"], [500, 502])
