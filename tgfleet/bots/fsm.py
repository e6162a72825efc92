"""Conversation state: a finite-state machine per (bot, chat, user), declared up front.

    class Registration(StatesGroup):
        name = State()
        age = State()

    @router.message(Command("register"))
    def register(ctx: Context) -> None:
        ctx.state.set(Registration.name, expires_in=timedelta(hours=1))
        ctx.reply("What is your name?")

    @router.message(StateIs(Registration.name), ~Command())
    def got_name(ctx: Context) -> None:
        ctx.state.update_data(name=ctx.text)
        ctx.state.set(Registration.age)
        ctx.reply("How old are you?")

    @router.message(Command("cancel"), StateIs(Registration))  # any state of the group
    def cancel(ctx: Context) -> None:
        ctx.state.clear()

A state's name is ``"<Group>:<attribute>"`` (``"Registration:name"``): that is what is
stored, so renaming a group or a state strands the conversations that are in it.

``ctx.state`` reads what the drain read with the message (no extra query), and its
changes are written with the update's processed mark and effects, in the same
transaction and round trip: a step happens exactly once, and any worker can take the
next one. A state set with ``expires_in`` reads as none (no state, no data) once that
time has passed. ``ctx.state_name`` (what ``StateIs`` reads) is the state the update
arrived in; ``ctx.state.get()`` follows the handler's own changes.

Data is stored as JSON: keys become strings, tuples lists, and anything else JSON
cannot hold is refused when it is set.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from tgfleet.db.prepared import Call, Prepared, execute
from tgfleet.inbox.record import InboundMessage

# --- declaring states --------------------------------------------------------------------


class State:
    """One state of a ``StatesGroup``; its name is ``"<Group>:<attribute>"``."""

    def __init__(self) -> None:
        self._group: type[StatesGroup] | None = None
        self._attribute: str | None = None

    def __set_name__(self, owner: type, name: str) -> None:
        if self._group is not None:
            raise TypeError(
                f"{self.state} is declared again as {owner.__name__}.{name}; "
                "give each group its own State() objects"
            )
        if not (isinstance(owner, type) and issubclass(owner, StatesGroup)):
            raise TypeError(f"State {owner.__name__}.{name} must be declared in a StatesGroup")
        self._group, self._attribute = owner, name

    @property
    def group(self) -> type[StatesGroup]:
        """The group it is declared in."""
        return self._declared()[0]

    @property
    def name(self) -> str:
        """The attribute name in its group (``"age"``)."""
        return self._declared()[1]

    def _declared(self) -> tuple[type[StatesGroup], str]:
        if self._group is None or self._attribute is None:
            raise TypeError("a State() is usable once declared in a StatesGroup class")
        return self._group, self._attribute

    @property
    def state(self) -> str:
        """The stored name (``"Registration:age"``)."""
        return f"{self.group.__name__}:{self.name}"

    def __str__(self) -> str:
        return self.state

    def __repr__(self) -> str:
        if self._group is None:
            return "<State (undeclared)>"
        return f"<State {self.state!r}>"


class _StatesGroupMeta(type):
    """Lets a group be used as a collection of its states: ``in``, iteration, ``len``."""

    __states__: tuple[State, ...]
    __state_names__: frozenset[str]

    def __contains__(cls, item: object) -> bool:
        if isinstance(item, State):
            return item in cls.__states__
        return item in cls.__state_names__

    def __iter__(cls) -> Iterator[State]:
        return iter(cls.__states__)

    def __len__(cls) -> int:
        return len(cls.__states__)


class StatesGroup(metaclass=_StatesGroupMeta):
    """The states of one conversation, declared as class attributes (``name = State()``),
    in the order the conversation usually visits them."""

    __states__: tuple[State, ...] = ()
    __state_names__: frozenset[str] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if ":" in cls.__name__:
            raise TypeError(f"a StatesGroup's name may not contain ':' ({cls.__name__!r})")
        cls.__states__ = tuple(v for v in vars(cls).values() if isinstance(v, State))
        cls.__state_names__ = frozenset(s.state for s in cls.__states__)


def state_name(state: State | str | None) -> str | None:
    """The stored name of ``state`` (a State, a name, or None for none)."""
    if state is None or isinstance(state, str):
        return state
    if isinstance(state, State):
        return state.state
    raise TypeError(f"a state is a State, its name or None, not {state!r}")


# --- what is stored ------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredState:
    """A ``conversation_states`` row as read."""

    state: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    expires_at: datetime | None = None

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    @classmethod
    def of_inbound(cls, inbound: InboundMessage) -> StoredState | None:
        """What the drain read with the message (None: no row)."""
        if inbound.state is None and inbound.state_data is None:
            return None
        return cls(inbound.state, dict(inbound.state_data or {}), inbound.state_expires_at)


#: Writes the whole row: the drain holds the chat's lock, so nobody else changes it
#: meanwhile. Run with the processed mark (see ``ConversationState.pending``).
SAVE_STATE = Prepared(
    "tgfleet_fsm_save",
    ("bigint", "bigint", "bigint", "text", "jsonb", "timestamptz"),
    "INSERT INTO conversation_states (bot_id, chat_id, user_id, state, data, expires_at) "
    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (bot_id, chat_id, user_id) DO UPDATE SET "
    "state = EXCLUDED.state, data = EXCLUDED.data, expires_at = EXCLUDED.expires_at, "
    "updated_at = now()",
)
CLEAR_STATE = Prepared(
    "tgfleet_fsm_clear",
    ("bigint", "bigint", "bigint"),
    "DELETE FROM conversation_states WHERE bot_id = $1 AND chat_id = $2 AND user_id = $3",
)
LOAD_STATE = Prepared(
    "tgfleet_fsm_load",
    ("bigint", "bigint", "bigint"),
    "SELECT state, data, expires_at FROM conversation_states "
    "WHERE bot_id = $1 AND chat_id = $2 AND user_id = $3",
)


def _now() -> datetime:
    return datetime.now(UTC)


def _as_json(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` as it will read back from the database (a copy), or a TypeError now."""
    try:
        loaded = json.loads(json.dumps(dict(data)))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"conversation data must be JSON (str keys, plain values): {exc}") from None
    if not isinstance(loaded, dict):  # pragma: no cover (dict() above)
        raise TypeError("conversation data must be a mapping")
    return loaded


