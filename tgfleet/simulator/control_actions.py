"""Control API routes for what simulated users do beyond writing: press inline buttons,
edit their messages, send files, add and remove group members (registered into
``routing.ROUTES``; ``control`` imports this module)."""

from __future__ import annotations

import base64
import binascii
import re
from typing import TYPE_CHECKING, Any

from tgfleet.simulator.callbacks import press
from tgfleet.simulator.editing import user_edits
from tgfleet.simulator.media import KINDS, add_document
from tgfleet.simulator.membership import change_member
from tgfleet.simulator.routing import HttpError, Json, int_field, number_field, route
from tgfleet.simulator.world import Document

if TYPE_CHECKING:
    from tgfleet.simulator.server import Simulator


def _button_data(body: Json) -> bytes | None:
    if "data_b64" in body:
        try:
            return base64.b64decode(str(body["data_b64"]), validate=True)
        except (binascii.Error, ValueError):
            raise HttpError(400, "'data_b64' must be base64") from None
    data = body.get("data")
    if data is None:
        return None
    if not isinstance(data, str):
        raise HttpError(400, "'data' must be a string (or give 'data_b64')")
    return data.encode("utf-8")


@route("POST", r"/users/(\d+)/press")
async def press_button(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    """The user presses an inline button ("text", "data" or "data_b64") of a bot's message
    and waits for the bot's answer (``timeout`` s, default the simulator's)."""
    text = body.get("text")
    if text is not None and not isinstance(text, str):
        raise HttpError(400, "'text' must be a string")
    timeout = number_field(body, "timeout") if "timeout" in body else None
    query = await press(
        sim,
        int(m[1]),
        int_field(body, "bot_id"),
        int_field(body, "message_id"),
        text=text,
        data=_button_data(body),
        timeout=timeout,
    )
    return query.to_json()


@route("GET", r"/users/(\d+)/presses")
async def presses(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    bot_id = int(q["bot_id"]) if "bot_id" in q else None
    sim.world.user(int(m[1]))
    return {"presses": [p.to_json() for p in sim.callbacks.of_user(int(m[1]), bot_id)]}


@route("POST", r"/users/(\d+)/edit")
async def edit(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    """The user edits a message they sent (``message_id`` as the bot sees it)."""
    text = body.get("text")
    if not isinstance(text, str):
        raise HttpError(400, "'text' must be a string")
    pts = user_edits(sim, int(m[1]), int_field(body, "bot_id"), int_field(body, "message_id"), text)
    return {"pts": pts}


def document_from_body(sim: Simulator, media: Any) -> Document | None:
    """``{"type": "document"|"voice"|"video", "file_name"?, "mime_type"?, "size"?,
    "duration"?, "width"?, "height"?}`` -> a new document (None for no media)."""
    if media is None:
        return None
    if not isinstance(media, dict) or media.get("type") not in KINDS:
        raise HttpError(400, f"'media' must be an object with 'type' one of {', '.join(KINDS)}")
    name, mime = media.get("file_name"), media.get("mime_type")
    if not isinstance(name, str | None) or not isinstance(mime, str | None):
        raise HttpError(400, "'file_name' and 'mime_type' must be strings")
    return add_document(
        sim.world,
        media["type"],
        mime,
        int(number_field(media, "size", 12_345)),
        name,
        number_field(media, "duration", 0),
        int(number_field(media, "width", 0)),
        int(number_field(media, "height", 0)),
    )


def _member_change(joined: bool) -> Any:
    async def handler(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
        sent = change_member(
            sim, int(m[1]), int_field(body, "member_id"), int_field(body, "actor_id"), joined
        )
        return {"messages": sent}

    return handler


route("POST", r"/groups/(\d+)/add")(_member_change(True))
route("POST", r"/groups/(\d+)/remove")(_member_change(False))
