"""Persisting the simulator's state (RSA key, secret, bots, users, histories, auth keys) as
JSON, written atomically (temporary file + rename)."""

from __future__ import annotations

import base64
import json
import os
import tempfile
from collections import OrderedDict, deque
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tgfleet.simulator.handshake import ServerKey
from tgfleet.simulator.limits import FloodLimits
from tgfleet.simulator.sessions import AuthSession, SessionStore
from tgfleet.simulator.world import (
    Bot,
    Document,
    Group,
    HistoryEntry,
    Photo,
    QtsEntry,
    Received,
    StoredMessage,
    User,
    World,
)

STATE_VERSION = 1


def _bot_json(bot: Bot) -> dict[str, Any]:
    return {
        "id": bot.id,
        "token": bot.token,
        "first_name": bot.first_name,
        "username": bot.username,
        "pts": bot.pts,
        "next_message_id": bot.next_message_id,
        "messages": [asdict(m) for m in bot.messages.values()],
        "history": [[e.pts, e.kind, e.message_id] for e in bot.history],
        "random_ids": [[r, m] for r, m in bot.random_ids.items()],
        "qts": bot.qts,
        "stars_tenths": bot.stars_tenths,
        "paid_messages": bot.paid_messages,
        "qts_history": [asdict(e) for e in bot.qts_history],
    }


def _bot_from_json(data: dict[str, Any]) -> Bot:
    bot = Bot(data["id"], data["token"], data["first_name"], data["username"])
    bot.pts = data["pts"]
    bot.next_message_id = data["next_message_id"]
    bot.messages = OrderedDict((m["id"], StoredMessage(**m)) for m in data["messages"])
    bot.history = deque(HistoryEntry(p, k, m) for p, k, m in data["history"])
    bot.random_ids = OrderedDict((r, m) for r, m in data["random_ids"])
    bot.qts = data.get("qts", 0)
    bot.stars_tenths = data.get("stars_tenths", 0)
    bot.paid_messages = data.get("paid_messages", 0)
    bot.qts_history = deque(QtsEntry(**e) for e in data.get("qts_history", []))
    return bot


def _user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "username": user.username,
        "lang_code": user.lang_code,
        "received": [asdict(r) for r in user.received],
        "blocked_bots": sorted(user.blocked_bots),
    }


def _user_from_json(data: dict[str, Any], inbox_limit: int) -> User:
    user = User(
        data["id"], data["first_name"], data["last_name"], data["username"], data.get("lang_code")
    )
    user.received = deque((Received(**r) for r in data["received"]), maxlen=inbox_limit)
    user.blocked_bots = set(data.get("blocked_bots", []))
    return user


def _file_json(item: Photo | Document) -> dict[str, Any]:
    data = asdict(item)
    data["file_reference"] = base64.b64encode(item.file_reference).decode()
    return data


def dump_state(
    world: World, sessions: SessionStore, key: ServerKey, limits: FloodLimits
) -> dict[str, Any]:
    return {
        "version": STATE_VERSION,
        "rsa_private_key": key.private_pem(),
        "secret": world.hashes.secret.hex(),
        "access_hashes": world.hashes.to_json(),
        "next_id": world.next_id,
        "limits": limits.to_json(),
        "bots": [_bot_json(b) for b in world.bots.values()],
        "users": [_user_json(u) for u in world.users.values()],
        "photos": [_file_json(p) for p in world.photos.values()],
        "documents": [_file_json(d) for d in world.documents.values()],
        "groups": [
            {"id": g.id, "title": g.title, "members": sorted(g.members), "date": g.date}
            for g in world.groups.values()
        ],
        "auth_keys": [s.to_json() for s in sessions.all()],
    }


def load_state(
    data: dict[str, Any], world: World, sessions: SessionStore, limits: FloodLimits
) -> ServerKey:
    """Fill an empty ``world``/``sessions`` from ``data``; returns the stored RSA key."""
    if data.get("version") != STATE_VERSION:
        raise ValueError(f"unsupported simulator state version {data.get('version')!r}")
    world.hashes.secret = bytes.fromhex(data["secret"])
    world.hashes.load(data.get("access_hashes", {}))
    for bot in data["bots"]:
        world.add_bot(_bot_from_json(bot))
    for user in data["users"]:
        world.add_user(_user_from_json(user, world.inbox_limit))
    for photo in data["photos"]:
        photo["file_reference"] = base64.b64decode(photo["file_reference"])
        world.photos[photo["id"]] = Photo(**photo)
    for doc in data.get("documents", []):
        doc["file_reference"] = base64.b64decode(doc["file_reference"])
        world.documents[doc["id"]] = Document(**doc)
    for group in data.get("groups", []):
        world.groups[group["id"]] = Group(
            group["id"], group["title"], set(group["members"]), group["date"]
        )
    world.next_id = max(world.next_id, data["next_id"])
    for session in data["auth_keys"]:
        sessions.restore(AuthSession.from_json(session))
    limits.update(data.get("limits", {}))
    return ServerKey.from_private_pem(data["rsa_private_key"])


def read_state_file(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    with path.open(encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def write_state_file(path: Path, data: dict[str, Any]) -> None:
    """Write ``data`` so that a crash leaves either the old or the new file, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, separators=(",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
