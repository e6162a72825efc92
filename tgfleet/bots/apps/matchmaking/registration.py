"""Registration as a conversation: name, age, gender, whom to meet, photo, bio.

Each step is a state of ``Registration``; what the user gave so far is the state's data,
and the profile is written only at the end (cancel leaves an existing profile as it
was). A step answered by a button edits its question in place; one answered by a message
gets the next question as a new message. Every question has Back and Cancel; a step
that has a value already (editing a profile, or a profile from the legacy store) offers
to keep it, and the photo and the bio may be skipped.
"""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert

from tgfleet.bots import (
    Command,
    ContentType,
    Context,
    InlineKeyboard,
    Message,
    Router,
    State,
    StateIs,
    StatesGroup,
)
from tgfleet.bots.apps.matchmaking.common import (
    AGE_MAX,
    AGE_MIN,
    BIO_MAX,
    GENDERS,
    LOOKING_FOR,
    N_,
    NAME_MAX,
    Gettext,
    Reg,
    card_photo,
    card_text,
    is_complete,
    menu_keyboard,
    menu_text,
    profile_of,
    show_card,
)
from tgfleet.bots.apps.matchmaking.moderation import tell_admins
from tgfleet.db import Profile

router = Router("matchmaking-registration")


class Registration(StatesGroup):
    name = State()
    age = State()
    gender = State()
    looking_for = State()
    photo = State()
    bio = State()


STEPS = ("name", "age", "gender", "looking_for", "photo", "bio")
OPTIONAL = ("photo", "bio")
#: A registration left alone this long is forgotten.
EXPIRES_IN = timedelta(days=1)


# -- input rules ---------------------------------------------------------------------------


class Invalid(ValueError):
    """Input a step does not take: ``message`` (a msgid) says what it takes, with
    ``params`` to format it."""

    def __init__(self, message: str, **params: Any) -> None:
        super().__init__(message)
        self.message, self.params = message, params

    def text(self, _: Gettext) -> str:
        return _(self.message).format(**self.params)


def parse_name(raw: str) -> str:
    name = " ".join(raw.split())
    if not name or len(name) > NAME_MAX or name.startswith("/"):
        raise Invalid(N_("A name is 1 to {max} characters. What's your name?"), max=NAME_MAX)
    return name


def parse_age(raw: str) -> int:
    text = raw.strip()
    if not text.isdigit() or not AGE_MIN <= int(text) <= AGE_MAX:
        raise Invalid(
            N_("Please send your age as a whole number from {min} to {max}."),
            min=AGE_MIN,
            max=AGE_MAX,
        )
    return int(text)


def parse_bio(raw: str) -> str:
    bio = raw.strip()
    if not bio or len(bio) > BIO_MAX:
        raise Invalid(N_("A bio is 1 to {max} characters. Try a shorter one?"), max=BIO_MAX)
    return bio


# -- questions -----------------------------------------------------------------------------


def question(step: str, _: Gettext) -> str:
    questions = {
        "name": _("What's your name?"),
        "age": _("How old are you?"),
        "gender": _("Are you a man or a woman?"),
        "looking_for": _("Who would you like to meet?"),
        "photo": _("Send me a photo of yourself."),
        "bio": _("Write a few words about yourself (up to {max} characters).").format(max=BIO_MAX),
    }
    return questions[step]


def _shown(step: str, value: Any, _: Gettext) -> str:
    labels = {
        "male": _("Man") if step == "gender" else _("Men"),
        "female": _("Woman") if step == "gender" else _("Women"),
        "any": _("Anyone"),
    }
    if step == "photo":
        return _("the current photo")
    text = labels.get(value, str(value)) if isinstance(value, str) else str(value)
    return text if len(text) <= 24 else text[:23] + "…"


def question_keyboard(step: str, data: dict[str, Any], _: Gettext) -> InlineKeyboard:
    keyboard = InlineKeyboard()
    if step == "gender":
        keyboard.button(_("Man"), callback=Reg(action="pick", value="male"))
        keyboard.button(_("Woman"), callback=Reg(action="pick", value="female"))
        keyboard.row()
    elif step == "looking_for":
        keyboard.button(_("Men"), callback=Reg(action="pick", value="male"))
        keyboard.button(_("Women"), callback=Reg(action="pick", value="female"))
        keyboard.button(_("Anyone"), callback=Reg(action="pick", value="any"))
        keyboard.row()
    current = data.get(step)
    if current is not None:
        keep = _("Keep: {value}").format(value=_shown(step, current, _))
        keyboard.button(keep, callback=Reg(action="keep")).row()
    elif step in OPTIONAL:
        keyboard.button(_("Skip"), callback=Reg(action="keep")).row()
    if step != STEPS[0]:
        keyboard.button(_("Back"), callback=Reg(action="back"))
    keyboard.button(_("Cancel"), callback=Reg(action="cancel"))
    return keyboard


