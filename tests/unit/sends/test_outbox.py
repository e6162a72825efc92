"""Outbox rows for one message: Telegram's UTF-16 limits, split points, held parts linked
by their dedupe keys, captions with media, parse modes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tgfleet.db import OutboxStatus
from tgfleet.sends.outbox import (
    BATCH_MIN,
    HELD_UNTIL,
    MAX_CAPTION,
    MAX_TEXT,
    batch_groups,
    next_part_key,
    outbox_rows,
    part_key,
    split_text,
    utf16_len,
)

EMOJI = "\U0001f600"  # outside the BMP: two UTF-16 units
PHOTO = {"photo": [5, 6, "cmVm"]}


@pytest.mark.parametrize(
    ("text", "units"), [("", 0), ("abc", 3), ("é", 1), (EMOJI, 2), (f"a{EMOJI}b", 4)]
)
def test_length_is_counted_in_utf16_units(text: str, units: int) -> None:
    assert utf16_len(text) == units


# -- split_text -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "short", "x" * MAX_TEXT, EMOJI * (MAX_TEXT // 2)])
def test_a_text_within_the_limit_is_one_part(text: str) -> None:
    assert split_text(text) == [text]


def test_one_unit_over_the_limit_makes_two_parts() -> None:
    assert split_text("x" * (MAX_TEXT + 1)) == ["x" * MAX_TEXT, "x"]


def test_a_pair_is_never_cut_and_counts_double() -> None:
    # Given 2049 emoji: 4098 units, two over the limit
    parts = split_text(EMOJI * 2049)
    # Then the first part holds 2048 emoji (4096 units) and the second the last one
    assert parts == [EMOJI * 2048, EMOJI]


def test_the_cut_moves_back_to_a_line_break_in_the_last_quarter() -> None:
    # Given a line break at 3500 of 4096 and a space later still
    text = "a" * 3500 + "\n" + "b" * 300 + " " + "c" * 1000
    # Then the first part ends with the line break (lines are preferred to words)
    first, second = split_text(text)
    assert first == "a" * 3500 + "\n"
    assert second == "b" * 300 + " " + "c" * 1000


def test_the_cut_moves_back_to_a_space_without_a_line_break() -> None:
    text = "word " * 1000  # 5000 units
    first, second = split_text(text)
    assert first.endswith("word ") and utf16_len(first) <= MAX_TEXT
    assert first + second == text


def test_a_break_early_in_the_part_is_not_worth_a_short_part() -> None:
    # Given a line break in the first quarter only: the cut stays at the limit
    text = "a" * 100 + "\n" + "b" * 5000
    assert split_text(text)[0] == "a" * 100 + "\n" + "b" * (MAX_TEXT - 101)


@given(
    text=st.text(
        alphabet=st.sampled_from(["a", "b", " ", "\n", "é", EMOJI, "\u4e2d"]), max_size=400
    ),
    limit=st.integers(min_value=2, max_value=60),
)
def test_parts_rebuild_the_text_and_respect_the_limit(text: str, limit: int) -> None:
    # For any text and limit, Then the parts join back to the text, none is over the
    # limit, and none is empty (unless the text was)
    parts = split_text(text, limit)
    assert "".join(parts) == text
    assert all(utf16_len(part) <= limit for part in parts)
    assert all(parts) or parts == [""]


# -- outbox_rows ----------------------------------------------------------------------------


def test_a_short_message_is_one_queued_row() -> None:
    [row] = outbox_rows(42, 1001, "hi", reply_to=17, broadcast_id=3)
    assert row == {
        "bot_id": 42,
        "chat_id": 1001,
        "text": "hi",
        "parse_mode": None,
        "reply_to": 17,
        "dedupe_key": None,
        "broadcast_id": 3,
        "status": OutboxStatus.QUEUED,
    }


def test_a_long_message_is_held_parts_linked_by_key() -> None:
    # Given a text of three parts with a dedupe key, replying to message 17
    text = "x" * (2 * MAX_TEXT + 5)
    rows = outbox_rows(42, 1001, text, reply_to=17, dedupe_key="news:7")
    # Then the parts carry key, key#part1, key#part2; only the first replies and goes now
    assert [r["dedupe_key"] for r in rows] == ["news:7", "news:7#part1", "news:7#part2"]
    assert [r["reply_to"] for r in rows] == [17, None, None]
    assert [r.get("next_attempt_at") for r in rows] == [None, HELD_UNTIL, HELD_UNTIL]
    assert "".join(r["text"] for r in rows) == text
    # And the sender, having sent one part, finds the next one by its key
    assert [next_part_key(r["dedupe_key"]) for r in rows[:-1]] == [
        r["dedupe_key"] for r in rows[1:]
    ]


def test_a_split_message_without_a_key_gets_one_that_links_its_parts() -> None:
    rows = outbox_rows(42, 1001, "y" * (MAX_TEXT + 1))
    first, second = (r["dedupe_key"] for r in rows)
    assert first.startswith("split:") and second == f"{first}#part1"
    other = outbox_rows(42, 1001, "y" * (MAX_TEXT + 1))[0]["dedupe_key"]
    assert other != first  # two such messages are not deduplicated against each other


def test_media_takes_a_caption_and_the_rest_follows_as_text() -> None:
    # Given a photo with a text longer than a caption may be
    text = "c" * (MAX_CAPTION + 10)
    rows = outbox_rows(42, 1001, text, media=PHOTO)
    # Then the first row is the photo with a full caption, the rest a held text part
    assert [len(r["text"]) for r in rows] == [MAX_CAPTION, 10]
    assert rows[0]["media"] == PHOTO and "media" not in rows[1]
    assert rows[1]["next_attempt_at"] == HELD_UNTIL


def test_a_photo_without_text_is_one_row() -> None:
    [row] = outbox_rows(42, 1001, "", media=PHOTO)
    assert (row["text"], row["media"]) == ("", PHOTO)


def test_a_short_caption_stays_with_its_photo() -> None:
    [row] = outbox_rows(42, 1001, "look", media=PHOTO)
    assert (row["text"], row["media"]) == ("look", PHOTO)


@pytest.mark.parametrize(
    ("mode", "stored"), [("HTML", "html"), ("Markdown", "markdown"), ("md", "md"), (None, None)]
)
def test_parse_modes_are_stored_lower_case(mode: str | None, stored: str | None) -> None:
    assert outbox_rows(42, 1, "t", parse_mode=mode)[0]["parse_mode"] == stored


@pytest.mark.parametrize("mode", ["xml", "markdownv2", ""])
def test_an_unknown_parse_mode_is_refused_before_anything_is_queued(mode: str) -> None:
    with pytest.raises(ValueError, match="parse_mode must be one of markdown, md, html or None"):
        outbox_rows(42, 1, "t", parse_mode=mode)


# -- part keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "index", "expected"),
    [("k", 0, "k"), ("k", 1, "k#part1"), ("notice:dead:row:5:9", 12, "notice:dead:row:5:9#part12")],
)
def test_a_part_key_carries_the_part_number_after_the_first(
    key: str, index: int, expected: str
) -> None:
    assert part_key(key, index) == expected


@pytest.mark.parametrize(
    ("key", "after"),
    [
        ("k", "k#part1"),
        ("k#part1", "k#part2"),
        ("k#part9", "k#part10"),
        ("a#partx", "a#partx#part1"),
        ("split:ab12#part3", "split:ab12#part4"),
    ],
)
def test_the_next_part_key_follows_from_any_part_key(key: str, after: str) -> None:
    assert next_part_key(key) == after


def test_a_dedupe_key_with_the_part_separator_is_refused() -> None:
    # Given a caller's key that looks like a part key, When its rows are built,
    # Then it is refused, naming the separator: its parts could never be linked
    with pytest.raises(ValueError, match="#part"):
        outbox_rows(42, 1001, "z" * (MAX_TEXT + 1), dedupe_key="invoice#part3")


def test_plain_sends_of_one_bot_to_distinct_chats_make_a_batch() -> None:
    # Given one commit's deliveries: bot 1 sends to 5 chats, chat 12 twice; an answer;
    # bot 2 sends to 2 chats; a row re-driven without its chat
    items = [
        (1, 1, 10),
        (2, 1, 11, "send"),
        (3, 1, 12),
        (4, 1, 13),
        (5, 1, 12),
        (6, 1, 14),
        (7, 1, 15, "answer"),
        (8, 1, 16, "edit"),
        (9, 2, 10),
        (10, 2, 11),
        (11, 1),
    ]
    # Then bot 1's sends to chats that have no other row go in a batch, in their order;
    # chat 12's two rows keep their order on the one-row path, as do the answer, the
    # edit, bot 2's pair (under BATCH_MIN) and the row without a chat
    assert batch_groups(items) == {1: [(1, 10), (2, 11), (4, 13), (6, 14)]}
    assert BATCH_MIN == 4


def test_fewer_than_batch_min_chats_make_no_batch() -> None:
    items = [(n, 1, 100 + n) for n in range(BATCH_MIN - 1)]
    assert batch_groups(items) == {}
