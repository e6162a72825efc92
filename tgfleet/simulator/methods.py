"""RPC dispatch and the account-level methods (config, login, users, updates).

Handlers take an :class:`RpcContext` and the request and return the serialized result.
Errors are raised as :class:`WorldError` (code + Telegram's message). A method without a
handler answers ``400 METHOD_NOT_IMPLEMENTED_<NAME>``, never silence.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from telethon.tl import TLObject, TLRequest, functions, types

from tgfleet.simulator import mtproto
from tgfleet.simulator.render import user_tl, when
from tgfleet.simulator.world import Bot, Group, User, WorldError

if TYPE_CHECKING:
    from tgfleet.simulator.connection import ClientConnection
    from tgfleet.simulator.server import Simulator

log = logging.getLogger(__name__)

_WRAPPERS = (
    functions.InvokeWithLayerRequest,
    functions.InitConnectionRequest,
    functions.InvokeAfterMsgRequest,
    functions.InvokeAfterMsgsRequest,
    functions.InvokeWithoutUpdatesRequest,
)
_NO_AUTH_NEEDED = {
    functions.help.GetConfigRequest.CONSTRUCTOR_ID,
    functions.help.GetNearestDcRequest.CONSTRUCTOR_ID,
    functions.auth.ImportBotAuthorizationRequest.CONSTRUCTOR_ID,
}


@dataclass(slots=True)
class RpcContext:
    sim: Simulator
    conn: ClientConnection
    without_updates: bool

    def bot(self) -> Bot:
        """The bot this auth key is logged in as, or 401 AUTH_KEY_UNREGISTERED."""
        session = self.conn.session
        if session is None or session.bot_id is None:
            raise WorldError(401, "AUTH_KEY_UNREGISTERED")
        return self.sim.world.bot(session.bot_id)

    def peer(self, bot: Bot, peer: Any) -> User | Group:
        """Resolve an InputPeer to a user (access hash checked) or a group the bot is in."""
        if isinstance(peer, types.InputPeerUser):
            return self.sim.world.check_peer(bot, peer.user_id, peer.access_hash)
        if isinstance(peer, types.InputPeerChat):
            group = self.sim.world.groups.get(peer.chat_id)
            if group is not None and bot.id in group.members:
                return group
        raise WorldError(400, "PEER_ID_INVALID")


Handler = Callable[[RpcContext, Any], bytes]
HANDLERS: dict[int, Handler] = {}


def handles(request_cls: type[TLRequest]) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        HANDLERS[request_cls.CONSTRUCTOR_ID] = handler
        return handler

    return register


def not_implemented_message(request: TLObject) -> str:
    name = type(request).__name__.removesuffix("Request")
    module = type(request).__module__.rsplit(".", 1)[-1]
    prefix = "" if module == "functions" else f"{module}_"
    return "METHOD_NOT_IMPLEMENTED_" + (prefix + re.sub(r"(?<!^)(?=[A-Z])", "_", name)).upper()


def method_name(request: TLObject) -> str:
    """Telegram's name of a request: ``contacts.resolveUsername``, ``invokeWithLayer``."""
    name = type(request).__name__.removesuffix("Request")
    name = name[:1].lower() + name[1:]
    module = type(request).__module__.rsplit(".", 1)[-1]
    return name if module == "functions" else f"{module}.{name}"


class Methods:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def _forced_flood(self, bot_id: int, request: TLObject) -> None:
        """FLOOD_WAIT_X while a forced flood on this method (or "*") of the bot lasts."""
        floods = self.sim.method_floods
        now = time.monotonic()
        for key in ((bot_id, method_name(request)), (bot_id, "*")):
            until = floods.get(key)
            if until is None:
                continue
            if until <= now:
                del floods[key]
                continue
            raise WorldError(420, f"FLOOD_WAIT_{max(1, math.ceil(until - now))}")

    def call(self, conn: ClientConnection, request: TLObject) -> bytes:
        without_updates = False
        while isinstance(request, _WRAPPERS):
            if isinstance(request, functions.InvokeWithoutUpdatesRequest):
                without_updates = True
            request = request.query
        self.sim.stats["rpc_calls"] += 1
        handler = HANDLERS.get(request.CONSTRUCTOR_ID)
        try:
            if handler is None:
                if not isinstance(request, TLRequest):
                    raise WorldError(400, "INPUT_METHOD_INVALID")
                raise WorldError(400, not_implemented_message(request))
            ctx = RpcContext(self.sim, conn, without_updates)
            if request.CONSTRUCTOR_ID not in _NO_AUTH_NEEDED:
                bot = ctx.bot()
                if self.sim.method_floods:
                    self._forced_flood(bot.id, request)
            return handler(ctx, request)
        except WorldError as err:
            if err.code == 420:
                self.sim.stats["flood_errors"] += 1
            return bytes(types.RpcError(err.code, err.message))
        except Exception:
            log.exception("simulator: %s failed", type(request).__name__)
            return bytes(types.RpcError(500, "INTERNAL_SERVER_ERROR"))


# -- help / auth ---------------------------------------------------------------------------