def ask(ctx: Context, step: str, *, in_place: bool = False, note: str | None = None) -> None:
    """Move to ``step`` and ask its question: by editing the pressed message when
    ``in_place``, else as a new message (after ``note``, if any)."""
    state: State = getattr(Registration, step)
    ctx.state.set(state, expires_in=EXPIRES_IN)
    text = question(step, ctx._)
    if note:
        text = f"{note}\n\n{text}"
    keyboard = question_keyboard(step, ctx.state.get_data(), ctx._)
    if in_place:
        ctx.edit(text, keyboard)
    else:
        ctx.reply(text, keyboard=keyboard)


def begin(
    ctx: Context, profile: Profile | None, *, note: str | None = None, in_place: bool = False
) -> None:
    """Start (or restart) registration: at the first step a profile lacks, or at the
    first step with every current value offered to keep. The first question edits the
    pressed message when ``in_place``."""
    data: dict[str, Any] = {}
    if profile is not None:
        values = {
            "name": profile.display_name,
            "age": profile.age,
            "gender": profile.gender,
            "looking_for": profile.looking_for,
            "bio": profile.bio,
        }
        data = {k: v for k, v in values.items() if v is not None and _valid(k, v)}
        photo = card_photo(profile)
        if photo is not None:
            data["photo"] = [photo.id, photo.access_hash, photo.file_reference]
    ctx.state.set_data(data)
    missing = [s for s in STEPS if s not in data and s not in OPTIONAL]
    first = missing[0] if profile is not None and missing else STEPS[0]
    ask(ctx, first, in_place=in_place, note=note)


def _valid(step: str, value: Any) -> bool:
    """Whether a stored value meets today's rules (a legacy profile's may not: it is
    asked again)."""
    if step in ("gender", "looking_for"):
        return value in (GENDERS if step == "gender" else LOOKING_FOR)
    parse = {"name": parse_name, "age": parse_age, "bio": parse_bio}[step]
    try:
        parse(str(value))
    except Invalid:
        return False
    return True


def advance(ctx: Context, step: str, *, in_place: bool, note: str | None = None) -> None:
    """Ask the question after ``step``, or finish."""
    index = STEPS.index(step)
    if index + 1 < len(STEPS):
        ask(ctx, STEPS[index + 1], in_place=in_place, note=note)
    else:
        finish(ctx, in_place=in_place)


def current_step(ctx: Context) -> str | None:
    name = ctx.state.get()
    for step in STEPS:
        if name == getattr(Registration, step).state:
            return step
    return None


# -- answers by message --------------------------------------------------------------------


def _typed(ctx: Context, step: str, parse: Any) -> None:
    try:
        value = parse(ctx.text)
    except Invalid as error:
        ctx.reply(error.text(ctx._))
        ctx.event("validation_error", field=step)
        return
    ctx.state.update_data({step: value})
    advance(ctx, step, in_place=False)


@router.message(Command("cancel"), StateIs(Registration))
def cancel_command(ctx: Context) -> None:
    cancel(ctx, in_place=False)


@router.message(StateIs(Registration.name), ~Command())
def got_name(ctx: Context) -> None:
    _typed(ctx, "name", parse_name)


@router.message(StateIs(Registration.age), ~Command())
def got_age(ctx: Context) -> None:
    _typed(ctx, "age", parse_age)


@router.message(StateIs(Registration.gender, Registration.looking_for), ~Command())
def wants_a_button(ctx: Context) -> None:
    step = current_step(ctx) or "gender"
    ctx.reply(
        ctx._("Please pick one of the buttons."),
        keyboard=question_keyboard(step, ctx.state.get_data(), ctx._),
    )


@router.message(StateIs(Registration.photo), ContentType("photo"))
def got_photo(ctx: Context) -> None:
    media = ctx.update.media if isinstance(ctx.update, Message) else None
    if media is None:  # (ContentType("photo") lets only photos through)
        return
    ctx.state.update_data(photo=[media.id, media.access_hash, media.file_reference])
    advance(ctx, "photo", in_place=False)


