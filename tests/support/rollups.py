"""An hour of a bot's life with known facts, for the roll-up and ``tgfleet stats`` tests."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

HOUR = datetime(2026, 3, 14, 9, tzinfo=UTC)


def seed(owner: Engine, bot: int) -> None:
    """One hour of a bot's life at HOUR (written as the superuser, with exact timestamps)."""
    at = HOUR + timedelta(minutes=10)
    with owner.begin() as conn:
        for n, (sender, latency_ms) in enumerate([(1, 100), (2, 200), (2, 300)]):
            conn.execute(
                text(
                    "INSERT INTO messages (bot_id, created_at, direction, chat_id, sender_id, "
                    "processed_at) VALUES (:b, :at, 'in', :s, :s, :at + :lat)"
                ),
                {
                    "b": bot,
                    "at": at + timedelta(seconds=n),
                    "s": sender,
                    "lat": timedelta(milliseconds=latency_ms),
                },
            )
        events = [
            ("new_user", 3),
            ("profile_updated", 1),
            ("profile_updated", 1),
            ("like", 2),
            ("like", 2),
            ("like", 2),
            ("match", 2),
            ("skip", 4),
        ]
        for kind, user in events:
            conn.execute(
                text("INSERT INTO events (bot_id, at, kind, user_id) VALUES (:b, :at, :k, :u)"),
                {"b": bot, "at": at, "k": kind, "u": user},
            )
        for status, when in [
            ("sent", at),
            ("sent", at),
            ("failed", at),
            ("dead", at),
            ("sent", HOUR + timedelta(hours=2)),
        ]:
            conn.execute(
                text(
                    "INSERT INTO outbox (bot_id, chat_id, text, status, sent_at, updated_at) "
                    "VALUES (:b, 1, 'x', CAST(:st AS outbox_status), "
                    "CASE WHEN :st = 'sent' THEN CAST(:w AS timestamptz) END, :w)"
                ),
                {"b": bot, "st": status, "w": when},
            )
        for error in ("FLOOD_WAIT_5", "FLOOD_WAIT_7", "RPCError: boom"):
            conn.execute(
                text(
                    "INSERT INTO audit_log (at, bot_id, table_name, op, row_key, new_values, "
                    "actor_role, login_role, txid) VALUES (:at, :b, 'outbox', 'UPDATE', '{}', "
                    "CAST(:nv AS jsonb), 'x', 'x', 1)"
                ),
                {"at": at, "b": bot, "nv": json.dumps({"last_error": error})},
            )