@handles(functions.help.GetConfigRequest)
def get_config(ctx: RpcContext, request: Any) -> bytes:
    now = int(time.time())
    host, port = ctx.sim.config.host, ctx.sim.port
    return bytes(
        types.Config(
            date=when(now),
            expires=when(now + 3600),
            test_mode=False,
            this_dc=2,
            dc_options=[types.DcOption(id=2, ip_address=host, port=port)],
            dc_txt_domain_name="simulator.invalid",
            chat_size_max=200,
            megagroup_size_max=200000,
            forwarded_count_max=100,
            online_update_period_ms=210000,
            offline_blur_timeout_ms=5000,
            offline_idle_timeout_ms=30000,
            online_cloud_timeout_ms=300000,
            notify_cloud_delay_ms=30000,
            notify_default_delay_ms=1500,
            push_chat_period_ms=60000,
            push_chat_limit=2,
            edit_time_limit=172800,
            revoke_time_limit=2147483647,
            revoke_pm_time_limit=2147483647,
            rating_e_decay=2419200,
            stickers_recent_limit=200,
            channels_read_media_period=604800,
            call_receive_timeout_ms=20000,
            call_ring_timeout_ms=90000,
            call_connect_timeout_ms=30000,
            call_packet_timeout_ms=10000,
            me_url_prefix="https://t.me/",
            caption_length_max=1024,
            message_length_max=4096,
            webfile_dc_id=2,
        )
    )


@handles(functions.help.GetNearestDcRequest)
def get_nearest_dc(ctx: RpcContext, request: Any) -> bytes:
    return bytes(types.NearestDc(country="ZZ", this_dc=2, nearest_dc=2))


@handles(functions.auth.ImportBotAuthorizationRequest)
def import_bot_authorization(ctx: RpcContext, request: Any) -> bytes:
    bot = ctx.sim.world.bot_by_token(request.bot_auth_token)
    session = ctx.conn.session
    if bot is None:
        raise WorldError(400, "ACCESS_TOKEN_INVALID")
    if session is None:
        raise WorldError(401, "AUTH_KEY_UNREGISTERED")
    session.bot_id = bot.id
    ctx.sim.bind(ctx.conn)
    ctx.sim.mark_dirty()
    log.info("simulator: bot %s logged in on a new auth key", bot.id)
    return bytes(types.auth.Authorization(user=user_tl(ctx.sim.world, bot, bot)))


@handles(functions.auth.LogOutRequest)
def log_out(ctx: RpcContext, request: Any) -> bytes:
    session = ctx.conn.session
    if session is not None:
        session.bot_id, session.listening = None, False
        ctx.sim.bind(ctx.conn)
        ctx.sim.mark_dirty()
    return bytes(types.auth.LoggedOut())


# -- users / contacts ----------------------------------------------------------------------


def _input_user(ctx: RpcContext, bot: Bot, item: Any) -> Bot | User | None:
    world = ctx.sim.world
    if isinstance(item, types.InputUserSelf):
        return bot
    if isinstance(item, types.InputUser):
        peer = world.users.get(item.user_id) or world.bots.get(item.user_id)
        if peer is not None and item.access_hash == world.access_hash(bot.id, peer.id):
            return peer
    return None


@handles(functions.users.GetUsersRequest)
def get_users(ctx: RpcContext, request: Any) -> bytes:
    """Users by InputUser. An id with hash 0 that the bot may not see is left out (Telethon
    then raises "Could not find the input entity"); a non-zero hash that is not (or no
    longer) the one this bot must present fails the call with PEER_ID_INVALID, as
    Telegram's does for a stale hash."""
    bot = ctx.bot()
    found = [_input_user(ctx, bot, item) for item in request.id]
    for item, peer in zip(request.id, found, strict=True):
        if peer is None and isinstance(item, types.InputUser) and item.access_hash:
            raise WorldError(400, "PEER_ID_INVALID")
    return mtproto.vector(
        [bytes(user_tl(ctx.sim.world, bot, peer)) for peer in found if peer is not None]
    )


@handles(functions.users.GetFullUserRequest)
def get_full_user(ctx: RpcContext, request: Any) -> bytes:
    bot = ctx.bot()
    peer = _input_user(ctx, bot, request.id)
    if peer is None:
        raise WorldError(400, "PEER_ID_INVALID")
    full = types.UserFull(
        id=peer.id,
        settings=types.PeerSettings(),
        notify_settings=types.PeerNotifySettings(),
        common_chats_count=0,
        about=f"simulated {'bot' if isinstance(peer, Bot) else 'user'}",
    )
    user = user_tl(ctx.sim.world, bot, peer)
    return bytes(types.users.UserFull(full_user=full, chats=[], users=[user]))


@handles(functions.contacts.ResolveUsernameRequest)
def resolve_username(ctx: RpcContext, request: Any) -> bytes:
    bot = ctx.bot()
    world = ctx.sim.world
    peer_id = world.resolve_username(request.username.lstrip("@"))
    peer = None if peer_id is None else (world.users.get(peer_id) or world.bots.get(peer_id))
    if peer is None:
        raise WorldError(400, "USERNAME_NOT_OCCUPIED")
    return bytes(
        types.contacts.ResolvedPeer(
            peer=types.PeerUser(peer.id), chats=[], users=[user_tl(world, bot, peer)]
        )
    )
