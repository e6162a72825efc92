"""Filters: which updates a handler takes. They compose with ``&``, ``|`` and ``~``.

    @router.message(Command("start", "help"))
    @router.message(Text(regex=r"^age (\\d+)$") & ChatType("private"))
    @router.message(ContentType("photo", "document") | Text(startswith="http"))
    @router.callback_query(CallbackPrefix("vote:"), IsAdmin())
    @router.message(StateIs(Registration.age), ~Command())

A filter is called with the typed update and the context (``filter(event, ctx)``) and
returns True/False, or a dict of values that means True and is merged into
``ctx.data`` for the handler (``Text(regex=...)`` passes ``match``, a callback data
filter passes ``callback_data``). Several filters given to one decorator must all pass.
A plain function ``(event, ctx) -> bool | dict`` is a filter too.

Filters only read: the update, ``ctx.admin_chat_ids``, ``ctx.state_name`` (the
conversation state, which the runtime fills) and ``ctx.bot_username``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from tgfleet.bots.events import CallbackQuery, ChatKind, ContentKind, Event, Message
from tgfleet.bots.fsm import State, StatesGroup, state_name

if TYPE_CHECKING:
    from tgfleet.bots.context import Context

FilterResult = bool | dict[str, Any]
FilterLike = Callable[[Event, "Context"], FilterResult]


class Filter:
    """Base of the filters: subclasses implement ``check``."""

    def check(self, event: Event, ctx: Context) -> FilterResult:
        raise NotImplementedError

    def __call__(self, event: Event, ctx: Context) -> FilterResult:
        return self.check(event, ctx)

    def __and__(self, other: FilterLike) -> Filter:
        return And(self, other)

    def __rand__(self, other: FilterLike) -> Filter:
        return And(other, self)

    def __or__(self, other: FilterLike) -> Filter:
        return Or(self, other)

    def __ror__(self, other: FilterLike) -> Filter:
        return Or(other, self)

    def __invert__(self) -> Filter:
        return Not(self)


def evaluate(filters: Iterable[FilterLike], event: Event, ctx: Context) -> dict[str, Any] | None:
    """The values all ``filters`` pass on (merged in order), or None if one fails."""
    data: dict[str, Any] = {}
    for check in filters:
        result = check(event, ctx)
        if result is False or result is None:
            return None
        if isinstance(result, dict):
            data.update(result)
        elif result is not True:
            raise TypeError(f"filter {check!r} returned {result!r}; want True, False or a dict")
    return data


class And(Filter):
    def __init__(self, *filters: FilterLike) -> None:
        self.filters = filters

    def check(self, event: Event, ctx: Context) -> FilterResult:
        data = evaluate(self.filters, event, ctx)
        return False if data is None else (data or True)


class Or(Filter):
    """The first filter that passes decides (and its values are passed on)."""

    def __init__(self, *filters: FilterLike) -> None:
        self.filters = filters

    def check(self, event: Event, ctx: Context) -> FilterResult:
        for check in self.filters:
            data = evaluate((check,), event, ctx)
            if data is not None:
                return data or True
        return False


class Not(Filter):
    def __init__(self, inner: FilterLike) -> None:
        self.inner = inner

    def check(self, event: Event, ctx: Context) -> FilterResult:
        return evaluate((self.inner,), event, ctx) is None


class Command(Filter):
    """A message that starts with one of the commands (any case), or any command when
    none is named. ``/start@OtherBot`` does not match when the bot's own username
    (``ctx.bot_username``) is known and differs."""

    def __init__(self, *names: str) -> None:
        self.names = {name.lower().lstrip("/") for name in names}

    def check(self, event: Event, ctx: Context) -> FilterResult:
        if not isinstance(event, Message) or event.command is None:
            return False
        if self.names and event.command not in self.names:
            return False
        own = ctx.bot_username
        return not (event.mention and own and event.mention.lower() != own.lower().lstrip("@"))


class Text(Filter):
    """A message whose text meets every criterion given (at least one):
    ``equal`` (one text or several), ``startswith``, ``endswith``, ``contains``,
    ``regex`` (searched; the match is passed on as ``match``)."""

    def __init__(
        self,
        equal: str | Iterable[str] | None = None,
        *,
        startswith: str | None = None,
        endswith: str | None = None,
        contains: str | None = None,
        regex: str | re.Pattern[str] | None = None,
        ignore_case: bool = False,
    ) -> None:
        if all(c is None for c in (equal, startswith, endswith, contains, regex)):
            raise ValueError(
                "Text() needs one of equal=, startswith=, endswith=, contains=, regex="
            )
        fold: Callable[[str], str] = str.casefold if ignore_case else str
        self.fold = fold
        texts = [equal] if isinstance(equal, str) else list(equal or ())
        self.equal = {fold(text) for text in texts} if equal is not None else None
        self.startswith = None if startswith is None else fold(startswith)
        self.endswith = None if endswith is None else fold(endswith)
        self.contains = None if contains is None else fold(contains)
        flags = re.IGNORECASE if ignore_case else 0
        self.regex = None if regex is None else re.compile(regex, flags)

    def check(self, event: Event, ctx: Context) -> FilterResult:
        if not isinstance(event, Message):
            return False
        text = self.fold(event.text)
        if self.equal is not None and text not in self.equal:
            return False
        if self.startswith is not None and not text.startswith(self.startswith):
            return False
        if self.endswith is not None and not text.endswith(self.endswith):
            return False
        if self.contains is not None and self.contains not in text:
            return False
        if self.regex is not None:
            match = self.regex.search(event.text)
            return False if match is None else {"match": match}
        return True


def _kinds(kind: type[ChatKind] | type[ContentKind], given: tuple[str, ...]) -> set[str]:
    if not given:
        raise ValueError(f"name at least one of {[k.value for k in kind]}")
    try:
        return {kind(value).value for value in given}
    except ValueError:
        raise ValueError(f"{given!r}: choose from {[k.value for k in kind]}") from None


class ContentType(Filter):
    """A message with one of the content types (``"text"``, ``"photo"``, ... see
    ``ContentKind``)."""

    def __init__(self, *content_types: str) -> None:
        self.content_types = _kinds(ContentKind, content_types)

    def check(self, event: Event, ctx: Context) -> FilterResult:
        return isinstance(event, Message) and event.content_type in self.content_types


class ChatType(Filter):
    """A message in one of the chat types (``"private"``, ``"group"``, ``"channel"``)."""

    def __init__(self, *chat_types: str) -> None:
        self.chat_types = _kinds(ChatKind, chat_types)

    def check(self, event: Event, ctx: Context) -> FilterResult:
        return isinstance(event, Message) and event.chat_type in self.chat_types


class IsAdmin(Filter):
    """The sender is one of the bot's admins (``ctx.admin_chat_ids``)."""

    def check(self, event: Event, ctx: Context) -> FilterResult:
        return ctx.user_id in ctx.admin_chat_ids


