"""A conversation app the end-to-end and inbox tests run (``tests.support.apps_fsm:registration``):
/register asks for a name, then an age (a bad age is asked again), then says
"Done, NAME, AGE"; /cancel leaves the conversation from any of its steps."""

from __future__ import annotations

from datetime import timedelta

from tgfleet.bots import Command, Context, Router, State, StateIs, StatesGroup


class Registration(StatesGroup):
    name = State()
    age = State()


#: How long an unfinished registration is kept.
REGISTRATION_TTL = timedelta(hours=1)

registration = Router("registration")


@registration.message(Command("register"))
def register(ctx: Context) -> None:
    ctx.state.clear()
    ctx.state.set(Registration.name, expires_in=REGISTRATION_TTL)
    ctx.reply("What is your name?")


@registration.message(Command("cancel"), StateIs(Registration))
def cancel(ctx: Context) -> None:
    ctx.state.clear()
    ctx.reply("Cancelled.")


@registration.message(Command("cancel"))
def nothing_to_cancel(ctx: Context) -> None:
    ctx.reply("Nothing to cancel.")


@registration.message(StateIs(Registration.name), ~Command())
def got_name(ctx: Context) -> None:
    ctx.state.update_data(name=ctx.text.strip())
    ctx.state.set(Registration.age, expires_in=REGISTRATION_TTL)
    ctx.reply("How old are you?")


@registration.message(StateIs(Registration.age), ~Command())
def got_age(ctx: Context) -> None:
    text = ctx.text.strip()
    if not text.isdigit() or not 1 <= int(text) <= 150:
        ctx.reply("Please send your age as a number.")
        return
    data = ctx.state.get_data()
    ctx.state.clear()
    ctx.event("registered", age=int(text))
    ctx.reply(f"Done, {data['name']}, {int(text)}")


@registration.message(StateIs(None))
def outside(ctx: Context) -> None:
    ctx.reply("Send /register to start.")


#: For the inbox tests: a handler whose state change and reply must roll back together.
class Boom(StatesGroup):
    armed = State()


failing = Router("failing")


@failing.message(Command("arm"))
def arm(ctx: Context) -> None:
    ctx.state.set(Boom.armed)
    ctx.state.update_data(armed_by=ctx.user_id)
    ctx.reply("armed")
    if "fail" in ctx.args():
        raise RuntimeError("the handler failed after changing the state")
