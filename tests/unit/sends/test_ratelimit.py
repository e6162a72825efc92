"""A bot's send limits: the deployment's defaults, and the bot's own values over them.

The token buckets themselves run in Redis (tests/platform/test_ratelimit.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tgfleet.platform.settings import Settings
from tgfleet.sends.ratelimit import SAFETY, Limits


def test_defaults_are_telegram_s_published_limits(make_settings: Callable[..., Settings]) -> None:
    assert Limits.from_settings(make_settings()) == Limits(30.0, 1.0, 3, 20.0)
    assert 0.9 < SAFETY < 1.0


def test_defaults_follow_settings(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(
        TGFLEET_RATE_BOT_PER_S="10",
        TGFLEET_RATE_CHAT_PER_S="0.5",
        TGFLEET_RATE_CHAT_BURST="2",
        TGFLEET_RATE_GROUP_PER_MIN="6",
    )
    assert Limits.from_settings(settings) == Limits(10.0, 0.5, 2, 6.0)


def test_a_bot_s_own_limits_override_the_defaults(
    make_settings: Callable[..., Settings],
) -> None:
    # Given a bot whose settings lower its rate and raise its chat burst
    limits = Limits.from_settings(make_settings(), {"bot_per_s": 5, "chat_burst": 4})
    # Then those two change and the others stay the deployment's
    assert limits == Limits(bot_per_s=5, chat_per_s=1.0, chat_burst=4, group_per_min=20.0)


@pytest.mark.parametrize(
    "overrides",
    [
        {"bot_per_s": 0},
        {"bot_per_s": -3},
        {"chat_per_s": "fast"},
        {"chat_burst": None},
        {"group_per_min": [20]},
        {"bots_per_s": 100},  # a typo is ignored, not applied to something else
    ],
)
def test_unusable_overrides_are_ignored(
    make_settings: Callable[..., Settings], overrides: dict[str, Any]
) -> None:
    settings = make_settings()
    assert Limits.from_settings(settings, overrides) == Limits.from_settings(settings)


def test_a_boolean_is_not_a_rate(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    assert Limits.from_settings(settings, {"bot_per_s": True}) == Limits.from_settings(settings)
