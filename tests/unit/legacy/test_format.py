"""The legacy store's layout helpers (no database)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tgfleet.legacy.format import Component, SourceFile


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
