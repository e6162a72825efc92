"""The admins' moderation queue: new, changed and reported profiles wait as ``pending``
until an admin approves or bans them; a banned profile is never shown again.

Profiles are shown while they wait (moderation after the fact, so a new user can be
found at once). ``/moderate`` or the menu's "Moderation queue" shows the oldest waiting
profile with Approve and Ban; each verdict turns the same card into the next one. The
admins are told of every profile that starts waiting, with the same buttons.
"""

from __future__ import annotations

from tgfleet.bots import Command, Context, InlineKeyboard, IsAdmin, Router
from tgfleet.bots.apps.matchmaking.common import (
    Gettext,
    Menu,
    Mod,
    card_photo,
    card_text,
    gettext_for,
    next_pending,
    pressed,
    profile_of,
    show_card,
)
from tgfleet.db import Profile

router = Router("matchmaking-moderation")


def moderation_keyboard(target: int, photo: bool, _: Gettext) -> InlineKeyboard:
    return (
        InlineKeyboard()
        .button(_("Approve"), callback=Mod(action="approve", target=target, photo=photo))
        .button(_("Ban"), callback=Mod(action="ban", target=target, photo=photo))
        .row()
        .button(_("Menu"), callback=Menu(action="home", photo=photo))
    )


def tell_admins(ctx: Context, profile: Profile, note: str) -> None:
    """Send each admin ``note`` (a msgid with ``{id}``) and the profile's card with
    Approve and Ban, in the admin's language."""
    photo = card_photo(profile)
    for admin in ctx.admin_chat_ids:
        _ = gettext_for(ctx.session, ctx.bot_id, admin)
        text = f"{_(note).format(id=profile.user_id)}\n{card_text(profile, _)}"
        keyboard = moderation_keyboard(profile.user_id, photo is not None, _)
        if photo is not None:
            ctx.send_media(admin, photo, text, keyboard)
        else:
            ctx.send(admin, text, keyboard=keyboard)


def show_queue(ctx: Context, replace: tuple[int, bool] | None) -> None:
    """The oldest waiting profile with Approve and Ban, or word that none waits."""
    profile = next_pending(ctx)
    if profile is None:
        keyboard = InlineKeyboard().button(ctx._("Menu"), callback=Menu(action="home"))
        show_card(
            ctx, ctx._("No profiles are waiting for review."), keyboard, None, replace=replace
        )
        return
    photo = card_photo(profile)
    head = ctx._("Waiting for review (#{id}):").format(id=profile.user_id)
    keyboard = moderation_keyboard(profile.user_id, photo is not None, ctx._)
    show_card(ctx, f"{head}\n{card_text(profile, ctx._)}", keyboard, photo, replace=replace)


@router.message(Command("moderate"), IsAdmin())
def moderate_command(ctx: Context) -> None:
    show_queue(ctx, None)


@router.callback_query(Menu.filter(action="moderate"), IsAdmin())
def moderate_button(ctx: Context) -> None:
    show_queue(ctx, pressed(ctx, ctx.callback_data.photo))


@router.callback_query(Mod.filter(), IsAdmin())
def verdict(ctx: Context) -> None:
    data: Mod = ctx.callback_data
    profile = profile_of(ctx, data.target)
    if profile is None or data.action not in ("approve", "ban"):
        ctx.answer(ctx._("That profile is gone."))
    else:
        banned = data.action == "ban"
        profile.moderation = "banned" if banned else "approved"
        _ = gettext_for(ctx.session, ctx.bot_id, profile.user_id)
        if banned:
            ctx.send(profile.user_id, _("Your profile was blocked by the moderators."))
            ctx.answer(ctx._("Banned."))
        else:
            ctx.answer(ctx._("Approved."))
        ctx.event("moderated", target=profile.user_id, verdict=profile.moderation)
    show_queue(ctx, pressed(ctx, data.photo))


@router.callback_query(Mod.filter())
def not_an_admin(ctx: Context) -> None:
    ctx.answer(ctx._("Only the bot's admins can do that."), alert=True)
