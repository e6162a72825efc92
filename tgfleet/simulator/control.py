"""The simulator's HTTP JSON control API on loopback (a deliberately tiny HTTP/1.1 server
on asyncio streams: one request per connection, JSON in, JSON out)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from tgfleet.simulator.control_actions import document_from_body
from tgfleet.simulator.pushes import RELEASE_MODES
from tgfleet.simulator.routing import ROUTES, HttpError, Json, int_field, number_field, route
from tgfleet.simulator.world import Bot, Group, User, WorldError

if TYPE_CHECKING:
    from tgfleet.simulator.server import Simulator

log = logging.getLogger(__name__)

MAX_BODY = 1024 * 1024
_METHOD = re.compile(r"^([a-z][A-Za-z]*\.)?[a-z][A-Za-z0-9]*$")
_REASONS = {200: "OK", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 500: "Error"}


def bot_json(bot: Bot) -> Json:
    return {
        "id": bot.id,
        "token": bot.token,
        "username": bot.username,
        "first_name": bot.first_name,
        "pts": bot.pts,
        "stars": bot.stars_tenths / 10,
        "paid_messages": bot.paid_messages,
    }


def user_json(user: User) -> Json:
    return {
        "id": user.id,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "username": user.username,
        "lang_code": user.lang_code,
    }


@route("GET", "/health")
async def health(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    return {"ok": True, "host": sim.config.host, "port": sim.port, "control_url": sim.control_url}


@route("GET", "/stats")
async def stats(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    return sim.snapshot_stats()


@route("GET", "/rsa-key")
async def get_rsa_key(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    return {"pem": sim.public_pem}


@route("POST", "/rsa-key")
async def write_rsa_key(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    path = body.get("path")
    if not isinstance(path, str) or not path:
        raise HttpError(400, "'path' must name the file to write the PEM to")
    return {"path": str(sim.write_rsa_key(path))}


@route("GET", "/bots")
async def list_bots(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    return {"bots": [bot_json(b) for b in sim.world.bots.values()]}


@route("POST", "/bots")
async def create_bot(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    return bot_json(sim.create_bot(body.get("username"), body.get("first_name")))


@route("GET", r"/bots/(\d+)")
async def get_bot(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    return bot_json(sim.world.bot(int(m[1])))


@route("POST", r"/bots/(\d+)/stars")
async def set_stars(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    """Set the bot's Stars balance (``stars``, in steps of 0.1): what paid broadcast
    messages above the free rate are charged to."""
    stars = number_field(body, "stars")
    bot = sim.world.bot(int(m[1]))
    bot.stars_tenths = round(stars * 10)
    sim.mark_dirty()
    return bot_json(bot)


@route("GET", "/users")
async def list_users(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    return {"users": [user_json(u) for u in sim.world.users.values()]}


@route("POST", "/users")
async def create_user(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    first_name = body.get("first_name")
    if not isinstance(first_name, str) or not first_name:
        raise HttpError(400, "'first_name' is required")
    lang_code = body.get("lang_code")
    if lang_code is not None and not (isinstance(lang_code, str) and 2 <= len(lang_code) <= 10):
        raise HttpError(400, "'lang_code' is a language code such as 'en' or 'pt-br'")
    user = sim.create_user(first_name, body.get("last_name"), body.get("username"), lang_code)
    return user_json(user)


@route("POST", r"/users/(\d+)/messages")
async def user_send(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    """The user sends ``text`` (with a photo, or ``media``: a document, voice note or
    video) to ``bot_id``; ``count`` repeats it, ``{i}`` in the text replaced by the
    repetition number."""
    bot_id, text = int_field(body, "bot_id"), body.get("text", "")
    count = int(number_field(body, "count", 1))
    if not isinstance(text, str):
        raise HttpError(400, "'text' must be a string")
    sent = []
    for i in range(count):
        message = sim.user_send(
            int(m[1]),
            bot_id,
            text.replace("{i}", str(i)),
            photo=bool(body.get("photo", False)),
            reply_to=body.get("reply_to"),
            document=document_from_body(sim, body.get("media")),
        )
        media = sim.world.media_json(message)
        sent.append(
            {"id": message.id, "pts": message.pts, "photo_id": message.photo_id, "media": media}
        )
    return {"messages": sent}


@route("GET", r"/users/(\d+)/received")
async def received(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    bot_id = int(q["bot_id"]) if "bot_id" in q else None
    offset = int(q.get("offset", "0"))
    items = sim.received(int(m[1]), bot_id)
    return {"messages": [r.to_json() for r in items[offset:]], "next_offset": len(items)}


@route("POST", r"/users/(\d+)/block")
async def block(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    qts = sim.block(int(m[1]), int_field(body, "bot_id"), bool(body.get("blocked", True)))
    return {"ok": True, "qts": qts}


def group_json(group: Group) -> Json:
    return {"id": group.id, "title": group.title, "member_ids": sorted(group.members)}


@route("GET", "/groups")
async def list_groups(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    return {"groups": [group_json(g) for g in sim.world.groups.values()]}


@route("POST", "/groups")
async def create_group(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    title, members = body.get("title"), body.get("member_ids", [])
    if not isinstance(title, str) or not title:
        raise HttpError(400, "'title' is required")
    if not isinstance(members, list) or not all(isinstance(i, int) for i in members):
        raise HttpError(400, "'member_ids' must be a list of user and bot ids")
    return group_json(sim.create_group(title, members))


@route("POST", r"/groups/(\d+)/messages")
async def group_send(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    """A member posts ``text`` (or a photo) in the group; every bot in it receives it."""
    user_id, text = int_field(body, "user_id"), body.get("text", "")
    if not isinstance(text, str):
        raise HttpError(400, "'text' must be a string")
    sent: list[Json] = []
    for i in range(int(number_field(body, "count", 1))):
        copies = sim.user_send_group(
            user_id, int(m[1]), text.replace("{i}", str(i)), bool(body.get("photo", False))
        )
        sent.extend({"bot_id": bot.id, "id": msg.id, "pts": msg.pts} for bot, msg in copies)
    return {"messages": sent}


@route("GET", "/limits")
async def get_limits(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    return sim.config.limits.to_json()


@route("POST", "/limits")
async def set_limits(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    try:
        return sim.set_limits(**body).to_json()
    except ValueError as exc:
        raise HttpError(400, str(exc)) from exc


@route("POST", "/faults/drop-connections")
async def drop(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    return {"dropped": sim.drop_connections()}


@route("POST", "/faults/stall")
async def stall(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    sim.stall(number_field(body, "seconds"))
    return {"ok": True}


@route("POST", "/faults/flood")
async def flood(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    sim.force_flood(int_field(body, "bot_id"), number_field(body, "seconds"))
    return {"ok": True}


@route("POST", "/faults/forget-auth-keys")
async def forget_keys(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    return {"forgotten": sim.forget_auth_keys(int_field(body, "bot_id"))}


@route("POST", "/faults/lose-pushes")
async def lose(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    sim.lose_pushes(int_field(body, "bot_id"), int(number_field(body, "count")))
    return {"ok": True}


@route("POST", "/faults/hold-pushes")
async def hold(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    """Hold back the bot's pushes for ``seconds`` (absent or null: until released); when
    the hold ends: ``then`` = "too_long" (updatesTooLong), "deliver" or "drop"."""
    seconds = None if body.get("seconds") is None else number_field(body, "seconds")
    then = body.get("then", "too_long")
    if then not in RELEASE_MODES:
        raise HttpError(400, f"'then' must be one of {', '.join(RELEASE_MODES)}")
    sim.hold_pushes(int_field(body, "bot_id"), seconds, then)
    return {"ok": True}


@route("POST", "/faults/release-pushes")
async def release(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    then = body.get("then")
    if then is not None and then not in RELEASE_MODES:
        raise HttpError(400, f"'then' must be one of {', '.join(RELEASE_MODES)}")
    return {"held": sim.release_pushes(int_field(body, "bot_id"), then)}


@route("POST", "/faults/method-flood")
async def method_flood(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    """Every call of ``method`` ("contacts.resolveUsername", or "*") by the bot answers
    FLOOD_WAIT_X for ``seconds`` (0 lifts it)."""
    method = body.get("method")
    if not isinstance(method, str) or not (method == "*" or _METHOD.match(method)):
        raise HttpError(400, "'method' is a method name such as 'users.getUsers', or '*'")
    sim.flood_method(int_field(body, "bot_id"), method, number_field(body, "seconds"))
    return {"ok": True}


@route("POST", r"/users/(\d+)/rehash")
async def rehash(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    """The user's access hash changes, as every bot sees it (or only ``bot_id``)."""
    bot_id = None if body.get("bot_id") is None else int_field(body, "bot_id")
    sim.rehash(int(m[1]), bot_id)
    return {"ok": True}


