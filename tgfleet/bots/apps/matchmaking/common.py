"""What the matchmaking app's handlers share: button data, languages, profile queries,
profile cards and the main menu."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session

from tgfleet.bots import CallbackData, Context, I18n, InlineKeyboard, MediaRef
from tgfleet.db import Like, Profile, ProfileVisibility, TgUser

#: The app's gettext catalogs (``make i18n`` extracts and compiles them).
LOCALES = Path(__file__).parent / "locales"
I18N = I18n(LOCALES, domain="matchmaking", default="en")
#: The languages a user can pick: code -> the language's own name.
LANGUAGES = {"en": "English", "ru": "Русский"}

GENDERS = ("male", "female")
LOOKING_FOR = ("male", "female", "any")
NAME_MAX, BIO_MAX = 64, 500
AGE_MIN, AGE_MAX = 18, 120

Gettext = Callable[[str], str]


def N_(message: str) -> str:
    """Marks ``message`` for translation where it is defined; ``ctx._`` translates it
    where it is shown."""
    return message


# -- what the buttons carry ----------------------------------------------------------------


class Menu(CallbackData, prefix="mm"):
    """A menu button: browse, profile, edit, hide, show, delete, delete_yes, language,
    home, moderate; ``photo`` as in ``Vote``."""

    action: str
    photo: bool = False


class Reg(CallbackData, prefix="rg"):
    """A registration button: back, cancel, keep (the current value) or pick ``value``."""

    action: str
    value: str = ""


class Vote(CallbackData, prefix="vt"):
    """A verdict on the profile card ``target``; ``photo`` says whether the card that
    carries the button is a photo (an edit cannot turn text into a photo or back)."""

    action: str  # like | skip | report
    target: int
    photo: bool = False


class Mod(CallbackData, prefix="md"):
    """An admin's verdict on profile ``target``: approve or ban."""

    action: str
    target: int
    photo: bool = False


class Lang(CallbackData, prefix="lg"):
    code: str


# -- languages -----------------------------------------------------------------------------


def gettext_for(session: Session, bot_id: int, user_id: int) -> Gettext:
    """The translations of another user of this bot (a match, an admin): the language
    they chose, else Telegram's."""
    lang = session.execute(
        select(TgUser.chosen_lang, TgUser.language_code).where(
            TgUser.bot_id == bot_id, TgUser.user_id == user_id
        )
    ).first()
    code = (lang[0] or lang[1]) if lang else None
    return I18N.catalog(I18N.language(code)).gettext


# -- profiles ------------------------------------------------------------------------------


def profile_of(ctx: Context, user_id: int | None = None) -> Profile | None:
    return ctx.session.execute(
        select(Profile).where(
            Profile.bot_id == ctx.bot_id, Profile.user_id == (user_id or ctx.user_id)
        )
    ).scalar_one_or_none()


def is_complete(profile: Profile | None) -> bool:
    """Whether a profile can be shown to others (legacy profiles may lack a gender)."""
    return bool(
        profile is not None
        and profile.display_name
        and profile.age
        and profile.gender
        and profile.looking_for
    )


def next_candidate(ctx: Context, me: Profile) -> Profile | None:
    """The next profile for ``me`` to judge: visible, not banned, not judged yet, whose
    gender is what ``me`` looks for and who looks for ``me``'s gender (a profile from the
    legacy store that never said either matches any)."""
    judged = exists().where(
        and_(
            Like.bot_id == ctx.bot_id,
            Like.user_id == me.user_id,
            Like.target_id == Profile.user_id,
        )
    )
    query = select(Profile).where(
        Profile.bot_id == ctx.bot_id,
        Profile.user_id != me.user_id,
        Profile.visibility == ProfileVisibility.VISIBLE,
        Profile.moderation != "banned",
        Profile.display_name.is_not(None),
        ~judged,
    )
    if me.looking_for in GENDERS:
        query = query.where(or_(Profile.gender.is_(None), Profile.gender == me.looking_for))
    if me.gender in GENDERS:
        query = query.where(
            or_(Profile.looking_for.is_(None), Profile.looking_for.in_((me.gender, "any")))
        )
    return ctx.session.execute(
        query.order_by(Profile.updated_at.desc(), Profile.user_id).limit(1)
    ).scalar_one_or_none()


