"""The Telegram requests the sender makes, built from outbox rows (pure functions), and the
client-side peer look-ups of the resolution chain (run on the sender's event loop)."""

from __future__ import annotations

import logging
from typing import Any, TypeAlias

from telethon import errors, utils
from telethon.extensions import html, markdown
from telethon.tl import functions, types

from tgfleet.db import Outbox, OutboxOp
from tgfleet.sends.loop import BotClients, SenderLoop
from tgfleet.sends.markup import to_tl
from tgfleet.sends.media import (
    InputFileLike,
    StoredFile,
    file_reference_in,
    input_media,
    parse_media,
    uploaded_media,
)
from tgfleet.sends.resolve import InputPeer

log = logging.getLogger(__name__)

LOOKUP_TIMEOUT_S = 20.0
SendRequest: TypeAlias = (
    functions.messages.SendMessageRequest
    | functions.messages.SendMediaRequest
    | functions.messages.EditMessageRequest
    | functions.messages.DeleteMessagesRequest
    | functions.channels.DeleteMessagesRequest
    | functions.messages.SetBotCallbackAnswerRequest
)


def parse_text(text: str, parse_mode: str | None) -> tuple[str, list[Any] | None]:
    """(plain text, message entities) for ``parse_mode`` markdown/md/html or None."""
    if parse_mode in ("markdown", "md"):
        plain, entities = markdown.parse(text)
    elif parse_mode == "html":
        plain, entities = html.parse(text)
    else:
        return text, None
    return plain, list(entities) or None


def _media(media: dict[str, Any], uploaded: InputFileLike | None) -> Any:
    """The InputMedia of a row's ``media`` (see ``tgfleet.sends.media``)."""
    spec = parse_media(media)
    if isinstance(spec, StoredFile):
        return input_media(spec)
    if uploaded is None:
        raise ValueError(f"{spec.path} has to be uploaded before its request is built")
    return uploaded_media(spec, uploaded)


def build_request(
    row: Outbox, peer: InputPeer | None, random_id: int, uploaded: InputFileLike | None = None
) -> SendRequest:
    """The Telegram call of an outbox row: messages.sendMessage (sendMedia with media),
    editMessage (with ``media``: the message's new file, its text the caption),
    deleteMessages or setBotCallbackAnswer, by its ``op``. A row that uploads a file
    needs the ``uploaded`` file (``client.upload_file``'s answer)."""
    op = OutboxOp(getattr(row, "op", None) or OutboxOp.SEND)
    options = getattr(row, "options", None) or {}
    if op is OutboxOp.ANSWER:
        return functions.messages.SetBotCallbackAnswerRequest(
            query_id=int(row.target_id or 0),
            cache_time=0,
            alert=bool(options.get("alert")) or None,
            message=row.text or None,
            url=options.get("url"),
        )
    if op is OutboxOp.DELETE:
        ids = [int(i) for i in options.get("ids") or ()]
        if isinstance(peer, types.InputPeerChannel):
            channel = types.InputChannel(peer.channel_id, peer.access_hash)
            return functions.channels.DeleteMessagesRequest(channel, ids)
        return functions.messages.DeleteMessagesRequest(ids, revoke=True)
    markup = to_tl(getattr(row, "reply_markup", None))
    media = getattr(row, "media", None)
    if op is OutboxOp.EDIT:
        keep_text = bool(options.get("keep_text"))
        text, entities = (None, None) if keep_text else parse_text(row.text, row.parse_mode)
        return functions.messages.EditMessageRequest(
            peer=peer,
            id=int(row.target_id or 0),
            message=text,
            no_webpage=True,
            media=_media(media, uploaded) if media else None,
            entities=entities,
            reply_markup=markup,
        )
    text, entities = parse_text(row.text, row.parse_mode)
    reply_to = types.InputReplyToMessage(int(row.reply_to)) if row.reply_to else None
    if media:
        return functions.messages.SendMediaRequest(
            peer=peer,
            media=_media(media, uploaded),
            message=text,
            random_id=random_id,
            reply_to=reply_to,
            entities=entities,
            reply_markup=markup,
        )
    return functions.messages.SendMessageRequest(
        peer=peer,
        message=text,
        random_id=random_id,
        no_webpage=True,
        reply_to=reply_to,
        entities=entities,
        reply_markup=markup,
    )


