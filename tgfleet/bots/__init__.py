"""Bot apps: the handler API and the built-in apps. Bot authors import from here only.

    from tgfleet.bots import CallbackData, Command, Context, InlineKeyboard, Router
    from tgfleet.bots import State, StateIs, StatesGroup  # conversation state

``bots.settings['app']`` picks a bot's app by name; the default is ``matchmaking``.
"""

from tgfleet.bots.apps import DEFAULT_APP, load_app
from tgfleet.bots.callback_data import CallbackData, CallbackDataError, CallbackDataFilter
from tgfleet.bots.context import Context, HandlerUsageError, MediaLike
from tgfleet.bots.events import (
    BotStopped,
    CallbackQuery,
    ChatKind,
    ChatMemberUpdated,
    Contact,
    ContentKind,
    Event,
    Location,
    MediaRef,
    Message,
    OtherUpdate,
    from_inbound,
)
from tgfleet.bots.filters import (
    CallbackPrefix,
    ChatType,
    Command,
    ContentType,
    Filter,
    IsAdmin,
    StateIs,
    Text,
)
from tgfleet.bots.fsm import ConversationState, State, StatesGroup
from tgfleet.bots.keyboards import (
    InlineKeyboard,
    InlineMarkup,
    Markup,
    RemoveKeyboard,
    ReplyKeyboard,
    ReplyMarkup,
)
from tgfleet.bots.middleware import AdminOnly, I18n, Throttle, Timing
from tgfleet.bots.router import Handler, Middleware, Router
from tgfleet.platform.errors import RetryLater


def app_router(name: str | None) -> Router:
    """The Router of app ``name`` (see ``tgfleet.bots.apps.load_app``)."""
    return load_app(name)


__all__ = [
    "DEFAULT_APP",
    "AdminOnly",
    "BotStopped",
    "CallbackData",
    "CallbackDataError",
    "CallbackDataFilter",
    "CallbackPrefix",
    "CallbackQuery",
    "ChatKind",
    "ChatMemberUpdated",
    "ChatType",
    "Command",
    "Contact",
    "ContentKind",
    "ContentType",
    "Context",
    "ConversationState",
    "Event",
    "Filter",
    "Handler",
    "HandlerUsageError",
    "I18n",
    "InlineKeyboard",
    "InlineMarkup",
    "IsAdmin",
    "Location",
    "Markup",
    "MediaLike",
    "MediaRef",
    "Message",
    "Middleware",
    "OtherUpdate",
    "RemoveKeyboard",
    "ReplyKeyboard",
    "ReplyMarkup",
    "RetryLater",
    "Router",
    "State",
    "StateIs",
    "StatesGroup",
    "Text",
    "Throttle",
    "Timing",
    "app_router",
    "from_inbound",
]
