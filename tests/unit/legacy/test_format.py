"""The legacy store's layout helpers (no database)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tgfleet.legacy.format import (
    Component,
    LegacyStoreError,
    SourceFile,
    bot_dirs,
    component_path,
    source_files,
)


@pytest.mark.parametrize(
    ("root", "path"),
    [
        ("/data/store", "/data/store/7000000001/conversations/42.json"),
        ("/data/store/", "/data/store/7000000001/users.json"),
        ("store", "store/7000000001/profiles.json"),
        ("/", "/7000000001/conversations/1.json"),
        ("/data/store", "/data/store-2/7000000001/users.json"),  # not below: a sibling
    ],
)
def test_relative_to_agrees_with_pathlib(root: str, path: str) -> None:
    source = SourceFile(7_000_000_001, Component.USERS, Path(path))
    try:
        expected = Path(path).relative_to(Path(root)).as_posix()
    except ValueError:
        with pytest.raises(ValueError):
            source.relative_to(Path(root))
        return
    assert source.relative_to(Path(root)) == expected


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("[]")


def test_source_files_are_found_in_a_stable_order(tmp_path: Path) -> None:
    # Given two bots, conversations named by user id (10 after 9), and files to ignore
    for name in ("20/users.json", "3/users.json", "3/profiles.json"):
        _touch(tmp_path / name)
    for name in ("10.json", "9.json", "notes.txt", "x.json"):
        _touch(tmp_path / "3" / "conversations" / name)
    (tmp_path / "backup").mkdir()  # not a bot id
    # Then bots come in id order and conversations in user-id order, nothing else
    assert [(s.bot_id, s.path.name) for s in source_files(tmp_path, Component.USERS)] == [
        (3, "users.json"),
        (20, "users.json"),
    ]
    conversations = list(source_files(tmp_path, Component.CONVERSATIONS))
    assert [(s.bot_id, s.user_id) for s in conversations] == [(3, 9), (3, 10)]
    assert [s.bot_id for s in source_files(tmp_path, Component.PROFILES, bot_id=20)] == []


@pytest.mark.parametrize(
    ("layout", "message"),
    [("missing", "is not a directory"), ("empty", "has no bot directories")],
)
def test_a_store_that_is_not_one_says_what_is_expected(
    tmp_path: Path, layout: str, message: str
) -> None:
    root = tmp_path / "store"
    if layout == "empty":
        (root / "not-a-bot").mkdir(parents=True)
    with pytest.raises(LegacyStoreError, match=message):
        bot_dirs(root)


def test_each_component_has_its_place_in_a_bot_directory() -> None:
    root = Path("/data")
    assert component_path(root, 7, Component.USERS) == Path("/data/7/users.json")
    assert component_path(root, 7, Component.PROFILES) == Path("/data/7/profiles.json")
    assert component_path(root, 7, Component.CONVERSATIONS) == Path("/data/7/conversations")
