"""session_scope: per-transaction role and tenant, pooled-connection safety."""

from __future__ import annotations

import itertools
import os
import random
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from tgfleet.db import (
    SecretDecryptError,
    decrypt_secret,
    encrypt_secret,
    get_engine,
    session_scope,
    token_fingerprint,
)
from tgfleet.db import session as db_session
from tgfleet.db.prepared import Prepared, execute
from tgfleet.db.session import expect_threads
from tgfleet.platform.settings import Settings

FUZZ_TRANSACTIONS = 1_000
FUZZ_THREADS = 8
_READ_CONVERSATIONS = Prepared(
    "test_session_read_conversations", (), "SELECT bot_id, state FROM conversations"
)


def test_role_and_tenant_do_not_outlive_the_transaction(
    db_settings: Settings, make_bots: Callable[[int], list[int]]
) -> None:
    # Given a pool of one connection
    (bot_id,) = make_bots(1)
    engine = get_engine(db_settings)
    login = make_url(db_settings.database_url).username
    # When a scope sets role, tenant and correlation id
    with session_scope(engine, bot_id=bot_id, correlation_id="c-1") as session:
        inside = session.execute(
            text(
                "SELECT current_user, current_setting('app.bot_id'), "
                "current_setting('app.correlation_id')"
            )
        ).one()
    # Then they hold inside, and the pooled connection is back to the bare login after
    assert tuple(inside) == (db_settings.role("bot"), str(bot_id), "c-1")
    with engine.connect() as conn:
        after = conn.execute(
            text(
                "SELECT current_user, current_setting('app.bot_id', true), "
                "current_setting('app.correlation_id', true)"
            )
        ).one()
    assert after[0] == login and not after[1] and not after[2]


def test_bot_role_requires_a_bot_id(db_settings: Settings) -> None:
    with pytest.raises(ValueError, match="bot_id"), session_scope(db_settings):
        pass
    with pytest.raises(ValueError, match="role"), session_scope(db_settings, role="owner"):  # type: ignore[arg-type]
        pass


def test_exception_rolls_the_whole_scope_back(
    db_settings: Settings, make_bots: Callable[[int], list[int]], owner_engine: Engine
) -> None:
    (bot_id,) = make_bots(1)
    with pytest.raises(KeyError), session_scope(db_settings, bot_id=bot_id) as session:
        session.execute(
            text("INSERT INTO conversations (bot_id, chat_id) VALUES (:b, 1)"), {"b": bot_id}
        )
        raise KeyError("boom")
    with owner_engine.connect() as conn:
        count = conn.execute(
            text("SELECT count(*) FROM conversations WHERE bot_id = :b"), {"b": bot_id}
        ).scalar()
    assert count == 0


def test_engine_is_cached_per_process_and_replaced_after_fork(db_settings: Settings) -> None:
    engine = get_engine(db_settings)
    assert get_engine(db_settings) is engine
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: a new engine, and it works
        try:
            child = get_engine(db_settings)
            with session_scope(child, role="admin") as session:
                session.execute(text("SELECT 1"))
            os.write(write, b"new" if child is not engine else b"same")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 10) == b"new"
    # and the parent's pooled connections still work
    with session_scope(engine, role="admin") as session:
        assert session.execute(text("SELECT 1")).scalar() == 1


def _backends_of_threads_at_once(engine: Engine, threads: int) -> set[int]:
    """The PostgreSQL backends of ``threads`` threads that each hold a transaction at
    the same moment."""
    barrier = threading.Barrier(threads)
    pids: list[int] = []

    def work() -> None:
        with session_scope(engine, role="admin") as session:
            pids.append(session.execute(text("SELECT pg_backend_pid()")).scalar_one())
            barrier.wait(10)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(20)
    assert len(pids) == threads
    return set(pids)


def test_a_process_of_8_threads_keeps_a_connection_for_each(
    db_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db_session, "_expected_threads", 0)  # process-wide: restored after
    # Given a pool of the default size (5): 8 threads at once open 8 connections, and
    # when they are done it closes the 3 past its size, so the next 8 open 3 again
    small = get_engine(db_settings)
    first = _backends_of_threads_at_once(small, 8)
    assert len(_backends_of_threads_at_once(small, 8) - first) == 3
    # When the process says it runs 8 threads (a sender worker's threads pool does, as
    # it starts)
    expect_threads(8)
    engine = get_engine(db_settings)
    # Then 8 threads at once, twice, use the same 8 connections: none is opened anew
    first = _backends_of_threads_at_once(engine, 8)
    assert _backends_of_threads_at_once(engine, 8) == first
    assert engine.pool.size() == 12  # type: ignore[attr-defined]


