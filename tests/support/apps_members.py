"""The app the group membership end-to-end tests run (``tests.support.apps_members:app``):
a ``chat_member`` handler that greets members joining the group and says goodbye to
those leaving, and greets the group when the bot itself is added."""

from __future__ import annotations

from tgfleet.bots import ChatMemberUpdated, Context, Router

app = Router("members")


@app.chat_member()
def member(ctx: Context) -> None:
    change = ctx.update
    assert isinstance(change, ChatMemberUpdated)
    if change.user_id == ctx.bot_id:  # the bot itself (a participant update, once)
        if change.joined:
            ctx.reply(f"hello, group (added by {change.actor_id})")
        else:  # it can no longer write there
            ctx.event("removed", chat_id=change.chat_id, by=change.actor_id)
        return
    ctx.reply(f"welcome {change.user_id}" if change.joined else f"bye {change.user_id}")
