"""Where operators find poison messages: ``tgfleet status`` counts them as a problem,
``tgfleet poison`` lists them, and ``--clear`` prints and removes exactly those."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import redis

from tests.ops.test_status import ops_env
from tgfleet.ops.health import collect_snapshot
from tgfleet.platform.names import HANDLE_UPDATE, UPDATES_QUEUE
from tgfleet.platform.poison import PoisonMessage, poison_messages, set_aside
from tgfleet.platform.settings import Settings


def run_poison(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tgfleet", "poison", *args],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_status_counts_poison_messages_and_the_cli_lists_and_clears_them(
    ops_db: Settings, ops_redis: redis.Redis, subprocess_env: dict[str, str]
) -> None:
    env = ops_env(subprocess_env, ops_db)
    # Given no poison messages, Then status has no problem about them
    assert "poison-messages" not in [p.key for p in collect_snapshot(ops_db).problems]
    # Given two messages set aside: bytes that are not JSON, and a call with wrong arguments
    garbage = PoisonMessage.of(b"\xff\x00garbage", "not JSON: Expecting value", UPDATES_QUEUE)
    call = PoisonMessage.of(
        b'{"args": [], "kwargs": {}}',
        "arguments the task does not take: missing a required argument: 'envelope'",
        UPDATES_QUEUE,
        task=HANDLE_UPDATE,
        task_id="t-1",
    )
    set_aside(ops_redis, garbage)
    set_aside(ops_redis, call)
    # Then status counts them, as a problem that says where to look
    snap = collect_snapshot(ops_db)
    assert snap.poison_messages == 2
    (problem,) = [p for p in snap.problems if p.key == "poison-messages"]
    assert "2 poison messages" in problem.text and "tgfleet poison" in problem.text
    # And `tgfleet poison` shows them, newest first, with reason, task and start
    table = run_poison(env)
    assert table.returncode == 0, table.stderr
    assert table.stdout.index("missing a required") < table.stdout.index("not JSON")
    assert HANDLE_UPDATE in table.stdout and "\\xff\\x00garbage" in table.stdout
    # And --json has every field, the raw bytes in base64
    listed = json.loads(run_poison(env, "--json", "--limit", "1").stdout)
    assert [entry["task_id"] for entry in listed] == ["t-1"]
    assert base64.b64decode(listed[0]["raw"]) == b'{"args": [], "kwargs": {}}'
    # When an operator has dealt with them and clears them
    cleared = run_poison(env, "--clear", "--json")
    # Then exactly those were printed and removed, and status is clear of them
    assert [e["reason"] for e in json.loads(cleared.stdout)] == [call.reason, garbage.reason]
    assert poison_messages(ops_redis) == []
    assert collect_snapshot(ops_db).poison_messages == 0
    assert "no poison messages" in run_poison(env).stdout
