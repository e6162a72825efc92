"""Server-side prepared statements for the hot paths (psycopg2 has none of its own).

Every update a worker handles runs the same handful of statements on partitioned,
row-level-secured tables, where PostgreSQL spends more time planning a statement than
running it (about 1.5 ms against 0.2 ms for the next-message query). A ``Prepared``
statement is planned once per connection (``PREPARE``) and then only ``EXECUTE``d:
run-time partition pruning still applies, and PostgreSQL re-plans by itself when the
role or the schema changes.

The statements are kept per pooled connection (``record.info``), so they live as long
as the connection does. Behind a pooler that hands each transaction a different
server connection (PgBouncer in transaction mode), set ``TGFLEET_DB_PREPARE=false``:
the same SQL then runs unprepared.

Several statements can go in one round trip (``execute_batch``); only the last one's
rows come back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from tgfleet.db.session import PREPARE_ENABLED

_PREPARED_KEY = "tgfleet.prepared"
_PARAM = re.compile(r"\$(\d+)")
#: invalid_sql_statement_name: the server does not know the statement (yet or anymore).
UNKNOWN_STATEMENT = "26000"
#: Every statement by name: a name stands for one statement on every connection.
_registry: dict[str, Prepared] = {}


@dataclass(frozen=True)
class Prepared:
    """One statement with ``$1 .. $n`` parameters of the given PostgreSQL types."""

    name: str
    types: tuple[str, ...]
    sql: str
    _plain: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        numbers = {int(n) for n in _PARAM.findall(self.sql)}
        if numbers != set(range(1, len(self.types) + 1)):
            raise ValueError(f"{self.name}: parameters {sorted(numbers)} do not match types")
        known = _registry.setdefault(self.name, self)
        if known.sql != self.sql or known.types != self.types:
            raise ValueError(f"two different prepared statements are named {self.name!r}")
        object.__setattr__(self, "_plain", _PARAM.sub(r"%(p\1)s", self.sql.replace("%", "%%")))

    def prepare_sql(self) -> str:
        types = f" ({', '.join(self.types)})" if self.types else ""
        return f"PREPARE {self.name}{types} AS {self.sql}"

    def call_sql(self, cursor: Any, args: Sequence[Any], prepared: bool) -> bytes:
        """The statement as one string, its arguments bound (psycopg2 quotes them)."""
        if len(args) != len(self.types):
            raise TypeError(f"{self.name} takes {len(self.types)} arguments, got {len(args)}")
        if prepared:
            if not args:
                return f"EXECUTE {self.name}".encode()
            placeholders = ", ".join(["%s"] * len(args))
            return bytes(cursor.mogrify(f"EXECUTE {self.name} ({placeholders})", tuple(args)))
        params = {f"p{i}": arg for i, arg in enumerate(args, 1)}
        return bytes(cursor.mogrify(self._plain, params))


Call = tuple[Prepared, Sequence[Any]]


def execute(session: Session, statement: Prepared, *args: Any) -> Sequence[Row[Any]]:
    """Run one statement in ``session``'s transaction; its rows (empty if none)."""
    return execute_batch(session, [(statement, args)])


def execute_batch(session: Session, calls: Sequence[Call]) -> Sequence[Row[Any]]:
    """Run ``calls`` in order in one round trip; the rows of the last one.

    Errors come as SQLAlchemy's DBAPIError subclasses, as from ``session.execute``.
    """
    connection = session.connection()
    fairy = connection.connection
    use_prepared = bool(fairy.info.get(PREPARE_ENABLED, True))
    known: set[str] = fairy.info.setdefault(_PREPARED_KEY, set())
    if use_prepared:
        for statement, _ in calls:
            if statement.name not in known:
                # PREPARE is not transactional: the statement stays if we roll back
                connection.exec_driver_sql(_literal(statement.prepare_sql()))
                known.add(statement.name)
    cursor = fairy.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        sql = b"; ".join(s.call_sql(cursor, a, use_prepared) for s, a in calls).decode()
    finally:
        cursor.close()
    try:
        result = connection.exec_driver_sql(_literal(sql))
    except DBAPIError as error:
        if getattr(error.orig, "pgcode", None) == UNKNOWN_STATEMENT:
            known.clear()  # out of step with the server: prepare again next time
        raise
    return result.all() if result.returns_rows else ()


def _literal(sql: str) -> str:
    """``sql`` for exec_driver_sql, which hands psycopg2 a (empty) parameter mapping:
    percent signs must be doubled to reach the server as they are."""
    return sql.replace("%", "%%")