class StateIs(Filter):
    """The conversation is in one of ``states``: a ``State``, a ``StatesGroup`` (any of
    its states), a state's name, None (in no state) or ``"*"`` (in any state)."""

    def __init__(self, *states: State | type[StatesGroup] | str | None) -> None:
        if not states:
            raise ValueError("StateIs() needs a state (None for no state, '*' for any)")
        self.any = "*" in states
        names: set[str | None] = set()
        for state in states:
            if isinstance(state, type) and issubclass(state, StatesGroup):
                if not state.__state_names__:
                    raise ValueError(f"StateIs({state.__name__}): the group has no states")
                names.update(state.__state_names__)
            elif state != "*":
                names.add(state_name(state))
        self.states = names

    def check(self, event: Event, ctx: Context) -> FilterResult:
        if self.any and ctx.state_name is not None:
            return True
        return ctx.state_name in self.states

    def __repr__(self) -> str:
        shown = sorted(map(str, self.states)) + (["*"] if self.any else [])
        return f"StateIs({', '.join(shown)})"


class CallbackPrefix(Filter):
    """A callback query whose data starts with one of the prefixes (text or bytes)."""

    def __init__(self, *prefixes: str | bytes) -> None:
        if not prefixes:
            raise ValueError("CallbackPrefix() needs a prefix")
        self.prefixes = tuple(p.encode() if isinstance(p, str) else p for p in prefixes)

    def check(self, event: Event, ctx: Context) -> FilterResult:
        return isinstance(event, CallbackQuery) and event.data.startswith(self.prefixes)
