"""The update envelope codec: what a listener encodes, a worker decodes, or dead-letters."""

from __future__ import annotations

import base64
import json
import struct
from datetime import UTC, datetime
from typing import Any

import pytest
from telethon.tl import types

from tgfleet.platform.envelope import (
    CHAT_KINDS,
    KIND_CHAT_MEMBER,
    KIND_EDIT,
    KIND_MESSAGE,
    KIND_OTHER,
    KIND_USER_NAME,
    SCHEMA_VERSION,
    EntityRecord,
    EnvelopeError,
    classify,
    decode,
    encode,
    entity_from_json,
    entity_records,
)

SENT_AT = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
EDITED_AT = datetime(2024, 3, 1, 12, 5, tzinfo=UTC)


def private_message(msg_id: int = 17, text: str = "hi", user_id: int = 1001) -> types.Message:
    return types.Message(
        id=msg_id,
        peer_id=types.PeerUser(user_id),
        date=SENT_AT,
        message=text,
        from_id=types.PeerUser(user_id),
    )


def new_message(msg_id: int = 17, text: str = "hi") -> types.UpdateNewMessage:
    return types.UpdateNewMessage(message=private_message(msg_id, text), pts=120, pts_count=1)


def user(user_id: int = 1001, access_hash: int | None = 77, min_: bool = False) -> types.User:
    return types.User(
        id=user_id,
        access_hash=access_hash,
        first_name="Ann",
        last_name="Smith",
        username="ann",
        lang_code="en",
        min=min_,
    )


def good_envelope() -> dict[str, Any]:
    return encode(42, new_message(), [user()], prev_id=16, lease=3)


# -- encode / decode ---------------------------------------------------------------------


def test_a_new_message_round_trips_with_every_field() -> None:
    # Given a private message with its sender, published after message 16 under lease 3
    update = new_message()
    # When it is encoded, sent as JSON and decoded
    envelope = decode(json.loads(json.dumps(encode(42, update, [user()], prev_id=16, lease=3))))
    # Then the worker sees what the listener saw
    assert (envelope.bot_id, envelope.key, envelope.kind) == (42, "m:1001:17", KIND_MESSAGE)
    assert (envelope.chat_id, envelope.msg_id, envelope.prev_id) == (1001, 17, 16)
    assert (envelope.pts, envelope.lease) == (120, 3)
    assert envelope.date == int(SENT_AT.timestamp())
    assert bytes(envelope.update) == bytes(update)
    assert envelope.entities == (EntityRecord("user", 1001, 77, "ann", "Ann", "Smith", "en"),)


def test_optional_fields_are_left_out_when_unknown() -> None:
    # Given a name change (no chat, no message) published without prev or lease
    update = types.UpdateUserName(user_id=5, first_name="B", last_name="", usernames=[])
    # When it is encoded
    payload = encode(42, update)
    # Then only the fields it has are there, and it decodes with None for the rest
    assert set(payload) == {"v", "bot", "key", "kind", "tl", "ents"}
    decoded = decode(payload)
    assert decoded.kind == KIND_USER_NAME
    assert (decoded.chat_id, decoded.msg_id, decoded.prev_id, decoded.lease) == (None,) * 4


TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_a_trace_parent_travels_with_the_update_and_a_bad_one_is_refused() -> None:
    payload = encode(42, new_message(), trace_parent=TRACE)
    assert decode(json.loads(json.dumps(payload))).trace_parent == TRACE
    assert decode(encode(42, new_message())).trace_parent is None
    with pytest.raises(EnvelopeError, match="'tp' is not a W3C traceparent"):
        decode({**payload, "tp": "00-not-a-trace"})


@pytest.mark.parametrize(
    ("update", "kind", "key", "chat_id"),
    [
        (new_message(), KIND_MESSAGE, "m:1001:17", 1001),
        (
            types.UpdateEditMessage(
                message=types.Message(
                    id=17,
                    peer_id=types.PeerChat(55),
                    date=SENT_AT,
                    message="fixed",
                    edit_date=EDITED_AT,
                ),
                pts=121,
                pts_count=1,
            ),
            KIND_EDIT,
            f"e:-55:17:{int(EDITED_AT.timestamp())}",
            -55,
        ),
        (
            types.UpdateEditMessage(message=private_message(), pts=121, pts_count=1),
            KIND_EDIT,
            "e:1001:17:e",
            1001,
        ),
    ],
    ids=["message", "edit-in-group", "edit-without-date"],
)
def test_messages_and_edits_get_their_dedupe_keys(
    update: Any, kind: str, key: str, chat_id: int
) -> None:
    # When a message or an edit is classified, Then kind, key, marked chat id and message
    # id follow (a basic group's chat id is negative)
    assert classify(update) == (kind, key, chat_id, 17)


