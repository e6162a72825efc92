"""Update envelopes as a listener publishes them, built without a listener (for the
tests that drive the inbox or the update tasks directly)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from telethon.tl import types

from tgfleet.platform.envelope import encode


def message_envelope(
    bot_id: int,
    user_id: int,
    msg_id: int,
    text: str,
    prev: int | None = None,
    access_hash: int | None = None,
) -> dict[str, Any]:
    """The envelope for ``user_id`` writing ``text`` to the bot in their private chat;
    the user's access hash is ``user_id * 7`` unless given."""
    user = types.User(
        id=user_id,
        access_hash=user_id * 7 if access_hash is None else access_hash,
        first_name=f"U{user_id}",
    )
    message = types.Message(
        id=msg_id,
        peer_id=types.PeerUser(user_id),
        date=datetime.now(UTC),
        message=text,
        from_id=types.PeerUser(user_id),
    )
    update = types.UpdateNewMessage(message=message, pts=msg_id, pts_count=1)
    return encode(bot_id, update, [user], prev_id=prev)
