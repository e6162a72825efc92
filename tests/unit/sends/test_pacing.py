"""The pacer's stages are a wire format: carried in ``deliver``'s kwargs between retries and
spelled as numbers in the Lua script that reserves slots (the slots themselves need Redis:
tests/platform/test_pacing.py)."""

from __future__ import annotations

import re

from tgfleet.sends.pacing import _RESERVE, BOT_BURST, Stage


def test_stages_keep_their_numbers() -> None:
    # A task queued before an upgrade comes back with the number it was given
    assert {stage.name: int(stage) for stage in Stage} == {"NONE": 0, "CHAT": 1, "BOTH": 2}


def test_the_script_speaks_the_same_stages() -> None:
    # Given the numbers the Lua script compares and returns
    compared = {int(n) for n in re.findall(r"stage == (\d)", _RESERVE)}
    returned = {int(n) for n in re.findall(r"return \{[^}]*'(\d)'\}", _RESERVE)}
    # Then it only reserves from scratch at NONE, and answers CHAT or BOTH
    assert compared == {Stage.NONE}
    assert returned == {Stage.CHAT, Stage.BOTH}


def test_the_pacer_bursts_less_than_telegram_allows() -> None:
    # Telegram lets a bot burst about 30 messages; the pacer keeps slack for jitter
    assert 1 <= BOT_BURST < 30
