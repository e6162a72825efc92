"""Routing v2: handler kinds, first match wins (own handlers, then included routers depth
first, then the fallback), middlewares (order, short-circuit), and the context's effects."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.bots.updates import BOT, USER, callback, context, effects_of, message, stopped
from tgfleet.bots import (
    CallbackData,
    Command,
    Context,
    HandlerUsageError,
    InlineKeyboard,
    MediaRef,
    ReplyKeyboard,
    Router,
    Text,
)
from tgfleet.bots.effects import Effects
from tgfleet.inbox import InboundMessage


class Trace:
    """Handlers and middlewares that write what ran into one list."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def handler(self, name: str) -> Any:
        def run(ctx: Context) -> str:
            self.ran.append(name)
            return name

        return run

    def middleware(self, name: str, call: bool = True) -> Any:
        def mw(handler: Any, ctx: Context) -> Any:
            self.ran.append(f"{name}>")
            result = handler(ctx) if call else None
            self.ran.append(f"<{name}")
            return result

        return mw


def run(router: Router, inbound: InboundMessage) -> tuple[bool, Context]:
    ctx = context(inbound)
    return router.dispatch(ctx), ctx


def test_each_kind_goes_to_its_own_handlers() -> None:
    # Given one handler of each kind
    trace, router = Trace(), Router("kinds")
    router.message()(trace.handler("message"))
    router.edited_message()(trace.handler("edit"))
    router.callback_query()(trace.handler("callback"))
    router.bot_stopped()(trace.handler("stopped"))
    router.chat_member()(trace.handler("member"))
    # When one update of each kind (and one no kind takes) is dispatched
    handled = [
        run(router, update)[0]
        for update in (message("hi"), message("hi", kind="edit"), callback(b"x"), stopped())
    ]
    handled.append(run(router, InboundMessage(42, USER, USER, 0, "", None, "user_name"))[0])
    # Then each reached its kind's handler, and the other kind was not handled
    assert trace.ran == ["message", "edit", "callback", "stopped"]
    assert handled == [True, True, True, True, False]


def test_first_match_wins_in_registration_order_then_included_routers_depth_first() -> None:
    # Given a root with a handler, two included routers, the first with its own child
    trace, root, first, child, second = (
        Trace(),
        Router("root"),
        Router("a"),
        Router("a.1"),
        Router("b"),
    )
    root.message(Command("root"))(trace.handler("root"))
    first.message(Text(contains="x"))(trace.handler("a"))
    child.message(Text(contains="y"))(trace.handler("a.1"))
    second.message(Text(contains="y"))(trace.handler("b"))
    second.message()(trace.handler("b-any"))
    root.include_router(first)
    first.include_router(child)
    root.include_router(second)
    root.fallback()(trace.handler("fallback"))
    # When updates are dispatched
    for text in ("/root x y", "x y", "y", "z"):
        run(root, message(text))
    # Then the root's own handler wins, then a before a.1 before b, the fallback never
    assert trace.ran == ["root", "a", "a.1", "b-any"]


def test_the_fallback_comes_after_included_routers_and_takes_new_messages_only() -> None:
    trace, root, child = Trace(), Router("root"), Router("child")
    root.fallback()(trace.handler("fallback"))
    root.include_router(child)
    child.message(Command("start"))(trace.handler("start"))
    for update in (message("/start"), message("/other"), message("x", kind="edit"), callback(b"x")):
        run(root, update)
    assert trace.ran == ["start", "fallback"]


def test_include_router_refuses_loops_and_second_parents() -> None:
    a, b, c = Router("a"), Router("b"), Router("c")
    a.include_router(b)
    b.include_router(c)
    with pytest.raises(
        ValueError, match=r"including Router\('a'\) in Router\('c'\) would make a loop"
    ):
        c.include_router(a)
    with pytest.raises(ValueError, match=r"Router\('c'\) is already included in Router\('b'\)"):
        a.include_router(c)
    with pytest.raises(ValueError, match=r"unknown update kind 'poll'"):
        a.register("poll", lambda ctx: None)


