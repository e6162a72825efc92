"""Flower requires authentication: 401 without credentials, 200 with them."""

from __future__ import annotations

import base64
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tests.support.waiting import wait_until
from tgfleet.dev.host import free_port, port_open
from tgfleet.dev.processes import ProcessGroup
from tgfleet.ops.flower import flower_argv, flower_env


def get(url: str, auth: tuple[str, str] | None = None) -> int:
    request = urllib.request.Request(url)
    if auth:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_flower_api_requires_credentials(subprocess_env: dict[str, str], tmp_path: Path) -> None:
    # Given Flower started the way tgfleet starts it
    port = free_port()
    with ProcessGroup(tmp_path, subprocess_env) as group:
        child = group.start("flower", flower_argv(port), flower_env("ops", "s3cret-pass"))

        def serving() -> bool:
            alive = child.alive  # (read before the port: a child may serve, then exit)
            if port_open(port):
                return True
            assert alive, child.log_path.read_text()
            return False

        wait_until(serving, 60, f"Flower to listen on port {port}", poll=0.2)
        base = f"http://127.0.0.1:{port}"
        # Then the API and the UI refuse anonymous and wrong credentials
        assert get(f"{base}/api/workers") == 401
        assert get(f"{base}/") == 401
        assert get(f"{base}/api/workers", ("ops", "wrong")) == 401
        # And answer with the right ones
        assert get(f"{base}/api/workers", ("ops", "s3cret-pass")) == 200
        assert get(f"{base}/metrics", ("ops", "s3cret-pass")) == 200
        # And the password never appears in the process's command line
        assert "s3cret-pass" not in " ".join(child.process.args)


def test_tgfleet_flower_refuses_without_credentials(subprocess_env: dict[str, str]) -> None:
    env = {k: v for k, v in subprocess_env.items() if k != "TGFLEET_FLOWER_PASSWORD"}
    done = subprocess.run(
        [sys.executable, "-m", "tgfleet", "flower"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "TGFLEET_FLOWER_PASSWORD" in done.stderr and "--dev" in done.stderr
