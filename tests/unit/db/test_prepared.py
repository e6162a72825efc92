"""Prepared statements check themselves when defined (no database needed for that)."""

from __future__ import annotations

import uuid

import pytest

from tgfleet.db.prepared import Prepared


def unique_name() -> str:
    return f"tgfleet_unit_{uuid.uuid4().hex[:12]}"


@pytest.mark.parametrize(
    ("types", "sql"),
    [
        (("bigint",), "SELECT $1, $2"),
        (("bigint", "text"), "SELECT $1"),
        (("bigint",), "SELECT $2"),
    ],
)
def test_parameters_must_match_their_types(types: tuple[str, ...], sql: str) -> None:
    with pytest.raises(ValueError, match="do not match types"):
        Prepared(unique_name(), types, sql)


def test_one_name_stands_for_one_statement() -> None:
    # Given a statement, When the same name is defined again with other SQL, Then it fails;
    # the same definition again (a module imported twice) is fine
    name = unique_name()
    Prepared(name, ("bigint",), "SELECT $1")
    Prepared(name, ("bigint",), "SELECT $1")
    with pytest.raises(ValueError, match=f"two different prepared statements are named '{name}'"):
        Prepared(name, ("bigint",), "SELECT $1 + 1")


def test_prepare_sql_declares_the_types() -> None:
    statement = Prepared(unique_name(), ("bigint", "text"), "SELECT $1, $2")
    assert statement.prepare_sql() == f"PREPARE {statement.name} (bigint, text) AS SELECT $1, $2"
