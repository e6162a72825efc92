"""Write a realistic legacy JSON store, optionally with the mess real files have.

``--messy`` adds missing and extra fields, wrong types ("age": "twenty"), duplicate ids,
bad and naive dates, huge texts, odd Unicode (valid and invalid) and truncated files.
The generator knows which records it broke, so ``GenerateReport`` says how many records
each component has, how many of them are invalid, and how many a truncation cut off.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from tgfleet.legacy.format import (
    CONVERSATIONS_DIR,
    LOOKING_FOR,
    MAX_BIO,
    MAX_TEXT,
    PROFILES_FILE,
    USERS_FILE,
    Component,
)

FIRST_BOT_ID = 7_000_000_001
_NAMES = ["Anna", "Ivan", "Mía", "Zoë", "José", "Łukasz", "Ахмед", "Öykü", "李娜", "Søren", "نور"]
_CITIES = ["Berlin", "Kyiv", "São Paulo", "Zürich", "Kraków", "İstanbul", "東京", None]
_LANGS = ["en", "ru", "de", "pt-br", "uk", "tr", None]
_ODD = [
    "👩‍❤️‍👨 hi",
    "שלום‎ عربى",
    "e\u0301\u0301",
    "zero\u200bwidth",
    "\U0001d557\U0001d552\U0001d55f\U0001d554\U0001d56a",
    "\u202eRTL",
]
_WORDS = (
    "hey", "hi", "how", "are", "you", "fine", "thanks", "coffee",
    "tonight", "maybe", "sure", "where", "when", "photo", "nice",
)  # fmt: skip
_START = datetime(2019, 1, 1, tzinfo=UTC)
_SPAN_S = int((datetime(2025, 12, 31, tzinfo=UTC) - _START).total_seconds())


@dataclass
class ComponentTally:
    records: int = 0  # readable records (before any truncation point)
    invalid: int = 0  # readable records a correct validator must quarantine
    lost: int = 0  # records cut off by a truncation


@dataclass
class GenerateReport:
    root: Path
    bots: list[int] = field(default_factory=list)
    tally: dict[Component, ComponentTally] = field(
        default_factory=lambda: {c: ComponentTally() for c in Component}
    )
    truncated_files: list[Path] = field(default_factory=list)
    bytes_written: int = 0

    def valid(self, component: Component) -> int:
        t = self.tally[component]
        return t.records - t.invalid


@dataclass
class _Item:
    key: str
    value: dict[str, Any]
    invalid: bool


class _Writer:
    """Streams records into one file as an array or an object keyed by id."""

    def __init__(self, fh: IO[bytes], as_object: bool, track: bool) -> None:
        self.fh, self.as_object, self.count, self.track = fh, as_object, 0, track
        self.ends: list[int] = []
        fh.write(b"{\n" if as_object else b"[\n")

    def add(self, key: str, value: dict[str, Any]) -> None:
        try:
            body = json.dumps(value, ensure_ascii=False).encode()
        except UnicodeEncodeError:  # lone surrogates: only escaped form is valid JSON
            body = json.dumps(value).encode()
        if self.count:
            self.fh.write(b",\n")
        if self.as_object:
            self.fh.write(json.dumps(key).encode() + b": ")
        self.fh.write(body)
        self.count += 1
        if self.track:
            self.ends.append(self.fh.tell())

    def close(self) -> None:
        self.fh.write(b"\n}\n" if self.as_object else b"\n]\n")


def _date(rng: random.Random) -> datetime:
    return _START + timedelta(seconds=rng.randrange(_SPAN_S))


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


def write_records(
    path: Path, items: Iterable[_Item], *, as_object: bool, track: bool = True
) -> list[tuple[int, bool]]:
    """Write ``items``; with ``track``, returns (end offset, invalid) per record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    flags: list[bool] = []
    with path.open("wb", buffering=1 << 20) as fh:
        writer = _Writer(fh, as_object, track)
        for item in items:
            writer.add(item.key, item.value)
            if track:
                flags.append(item.invalid)
        writer.close()
    return list(zip(writer.ends, flags, strict=True))


