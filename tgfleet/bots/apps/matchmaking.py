"""The built-in app: a small matchmaking bot (profiles, browse, like, match).

Every input is validated; bad input gets a friendly reply saying what is allowed
and nothing is stored. Every step records an analytics event.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, delete, exists, select
from sqlalchemy.dialects.postgresql import insert

from tgfleet.bots.context import Context
from tgfleet.bots.router import Router
from tgfleet.db import Conversation, Like, Profile, ProfileVisibility, TgUser

router = Router("matchmaking")

HELP = (
    "Commands:\n"
    "/profile - show your profile\n"
    "/set name|age|city|bio|looking <value> - edit it (send a photo to set your picture)\n"
    "/browse - see someone new, then /like <id> or /skip\n"
    "/hide, /show - hide or show your profile\n"
    "/delete - delete your profile\n"
    "/report <id> - report a profile to the admins"
)


@dataclass(frozen=True)
class Field:
    column: str
    label: str
    rule: str
    max_len: int = 0
    min_value: int = 0
    max_value: int = 0

    def parse(self, raw: str) -> Any:
        """The stored value, or ValueError with what is allowed."""
        if self.max_len:
            value = " ".join(raw.split())
            if not value or len(value) > self.max_len:
                raise ValueError(self.rule)
            return value
        if not raw.strip().isdigit():
            raise ValueError(self.rule)
        number = int(raw.strip())
        if not self.min_value <= number <= self.max_value:
            raise ValueError(self.rule)
        return number


FIELDS = {
    "name": Field("display_name", "Name", "a name of 1 to 64 characters", max_len=64),
    "age": Field("age", "Age", "a whole number from 18 to 120", min_value=18, max_value=120),
    "city": Field("city", "City", "a city of 1 to 64 characters", max_len=64),
    "bio": Field("bio", "Bio", "a bio of 1 to 500 characters", max_len=500),
    "looking": Field("looking_for", "Looking for", "1 to 200 characters", max_len=200),
}


def _profile(ctx: Context, user_id: int | None = None) -> Profile | None:
    return ctx.session.execute(
        select(Profile).where(
            Profile.bot_id == ctx.bot_id, Profile.user_id == (user_id or ctx.user_id)
        )
    ).scalar_one_or_none()


def _card(profile: Profile) -> str:
    lines = [f"#{profile.user_id} {profile.display_name or '(no name)'}"]
    details = ", ".join(str(v) for v in (profile.age, profile.city) if v)
    if details:
        lines.append(details)
    if profile.bio:
        lines.append(profile.bio)
    if profile.looking_for:
        lines.append(f"Looking for: {profile.looking_for}")
    return "\n".join(lines)


def _photo_option(profile: Profile) -> dict[str, Any]:
    if profile.photo_id is None or profile.photo_access_hash is None:
        return {}
    reference = base64.b64encode(profile.photo_file_reference or b"").decode()
    return {"media": {"photo": [profile.photo_id, profile.photo_access_hash, reference]}}


def _require_profile(ctx: Context) -> Profile | None:
    profile = _profile(ctx)
    if profile is None:
        ctx.reply("You have no profile yet: send /start first.")
    return profile


@router.command("start")
def start(ctx: Context) -> None:
    created = ctx.session.execute(
        insert(Profile)
        .values(bot_id=ctx.bot_id, user_id=ctx.user_id)
        .on_conflict_do_nothing()
        .returning(Profile.user_id)
    ).first()
    if created is None:
        ctx.reply("Welcome back!\n" + HELP)
        ctx.event("start")
        return
    user = ctx.session.get(TgUser, (ctx.bot_id, ctx.user_id))
    name = (user.first_name if user else None) or str(ctx.user_id)
    ctx.reply(f"Welcome, {name}! Let's set up your profile.\n" + HELP)
    ctx.notify_admins(f"New user: {name} (#{ctx.user_id})")
    ctx.event("new_user")


@router.command("help")
def help_(ctx: Context) -> None:
    ctx.reply(HELP)


@router.command("profile")
def show_profile(ctx: Context) -> None:
    profile = _require_profile(ctx)
    if profile is None:
        return
    hidden = " (hidden)" if profile.visibility is ProfileVisibility.HIDDEN else ""
    ctx.reply(f"Your profile{hidden}:\n{_card(profile)}", **_photo_option(profile))
    ctx.event("profile_viewed")


@router.command("set")
def set_field(ctx: Context) -> None:
    args = ctx.text.split(maxsplit=2)[1:]
    field = FIELDS.get(args[0].lower()) if args else None
    if field is None or len(args) < 2:
        ctx.reply("Usage: /set name|age|city|bio|looking <value>, e.g. /set age 30")
        return
    try:
        value = field.parse(args[1])
    except ValueError as exc:
        ctx.reply(f"{field.label} must be {exc}. Nothing was changed.")
        ctx.event("validation_error", field=args[0].lower())
        return
    profile = _require_profile(ctx)
    if profile is None:
        return
    setattr(profile, field.column, value)
    ctx.reply(f"{field.label} saved.")
    ctx.event("profile_updated", field=args[0].lower())


@router.photo()
def set_photo(ctx: Context) -> None:
    photo = ctx.message.photo
    profile = _require_profile(ctx)
    if profile is None or photo is None:
        return
    profile.photo_id = photo.id
    profile.photo_access_hash = photo.access_hash
    profile.photo_file_reference = photo.file_reference
    ctx.reply("Photo saved.")
    ctx.event("profile_updated", field="photo")


def _set_state(ctx: Context, **data: Any) -> None:
    conversation = ctx.session.get(Conversation, (ctx.bot_id, ctx.chat_id))
    if conversation is not None:
        conversation.state_data = {**(conversation.state_data or {}), **data}


@router.command("browse")
def browse(ctx: Context) -> None:
    if _require_profile(ctx) is None:
        return
    seen = exists().where(
        and_(
            Like.bot_id == ctx.bot_id,
            Like.user_id == ctx.user_id,
            Like.target_id == Profile.user_id,
        )
    )
    candidate = ctx.session.execute(
        select(Profile)
        .where(
            Profile.bot_id == ctx.bot_id,
            Profile.user_id != ctx.user_id,
            Profile.visibility == ProfileVisibility.VISIBLE,
            Profile.display_name.is_not(None),
            ~seen,
        )
        .order_by(Profile.updated_at.desc(), Profile.user_id)
        .limit(1)
    ).scalar_one_or_none()
    if candidate is None:
        ctx.reply("No new profiles right now. Try again later!")
        ctx.event("browse_empty")
        return
    _set_state(ctx, browsing=candidate.user_id)
    text = f"{_card(candidate)}\n/like {candidate.user_id} or /skip"
    ctx.reply(text, **_photo_option(candidate))
    ctx.event("browse", target=candidate.user_id)


def _target(ctx: Context) -> int | None:
    args = ctx.args()
    if args and args[0].lstrip("#").isdigit():
        return int(args[0].lstrip("#"))
    conversation = ctx.session.get(Conversation, (ctx.bot_id, ctx.chat_id))
    browsing = (conversation.state_data or {}).get("browsing") if conversation else None
    return int(browsing) if isinstance(browsing, int) else None


def _verdict(ctx: Context, verdict: str) -> int | None:
    target = _target(ctx)
    if target is None or target == ctx.user_id or _profile(ctx, target) is None:
        ctx.reply(f"Usage: /{verdict} <id> with the id shown by /browse.")
        return None
    if _require_profile(ctx) is None:
        return None
    stmt = insert(Like).values(
        bot_id=ctx.bot_id, user_id=ctx.user_id, target_id=target, verdict=verdict
    )
    ctx.session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Like.bot_id, Like.user_id, Like.target_id],
            set_={"verdict": stmt.excluded.verdict},
        )
    )
    ctx.event(verdict, target=target)
    return target


@router.command("like")
def like(ctx: Context) -> None:
    target = _verdict(ctx, "like")
    if target is None:
        return
    mutual = ctx.session.execute(
        select(Like.verdict).where(
            Like.bot_id == ctx.bot_id, Like.user_id == target, Like.target_id == ctx.user_id
        )
    ).scalar_one_or_none()
    if mutual == "like":
        me, them = _profile(ctx), _profile(ctx, target)
        ctx.reply(f"It's a match with {them.display_name if them else target}! Say hello.")
        ctx.send(target, f"It's a match with {me.display_name if me else ctx.user_id}! Say hello.")
        ctx.event("match", target=target)
    else:
        ctx.reply("Liked! /browse for more.")


@router.command("skip")
def skip(ctx: Context) -> None:
    if _verdict(ctx, "skip") is not None:
        ctx.reply("Skipped. /browse for more.")


def _visibility(ctx: Context, visibility: ProfileVisibility, word: str) -> None:
    profile = _require_profile(ctx)
    if profile is not None:
        profile.visibility = visibility
        ctx.reply(f"Your profile is {word}.")
        ctx.event("profile_updated", field="visibility")


@router.command("hide")
def hide(ctx: Context) -> None:
    _visibility(ctx, ProfileVisibility.HIDDEN, "hidden")


@router.command("show")
def show(ctx: Context) -> None:
    _visibility(ctx, ProfileVisibility.VISIBLE, "visible again")


@router.command("delete")
def delete_profile(ctx: Context) -> None:
    profile = _require_profile(ctx)
    if profile is None:
        return
    ctx.session.delete(profile)
    ctx.session.execute(delete(Like).where(Like.bot_id == ctx.bot_id, Like.user_id == ctx.user_id))
    ctx.reply("Your profile was deleted. /start to begin again.")
    ctx.event("profile_deleted")


@router.command("report")
def report(ctx: Context) -> None:
    args = ctx.args()
    if not args or not args[0].lstrip("#").isdigit():
        ctx.reply("Usage: /report <id> [reason]")
        return
    target = int(args[0].lstrip("#"))
    reason = " ".join(args[1:])[:200] or "no reason given"
    ctx.notify_admins(f"Report: user #{ctx.user_id} reported #{target}: {reason}")
    ctx.reply("Thanks, the admins were told.")
    ctx.event("report", target=target)


@router.text()
def other_text(ctx: Context) -> None:
    ctx.reply("I didn't get that.\n" + HELP)


@router.fallback()
def unknown(ctx: Context) -> None:
    ctx.reply("Unknown command.\n" + HELP)
