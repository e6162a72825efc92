"""Typed callback data: what an inline button carries, packed into Telegram's 64 bytes.

    class Vote(CallbackData, prefix="vote"):
        action: str
        profile_id: int

    Vote(action="like", profile_id=42).pack()   # "vote:like:42"
    Vote.unpack(b"vote:like:42")                # Vote(action='like', profile_id=42)

    @router.callback_query(Vote.filter(action="like"))
    def liked(ctx: Context) -> None:
        vote: Vote = ctx.callback_data
        ...

A subclass is a frozen dataclass (defaults allowed). Fields are ``str``, ``int``,
``bool`` (packed as 1/0), an ``Enum`` (packed as its value) or any of them ``| None``
(None packs as an empty field). The separator (``:`` unless ``sep=`` says otherwise)
may not appear inside a value, and the packed text must fit Telegram's 64 bytes: both
are checked by ``pack()``. ``unpack()`` raises ``CallbackDataError`` naming what is wrong.
"""

from __future__ import annotations

import dataclasses
import logging
import types as pytypes
import typing
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar, Self, dataclass_transform

from tgfleet.bots.events import CallbackQuery, Event
from tgfleet.bots.filters import Filter
from tgfleet.platform.errors import TgfleetError
from tgfleet.sends.markup import MAX_CALLBACK_DATA

if TYPE_CHECKING:
    from tgfleet.bots.context import Context


log = logging.getLogger(__name__)


class CallbackDataError(TgfleetError, ValueError):
    """Callback data that cannot be packed or unpacked; the message says why."""


_SCALARS = (str, int, bool)


