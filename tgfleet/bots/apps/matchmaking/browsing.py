"""Browsing: profile cards with Like, Skip and Report; each verdict turns the same card
into the next profile. Two likes make a match: both users get a message with a button
that opens the other's chat. A report hides the profile from the reporter and sends it
back to the admins' queue.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from tgfleet.bots import Command, Context, InlineKeyboard, Router
from tgfleet.bots.apps.matchmaking.common import (
    N_,
    Menu,
    Vote,
    back_to_menu,
    card_photo,
    card_text,
    gettext_for,
    is_complete,
    next_candidate,
    pressed,
    profile_of,
    show_card,
)
from tgfleet.bots.apps.matchmaking.moderation import tell_admins
from tgfleet.bots.apps.matchmaking.registration import begin
from tgfleet.db import Like, Profile, TgUser

router = Router("matchmaking-browsing")

VERDICTS = ("like", "skip", "report")


def card_keyboard(ctx: Context, target: int, photo: bool) -> InlineKeyboard:
    def vote(action: str) -> Vote:
        return Vote(action=action, target=target, photo=photo)

    return (
        InlineKeyboard()
        .button(ctx._("❤️ Like"), callback=vote("like"))
        .button(ctx._("Skip"), callback=vote("skip"))
        .row()
        .button(ctx._("Report"), callback=vote("report"))
        .button(ctx._("Menu"), callback=Menu(action="home", photo=photo))
    )


def ready_to_browse(ctx: Context) -> Profile | None:
    """The user's profile when they may browse; otherwise tells them why not."""
    me = profile_of(ctx)
    if me is None or not is_complete(me):
        begin(ctx, me, note=ctx._("Let's finish your profile first."))
        return None
    if me.moderation == "banned":
        ctx.reply(ctx._("Your profile was blocked by the moderators."))
        return None
    return me


def show_next(ctx: Context, me: Profile, replace: tuple[int, bool] | None) -> None:
    candidate = next_candidate(ctx, me)
    if candidate is None:
        text = ctx._("That's everyone for now. Check back later!")
        show_card(ctx, text, back_to_menu(ctx), None, replace=replace)
        ctx.event("browse_empty")
        return
    photo = card_photo(candidate)
    keyboard = card_keyboard(ctx, candidate.user_id, photo is not None)
    show_card(ctx, card_text(candidate, ctx._), keyboard, photo, replace=replace)
    ctx.event("browse", target=candidate.user_id)


@router.message(Command("browse"))
def browse_command(ctx: Context) -> None:
    me = ready_to_browse(ctx)
    if me is not None:
        show_next(ctx, me, None)


@router.callback_query(Menu.filter(action="browse"))
def browse_button(ctx: Context) -> None:
    me = ready_to_browse(ctx)
    if me is not None:
        show_next(ctx, me, pressed(ctx, ctx.callback_data.photo))


@router.callback_query(Vote.filter())
def voted(ctx: Context) -> None:
    data: Vote = ctx.callback_data
    me = ready_to_browse(ctx)
    if me is None:
        return
    target = profile_of(ctx, data.target)
    if data.action in VERDICTS and target is not None and target.user_id != me.user_id:
        before = _judge(ctx, me, target, "like" if data.action == "like" else "skip")
        ctx.event(data.action, target=target.user_id)
        if data.action == "report":
            _report(ctx, target)
        elif data.action == "like" and before != "like" and _likes(ctx, target, me):
            _match(ctx, me, target)
    else:
        ctx.answer(ctx._("That profile is gone."))
    show_next(ctx, me, pressed(ctx, data.photo))


def _judge(ctx: Context, me: Profile, target: Profile, verdict: str) -> str | None:
    """Store ``me``'s verdict on ``target``; returns the one it replaced."""
    before = ctx.session.execute(
        select(Like.verdict).where(
            Like.bot_id == ctx.bot_id, Like.user_id == me.user_id, Like.target_id == target.user_id
        )
    ).scalar_one_or_none()
    stmt = insert(Like).values(
        bot_id=ctx.bot_id, user_id=me.user_id, target_id=target.user_id, verdict=verdict
    )
    ctx.session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Like.bot_id, Like.user_id, Like.target_id],
            set_={"verdict": stmt.excluded.verdict},
        )
    )
    return before


def _likes(ctx: Context, who: Profile, whom: Profile) -> bool:
    return (
        ctx.session.execute(
            select(Like.verdict).where(
                Like.bot_id == ctx.bot_id,
                Like.user_id == who.user_id,
                Like.target_id == whom.user_id,
            )
        ).scalar_one_or_none()
        == "like"
    )


def _chat_url(ctx: Context, user_id: int) -> str:
    """A link that opens ``user_id``'s chat: their public username, else their id."""
    username = ctx.session.execute(
        select(TgUser.username).where(TgUser.bot_id == ctx.bot_id, TgUser.user_id == user_id)
    ).scalar_one_or_none()
    return f"https://t.me/{username}" if username else f"tg://user?id={user_id}"


def _match(ctx: Context, me: Profile, them: Profile) -> None:
    """Both users hear of the match, each in their own language, with a chat button."""
    ctx.answer(ctx._("It's a match!"))
    for user, other in ((me, them), (them, me)):
        _ = ctx._ if user is me else gettext_for(ctx.session, ctx.bot_id, user.user_id)
        text = _("It's a match with {name}! Say hello.").format(name=other.display_name)
        keyboard = InlineKeyboard().url(
            _("Open a chat with {name}").format(name=other.display_name),
            _chat_url(ctx, other.user_id),
        )
        ctx.send(user.user_id, text, keyboard=keyboard)
    ctx.event("match", target=them.user_id)


def _report(ctx: Context, target: Profile) -> None:
    ctx.answer(ctx._("Thanks. The moderators will take a look."))
    if target.moderation == "approved":
        target.moderation = "pending"
        tell_admins(ctx, target, N_("Reported profile (#{id}):"))
