"""Built-in middlewares: AdminOnly, Timing and I18n."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.bots.updates import ADMIN, USER, callback, context, effects_of, message
from tgfleet.bots import AdminOnly, Context, I18n, Timing


def ok(ctx: Context) -> str:
    return "ran"


def test_admin_only_lets_admins_through_and_tells_others() -> None:
    # Given AdminOnly with an answer
    gate = AdminOnly(answer="Admins only.")
    # Then an admin's message runs, a user's is answered and not run
    assert gate(ok, context(message("hi", chat_id=ADMIN, sender=ADMIN))) == "ran"
    user = context(message("hi"))
    assert gate(ok, user) is None
    assert effects_of(user) == [("queue", USER, "Admins only.", {"reply_to": None})]
    # And a user's button press gets an alert
    press = context(callback(b"x"))
    assert gate(ok, press) is None
    assert effects_of(press) == [("answer", 777, "Admins only.", True, None)]


def test_admin_only_without_an_answer_drops_silently_but_stops_a_spinner() -> None:
    user = context(message("hi"))
    assert AdminOnly()(ok, user) is None and effects_of(user) == []
    press = context(callback(b"x"))
    AdminOnly()(ok, press)
    assert effects_of(press) == [("answer", 777, None, False, None)]


def clock(*readings: float) -> Any:
    values: Iterator[float] = iter(readings)
    return lambda: next(values)


def test_timing_logs_at_debug_and_warns_over_the_threshold(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="tgfleet.bots.middleware")
    ctx = context(message("hi"))
    ctx.handler_name = "start"
    # Given a fast run (20 ms) and a slow one (1.5 s) against a 1 s threshold
    assert Timing(1.0, clock(0.0, 0.02))(ok, ctx) == "ran"
    Timing(1.0, clock(0.0, 1.5))(ok, ctx)
    # Then the first is a debug line and the second a warning, both naming bot and handler
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.DEBUG, "bot 42: handler start took 20.0 ms"),
        (logging.WARNING, "bot 42: handler start took 1500.0 ms"),
    ]


def write_catalog(root: Path, lang: str, translations: dict[str, str]) -> None:
    """A minimal GNU .mo catalog (what msgfmt writes) for ``lang``."""
    import struct

    translations = {"": "Content-Type: text/plain; charset=UTF-8\n", **translations}
    keys = sorted(translations)
    ids = b"".join(k.encode() + b"\0" for k in keys)
    strs = b"".join(translations[k].encode() + b"\0" for k in keys)
    n = len(keys)
    header = 7 * 4
    ids_table, strs_table = header, header + n * 8
    ids_start = strs_table + n * 8
    strs_start = ids_start + len(ids)
    id_entries, str_entries, offset_id, offset_str = [], [], ids_start, strs_start
    for k in keys:
        id_entries += [len(k.encode()), offset_id]
        str_entries += [len(translations[k].encode()), offset_str]
        offset_id += len(k.encode()) + 1
        offset_str += len(translations[k].encode()) + 1
    data = struct.pack("<7I", 0x950412DE, 0, n, ids_table, strs_table, 0, 0)
    data += struct.pack(f"<{2 * n}I", *id_entries) + struct.pack(f"<{2 * n}I", *str_entries)
    target = root / lang / "LC_MESSAGES"
    target.mkdir(parents=True)
    (target / "messages.mo").write_bytes(data + ids + strs)


@pytest.mark.parametrize(
    ("user_lang", "lang", "hello"),
    [("pt-br", "pt", "Olá"), ("PT", "pt", "Olá"), ("de", "en", "Hello"), (None, "en", "Hello")],
)
def test_i18n_picks_a_language_with_a_catalog_or_the_default(
    tmp_path: Path, user_lang: str | None, lang: str, hello: str
) -> None:
    # Given a catalog for Portuguese only
    write_catalog(tmp_path, "pt", {"Hello": "Olá"})
    seen: list[tuple[str | None, str]] = []
    # When a handler runs behind I18n for a user whose language is ``user_lang``
    ctx = context(message("hi"), user_lang=user_lang)
    I18n(tmp_path)(lambda c: seen.append((c.lang, c._("Hello"))), ctx)
    # Then it answers in the language with a catalog, else in the default (the message id)
    assert seen == [(lang, hello)]


def test_i18n_without_any_catalog_falls_back_to_the_message_id(tmp_path: Path) -> None:
    ctx = context(message("hi"), user_lang="fr")
    I18n(tmp_path / "missing", default="en")(ok, ctx)
    assert (ctx.lang, ctx.gettext("Hello")) == ("en", "Hello")
    assert I18n(tmp_path).candidates("pt-br") == ["pt_BR", "pt"]
