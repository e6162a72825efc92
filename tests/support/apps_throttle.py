"""The app the throttling end-to-end test runs (``tests.support.apps_throttle:app``):
two updates per user, then (practically) none, with a notice."""

from __future__ import annotations

from tgfleet.bots import Command, Context, InlineKeyboard, Router, Throttle

app = Router("throttled")
app.outer_middleware(Throttle(rate=0.0001, burst=2, notice="Slow down"))


@app.message(Command("start"))
def start(ctx: Context) -> None:
    ctx.reply("Pick one", keyboard=InlineKeyboard().button("Go", "go"))


@app.message()
def echo(ctx: Context) -> None:
    ctx.reply(f"echo {ctx.text}")


@app.callback_query()
def go(ctx: Context) -> None:
    ctx.answer("Gone")