def next_pending(ctx: Context) -> Profile | None:
    """The oldest profile waiting for the admins."""
    return ctx.session.execute(
        select(Profile)
        .where(Profile.bot_id == ctx.bot_id, Profile.moderation == "pending")
        .order_by(Profile.updated_at, Profile.user_id)
        .limit(1)
    ).scalar_one_or_none()


# -- cards ---------------------------------------------------------------------------------

_GENDER = {"male": N_("man"), "female": N_("woman")}
_SEEKING = {"male": N_("men"), "female": N_("women"), "any": N_("anyone")}


def card_text(profile: Profile, _: Gettext) -> str:
    """A profile as others see it: name, age, city, bio, whom they look for."""
    head = ", ".join(str(v) for v in (profile.display_name or "?", profile.age) if v)
    lines = [head]
    if profile.city:
        lines.append(profile.city)
    if profile.bio:
        lines.append(profile.bio)
    about = []
    if profile.gender in _GENDER:
        about.append(_(_GENDER[profile.gender]))
    if profile.looking_for in _SEEKING:
        about.append(_("looking for {who}").format(who=_(_SEEKING[profile.looking_for])))
    if about:
        lines.append(", ".join(about).capitalize())
    return "\n".join(lines)


def card_photo(profile: Profile) -> MediaRef | None:
    """The profile's photo as this bot can send it again (legacy Bot API file ids
    cannot be sent over MTProto: those cards are text)."""
    if profile.photo_id is None or profile.photo_access_hash is None:
        return None
    reference = base64.b64encode(profile.photo_file_reference or b"").decode()
    return MediaRef("photo", profile.photo_id, profile.photo_access_hash, reference)


def show_card(
    ctx: Context,
    text: str,
    keyboard: InlineKeyboard | None,
    photo: MediaRef | None,
    *,
    replace: tuple[int, bool] | None = None,
) -> None:
    """Show a card: in place of message ``replace`` = (id, it is a photo), else as a new
    message. An edit can give a text message a photo but cannot take one away: a photo
    card that becomes a text one is deleted and sent again."""
    if replace is not None:
        message_id, was_photo = replace
        if not was_photo or photo is not None:
            ctx.edit(text, keyboard, message_id=message_id, media=photo)
            return
        ctx.delete(message_id)
    if photo is not None:
        ctx.reply_media(photo, caption=text, keyboard=keyboard)
    else:
        ctx.reply(text, keyboard=keyboard)


# -- the main menu -------------------------------------------------------------------------


def menu_keyboard(ctx: Context) -> InlineKeyboard:
    keyboard = (
        InlineKeyboard()
        .button(ctx._("Browse profiles"), callback=Menu(action="browse"))
        .button(ctx._("My profile"), callback=Menu(action="profile"))
        .row()
        .button(ctx._("Language"), callback=Menu(action="language"))
    )
    if ctx.user_id in ctx.admin_chat_ids:
        keyboard.button(ctx._("Moderation queue"), callback=Menu(action="moderate"))
    return keyboard


def menu_text(ctx: Context) -> str:
    return ctx._("What would you like to do?")


def back_to_menu(ctx: Context, photo: bool = False) -> InlineKeyboard:
    return InlineKeyboard().button(ctx._("Menu"), callback=Menu(action="home", photo=photo))


def pressed(ctx: Context, photo: bool) -> tuple[int, bool] | None:
    """``show_card``'s ``replace`` for the message whose button was pressed (None for a
    message: the card comes as a new one)."""
    callback = ctx.callback
    return None if callback is None else (callback.message_id, photo)
