"""`tgfleet demo` goes on when one of its processes dies: the update worker, SIGKILLed
mid-run, is started again, the run finishes with exit 0, and the summary says so."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support import REPO_ROOT
from tests.support.waiting import wait_until
from tgfleet.dev.processes import child_environ
from tgfleet.dev.services import DevServices


def children_of(pid: int) -> dict[int, str]:
    """pid -> command line of the live direct children of ``pid``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(") ", 1)[1].split()[1])
            if ppid == pid:
                found[int(entry.name)] = (
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                )
    return found


def test_the_demo_restarts_a_killed_update_worker_and_finishes(tmp_path: Path) -> None:
    # Given `tgfleet demo --duration 16` on a home of its own, past its start-up
    home = tmp_path / "home"
    env = child_environ({"TGFLEET_HOME": str(home), "PYTHONPATH": str(REPO_ROOT), "COLUMNS": "200"})
    output = tmp_path / "demo.out"
    with output.open("wb") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "tgfleet", "demo", "--duration", "16", "--users", "6"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_until(
            lambda: "Flower:" in output.read_text() or demo.poll() is not None,
            120,
            "the demo's panel",
        )
        assert demo.poll() is None, output.read_text()
        workers = [pid for pid, argv in children_of(demo.pid).items() if "demo@%h" in argv]
        assert len(workers) == 1, children_of(demo.pid)
        # When its update worker is SIGKILLed
        os.kill(workers[0], signal.SIGKILL)
        # Then the demo runs to its end and exits 0
        demo.wait(timeout=90)
        text = output.read_text()
        assert demo.returncode == 0, text
        # And it said when the worker stopped and started again, and sums it up at the end
        assert "worker stopped (killed by SIGKILL) after" in text
        assert "worker started again (pid" in text
        assert "processes restarted during the run: worker 1 (killed by SIGKILL after" in text
        assert "process restarts" in text  # the panel's row
        # And the new worker came up and connected (the log holds both runs)
        worker_log = (home / "logs" / "worker.log").read_text(errors="replace")
        assert worker_log.count("ready.") >= 2, worker_log[-3000:]
    finally:
        if demo.poll() is None:  # it stops its processes on SIGTERM
            demo.send_signal(signal.SIGTERM)
            try:
                demo.wait(timeout=60)
            except subprocess.TimeoutExpired:
                demo.kill()
        DevServices(home).down()
