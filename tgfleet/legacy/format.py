"""The legacy JSON store's layout (see docs/legacy-json.md for the full definition).

One data directory per bot, named after the bot's Telegram id::

    DIR/<bot_id>/users.json
    DIR/<bot_id>/profiles.json
    DIR/<bot_id>/conversations/<user_id>.json

Each file is either a JSON array of records or a JSON object keyed by the record's id
(old versions of the bot wrote one or the other).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from tgfleet.platform.errors import TgfleetError

USERS_FILE = "users.json"
PROFILES_FILE = "profiles.json"
CONVERSATIONS_DIR = "conversations"

#: Limits the validators enforce (characters).
MAX_NAME = 256
MAX_USERNAME = 64
MAX_LANGUAGE = 16
MAX_CITY = 256
MAX_BIO = 4_096
MAX_PHOTO = 1_024
MAX_TEXT = 65_536
MIN_AGE, MAX_AGE = 13, 120
LOOKING_FOR = ("male", "female", "any")


class Component(StrEnum):
    """A part of the legacy store that migrates on its own."""

    USERS = "users"
    PROFILES = "profiles"
    CONVERSATIONS = "conversations"


#: Migration order: profiles and messages refer to users.
COMPONENT_ORDER = (Component.USERS, Component.PROFILES, Component.CONVERSATIONS)


class ComponentState(StrEnum):
    """Where a component's source of truth is: json -> dual -> verify -> postgres."""

    JSON = "json"
    DUAL = "dual"
    VERIFY = "verify"
    POSTGRES = "postgres"


class LegacyStoreError(TgfleetError):
    """The legacy directory is not laid out as docs/legacy-json.md describes."""


@dataclass(frozen=True, slots=True)
class SourceFile:
    """One JSON file of one bot's store, and the component it feeds."""

    bot_id: int
    component: Component
    path: Path
    #: For conversations: the user the file belongs to (from the file name).
    user_id: int | None = None

    def relative_to(self, root: Path) -> str:
        """The path below ``root``, with forward slashes (the checkpoints' file key)."""
        path, base = str(self.path), str(root).rstrip(os.sep)
        # A plain prefix cut: this runs for every file of a store on every pass, and
        # PurePath.relative_to parses both paths again each time.
        if os.sep == "/" and path.startswith(base + "/"):
            return path[len(base) + 1 :]
        return self.path.relative_to(root).as_posix()


def bot_dirs(root: Path) -> list[tuple[int, Path]]:
    """The bots of a legacy store, by id, sorted; raises LegacyStoreError if there are none."""
    if not root.is_dir():
        raise LegacyStoreError(f"{root} is not a directory; pass the legacy data directory")
    found = sorted(
        (int(entry.name), Path(entry.path))
        for entry in os.scandir(root)
        if entry.is_dir() and entry.name.isdigit()
    )
    if not found:
        raise LegacyStoreError(
            f"{root} has no bot directories; expected DIR/<bot_id>/users.json "
            "(see docs/legacy-json.md)"
        )
    return found


def source_files(
    root: Path, component: Component, bot_id: int | None = None
) -> Iterator[SourceFile]:
    """Every file of ``component`` in the store, in a stable order."""
    for found_id, folder in bot_dirs(root):
        if bot_id is not None and found_id != bot_id:
            continue
        if component is Component.USERS:
            if (folder / USERS_FILE).exists():
                yield SourceFile(found_id, component, folder / USERS_FILE)
        elif component is Component.PROFILES:
            if (folder / PROFILES_FILE).exists():
                yield SourceFile(found_id, component, folder / PROFILES_FILE)
        else:
            conv = folder / CONVERSATIONS_DIR
            if not conv.is_dir():
                continue
            for name in sorted(os.listdir(conv), key=_numeric_stem):
                stem = name.removesuffix(".json")
                if name.endswith(".json") and stem.isdigit():
                    yield SourceFile(found_id, component, conv / name, user_id=int(stem))


def _numeric_stem(name: str) -> tuple[int, str]:
    stem = name.removesuffix(".json")
    return (int(stem), name) if stem.isdigit() else (-1, name)


def component_path(root: Path, bot_id: int, component: Component) -> Path:
    """The single file of users/profiles for a bot (conversations have one per user)."""
    if component is Component.CONVERSATIONS:
        return root / str(bot_id) / CONVERSATIONS_DIR
    name = USERS_FILE if component is Component.USERS else PROFILES_FILE
    return root / str(bot_id) / name