def _scalar_text(value: Any) -> str | None:
    """How a field value is packed (None: it cannot be)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | str):
        return str(value)
    return None


def _codec(owner: str, name: str, hint: Any) -> tuple[type, bool]:
    """(the field's scalar type, whether it may be None), or TypeError naming the field."""
    optional = False
    if isinstance(hint, pytypes.UnionType) or typing.get_origin(hint) is typing.Union:
        members = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        optional = len(members) < len(typing.get_args(hint))
        hint = members[0] if len(members) == 1 else None
    if isinstance(hint, type) and (hint in _SCALARS or issubclass(hint, Enum)):
        return hint, optional
    raise TypeError(
        f"{owner}.{name}: callback data fields are str, int, bool, an Enum or one of "
        f"them | None, not {hint!r}"
    )


@dataclass_transform(frozen_default=True)
class CallbackData:
    """Base of typed callback data; subclass it with ``prefix=`` (see the module)."""

    __prefix__: ClassVar[str]
    __sep__: ClassVar[str]
    __codecs__: ClassVar[dict[str, tuple[type, bool]]]

    def __init_subclass__(cls, prefix: str, sep: str = ":", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not prefix or sep in prefix:
            raise TypeError(f"{cls.__name__}: prefix {prefix!r} must be non-empty, without {sep!r}")
        cls.__prefix__, cls.__sep__ = prefix, sep
        data_class: Any = dataclasses.dataclass(frozen=True)(cls)
        hints = typing.get_type_hints(cls)
        cls.__codecs__ = {
            f.name: _codec(cls.__name__, f.name, hints[f.name])
            for f in dataclasses.fields(data_class)
        }

    # -- packing -------------------------------------------------------------------------

    def _encode(self, name: str) -> str:
        value = getattr(self, name)
        _, optional = self.__codecs__[name]
        where = f"{type(self).__name__}.{name}"
        if value is None:
            if not optional:
                raise CallbackDataError(f"{where} is None but its type does not allow None")
            return ""
        text = _scalar_text(value.value if isinstance(value, Enum) else value)
        if text is None:
            raise CallbackDataError(f"{where}: cannot pack {value!r} ({type(value).__name__})")
        if self.__sep__ in text:
            raise CallbackDataError(
                f"{where} = {text!r} contains the separator {self.__sep__!r}, "
                "which would split it in two on unpack"
            )
        return text

    def pack(self) -> str:
        """``prefix:value:value``; CallbackDataError if it exceeds Telegram's 64 bytes."""
        parts = [self.__prefix__, *(self._encode(name) for name in self.__codecs__)]
        packed = self.__sep__.join(parts)
        size = len(packed.encode())
        if size > MAX_CALLBACK_DATA:
            raise CallbackDataError(
                f"{type(self).__name__} packs to {size} bytes ({packed!r}); Telegram's "
                f"callback data limit is {MAX_CALLBACK_DATA} bytes"
            )
        return packed

    # -- unpacking -----------------------------------------------------------------------

    @classmethod
    def _decode(cls, name: str, raw: str) -> Any:
        kind, optional = cls.__codecs__[name]
        where = f"{cls.__name__}.{name}"
        if raw == "" and optional:
            return None
        if kind is bool:
            if raw not in ("0", "1"):
                raise CallbackDataError(f"{where}: {raw!r} is not a bool (1 or 0)")
            return raw == "1"
        if kind is int:
            try:
                return int(raw)
            except ValueError:
                raise CallbackDataError(f"{where}: {raw!r} is not an int") from None
        if issubclass(kind, Enum):
            choices = {_scalar_text(member.value): member for member in kind}
            if raw not in choices:
                raise CallbackDataError(f"{where}: {raw!r} is not one of {list(choices)}")
            return choices[raw]
        return raw

    @classmethod
    def unpack(cls, data: str | bytes) -> Self:
        """The object ``data`` packs; CallbackDataError naming what does not fit."""
        if isinstance(data, bytes):
            try:
                data = data.decode()
            except UnicodeDecodeError:
                raise CallbackDataError(
                    f"{cls.__name__}: callback data {data!r} is not UTF-8 text"
                ) from None
        prefix, *values = data.split(cls.__sep__)
        if prefix != cls.__prefix__:
            raise CallbackDataError(
                f"{cls.__name__}: unknown prefix {prefix!r} in {data!r}, "
                f"expected {cls.__prefix__!r}"
            )
        names = list(cls.__codecs__)
        if len(values) != len(names):
            raise CallbackDataError(
                f"{cls.__name__}: {data!r} has {len(values)} fields, expected {len(names)} "
                f"({', '.join(names)})"
            )
        return cls(
            **{name: cls._decode(name, raw) for name, raw in zip(names, values, strict=True)}
        )

    @classmethod
    def filter(cls, **conditions: Any) -> CallbackDataFilter:
        """A filter for callback queries carrying this data, with each field equal to
        its condition (a list, tuple or set: any of its values); the handler gets the
        unpacked object as ``ctx.callback_data``."""
        return CallbackDataFilter(cls, conditions)


class CallbackDataFilter(Filter):
    """Matches a callback query whose data unpacks as ``data_class`` and meets
    ``conditions``; passes the object on as ``callback_data``."""

    def __init__(self, data_class: type[CallbackData], conditions: dict[str, Any]) -> None:
        unknown = set(conditions) - set(data_class.__codecs__)
        if unknown:
            raise CallbackDataError(
                f"{data_class.__name__}.filter(): no field(s) {sorted(unknown)}; "
                f"the fields are {list(data_class.__codecs__)}"
            )
        self.data_class = data_class
        self.conditions = conditions

    def check(self, event: Event, ctx: Context) -> bool | dict[str, Any]:
        if not isinstance(event, CallbackQuery):
            return False
        prefix = (self.data_class.__prefix__ + self.data_class.__sep__).encode()
        if not event.data.startswith(prefix):
            return False
        try:
            unpacked = self.data_class.unpack(event.data)
        except CallbackDataError as exc:
            log.debug("bot %s: callback data not taken: %s", ctx.bot_id, exc)
            return False
        for name, wanted in self.conditions.items():
            value = getattr(unpacked, name)
            if isinstance(wanted, list | tuple | set | frozenset):
                if value not in wanted:
                    return False
            elif value != wanted:
                return False
        return {"callback_data": unpacked}
