"""quickbot asks one question with two buttons and echoes what you write."""

from tgfleet.bots import CallbackData, Command, ContentType, Context, InlineKeyboard, Router


class Vote(CallbackData, prefix="vote"):
    choice: str


router = Router("quickbot")


@router.message(Command("start"))
def start(ctx: Context) -> None:
    keyboard = InlineKeyboard().button("Yes", Vote(choice="yes")).button("No", Vote(choice="no"))
    ctx.reply("Do you like quickbot?", keyboard=keyboard)


@router.callback_query(Vote.filter())
def vote(ctx: Context) -> None:
    choice = ctx.callback_data.choice
    ctx.answer("Thanks for voting!")
    ctx.edit(f"You voted {choice}.", keyboard=InlineKeyboard())


@router.message(ContentType("text") & ~Command())
def echo(ctx: Context) -> None:
    ctx.reply(f"You wrote: {ctx.text}")