def sent_message_id(result: Any, request: SendRequest) -> int | None:
    """The Telegram message id from a send's answer (the edited one for an edit; None
    for a delete or a callback answer)."""
    if isinstance(request, functions.messages.EditMessageRequest):
        return int(request.id)
    if not isinstance(
        request, functions.messages.SendMessageRequest | functions.messages.SendMediaRequest
    ):
        return None
    if isinstance(result, types.UpdateShortSentMessage):
        return int(result.id)
    updates = getattr(result, "updates", None) or []
    for update in updates:
        if isinstance(update, types.UpdateMessageID) and update.random_id == request.random_id:
            return int(update.id)
    for update in updates:
        if isinstance(update, types.UpdateNewMessage | types.UpdateNewChannelMessage):
            return int(update.message.id)
    return None


class ClientLookup:
    """Steps 3 and 4 of the resolution chain, through the bot's own client."""

    def __init__(self, clients: BotClients, loop: SenderLoop) -> None:
        self.clients = clients
        self.loop = loop

    def from_session(self, bot_id: int, peer_id: int) -> InputPeer | None:
        client = self.clients.get(bot_id)
        try:
            peer = client.session.get_input_entity(peer_id)
        except (ValueError, KeyError, TypeError):
            return None
        if isinstance(peer, types.InputPeerUser | types.InputPeerChannel) and peer.access_hash:
            return peer
        return None

    def from_api(
        self, bot_id: int, peer_id: int, access_hash: int | None, username: str | None
    ) -> tuple[InputPeer, str | None, str] | None:
        if peer_id < 0:
            return None  # channels: only the store or the session know them
        client = self.clients.get(bot_id)

        async def by_hash() -> Any:
            request = functions.users.GetUsersRequest([types.InputUser(peer_id, access_hash or 0)])
            return await client(request)

        try:
            users = self.loop.run(by_hash(), LOOKUP_TIMEOUT_S)
        except errors.PeerIdInvalidError:  # the hash is stale too: try the username
            users = []
        for user in users or []:
            if isinstance(user, types.User) and user.id == peer_id and user.access_hash:
                return types.InputPeerUser(peer_id, user.access_hash), user.username, "api_hash"
        if not username:
            return None

        async def by_username() -> Any:
            return await client(functions.contacts.ResolveUsernameRequest(username))

        try:
            resolved = self.loop.run(by_username(), LOOKUP_TIMEOUT_S)
        except (errors.UsernameNotOccupiedError, errors.UsernameInvalidError):
            return None
        for user in resolved.users:
            if isinstance(user, types.User) and user.id == peer_id and user.access_hash:
                peer = types.InputPeerUser(peer_id, user.access_hash)
                return peer, user.username, "api_username"
        log.info("bot %s: @%s is no longer user %s", bot_id, username, peer_id)
        return None

    def fresh_reference(self, bot_id: int, spec: StoredFile) -> tuple[bytes | None, str]:
        """(the file's current reference, why not) from the message it came in
        (``spec.source``): Telegram hands out a new reference with the message."""
        if spec.source is None:
            return None, "the message it came in is not known"
        chat_id, message_id = spec.source
        if utils.resolve_id(chat_id)[1] is types.PeerChannel:
            return None, "its message is in a channel (not looked up)"
        client = self.clients.get(bot_id)

        async def fetch() -> Any:
            request = functions.messages.GetMessagesRequest([types.InputMessageID(message_id)])
            return await client(request)

        answer = self.loop.run(fetch(), LOOKUP_TIMEOUT_S)
        for message in getattr(answer, "messages", None) or []:
            reference = file_reference_in(message, spec)
            if reference is not None:
                return reference, ""
        return None, f"message {message_id} no longer has that file"
