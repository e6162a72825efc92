"""The bot apps bench/handlers.py runs, named by dotted path (``handlers_app:text``);
the worker processes import this module through PYTHONPATH (the bench/ folder).

- ``text``: answers every message with one reply (an echo without the analytics event);
- ``buttons``: /start replies with an inline keyboard; a press is answered, nothing more;
- ``order``: a 3-step conversation, one reply per step, its state kept with
  ``ctx.state.set`` / ``update_data`` (the third step clears it, so the next message
  starts a new one).
"""

from __future__ import annotations

from datetime import timedelta

from tgfleet.bots import (
    CallbackData,
    Command,
    Context,
    InlineKeyboard,
    Router,
    State,
    StateIs,
    StatesGroup,
)

text = Router("bench-text")


@text.message()
def echo(ctx: Context) -> None:
    ctx.reply(f"you said: {ctx.text}")


class Pick(CallbackData, prefix="pick"):
    n: int


buttons = Router("bench-buttons")


@buttons.message(Command("start"))
def start(ctx: Context) -> None:
    keyboard = InlineKeyboard().button("One", Pick(n=1)).button("Two", Pick(n=2))
    ctx.reply("Pick one", keyboard=keyboard)


@buttons.callback_query(Pick.filter())
def picked(ctx: Context) -> None:
    ctx.answer(f"Picked {ctx.callback_data.n}")


class Order(StatesGroup):
    size = State()
    address = State()


#: How long an unfinished order is kept (the state is set with an expiry, as real bots do).
ORDER_TTL = timedelta(hours=1)

order = Router("bench-order")


@order.message(StateIs(None))
def begin(ctx: Context) -> None:
    ctx.state.set(Order.size, expires_in=ORDER_TTL)
    ctx.reply("What size?")


@order.message(StateIs(Order.size))
def got_size(ctx: Context) -> None:
    ctx.state.update_data(size=ctx.text)
    ctx.state.set(Order.address, expires_in=ORDER_TTL)
    ctx.reply("Where to?")


@order.message(StateIs(Order.address))
def got_address(ctx: Context) -> None:
    size = ctx.state.get_data().get("size", "?")
    ctx.state.clear()
    ctx.reply(f"Ordered: {size} to {ctx.text}")
