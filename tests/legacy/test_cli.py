"""The legacy / migrate-json commands, run as an operator would (child processes)."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import Engine, text

from tests.support.legacy import run_cli
from tgfleet.platform.settings import Settings


def test_operator_walkthrough(
    clean_db: Settings, legacy_owner: Engine, legacy_env: dict[str, str], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    # Given no store recorded yet, status says what to do
    empty = run_cli(legacy_env, "migrate-json", "status")
    assert empty.returncode == 2 and "migrate-json run DIR" in empty.stderr

    # When a messy store is generated and planned
    gen = run_cli(
        legacy_env,
        "legacy",
        "generate",
        str(store),
        "--bots",
        "2",
        "--users",
        "40",
        "--messy",
        "--seed",
        "5",
    )
    assert gen.returncode == 0, gen.stderr
    assert "conversations" in gen.stdout and "truncated files" in gen.stdout
    plan = run_cli(legacy_env, "migrate-json", "plan", str(store))
    # Then the plan shows sizes, sampled problems and the truncated files
    assert plan.returncode == 0, plan.stderr
    assert "invalid" in plan.stdout and "probably truncated" in plan.stdout

    # When it is run, Then the counts and the unreadable files are reported
    run = run_cli(legacy_env, "migrate-json", "run", str(store), "--batch-size", "100")
    assert run.returncode == 0, run.stderr
    assert "quarantined" in run.stdout and "rows/s" in run.stdout
    assert "truncated" in run.stdout

    # And status (as JSON) reconciles with the database
    status = run_cli(legacy_env, "migrate-json", "status", "--json")
    assert status.returncode == 0, status.stderr
    items = json.loads(status.stdout)
    assert {i["state"] for i in items} == {"dual"} and len(items) == 6
    with legacy_owner.connect() as conn:
        quarantined = conn.execute(text("SELECT count(*) FROM migration_quarantine")).scalar_one()
    assert sum(i["quarantined"] for i in items) == quarantined > 0
    assert all(i["files_loaded"] == i["files"] for i in items)

    # When cutover is asked for before verify, Then it is refused (exit 1)
    early = run_cli(legacy_env, "migrate-json", "cutover", "--component", "users")
    assert early.returncode == 1 and "verification has not passed" in early.stderr

    # When verified, Then every bot and component passes and cutover goes through
    verified = run_cli(legacy_env, "migrate-json", "verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.count("passed") == 6
    done = run_cli(legacy_env, "migrate-json", "cutover", "--component", "users")
    assert done.returncode == 0 and "source of truth for 2 bots" in done.stdout

    # And the quarantine exports as JSON Lines with reasons
    out = tmp_path / "quarantine.jsonl"
    exported = run_cli(legacy_env, "migrate-json", "quarantine", "export", str(out))
    assert exported.returncode == 0, exported.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == quarantined and all(line["reason"] for line in lines)
    listed = run_cli(legacy_env, "migrate-json", "quarantine", "list", "--limit", "3")
    assert listed.returncode == 0 and "reason" in listed.stdout

    # When profiles are rolled back into another directory, Then files are written
    back = tmp_path / "back"
    rolled = run_cli(
        legacy_env, "migrate-json", "rollback", "--component", "profiles", "--out", str(back)
    )
    assert rolled.returncode == 0, rolled.stderr
    assert len(list(back.glob("*/profiles.json"))) == 2
