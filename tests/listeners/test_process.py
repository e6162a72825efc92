"""A listener process whose database is down keeps running and says so in one line."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.support.waiting import wait_until
from tgfleet.dev.host import free_port
from tgfleet.dev.processes import ProcessGroup


def test_a_listener_without_its_database_logs_one_line_per_attempt(
    sim_env: dict[str, str], tmp_path: Path
) -> None:
    # Given a listener whose DATABASE_URL points at a port nobody listens on
    closed = f"postgresql://tgfleet_app:s3cret-pw@127.0.0.1:{free_port()}/tgfleet"
    group = ProcessGroup(tmp_path / "logs", {**sim_env, "DATABASE_URL": closed})
    try:
        listener = group.start(
            "listener", [sys.executable, "-m", "tgfleet", "listen", "--bots", "all"]
        )
        # When it has tried to read the fleet a few times
        wait_until(
            lambda: listener.log_path.read_text().count("cannot read the fleet") >= 3,
            60,
            "three attempts to read the fleet",
            detail=lambda: listener.log_path.read_text()[-3000:],
        )
        log = listener.log_path.read_text()
        # Then it is still running, each attempt is one line naming PostgreSQL and its
        # address, and there is no traceback and no password
        assert listener.alive
        assert "cannot reach PostgreSQL at 127.0.0.1:" in log
        assert "Traceback" not in log
        assert "s3cret-pw" not in log
    finally:
        group.stop()