def test_two_edits_of_one_message_are_distinct_updates() -> None:
    # Given the same message edited twice
    first = types.Message(id=3, peer_id=types.PeerUser(9), date=SENT_AT, edit_date=SENT_AT)
    second = types.Message(id=3, peer_id=types.PeerUser(9), date=SENT_AT, edit_date=EDITED_AT)
    # When both are classified, Then their dedupe keys differ (the second is not a replay)
    key_one = classify(types.UpdateEditMessage(message=first, pts=1, pts_count=1))[1]
    key_two = classify(types.UpdateEditMessage(message=second, pts=2, pts_count=1))[1]
    assert key_one != key_two


def test_other_updates_are_keyed_by_their_content() -> None:
    # Given two different typing updates and a repeat of the first
    typing_a = types.UpdateUserTyping(user_id=1, action=types.SendMessageTypingAction())
    typing_b = types.UpdateUserTyping(user_id=2, action=types.SendMessageTypingAction())
    repeat = types.UpdateUserTyping(user_id=1, action=types.SendMessageTypingAction())
    # Then they are "other", and only the identical one shares a key
    kinds = {classify(u)[0] for u in (typing_a, typing_b)}
    assert kinds == {KIND_OTHER}
    assert classify(typing_a)[1] == classify(repeat)[1] != classify(typing_b)[1]
    assert classify(typing_a)[1].startswith("o:")


def test_a_name_change_key_names_the_user() -> None:
    update = types.UpdateUserName(user_id=5, first_name="B", last_name="", usernames=[])
    kind, key, chat_id, msg_id = classify(update)
    assert (kind, chat_id, msg_id) == (KIND_USER_NAME, None, None)
    assert key.startswith("n:5:")


def service(action: Any, msg_id: int = 8, group: int = 55) -> types.UpdateNewMessage:
    """A group's service message (user 1001 did ``action``), as a new-message update."""
    message = types.MessageService(
        id=msg_id,
        peer_id=types.PeerChat(group),
        date=SENT_AT,
        from_id=types.PeerUser(1001),
        action=action,
    )
    return types.UpdateNewMessage(message=message, pts=130, pts_count=1)


@pytest.mark.parametrize(
    "action",
    [
        types.MessageActionChatAddUser(users=[2002]),
        types.MessageActionChatDeleteUser(user_id=2002),
        types.MessageActionChatJoinedByLink(inviter_id=2002),
        types.MessageActionChatJoinedByRequest(),
    ],
    ids=["added", "removed", "joined-by-link", "joined-by-request"],
)
def test_a_member_service_message_is_a_chat_member_update_of_its_group(action: Any) -> None:
    # When a service message of a member joining or leaving basic group 55 is classified
    # Then it is a chat_member update of chat -55 with its own message id (ordered with
    # the group's messages), keyed by chat and message id
    assert classify(service(action)) == (KIND_CHAT_MEMBER, "j:-55:8", -55, 8)
    assert KIND_CHAT_MEMBER in CHAT_KINDS


def test_other_service_messages_stay_other() -> None:
    # A title change is a service message too, but no membership change
    update = service(types.MessageActionChatEditTitle(title="New"))
    assert classify(update)[0] == KIND_OTHER


def participant(joined: bool, qts: int = 4) -> types.UpdateChatParticipant:
    member = types.ChatParticipant(user_id=2002, inviter_id=1001, date=SENT_AT)
    return types.UpdateChatParticipant(
        chat_id=55,
        date=SENT_AT,
        actor_id=1001,
        user_id=2002,
        qts=qts,
        prev_participant=None if joined else member,
        new_participant=member if joined else None,
    )


def test_a_participant_update_is_a_chat_member_update_keyed_by_its_qts() -> None:
    # When the bot's qts brings a member joining, then leaving, basic group 55
    joined, left = classify(participant(True, 4)), classify(participant(False, 5))
    # Then both are chat_member updates of chat -55 without a message id of their own
    # (like a block: placed after the chat's last message), one key per change
    assert joined == (KIND_CHAT_MEMBER, "p:-55:2002:4:1", -55, None)
    assert left == (KIND_CHAT_MEMBER, "p:-55:2002:5:0", -55, None)


def test_a_supergroup_participant_update_names_the_channel() -> None:
    update = types.UpdateChannelParticipant(
        channel_id=77,
        date=SENT_AT,
        actor_id=1001,
        user_id=2002,
        qts=9,
        new_participant=types.ChannelParticipant(user_id=2002, date=SENT_AT),
    )
    assert classify(update) == (KIND_CHAT_MEMBER, "p:-1000000000077:2002:9:1", -1000000000077, None)


def test_a_member_update_round_trips_with_its_date_and_order() -> None:
    # Given the service message published after the group's message 7
    payload = encode(42, service(types.MessageActionChatAddUser(users=[2002])), prev_id=7)
    # When it is decoded, Then the worker has its chat, id, place in the chain and date
    envelope = decode(json.loads(json.dumps(payload)))
    assert (envelope.kind, envelope.chat_id, envelope.msg_id) == (KIND_CHAT_MEMBER, -55, 8)
    assert (envelope.prev_id, envelope.pts, envelope.date) == (7, 130, int(SENT_AT.timestamp()))
    # And a participant update has no pts (it is on qts) and no message id
    decoded = decode(encode(42, participant(True), prev_id=8))
    assert (decoded.kind, decoded.msg_id, decoded.prev_id, decoded.pts) == (
        KIND_CHAT_MEMBER,
        None,
        8,
        None,
    )