@route("POST", "/faults/refuse-connections")
async def refuse(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    sim.refuse_connections(number_field(body, "seconds"))
    return {"ok": True}


@route("POST", "/faults/restart")
async def restart(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    await sim.restart(number_field(body, "downtime", 0.0))
    return {"ok": True, "port": sim.port}


@route("POST", "/save")
async def save(sim: Simulator, m: re.Match[str], body: Json, q: dict[str, str]) -> Json:
    sim.save()
    return {
        "ok": True,
        "path": None if sim.config.state_path is None else str(sim.config.state_path),
    }


async def dispatch(sim: Simulator, method: str, target: str, raw: bytes) -> tuple[int, Json]:
    url = urlsplit(target)
    query = {k: v[-1] for k, v in parse_qs(url.query).items()}
    try:
        body = json.loads(raw) if raw.strip() else {}
        if not isinstance(body, dict):
            raise HttpError(400, "the request body must be a JSON object")
        for verb, pattern, handler in ROUTES:
            match = pattern.match(url.path)
            if match and verb == method:
                return 200, await handler(sim, match, body, query)
        raise HttpError(404, f"no route {method} {url.path}")
    except HttpError as exc:
        return exc.status, {"error": str(exc)}
    except WorldError as exc:
        status = exc.code if exc.code in _REASONS else 400
        return status, {"error": exc.message}
    except (ValueError, KeyError, TypeError) as exc:
        return 400, {"error": f"{type(exc).__name__}: {exc}"}


class ControlServer:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._serve, host, port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, payload = await self._handle(reader)
        except (
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ConnectionError,
            ValueError,
        ) as exc:
            log.info("simulator control: bad request: %s", exc)
            writer.close()
            return
        data = json.dumps(payload).encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            "Connection: close\r\n\r\n"
        )
        try:
            writer.write(head.encode() + data)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader) -> tuple[int, Json]:
        request_line = (await reader.readuntil(b"\r\n")).decode("latin-1").split()
        length = 0
        while True:
            line = (await reader.readuntil(b"\r\n")).decode("latin-1")
            if line == "\r\n":
                break
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if len(request_line) != 3 or not 0 <= length <= MAX_BODY:
            return 400, {"error": "malformed HTTP request"}
        raw = await reader.readexactly(length)
        return await dispatch(self.sim, request_line[0], request_line[1], raw)
