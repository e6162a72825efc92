"""The app the media and handler-error end-to-end tests run (``tests.support.apps_media:app``):
files sent back by id or uploaded from a local path, a profile card whose photo a button
replaces in place, handlers that raise, and a handler that asks to be run again later."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path

from tgfleet.bots import (
    CallbackPrefix,
    Command,
    ContentType,
    Context,
    InlineKeyboard,
    MediaRef,
    RetryLater,
    Router,
    Text,
)

app = Router("media")

#: How often ``/flaky`` asks to be retried before it succeeds.
FLAKY_RETRIES = 2


#: The buttons of a profile card: the next profile as a photo the bot received, or uploaded.
CARD_BUTTONS = InlineKeyboard().button("Next", "card:next").button("Upload", "card:upload")


@app.message(ContentType("photo"), Text(equal="profile"))
def keep_profile(ctx: Context) -> None:
    """A photo captioned ``profile`` is the next profile's (kept in the conversation's data)."""
    assert ctx.update.media is not None
    ctx.state.update_data(next_photo=dataclasses.asdict(ctx.update.media))
    ctx.reply("next profile kept")


@app.message(Command("cardfile"))
def keep_profile_file(ctx: Context) -> None:
    """``/cardfile <path>``: the local photo the Upload button shows."""
    ctx.state.update_data(next_file=ctx.args()[0])
    ctx.reply("next file kept")


@app.message(ContentType("photo"), Text(equal="card"))
def profile_card(ctx: Context) -> None:
    """A photo captioned ``card`` comes back as a profile card with buttons."""
    assert ctx.update.media is not None
    ctx.reply_media(ctx.update.media, caption="Ann, 30", keyboard=CARD_BUTTONS)


@app.callback_query(CallbackPrefix("card:"))
def next_profile(ctx: Context) -> None:
    """The card shows the next profile in place: the kept photo (by id) or file (uploaded)."""
    assert ctx.callback is not None
    data = ctx.state.get_data()
    if ctx.callback.data == b"card:next":
        ctx.edit("Bob, 31", keyboard=CARD_BUTTONS, media=MediaRef(**data["next_photo"]))
    else:
        ctx.edit("Cat, 29", keyboard=CARD_BUTTONS, media=data["next_file"], kind="photo")


@app.message(ContentType("photo", "document", "voice", "video"))
def echo_file(ctx: Context) -> None:
    """A file comes back as it is, by id; captioned ``stale`` with an outdated file
    reference (the sender has to fetch a fresh one from the user's message)."""
    ref = ctx.update.media
    assert ref is not None
    if ctx.text == "stale":
        ref = dataclasses.replace(ref, file_reference=base64.b64encode(b"outdated").decode())
    ctx.reply_media(ref, caption=f"your {ctx.update.content_type}")


@app.message(Command("upload"))
def upload(ctx: Context) -> None:
    """``/upload <path> <kind>``: the sender uploads the file at ``path``."""
    path, kind = ctx.args()
    ctx.reply_media(path, caption=f"uploaded {kind}", kind=kind)


@app.message(Command("start"))
def start(ctx: Context) -> None:
    ctx.reply("Careful", keyboard=InlineKeyboard().button("Explode", "explode"))


@app.callback_query()
def explode(ctx: Context) -> None:
    ctx.answer("this answer is rolled back")
    raise RuntimeError("the button exploded")


@app.message(Command("boom"))
def boom(ctx: Context) -> None:
    ctx.reply("this reply is rolled back")
    raise ValueError("boom on purpose")


@app.message(Command("flaky"))
def flaky(ctx: Context) -> None:
    """``/flaky <counter file>``: asks to be retried FLAKY_RETRIES times, then answers.
    The counter lives outside the database: a retry rolls back what the handler wrote."""
    counter = Path(ctx.args()[0])
    attempt = int(counter.read_text() or 0) + 1 if counter.exists() else 1
    counter.write_text(str(attempt))
    ctx.reply(f"attempt {attempt} queued")  # rolled back unless it is the last
    if attempt <= FLAKY_RETRIES:
        raise RetryLater("the shop is closed", 1)
    ctx.event("flaky_done", attempt=attempt)


@app.message(Command("forever"))
def forever(ctx: Context) -> None:
    raise RetryLater("never ready", 0.5)


@app.message()
def echo(ctx: Context) -> None:
    ctx.reply(f"echo: {ctx.text}")