def test_secrets_round_trip_and_wrong_key_fails_cleanly(db_settings: Settings) -> None:
    ciphertext = encrypt_secret(db_settings, "123:token")
    assert b"token" not in ciphertext
    assert decrypt_secret(db_settings, ciphertext) == b"123:token"
    other = db_settings.model_copy(
        update={"secret_key": type(db_settings.secret_key)("A" * 43 + "=")}
    )
    with pytest.raises(SecretDecryptError, match="TGFLEET_SECRET_KEY") as caught:
        decrypt_secret(other, ciphertext)
    assert "123:token" not in str(caught.value)
    assert token_fingerprint(db_settings, "a") != token_fingerprint(db_settings, "b")


def test_pooled_fuzz_never_crosses_bots(
    db_settings: Settings, make_bots: Callable[[int], list[int]], owner_engine: Engine
) -> None:
    # Given 6 bots and one shared pool, used by 8 threads
    bots = make_bots(6)
    engine = get_engine(db_settings)
    login = make_url(db_settings.database_url).username
    chat_ids = itertools.count(1)
    lock = threading.Lock()
    violations: list[str] = []
    inserted: Counter[int] = Counter()
    ops: Counter[str] = Counter()

    def transaction(rng: random.Random) -> None:
        bot_id = rng.choice(bots)
        op = rng.choice(["insert", "read", "update", "admin", "fail", "bare"])
        with lock:
            ops[op] += 1
        if op == "bare":  # a pooled connection outside any scope: nothing left over
            with engine.connect() as conn:
                row = conn.execute(
                    text("SELECT current_user, current_setting('app.bot_id', true)")
                ).one()
            if row[0] != login or row[1]:
                violations.append(f"leftover context {tuple(row)}")
            return
        if op == "admin":
            with session_scope(engine, role="admin") as session:
                session.execute(text("SELECT count(*) FROM conversations")).scalar()
            return
        lazy = rng.random() < 0.5  # half the scopes send their context with the first query
        try:
            with session_scope(engine, bot_id=bot_id, lazy_context=lazy) as session:
                if op == "insert":
                    with lock:
                        chat_id = next(chat_ids)
                    session.execute(
                        text(
                            "INSERT INTO conversations (bot_id, chat_id, state) VALUES (:b, :c, :s)"
                        ),
                        {"b": bot_id, "c": chat_id, "s": str(bot_id)},
                    )
                    with lock:
                        inserted[bot_id] += 1
                elif op in ("read", "fail"):
                    rows: list[Any]
                    if rng.random() < 0.5:
                        rows = list(execute(session, _READ_CONVERSATIONS))
                    else:
                        rows = list(
                            session.execute(text("SELECT bot_id, state FROM conversations"))
                        )
                    for row_bot, state in rows:
                        if row_bot != bot_id or state != str(bot_id):
                            violations.append(f"bot {bot_id} read {row_bot}/{state}")
                    if op == "fail":
                        session.execute(text("UPDATE conversations SET state = 'poison'"))
                        raise RuntimeError("rolled back")
                else:
                    touched = session.execute(
                        text(
                            "UPDATE conversations SET messages_in = messages_in + 1 "
                            "RETURNING bot_id"
                        )
                    ).scalars()
                    violations.extend(f"bot {bot_id} updated {b}" for b in touched if b != bot_id)
        except RuntimeError:
            pass

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(FUZZ_TRANSACTIONS // FUZZ_THREADS):
            try:
                transaction(rng)
            except OperationalError as exc:
                # Two whole-bot UPDATEs can take their rows in different orders: PostgreSQL
                # rolls one back (the app retries such transactions). Anything else is a bug.
                if getattr(exc.orig, "pgcode", None) != "40P01":
                    violations.append(f"error: {exc!r}")
            except Exception as exc:
                violations.append(f"error: {exc!r}")

    # When 1,000 interleaved transactions run
    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(FUZZ_THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then no transaction read or wrote another bot's rows, and the data agrees
    assert violations == []
    assert sum(ops.values()) == FUZZ_TRANSACTIONS and len(ops) == 6
    with owner_engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT bot_id, state, count(*) FROM conversations "
                "WHERE bot_id = ANY(:b) GROUP BY 1, 2"
            ),
            {"b": bots},
        ).all()
    assert all(state == str(bot_id) for bot_id, state, _ in rows)
    assert {bot_id: n for bot_id, _, n in rows} == {b: n for b, n in inserted.items() if n}