def test_filter_values_reach_the_handler_only_from_the_match() -> None:
    # Given a handler whose regex fails and one whose regex matches
    seen: list[dict[str, Any]] = []
    router = Router("data")
    router.message(Text(regex=r"(?P<n>\d+) apples"))(lambda ctx: seen.append(dict(ctx.data)))
    router.message(Text(regex=r"(?P<w>\w+)"))(lambda ctx: seen.append(dict(ctx.data)))
    run(router, message("pears"))
    assert list(seen[0]) == ["match"] and seen[0]["match"].group("w") == "pears"


class Vote(CallbackData, prefix="vote"):
    action: str
    profile_id: int


def test_a_callback_handler_gets_the_unpacked_data_answers_and_edits() -> None:
    # Given a handler for "like" votes that answers and edits the message with the buttons
    router = Router("votes")

    @router.callback_query(Vote.filter(action="like"))
    def like(ctx: Context) -> None:
        assert ctx.callback is not None and ctx.callback_data == Vote("like", 42)
        ctx.answer("Liked")
        ctx.edit("You liked #42", keyboard=InlineKeyboard().button("Undo", Vote("undo", 42)))

    # When a press of "like 42" on message 30 is dispatched
    handled, ctx = run(router, callback(b"vote:like:42", msg_id=30))
    # Then the query is answered once and message 30 edited with the new keyboard
    assert handled and ctx.answered
    assert effects_of(ctx) == [
        ("answer", 777, "Liked", False, None),
        (
            "edit",
            USER,
            30,
            "You liked #42",
            {"inline": [[{"text": "Undo", "data": "dm90ZTp1bmRvOjQy"}]]},
        ),
    ]


def test_answering_twice_or_a_message_is_an_error() -> None:
    ctx = context(callback(b"x"))
    ctx.answer(url="https://t.me/x")
    with pytest.raises(HandlerUsageError, match=r"answered already"):
        ctx.answer("again")
    with pytest.raises(
        HandlerUsageError, match=r"ctx.answer\(\) is for callback queries; this update is a Message"
    ):
        context(message("hi")).answer("x")


def test_edit_and_delete_defaults_and_errors() -> None:
    # Given a message (not a callback)
    ctx = context(message("hi", msg_id=17))
    # Then edit needs a message id and something to change, with inline buttons only
    with pytest.raises(
        HandlerUsageError, match=r"ctx.edit\(\) without a message_id is for callback"
    ):
        ctx.edit("x")
    with pytest.raises(HandlerUsageError, match=r"needs a new text, a new keyboard or new media"):
        ctx.edit(message_id=3)
    with pytest.raises(HandlerUsageError, match=r"inline keyboard only"):
        ctx.edit("x", keyboard=ReplyKeyboard().button("a"), message_id=3)  # type: ignore[arg-type]
    # And an empty inline keyboard removes the buttons; delete defaults to this message
    ctx.edit(keyboard=InlineKeyboard(), message_id=3)
    ctx.delete()
    ctx.delete(99)
    assert effects_of(ctx) == [
        ("edit", USER, 3, None, {"inline": []}),
        ("delete", USER, [17]),
        ("delete", USER, [99]),
    ]
    # And a press deletes the message of its button
    press = context(callback(b"x", msg_id=30))
    press.delete()
    assert effects_of(press) == [("delete", USER, [30])]
    with pytest.raises(HandlerUsageError, match=r"needs a message_id"):
        context(stopped()).delete()


def test_a_press_edits_its_message_into_another_photo() -> None:
    # Given a press on message 30, and a photo the bot received earlier
    ctx = context(callback(b"next", msg_id=30))
    ctx.effects = Effects(BOT)
    photo = MediaRef("photo", 5, 6, "cmVm")
    # When the handler edits the message to that photo, captioned, keeping its button
    ctx.edit("Bob, 31", keyboard=InlineKeyboard().button("Next", "next"), media=photo)
    # And another message to a local file the sender uploads
    ctx.edit(message_id=31, media="/srv/cards/next.jpg", kind="photo")
    # Then both are edit rows carrying the file as sends carry it (the caption is the text)
    by_id, upload = ctx.effects.outbox
    assert (by_id["op"], by_id["target_id"], by_id["text"]) == ("edit", 30, "Bob, 31")
    assert by_id["media"] == {"photo": [5, 6, "cmVm"]}
    assert by_id["reply_markup"]["inline"][0][0]["text"] == "Next"
    assert (upload["target_id"], upload["options"]) == (31, {"keep_text": True})
    assert upload["media"] == {"upload": {"path": "/srv/cards/next.jpg", "kind": "photo"}}
    # And kind, file_name and mime_type are for uploads only, and need media
    with pytest.raises(HandlerUsageError, match="uploads of local files"):
        ctx.edit("x", media=photo, kind="photo")
    with pytest.raises(HandlerUsageError, match="pass media="):
        ctx.edit("x", kind="photo")


