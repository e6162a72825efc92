"""Getting in and around: /start, the main menu, the user's own profile (edit, hide,
show, delete), the language, help, and what the app says to anything else."""

from __future__ import annotations

from sqlalchemy import delete

from tgfleet.bots import Command, Context, InlineKeyboard, Router
from tgfleet.bots.apps.matchmaking.common import (
    LANGUAGES,
    Lang,
    Menu,
    card_photo,
    card_text,
    is_complete,
    menu_keyboard,
    menu_text,
    pressed,
    profile_of,
    show_card,
)
from tgfleet.bots.apps.matchmaking.registration import begin
from tgfleet.db import Like, ProfileVisibility, TgUser

router = Router("matchmaking-menu")


def _first_name(ctx: Context) -> str:
    user = ctx.session.get(TgUser, (ctx.bot_id, ctx.user_id))
    return (user.first_name if user else None) or str(ctx.user_id)


def show_menu(ctx: Context, note: str | None = None) -> None:
    text = menu_text(ctx) if note is None else f"{note}\n\n{menu_text(ctx)}"
    photo = ctx.callback_data.photo if isinstance(ctx.callback_data, Menu) else False
    show_card(ctx, text, menu_keyboard(ctx), None, replace=pressed(ctx, photo))


@router.message(Command("start"))
def start(ctx: Context) -> None:
    profile = profile_of(ctx)
    name = _first_name(ctx)
    if profile is None:
        ctx.event("new_user")
        begin(ctx, None, note=ctx._("Welcome, {name}! Let's make your profile.").format(name=name))
    elif not is_complete(profile):
        note = ctx._("Welcome back, {name}! Your profile needs a few more details.")
        begin(ctx, profile, note=note.format(name=name))
    else:
        ctx.state.clear()
        ctx.event("start")
        show_menu(ctx, ctx._("Welcome back, {name}!").format(name=name))


@router.message(Command("menu"))
def menu_command(ctx: Context) -> None:
    ctx.state.clear()
    show_menu(ctx)


@router.callback_query(Menu.filter(action="home"))
def menu_button(ctx: Context) -> None:
    show_menu(ctx)


@router.message(Command("help"))
def help_(ctx: Context) -> None:
    ctx.reply(
        ctx._(
            "I help you meet people. Press the buttons, or use:\n"
            "/start - make your profile, or come back to it\n"
            "/browse - see profiles, like or skip them\n"
            "/profile - your profile: edit, hide or delete it\n"
            "/language - choose your language\n"
            "/cancel - stop filling in your profile"
        )
    )


# -- the user's own profile ----------------------------------------------------------------


def show_profile(ctx: Context) -> None:
    profile = profile_of(ctx)
    if profile is None:
        begin(ctx, None, note=ctx._("You have no profile yet. Let's make one."))
        return
    hidden = profile.visibility is not ProfileVisibility.VISIBLE
    status = {
        "pending": ctx._("Waiting for a moderator"),
        "approved": ctx._("Approved"),
        "banned": ctx._("Blocked by the moderators"),
    }[profile.moderation]
    seen = ctx._("Hidden from others") if hidden else ctx._("Visible to others")
    text = f"{card_text(profile, ctx._)}\n\n{seen} · {status}"
    photo = card_photo(profile)
    flag = photo is not None
    keyboard = (
        InlineKeyboard()
        .button(ctx._("Edit profile"), callback=Menu(action="edit", photo=flag))
        .button(
            ctx._("Show my profile") if hidden else ctx._("Hide my profile"),
            callback=Menu(action="show" if hidden else "hide", photo=flag),
        )
        .row()
        .button(ctx._("Delete profile"), callback=Menu(action="delete", photo=flag))
        .button(ctx._("Menu"), callback=Menu(action="home", photo=flag))
    )
    replace = pressed(ctx, ctx.callback_data.photo) if ctx.callback else None
    show_card(ctx, text, keyboard, photo, replace=replace)
    ctx.event("profile_viewed")


@router.message(Command("profile"))
def profile_command(ctx: Context) -> None:
    show_profile(ctx)


@router.callback_query(Menu.filter(action="profile"))
def profile_button(ctx: Context) -> None:
    show_profile(ctx)


@router.callback_query(Menu.filter(action="edit"))
def edit_button(ctx: Context) -> None:
    begin(ctx, profile_of(ctx), in_place=not ctx.callback_data.photo)


@router.callback_query(Menu.filter(action="hide"))
@router.callback_query(Menu.filter(action="show"))
def visibility_button(ctx: Context) -> None:
    profile = profile_of(ctx)
    if profile is not None:
        hide = ctx.callback_data.action == "hide"
        profile.visibility = ProfileVisibility.HIDDEN if hide else ProfileVisibility.VISIBLE
        ctx.answer(ctx._("Your profile is hidden.") if hide else ctx._("Your profile is visible."))
        ctx.event("profile_updated", field="visibility")
    show_profile(ctx)


@router.callback_query(Menu.filter(action="delete"))
def delete_button(ctx: Context) -> None:
    keyboard = (
        InlineKeyboard()
        .button(ctx._("Yes, delete it"), callback=Menu(action="delete_yes"))
        .button(ctx._("No, keep it"), callback=Menu(action="profile"))
    )
    text = ctx._("Delete your profile? Your likes and matches go with it.")
    show_card(ctx, text, keyboard, None, replace=pressed(ctx, ctx.callback_data.photo))


@router.callback_query(Menu.filter(action="delete_yes"))
def delete_confirmed(ctx: Context) -> None:
    profile = profile_of(ctx)
    if profile is not None:
        ctx.session.delete(profile)
        ctx.session.execute(
            delete(Like).where(Like.bot_id == ctx.bot_id, Like.user_id == ctx.user_id)
        )
        ctx.event("profile_deleted")
    ctx.state.clear()
    ctx.edit(ctx._("Your profile was deleted. Send /start to begin again."), InlineKeyboard())


# -- language ------------------------------------------------------------------------------


def language_keyboard(ctx: Context) -> InlineKeyboard:
    keyboard = InlineKeyboard()
    for code, name in LANGUAGES.items():
        keyboard.button(name, callback=Lang(code=code))
    return keyboard.row().button(ctx._("Menu"), callback=Menu(action="home"))


@router.message(Command("language"))
def language_command(ctx: Context) -> None:
    ctx.reply(ctx._("Choose your language:"), keyboard=language_keyboard(ctx))


@router.callback_query(Menu.filter(action="language"))
def language_button(ctx: Context) -> None:
    show_card(
        ctx,
        ctx._("Choose your language:"),
        language_keyboard(ctx),
        None,
        replace=pressed(ctx, ctx.callback_data.photo),
    )


@router.callback_query(Lang.filter())
def language_chosen(ctx: Context) -> None:
    code = ctx.callback_data.code
    if code not in LANGUAGES:
        ctx.answer(ctx._("That button is out of date."))
        return
    ctx.set_language(code)
    ctx.event("language", lang=code)
    show_menu(ctx, ctx._("I'll speak {language} with you.").format(language=LANGUAGES[code]))


# -- anything else -------------------------------------------------------------------------


@router.message()
def anything_else(ctx: Context) -> None:
    """Text, photos and commands the app does not know (outside registration)."""
    ctx.reply(ctx._("Use the buttons below, or send /help."), keyboard=menu_keyboard(ctx))
