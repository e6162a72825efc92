"""The quickstart example (``examples/quickstart``) and its tutorial
(``docs/tutorial.md``): the example's own tests pass when run as its author runs them,
and every code block of the tutorial is a command or one of the example's files, verbatim.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

from tests.support import REPO_ROOT

EXAMPLE = REPO_ROOT / "examples" / "quickstart"
TUTORIAL = REPO_ROOT / "docs" / "tutorial.md"
#: A fenced block, with the file it shows when a ``<!-- file: PATH -->`` line precedes it.
BLOCK = re.compile(
    r"(?:^<!-- file: (?P<path>\S+) -->\n)?^```(?P<lang>\w*)\n(?P<body>.*?)^```$", re.M | re.S
)
#: The example's files a reader writes (everything but caches).
EXAMPLE_FILES = sorted(
    str(path.relative_to(REPO_ROOT))
    for path in EXAMPLE.rglob("*")
    if path.is_file() and "__pycache__" not in path.parts and ".pytest_cache" not in path.parts
)


@pytest.mark.timeout(600)
def test_the_examples_own_tests_pass() -> None:
    # Given the example project, with its tests written against tgfleet.testing only
    tests = len(re.findall(r"^def test_", (EXAMPLE / "tests" / "test_app.py").read_text(), re.M))
    assert tests >= 2
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("TGFLEET_", "TG_", "PYTEST_", "DATABASE_URL", "REDIS_URL"))
    }
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave nothing behind in examples/
    # When its author runs them: pytest, in its folder, with this interpreter
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    took = time.monotonic() - started
    # Then every one of them passed
    output = f"{done.stdout[-6000:]}\n{done.stderr[-2000:]}"
    assert done.returncode == 0, f"the example's tests failed ({took:.0f}s):\n{output}"
    assert re.search(rf"\b{tests} passed\b", done.stdout), output


def test_the_tutorials_code_is_the_examples_files() -> None:
    blocks = list(BLOCK.finditer(TUTORIAL.read_text()))
    shown = {block["path"]: block["body"] for block in blocks if block["path"]}
    # Every block is a shell command or a file of the example, exactly as it is
    commands = [block for block in blocks if not block["path"]]
    odd = [block["body"][:60] for block in commands if block["lang"] != "sh"]
    assert not odd, f"code blocks that are neither a sh command nor a file: {odd}"
    for path, body in shown.items():
        assert body == (REPO_ROOT / path).read_text(), f"docs/tutorial.md shows {path} differently"
    # And every file of the example is shown
    assert sorted(shown) == EXAMPLE_FILES