def test_reply_and_send_carry_the_keyboard_as_stored_markup() -> None:
    ctx = context(message("hi"))
    ctx.reply("Sure?", keyboard=ReplyKeyboard(one_time=True).button("Yes"))
    ctx.send(7, "plain")
    ctx.send(8, "raw", keyboard={"remove": True})
    assert effects_of(ctx) == [
        (
            "queue",
            USER,
            "Sure?",
            {
                "reply_to": None,
                "reply_markup": {
                    "keyboard": [["Yes"]],
                    "resize": True,
                    "one_time": True,
                    "placeholder": None,
                },
            },
        ),
        ("queue", 7, "plain", {}),
        ("queue", 8, "raw", {"reply_markup": {"remove": True}}),
    ]
    with pytest.raises(ValueError, match=r"exactly one of"):
        ctx.send(8, "bad", keyboard={"inline": [], "remove": True})


def test_the_context_knows_the_user_of_a_press_or_a_block() -> None:
    inbound = callback(b"x", user=555)
    inbound.sender_id = None
    assert context(inbound).user_id == 555
    assert context(stopped(user=556)).user_id == 556
    assert context(message("hi"))._("Hello") == "Hello"


# -- middlewares --------------------------------------------------------------------------------


def test_middlewares_wrap_in_order_outer_around_routing_inner_around_the_handler() -> None:
    # Given a root with outer and inner middlewares, and a child with its own and a handler
    trace, root, child = Trace(), Router("root"), Router("child")
    root.outer_middleware(trace.middleware("root-outer"))
    root.middleware(trace.middleware("root-inner1"))
    root.middleware(trace.middleware("root-inner2"))
    child.outer_middleware(trace.middleware("child-outer"))
    child.middleware(trace.middleware("child-inner"))
    child.message()(trace.handler("handler"))
    root.include_router(child)
    # When a message is dispatched
    handled, ctx = run(root, message("hi"))
    # Then the root's outer wraps everything, the child's outer its routing, and the inner
    # middlewares of the chain (root's first) wrap the handler
    assert handled
    assert trace.ran == [
        "root-outer>",
        "child-outer>",
        "root-inner1>",
        "root-inner2>",
        "child-inner>",
        "handler",
        "<child-inner",
        "<root-inner2",
        "<root-inner1",
        "<child-outer",
        "<root-outer",
    ]
    assert ctx.handler_name is not None and ctx.handler_name.endswith("run")


def test_an_inner_middleware_that_does_not_call_stops_the_handler_but_the_update_is_taken() -> None:
    trace, router = Trace(), Router("r")
    router.middleware(trace.middleware("deny", call=False))
    router.message()(trace.handler("handler"))
    router.fallback()(trace.handler("fallback"))
    assert run(router, message("hi"))[0] is True
    assert trace.ran == ["deny>", "<deny"]


def test_an_outer_middleware_that_does_not_call_consumes_the_update() -> None:
    # Given a child router whose outer middleware drops everything, then a sibling
    trace, root, closed, sibling = Trace(), Router("root"), Router("closed"), Router("sibling")
    closed.outer_middleware(trace.middleware("gate", call=False))
    closed.message()(trace.handler("closed"))
    sibling.message()(trace.handler("sibling"))
    root.include_router(closed)
    root.include_router(sibling)
    # Then routing stops at the gate: neither router's handler runs
    assert run(root, message("hi"))[0] is True
    assert trace.ran == ["gate>", "<gate"]


def test_an_outer_middleware_passing_false_through_lets_the_next_router_try() -> None:
    trace, root, empty, sibling = Trace(), Router("root"), Router("empty"), Router("sibling")
    empty.outer_middleware(trace.middleware("watch"))
    sibling.message()(trace.handler("sibling"))
    root.include_router(empty)
    root.include_router(sibling)
    assert run(root, message("hi"))[0] is True
    assert trace.ran == ["watch>", "<watch", "sibling"]