# -- decode errors -----------------------------------------------------------------------


def _tl(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


BOOL_TRUE = struct.pack("<I", 0x997275B5)  # boolTrue: a TL value, not an object


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"v": 2}, "unknown envelope schema version 2"),
        ({"v": None}, "unknown envelope schema version None"),
        ({"bot": None}, "'bot' is missing"),
        ({"bot": "42"}, "'bot' must be an integer, got '42'"),
        ({"bot": True}, "'bot' must be an integer, got True"),
        ({"key": ""}, "'key' must be a non-empty string"),
        ({"key": "k" * 201}, "'key' must be a non-empty string of <= 200 chars"),
        ({"key": 7}, "'key' must be a non-empty string"),
        ({"kind": "photo"}, "unknown update kind 'photo'"),
        ({"tl": None}, "'tl' must be base64 text"),
        ({"tl": "not base64!"}, "'tl' is not a valid TL object"),
        ({"tl": _tl(b"\x00" * 12)}, "'tl' is not a valid TL object"),
        ({"tl": _tl(BOOL_TRUE)}, "'tl' decodes to bool, not TL"),
        ({"kind": KIND_EDIT}, "envelope says kind 'edit' but the update is 'message'"),
        ({"chat": "1001"}, "'chat' must be an integer"),
        ({"prev": 1.5}, "'prev' must be an integer"),
        ({"lease": False}, "'lease' must be an integer"),
        ({"ents": [["user", 1]]}, "entity must be a 7-item list"),
    ],
)
def test_bad_envelopes_say_why(change: dict[str, Any], reason: str) -> None:
    # Given a good envelope with one field spoiled
    payload = {**good_envelope(), **change}
    # When it is decoded, Then EnvelopeError carries the reason the dead letter will keep
    with pytest.raises(EnvelopeError) as caught:
        decode(payload)
    assert reason in caught.value.reason


@pytest.mark.parametrize("payload", [[1, 2], "envelope", None, 42])
def test_an_envelope_must_be_an_object(payload: Any) -> None:
    with pytest.raises(EnvelopeError, match=f"JSON object, got {type(payload).__name__}"):
        decode(payload)


def test_schema_version_is_the_one_encode_writes() -> None:
    assert good_envelope()["v"] == SCHEMA_VERSION


# -- entities ----------------------------------------------------------------------------


def test_entity_records_keep_only_usable_access_hashes() -> None:
    # Given a full user, a "min" user, a user without hash, a basic group and two channels
    entities = [
        user(1, 11),
        user(2, 22, min_=True),
        user(3, None),
        types.Chat(
            id=4,
            title="Group",
            photo=types.ChatPhotoEmpty(),
            participants_count=2,
            date=SENT_AT,
            version=1,
        ),
        types.Channel(
            id=5,
            title="News",
            photo=types.ChatPhotoEmpty(),
            date=SENT_AT,
            access_hash=55,
            username="news",
        ),
        types.Channel(
            id=6, title="Min", photo=types.ChatPhotoEmpty(), date=SENT_AT, access_hash=66, min=True
        ),
    ]
    # When records are made, Then min and hashless peers are skipped (their hash is useless)
    assert entity_records(entities) == [
        EntityRecord("user", 1, 11, "ann", "Ann", "Smith", "en"),
        EntityRecord("chat", 4, None, None, "Group"),
        EntityRecord("channel", 5, 55, "news", "News"),
    ]


@pytest.mark.parametrize(
    "record",
    [
        EntityRecord("user", 1, 11, "ann", "Ann", "Smith", "en"),
        EntityRecord("chat", 4, None, None, "Group"),
        EntityRecord("channel", 5, -55, None, None),
    ],
)
def test_entity_json_round_trips(record: EntityRecord) -> None:
    assert entity_from_json(json.loads(json.dumps(record.to_json()))) == record


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        ({"type": "user"}, "7-item list"),
        (["user", 1, 2, None, None, None], "7-item list"),
        (["bot", 1, 2, None, None, None, None], "unknown entity type 'bot'"),
        (["user", "1", 2, None, None, None, None], "id and access hash must be integers"),
        (["user", 1, "2", None, None, None, None], "id and access hash must be integers"),
        (["user", 1, 2, 3, None, None, None], "names must be strings"),
    ],
)
def test_malformed_entities_are_refused(item: Any, reason: str) -> None:
    with pytest.raises(EnvelopeError, match=reason):
        entity_from_json(item)


@pytest.mark.parametrize(
    "item", [["user", True, 2, None, None, None, None], ["user", 1, False, None, None, None, None]]
)
def test_boolean_entity_ids_are_refused(item: Any) -> None:
    with pytest.raises(EnvelopeError):
        entity_from_json(item)