@router.message(StateIs(Registration.photo), ~Command())
def wants_a_photo(ctx: Context) -> None:
    ctx.reply(
        ctx._("That's not a photo. Send one, or press Skip."),
        keyboard=question_keyboard("photo", ctx.state.get_data(), ctx._),
    )


@router.message(StateIs(Registration.bio), ~Command())
def got_bio(ctx: Context) -> None:
    _typed(ctx, "bio", parse_bio)


# -- answers by button ---------------------------------------------------------------------


@router.callback_query(Reg.filter(action="pick"), StateIs(Registration.gender))
def picked_gender(ctx: Context) -> None:
    _picked(ctx, "gender", GENDERS)


@router.callback_query(Reg.filter(action="pick"), StateIs(Registration.looking_for))
def picked_looking_for(ctx: Context) -> None:
    _picked(ctx, "looking_for", LOOKING_FOR)


def _picked(ctx: Context, step: str, allowed: tuple[str, ...]) -> None:
    value = ctx.callback_data.value
    if value not in allowed:
        ctx.answer(ctx._("That button is out of date."))
        return
    ctx.state.update_data({step: value})
    advance(ctx, step, in_place=True)


@router.callback_query(Reg.filter(action="keep"), StateIs(Registration))
def kept(ctx: Context) -> None:
    step = current_step(ctx)
    if step is None or (step not in OPTIONAL and step not in ctx.state.get_data()):
        ctx.answer(ctx._("Please answer this one."))
        return
    advance(ctx, step, in_place=True)


@router.callback_query(Reg.filter(action="back"), StateIs(Registration))
def back(ctx: Context) -> None:
    step = current_step(ctx) or STEPS[0]
    ask(ctx, STEPS[max(STEPS.index(step) - 1, 0)], in_place=True)


@router.callback_query(Reg.filter(action="cancel"), StateIs(Registration))
def cancel_button(ctx: Context) -> None:
    cancel(ctx, in_place=True)


@router.callback_query(Reg.filter())
def stale_question(ctx: Context) -> None:
    ctx.answer(ctx._("This question is closed. Send /start to go on."))


def cancel(ctx: Context, *, in_place: bool) -> None:
    ctx.state.clear()
    ctx.event("registration_cancelled")
    if is_complete(profile_of(ctx)):
        text = ctx._("Cancelled; your profile is as it was.") + "\n\n" + menu_text(ctx)
        keyboard = menu_keyboard(ctx)
    else:
        text = ctx._("Cancelled. Send /start whenever you're ready.")
        keyboard = InlineKeyboard()
    if in_place:
        ctx.edit(text, keyboard)
    else:
        ctx.reply(text, keyboard=keyboard)


# -- the end -------------------------------------------------------------------------------


def finish(ctx: Context, *, in_place: bool) -> None:
    """Write the profile (pending review), show it, and tell the admins."""
    data = ctx.state.get_data()
    ctx.state.clear()
    photo = data.get("photo")
    values: dict[str, Any] = {
        "display_name": data["name"],
        "age": data["age"],
        "gender": data["gender"],
        "looking_for": data["looking_for"],
        "bio": data.get("bio"),
        "moderation": "pending",
    }
    if photo:
        values.update(
            photo_id=int(photo[0]),
            photo_access_hash=int(photo[1]),
            photo_file_reference=base64.b64decode(photo[2]),
        )
    stmt = insert(Profile).values(bot_id=ctx.bot_id, user_id=ctx.user_id, **values)
    upsert = stmt.on_conflict_do_update(
        index_elements=[Profile.bot_id, Profile.user_id],
        set_={**values, "updated_at": func.now(), "version": Profile.version + 1},
    )
    created = ctx.session.execute(
        upsert.returning(Profile), execution_options={"populate_existing": True}
    ).scalar_one()
    ctx.event("profile_completed")
    done = ctx._("All set! This is how others see you:")
    if in_place:
        ctx.edit(done, InlineKeyboard())
    else:
        ctx.reply(done)
    text = card_text(created, ctx._)
    show_card(ctx, text, None, card_photo(created))
    ctx.reply(menu_text(ctx), keyboard=menu_keyboard(ctx))
    tell_admins(ctx, created, N_("Profile to review (#{id}):"))


__all__ = ["STEPS", "Registration", "begin", "router"]
