"""``tgfleet flower``: Flower with authentication required."""

from __future__ import annotations

import os
import secrets
import sys

from tgfleet.platform.settings import Settings


def flower_env(user: str, password: str) -> dict[str, str]:
    """Environment that makes ``celery flower`` require HTTP basic auth.

    Credentials travel in the environment, not argv, so ``ps`` never shows them.
    """
    return {"FLOWER_BASIC_AUTH": f"{user}:{password}"}


def generate_password() -> str:
    return secrets.token_urlsafe(18)


def flower_argv(port: int, address: str = "127.0.0.1") -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "tgfleet",
        "flower",
        f"--port={port}",
        f"--address={address}",
    ]


def run_flower(settings: Settings, *, dev: bool, port: int | None, address: str) -> int:
    """Exec Flower; refuses to start without credentials unless ``dev``."""
    password = settings.flower_password.get_secret_value() if settings.flower_password else None
    if password is None:
        if not dev:
            print(
                "tgfleet: Flower needs credentials: set TGFLEET_FLOWER_USER and "
                "TGFLEET_FLOWER_PASSWORD, or pass --dev to generate a password for this run",
                file=sys.stderr,
            )
            return 2
        password = generate_password()
        print(f"Flower dev credentials: user {settings.flower_user} password {password}")
    env = {**os.environ, **flower_env(settings.flower_user, password)}
    argv = flower_argv(port or settings.flower_port, address)
    sys.stdout.flush()
    os.execve(argv[0], argv, env)
