"""Bot apps the end-to-end tests run, named by their dotted path (``tests.support.apps:X``),
as a bot author's own package would be."""

from __future__ import annotations

from tgfleet.bots import CallbackData, Command, Context, InlineKeyboard, Router


class Vote(CallbackData, prefix="vote"):
    action: str
    n: int


buttons = Router("buttons")


@buttons.message(Command("start"))
def start(ctx: Context) -> None:
    keyboard = (
        InlineKeyboard()
        .button("Like", Vote(action="like", n=1))
        .button("Skip", Vote(action="skip", n=1))
        .button("Gone", "old-version:1")  # data no handler takes any more
        .button("Drop", Vote(action="drop", n=1))
        .adjust(2, 2)
    )
    ctx.reply("Pick one", keyboard=keyboard)


@buttons.callback_query(Vote.filter(action="like"))
def like(ctx: Context) -> None:
    ctx.answer(f"Liked {ctx.callback_data.n}!", alert=True)
    ctx.edit(f"You liked {ctx.callback_data.n}", keyboard=InlineKeyboard())


@buttons.callback_query(Vote.filter(action="skip"))
def skip(ctx: Context) -> None:
    ctx.event("skipped")  # no answer: the platform answers empty


@buttons.callback_query(Vote.filter(action="drop"))
def drop(ctx: Context) -> None:
    ctx.answer()
    ctx.delete()


@buttons.bot_stopped()
def stopped(ctx: Context) -> None:
    ctx.event("blocked" if ctx.update.stopped else "unblocked")
