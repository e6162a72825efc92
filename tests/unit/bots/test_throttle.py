"""The Throttle middleware's pure parts: its settings, bucket keys, what tells updates
apart, what a refused update gets, which updates it counts, and failing open."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from tests.unit.bots.updates import (
    BOT,
    SENT_AT,
    USER,
    callback,
    context,
    effects_of,
    message,
    stopped,
)
from tgfleet.bots import Context, Throttle
from tgfleet.bots.throttle import REMEMBER_S, Verdict, update_id
from tgfleet.platform.names import THROTTLE_PREFIX


def ok(ctx: Context) -> str:
    return "ran"


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"rate": 0}, "rate must be > 0"),
        ({"rate": -1}, "rate must be > 0"),
        ({"rate": 1, "burst": 0}, "burst must be a whole number >= 1"),
        ({"rate": 1, "burst": 2.5}, "burst must be a whole number >= 1"),
        ({"rate": 1, "burst": True}, "burst must be a whole number >= 1"),
        ({"rate": 1, "notice_every": 0}, "notice_every must be > 0"),
        ({"rate": 1, "name": "a b"}, "name must be letters"),
        ({"rate": 1, "name": ""}, "name must be letters"),
        ({"rate": 1, "kinds": ["message", "photo"]}, "kinds must be among"),
    ],
)
def test_bad_settings_fail_when_the_throttle_is_made(
    options: dict[str, object], error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        Throttle(**options)  # type: ignore[arg-type]


def test_the_notice_window_defaults_to_the_time_the_bucket_takes_to_fill() -> None:
    assert Throttle(rate=0.5, burst=3).notice_every == 6.0
    assert Throttle(rate=0.5, burst=3, notice_every=2).notice_every == 2.0


def test_a_bucket_is_one_namespaced_key_per_bot_name_and_user_and_it_expires() -> None:
    throttle = Throttle(rate=1, burst=3, name="search")
    assert throttle.key(BOT, USER) == f"{THROTTLE_PREFIX}{BOT}:search:{USER}"
    assert throttle.key(BOT, USER).startswith("tgfleet:")
    assert Throttle(rate=1).key(BOT, USER) != throttle.key(BOT, USER)
    # It outlives a refill, a notice window and the redelivery horizon, then goes
    assert throttle.ttl_ms == int(REMEMBER_S * 1000) + 1000
    assert Throttle(rate=0.001, burst=2).ttl_ms == 2_000_000 + 1000


def test_each_update_has_its_own_id_and_keeps_it_when_redelivered() -> None:
    # A message by chat and id, a press by its query, an edit by its date too
    assert update_id(context(message("hi", msg_id=17))) == f"{USER}:17"
    assert update_id(context(message("hi", chat_id=-55, msg_id=17))) == "-55:17"
    assert update_id(context(callback(b"x", query_id=99))) == "q99"
    edit = message("hi!", kind="edit", msg_id=17)
    assert edit.message is not None
    edit.message.edit_date = SENT_AT + timedelta(minutes=5)
    assert (
        update_id(context(edit)) == f"{USER}:17e{(SENT_AT + timedelta(minutes=5)).timestamp():.0f}"
    )
    assert update_id(context(message("hi", msg_id=17))) == update_id(
        context(message("hi", msg_id=17))
    )


def test_a_refused_press_is_answered_with_the_notice_every_time() -> None:
    throttle = Throttle(rate=1, notice="Slow down")
    press = context(callback(b"x"))
    throttle.refuse(press, Verdict(False, notice=False))
    assert effects_of(press) == [("answer", 777, "Slow down", False, None)]
    assert press.answered


def test_a_refused_message_gets_the_notice_only_when_the_verdict_says_so() -> None:
    throttle = Throttle(rate=1, notice="Slow down")
    first, later = context(message("a")), context(message("b"))
    throttle.refuse(first, Verdict(False, notice=True))
    throttle.refuse(later, Verdict(False, notice=False))
    assert effects_of(first) == [("queue", USER, "Slow down", {"reply_to": None})]
    assert effects_of(later) == []


def test_without_a_notice_a_refusal_is_silent() -> None:
    # (a press is then answered empty by the platform, after the middleware returned)
    for inbound in (message("a"), callback(b"x")):
        ctx = context(inbound)
        Throttle(rate=1).refuse(ctx, Verdict(False, notice=True))
        assert effects_of(ctx) == []


def test_the_notice_is_translated_when_i18n_ran_before() -> None:
    ctx = context(message("a"))
    ctx.gettext = {"Slow down": "Langsamer"}.get  # type: ignore[assignment]
    Throttle(rate=1, notice="Slow down").refuse(ctx, Verdict(False, notice=True))
    assert effects_of(ctx) == [("queue", USER, "Langsamer", {"reply_to": None})]


def test_blocks_are_not_counted_and_need_no_redis(caplog: pytest.LogCaptureFixture) -> None:
    # Given a context no worker made (no Redis), When a block goes through a Throttle
    # Then its handler runs and Redis was not even asked (no warning)
    assert Throttle(rate=1)(ok, context(stopped())) == "ran"
    assert not caplog.records


def test_without_redis_updates_go_through_and_it_is_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a Throttle that cannot reach Redis (here: no Redis configured at all)
    throttle = Throttle(rate=1, burst=1, notice="Slow down")
    # When a user sends three messages, Then all three run (throttling never loses one)
    assert [throttle(ok, context(message(str(n), msg_id=n))) for n in (1, 2, 3)] == ["ran"] * 3
    # And one warning says why
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "cannot reach Redis" in warning.getMessage()
    assert "unthrottled" in warning.getMessage()