_UNREAD = object()


class ConversationState:
    """``ctx.state``: one user's conversation state in one chat.

    Built seeded with what the drain read (``stored``), or unread: then the first use
    reads the row through ``session``. Changes are kept until ``pending()`` hands them to
    the runtime, which writes them with the processed mark; code that runs a ``Context``
    outside the runtime calls ``flush()``.
    """

    def __init__(
        self,
        session: Session,
        bot_id: int,
        chat_id: int,
        user_id: int,
        stored: StoredState | object | None = _UNREAD,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self.session = session
        self.bot_id, self.chat_id, self.user_id = bot_id, chat_id, user_id
        self.clock = clock
        self._current: StoredState | None = None
        self._read = False
        self._dirty = False
        if stored is not _UNREAD:
            self._seed(stored if isinstance(stored, StoredState) else None)

    def __repr__(self) -> str:
        where = f"bot {self.bot_id}, chat {self.chat_id}, user {self.user_id}"
        return f"<ConversationState {where}: {self.get() if self._read else '(unread)'}>"

    def _seed(self, stored: StoredState | None) -> None:
        self._read = True
        if stored is not None and stored.expired(self.clock()):
            self._current = None
            self._dirty = True  # the expired row goes with the next write
        else:
            self._current = stored

    def _row(self) -> StoredState | None:
        if not self._read:
            rows = execute(self.session, LOAD_STATE, self.bot_id, self.chat_id, self.user_id)
            row = rows[0] if rows else None
            stored = None if row is None else StoredState(row.state, row.data, row.expires_at)
            self._seed(stored)
        return self._current

    def _write(self, state: str | None, data: dict[str, Any], expires_at: datetime | None) -> None:
        self._current = StoredState(state, data, expires_at)
        self._read = self._dirty = True

    # -- reading ---------------------------------------------------------------------------

    def get(self) -> str | None:
        """The current state's name (None: none, or it expired)."""
        row = self._row()
        return None if row is None else row.state

    def get_data(self) -> dict[str, Any]:
        """A copy of the data collected so far (empty: none, or it expired)."""
        row = self._row()
        return {} if row is None else copy.deepcopy(row.data)

    @property
    def data(self) -> dict[str, Any]:
        """Same as ``get_data()``: a copy; change it with ``update_data``/``set_data``."""
        return self.get_data()

    @property
    def expires_at(self) -> datetime | None:
        """When the current state expires (None: never, or no state)."""
        row = self._row()
        return None if row is None else row.expires_at

    # -- changing --------------------------------------------------------------------------

    def set(self, state: State | str | None, *, expires_in: timedelta | None = None) -> None:
        """Move to ``state`` (None: leave the state, keep the data). With ``expires_in``
        the state and data read as none after that long; without, they never expire."""
        name = state_name(state)
        if expires_in is not None and expires_in <= timedelta(0):
            raise ValueError(f"expires_in must be positive, not {expires_in}")
        expires_at = None if expires_in is None else self.clock() + expires_in
        self._write(name, self.get_data(), expires_at)

    def set_data(self, data: Mapping[str, Any]) -> None:
        """Replace the data (the state and its expiry stay)."""
        self._write(self.get(), _as_json(data), self.expires_at)

    def update_data(self, data: Mapping[str, Any] | None = None, **values: Any) -> dict[str, Any]:
        """Merge ``data`` and ``values`` into the data; returns the result (a copy)."""
        merged = {**self.get_data(), **_as_json({**(data or {}), **values})}
        self._write(self.get(), merged, self.expires_at)
        return copy.deepcopy(merged)

    def clear(self) -> None:
        """No state, no data (the row is deleted)."""
        self._write(None, {}, None)

    # -- writing ---------------------------------------------------------------------------

    def pending(self) -> Call | None:
        """The statement that stores the changes (None: nothing changed)."""
        if not self._dirty:
            return None
        key = (self.bot_id, self.chat_id, self.user_id)
        row = self._current
        if row is None or (row.state is None and not row.data):
            return (CLEAR_STATE, key)
        return (SAVE_STATE, (*key, row.state, json.dumps(row.data), row.expires_at))

    def flush(self) -> None:
        """Write the changes now, through the session (the runtime does this for
        handlers, in the processed mark's round trip)."""
        call = self.pending()
        if call is not None:
            statement, args = call
            execute(self.session, statement, *args)
            self._dirty = False