class StoreGenerator:
    def __init__(self, root: Path, *, messy: bool, seed: int, messages: int) -> None:
        self.root, self.messy, self.messages = root, messy, messages
        self.rng = random.Random(seed)
        self.report = GenerateReport(root)
        self._next_user = 100_000_000 + self.rng.randrange(1_000_000)

    def _fault(self) -> bool:
        return self.messy and self.rng.random() < 0.08

    # -- users ----------------------------------------------------------------
    def users(self, bot_id: int, count: int, as_object: bool) -> list[_Item]:
        rng, items = self.rng, []
        for _ in range(count):
            self._next_user += rng.randrange(1, 50)
            uid = self._next_user
            rec: dict[str, Any] = {
                "id": uid,
                "username": f"user{uid}" if rng.random() < 0.7 else None,
                "first_name": rng.choice(_NAMES),
                "language": rng.choice(_LANGS),
                "created": _iso(_date(rng)),
            }
            invalid = False
            if self._fault():
                kind = rng.choice(
                    [
                        "no_id",
                        "str_id",
                        "bad_date",
                        "naive",
                        "extra",
                        "odd",
                        "nul",
                        "epoch",
                        "no_created",
                    ]
                )
                invalid = kind in ("no_id", "str_id", "bad_date", "nul", "no_created")
                if kind == "no_id" and as_object:
                    rec["id"] = uid + 1  # disagrees with its key
                elif kind == "no_id":
                    del rec["id"]
                elif kind == "str_id":
                    rec["id"] = f"user-{uid}"
                elif kind == "bad_date":
                    rec["created"] = rng.choice(["31/02/2021", "yesterday", "", "2021-13-01"])
                elif kind == "naive":
                    rec["created"] = rec["created"][:19]
                elif kind == "extra":
                    rec["premium"] = rng.random() < 0.5
                elif kind == "odd":
                    rec["first_name"] = rng.choice(_ODD)
                elif kind == "nul":
                    rec["first_name"] = "broken\u0000name"
                elif kind == "epoch":
                    rec["created"] = int(_date(rng).timestamp())
                else:
                    del rec["created"]
            items.append(_Item(str(uid), rec, invalid))
            if not invalid and self._fault() and rng.random() < 0.5:
                dup = dict(rec, first_name="Duplicate")
                items.append(_Item(str(uid), dup, True))
        return items

    # -- profiles ----------------------------------------------------------------
    def profiles(self, users: list[_Item]) -> list[_Item]:
        rng, items = self.rng, []
        seen: set[str] = set()
        for user in users:
            if user.invalid or user.key in seen or rng.random() < 0.2:
                continue
            seen.add(user.key)
            uid = int(user.key)
            rec: dict[str, Any] = {
                "user_id": uid,
                "name": user.value.get("first_name") or "Anon",
                "age": rng.randrange(18, 70),
                "city": rng.choice(_CITIES),
                "bio": " ".join(rng.choices(_WORDS, k=rng.randrange(0, 30))) or None,
                "looking_for": rng.choice(LOOKING_FOR),
                "photo": f"AgAC{uid:x}" if rng.random() < 0.6 else None,
                "visible": rng.random() < 0.9,
            }
            invalid = False
            if self._fault():
                kind = rng.choice(
                    [
                        "twenty",
                        "str_age",
                        "young",
                        "no_name",
                        "huge_bio",
                        "cats",
                        "visible_yes",
                        "extra",
                        "nul",
                    ]
                )
                invalid = kind not in ("str_age", "extra")
                if kind == "twenty":
                    rec["age"] = "twenty"
                elif kind == "str_age":
                    rec["age"] = str(rec["age"])
                elif kind == "young":
                    rec["age"] = 7
                elif kind == "no_name":
                    del rec["name"]
                elif kind == "huge_bio":
                    rec["bio"] = "x" * (MAX_BIO + 1 + rng.randrange(100_000))
                elif kind == "cats":
                    rec["looking_for"] = "cats"
                elif kind == "visible_yes":
                    rec["visible"] = "yes"
                elif kind == "extra":
                    rec["zodiac"] = "leo"
                else:
                    rec["bio"] = "null\u0000byte"
            items.append(_Item(user.key, rec, invalid))
            if not invalid and self._fault() and rng.random() < 0.5:
                items.append(_Item(user.key, dict(rec, age=99), True))
        return items

    # -- conversations --------------------------------------------------------------
    def conversation(self, bot_id: int, user_id: int, count: int) -> list[_Item]:
        rng, items = self.rng, []
        when = _date(rng)
        for n in range(1, count + 1):
            when += timedelta(seconds=rng.randrange(1, 7200))
            rec: dict[str, Any] = {
                "id": n,
                "from": user_id if rng.random() < 0.5 else bot_id,
                "text": " ".join(rng.choices(_WORDS, k=rng.randrange(1, 12))),
                "date": _iso(min(when, datetime(2026, 1, 1, tzinfo=UTC))),
            }
            invalid = False
            if self._fault():
                kind = rng.choice(
                    [
                        "huge",
                        "big_ok",
                        "from_str",
                        "bad_date",
                        "naive",
                        "no_text",
                        "odd",
                        "num_text",
                        "extra",
                    ]
                )
                invalid = kind in ("huge", "from_str", "bad_date", "num_text")
                if kind == "huge":
                    rec["text"] = "spam " * (MAX_TEXT // 5 + 1 + rng.randrange(50_000))
                elif kind == "big_ok":
                    rec["text"] = "long " * rng.randrange(2_000, MAX_TEXT // 5)
                elif kind == "from_str":
                    rec["from"] = "bot"
                elif kind == "bad_date":
                    rec["date"] = rng.choice(["2020-02-30 25:61", "1999-01-01T00:00:00Z", None])
                elif kind == "naive":
                    rec["date"] = rec["date"][:19]
                elif kind == "no_text":
                    del rec["text"]
                elif kind == "odd":
                    rec["text"] = rng.choice(_ODD)
                elif kind == "num_text":
                    rec["text"] = 42
                else:
                    rec["reactions"] = ["❤️"]
            items.append(_Item(str(n), rec, invalid))
            if not invalid and self._fault() and rng.random() < 0.3:
                items.append(_Item(str(n), dict(rec, text="dup"), True))
        return items

    # -- files --------------------------------------------------------------------
    def write(
        self,
        path: Path,
        component: Component,
        items: list[_Item],
        *,
        as_object: bool,
        truncate: bool = False,
    ) -> None:
        ends = write_records(path, items, as_object=as_object)
        tally = self.report.tally[component]
        keep = len(ends)
        if truncate and len(ends) >= 2:
            keep = len(ends) - 1 - self.rng.randrange(min(3, len(ends) - 1))
            start = ends[keep - 1][0]
            cut = start + (ends[keep][0] - start) // 2
            with path.open("r+b") as fh:
                fh.truncate(cut)
            self.report.truncated_files.append(path)
        tally.records += keep
        tally.invalid += sum(1 for _, bad in ends[:keep] if bad)
        tally.lost += len(ends) - keep
        self.report.bytes_written += path.stat().st_size

    def bot(self, bot_id: int, users: int) -> None:
        folder = self.root / str(bot_id)
        as_object = self.rng.random() < 0.4
        user_items = self.users(bot_id, users, as_object)
        self.write(folder / USERS_FILE, Component.USERS, user_items, as_object=as_object)
        profiles = self.profiles(user_items)
        self.write(
            folder / PROFILES_FILE,
            Component.PROFILES,
            profiles,
            as_object=self.rng.random() < 0.4,
            truncate=self.messy and self.rng.random() < 0.3,
        )
        seen: set[str] = set()
        for user in user_items:
            if user.invalid or user.key in seen:
                continue
            seen.add(user.key)
            count = self.rng.randrange(0, 2 * self.messages + 1)
            if count == 0:
                continue
            items = self.conversation(bot_id, int(user.key), count)
            self.write(
                folder / CONVERSATIONS_DIR / f"{user.key}.json",
                Component.CONVERSATIONS,
                items,
                as_object=self.rng.random() < 0.3,
                truncate=self.messy and self.rng.random() < 0.05,
            )


def generate_store(
    root: Path, *, bots: int, users: int, messages: int = 10, messy: bool = False, seed: int = 1
) -> GenerateReport:
    """Write ``bots`` bot directories with ``users`` users each under ``root``.

    Each user has 0..2*``messages`` messages (``messages`` on average).
    """
    gen = StoreGenerator(root, messy=messy, seed=seed, messages=messages)
    root.mkdir(parents=True, exist_ok=True)
    for n in range(bots):
        bot_id = FIRST_BOT_ID + n
        gen.report.bots.append(bot_id)
        gen.bot(bot_id, users)
    return gen.report


def write_big_conversation(
    path: Path, *, bot_id: int, user_id: int, messages: int, text_chars: int = 100, seed: int = 7
) -> int:
    """One conversation file with ``messages`` clean messages (for benchmarks); returns bytes."""
    rng = random.Random(seed)
    filler = " ".join(rng.choices(_WORDS, k=text_chars // 4 + 1))[:text_chars]
    base = _START

    def items() -> Iterable[_Item]:
        for n in range(1, messages + 1):
            rec = {
                "id": n,
                "from": user_id if n % 2 else bot_id,
                "text": f"{n} {filler}",
                "date": _iso(base + timedelta(seconds=n * 7)),
            }
            yield _Item(str(n), rec, False)

    write_records(path, items(), as_object=False, track=False)
    return path.stat().st_size
