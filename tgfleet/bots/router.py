"""The handler API: routers of handlers with filters, and the context handlers get.

A bot app is a ``Router``; ``bots.settings['app']`` names which one a bot runs
(see ``tgfleet.bots.app_router``). Handlers are plain synchronous functions of a
``Context``. They never call Telegram: replies, edits, deletions, callback answers
and analytics events are *effects* (``ctx.reply``, ``ctx.edit``, ``ctx.answer``,
``ctx.event``...) written with the update's processed mark in one transaction, and
whatever they write through ``ctx.session`` commits in it too: once, exactly. So does
a change of the conversation state (``ctx.state``, see ``tgfleet.bots.fsm``).

    router = Router("shop")

    @router.message(Command("start"))
    def start(ctx: Context) -> None:
        ctx.reply("hello", keyboard=InlineKeyboard().button("Buy", callback=Buy(item=1)))

    @router.callback_query(Buy.filter())
    def buy(ctx: Context) -> None:
        ctx.answer("Added to your cart")
        ctx.edit(f"Item {ctx.callback_data.item} is in your cart")

    root = Router("app")
    root.include_router(router)

**Kinds.** ``message`` (new messages), ``edited_message``, ``callback_query``,
``bot_stopped``, ``chat_member``: a handler takes one kind, and only when all its
filters pass (``tgfleet.bots.filters``).

**Order: the first match wins.** An update is offered to a router's own handlers of its
kind in registration order, then to its included routers in inclusion order, depth
first (each in the same way), then to the router's ``fallback()`` handler, if any.

**Middlewares** are objects (or functions) ``mw(handler, ctx) -> Any`` that call
``handler(ctx)`` or not. ``router.outer_middleware(mw)`` wraps the routing of every
update through that router (and its included routers): ``handler(ctx)`` returns
whether a handler ran; an outer middleware that returns anything but True/False (None
when it did not call ``handler``) has consumed the update, and routing stops there.
``router.middleware(mw)`` wraps the call of the chosen handler: the inner middlewares
of the routers from the root down to the handler's own, the root's outermost.

**The older decorators** (``command``, ``text``, ``photo``, ``fallback``) keep their
meaning: a photo goes to ``photo()`` if there is one, whatever its caption; a text
starting with ``/`` is a command (unknown ones go to the fallback); other non-empty
texts go to ``text()``; anything else to ``fallback()``. They take new messages only:
edits are recorded, not handled again, unless an ``edited_message`` handler takes them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy.orm import Session

from tgfleet.bots.context import Context
from tgfleet.bots.effects import Effects
from tgfleet.bots.events import (
    BotStopped,
    CallbackQuery,
    ChatMemberUpdated,
    Event,
    Message,
)
from tgfleet.bots.filters import FilterLike, evaluate
from tgfleet.inbox import InboundMessage

log = logging.getLogger(__name__)


Handler = Callable[[Context], Any]
HandlerFn = Callable[[Context], None]
Middleware = Callable[[Handler, Context], Any]
Decorator = Callable[[Handler], Handler]

KINDS = ("message", "edited_message", "callback_query", "bot_stopped", "chat_member")


def kind_of(event: Event) -> str | None:
    """The handler kind that takes ``event`` (None: none does)."""
    if isinstance(event, Message):
        return "edited_message" if event.edited else "message"
    if isinstance(event, CallbackQuery):
        return "callback_query"
    if isinstance(event, BotStopped):
        return "bot_stopped"
    if isinstance(event, ChatMemberUpdated):
        return "chat_member"
    return None


@dataclass(frozen=True)
class Registered:
    handler: Handler
    filters: tuple[FilterLike, ...]


@dataclass(frozen=True)
class Match:
    """The handler chosen for an update, what its filters passed on, and the routers
    from the root to the one it is registered on."""

    handler: Handler
    data: dict[str, Any]
    chain: tuple[Router, ...]


class Router:
    """Routes an update to the first handler whose filters pass (see the module)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.parent: Router | None = None
        self.routers: list[Router] = []
        self._handlers: dict[str, list[Registered]] = {kind: [] for kind in KINDS}
        self._middlewares: list[Middleware] = []
        self._outer_middlewares: list[Middleware] = []
        self._photo: Handler | None = None
        self._fallback: Handler | None = None

    def __repr__(self) -> str:
        return f"Router({self.name!r})"

    # -- building --------------------------------------------------------------------------

    def include_router(self, router: Router) -> Router:
        """Add ``router`` below this one (tried after this router's own handlers)."""
        node: Router | None = self
        while node is not None:
            if node is router:
                raise ValueError(f"including {router!r} in {self!r} would make a loop")
            node = node.parent
        if router.parent is not None:
            raise ValueError(f"{router!r} is already included in {router.parent!r}")
        router.parent = self
        self.routers.append(router)
        return router

    def register(self, kind: str, handler: Handler, *filters: FilterLike) -> Handler:
        if kind not in self._handlers:
            raise ValueError(f"unknown update kind {kind!r}; choose one of {list(KINDS)}")
        self._handlers[kind].append(Registered(handler, filters))
        return handler

    def _decorator(self, kind: str, filters: Sequence[FilterLike]) -> Decorator:
        def register(fn: Handler) -> Handler:
            return self.register(kind, fn, *filters)

        return register

    def message(self, *filters: FilterLike) -> Decorator:
        return self._decorator("message", filters)

    def edited_message(self, *filters: FilterLike) -> Decorator:
        return self._decorator("edited_message", filters)

    def callback_query(self, *filters: FilterLike) -> Decorator:
        return self._decorator("callback_query", filters)

    def bot_stopped(self, *filters: FilterLike) -> Decorator:
        return self._decorator("bot_stopped", filters)

    def chat_member(self, *filters: FilterLike) -> Decorator:
        return self._decorator("chat_member", filters)

    def middleware(self, middleware: Middleware) -> Middleware:
        """Wrap the call of every handler this router (or one below it) chooses."""
        self._middlewares.append(middleware)
        return middleware

    def outer_middleware(self, middleware: Middleware) -> Middleware:
        """Wrap the routing of every update through this router."""
        self._outer_middlewares.append(middleware)
        return middleware

    # -- the older decorators --------------------------------------------------------------

    def _photo_takes(self, ctx: Context) -> bool:
        return self._photo is not None and ctx.message.photo is not None

    def command(self, name: str) -> Decorator:
        wanted = name.lower()

        def is_command(event: Event, ctx: Context) -> bool:
            text = ctx.message.text.strip()
            if self._photo_takes(ctx) or not text.startswith("/") or len(text) < 2:
                return False
            return text[1:].split(maxsplit=1)[0].split("@", 1)[0].lower() == wanted

        return self._decorator("message", (is_command,))

    def text(self) -> Decorator:
        def is_text(event: Event, ctx: Context) -> bool:
            text = ctx.message.text.strip()
            return bool(text) and not text.startswith("/") and not self._photo_takes(ctx)

        return self._decorator("message", (is_text,))

    def photo(self) -> Decorator:
        def register(fn: Handler) -> Handler:
            self._photo = fn

            def is_photo(event: Event, ctx: Context) -> bool:
                return self._photo is fn and ctx.message.photo is not None

            return self.register("message", fn, is_photo)

        return register

    def fallback(self) -> Decorator:
        """For any other new message (unknown commands, other media), after this router's
        handlers and its included routers'."""

        def register(fn: Handler) -> Handler:
            self._fallback = fn
            return fn

        return register

    # -- routing ---------------------------------------------------------------------------

    def _own(self, ctx: Context, chain: tuple[Router, ...], kind: str) -> Match | None:
        """This router's first handler of ``kind`` whose filters pass."""
        for registered in self._handlers[kind]:
            data = evaluate(registered.filters, ctx.update, ctx)
            if data is not None:
                return Match(registered.handler, data, chain)
        return None

    def _last_resort(self, chain: tuple[Router, ...], kind: str) -> Match | None:
        if self._fallback is not None and kind == "message":
            return Match(self._fallback, {}, chain)
        return None

    def find(self, ctx: Context, parents: tuple[Router, ...] = ()) -> Match | None:
        """The handler this router (or one below it) would run for ``ctx``'s update,
        middlewares aside."""
        chain = (*parents, self)
        kind = kind_of(ctx.update)
        if kind is None:
            return None
        found = self._own(ctx, chain, kind)
        for router in self.routers:
            found = found or router.find(ctx, chain)
        return found or self._last_resort(chain, kind)

    def _route(self, ctx: Context, parents: tuple[Router, ...]) -> bool:
        """Offer the update to this router's handlers, then to its included routers'
        (each through its own outer middlewares), then to its fallback."""
        chain = (*parents, self)
        kind = kind_of(ctx.update)
        if kind is None:
            return False
        found = self._own(ctx, chain, kind)
        if found is None:
            if any(router._propagate(ctx, chain) for router in self.routers):
                return True
            found = self._last_resort(chain, kind)
        if found is None:
            return False
        self._run(ctx, found)
        return True

    def _propagate(self, ctx: Context, parents: tuple[Router, ...]) -> bool:
        def route(c: Context) -> bool:
            return self._route(c, parents)

        call: Handler = route
        for middleware in reversed(self._outer_middlewares):
            call = _wrap(middleware, call)
        result = call(ctx)
        if result is True or result is False:
            return result
        log.debug("bot %s: an outer middleware of %r consumed the update", ctx.bot_id, self)
        return True

    @staticmethod
    def _run(ctx: Context, match: Match) -> Any:
        ctx.data.update(match.data)
        ctx.handler_name = getattr(match.handler, "__qualname__", repr(match.handler))
        call = match.handler
        middlewares = [mw for router in match.chain for mw in router._middlewares]
        for middleware in reversed(middlewares):
            call = _wrap(middleware, call)
        return call(ctx)

    def dispatch(self, ctx: Context) -> bool:
        """Run the first matching handler for ``ctx``'s update; False if none took it."""
        return self._propagate(ctx, ())

    def resolve(self, message: InboundMessage) -> Handler | None:
        """The handler ``dispatch`` would pick for ``message`` (the older API: filters see
        no admins, no conversation state, and may not touch the session or effects)."""
        probe = Context(
            session=cast(Session, None),
            bot_id=message.bot_id,
            admin_chat_ids=[],
            message=message,
            effects=cast(Effects, None),
        )
        found = self.find(probe)
        return None if found is None else found.handler


def _wrap(middleware: Middleware, inner: Handler) -> Handler:
    def call(ctx: Context) -> Any:
        return middleware(inner, ctx)

    return call
