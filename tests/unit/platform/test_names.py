"""Every task, queue and Redis key name is defined once (tgfleet.platform.names) and the
places that use them agree: celeryconfig's routes and queues, the registered tasks, beat.

A task's name is its wire format: a listener publishes it, a worker registers it, beat
schedules it. Two spellings of one name would be a bug that no test of either side sees.
"""

from __future__ import annotations

import ast
import functools
import importlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import celeryconfig
from tgfleet.platform import celery_app, names
from tgfleet.platform.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "tgfleet"
NAMES_PY = PACKAGE / "platform" / "names.py"
TASKS = PACKAGE / "tasks"


@pytest.fixture
def app(make_settings: Callable[..., Settings]) -> celery_app.TgfleetCelery:
    """The Celery app with every task module imported (neither opens a connection)."""
    for module in celeryconfig.include:
        importlib.import_module(module)
    return celery_app.make_celery(make_settings())


def test_task_names_read_tgfleet_queue_verb() -> None:
    # Given every task and its queue, Then each name is tgfleet.<its queue>.<verb>
    wrong = [
        name
        for name, queue in names.TASK_QUEUES.items()
        if not re.fullmatch(rf"tgfleet\.{re.escape(queue)}\.[a-z_]+", name)
    ]
    assert not wrong


def test_no_two_names_share_a_value() -> None:
    keys = [v for k, v in vars(names).items() if k.isupper() and isinstance(v, str)]
    assert len(keys) == len(set(keys)), "two constants of names.py share a value"
    assert len(set(names.QUEUES)) == len(names.QUEUES)


def test_redis_keys_are_namespaced() -> None:
    queues = set(names.QUEUES)
    tasks = set(names.TASK_QUEUES)
    keys = [
        value
        for key, value in vars(names).items()
        if key.isupper() and isinstance(value, str) and value not in queues | tasks
    ]
    assert keys and all(k.startswith("tgfleet:") for k in keys), keys


@pytest.mark.parametrize(("task", "queue"), sorted(names.TASK_QUEUES.items()))
def test_each_task_routes_to_its_queue(
    app: celery_app.TgfleetCelery, task: str, queue: str
) -> None:
    # When Celery's own router places the task (celeryconfig.task_routes' patterns)
    route = app.amqp.router.route({}, task)
    # Then it lands on the queue names.py gives it
    assert route["queue"].name == queue


def test_every_queue_is_declared_and_the_default_is_one_of_them() -> None:
    declared = [q.name for q in celeryconfig.task_queues]
    assert declared == list(names.QUEUES)
    assert celeryconfig.task_default_queue in names.QUEUES
    assert set(names.TASK_QUEUES.values()) <= set(names.QUEUES)


def test_registered_tasks_are_exactly_the_named_ones(app: celery_app.TgfleetCelery) -> None:
    # Given the worker's task modules imported, When Celery's registry is read
    registered = {name for name in app.tasks if name.startswith("tgfleet.")}
    # Then the registered names are the ones names.py lists, no more, no fewer
    assert registered == set(names.TASK_QUEUES)


def test_the_worker_imports_every_task_module(app: celery_app.TgfleetCelery) -> None:
    # Given the modules of tgfleet/tasks, Then the app's include lists each of them
    modules = {f"tgfleet.tasks.{p.stem}" for p in TASKS.glob("*.py") if p.stem != "__init__"}
    assert set(app.conf.include) == set(celeryconfig.include) == modules


def test_the_decorators_name_tasks_through_names_py() -> None:
    # Given every @shared_task(...) in tgfleet/tasks, Then name= is a constant of names.py
    literal, named = [], []
    for path in sorted(TASKS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "shared_task":
                for keyword in node.keywords:
                    if keyword.arg == "name":
                        target = literal if isinstance(keyword.value, ast.Constant) else named
                        target.append(ast.unparse(keyword.value))
    assert not literal
    assert {getattr(names, n) for n in named} == set(names.TASK_QUEUES)


# -- no spelled-out names outside names.py --------------------------------------------------


def python_files() -> Iterator[Path]:
    yield ROOT / "celeryconfig.py"
    yield from (p for p in sorted(PACKAGE.rglob("*.py")) if p != NAMES_PY)


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _not_a_queue(node: ast.Constant, parents: dict[ast.AST, ast.AST]) -> bool:
    """Where a queue's name is only a word: a dict key, a subscript, an attribute name."""
    parent = parents.get(node)
    while isinstance(parent, ast.IfExp):  # stats["edits" if edit else "sends"]
        node, parent = parent, parents.get(parent)  # type: ignore[assignment]
    if isinstance(parent, ast.Dict) and any(key is node for key in parent.keys):
        return True
    if isinstance(parent, ast.Subscript) and parent.slice is node:
        return True
    return (
        isinstance(parent, ast.Call)
        and isinstance(parent.func, ast.Name)
        and parent.func.id in ("getattr", "hasattr", "setattr")
    )


@functools.cache
def spelled_out_names() -> tuple[frozenset[tuple[str, str]], frozenset[tuple[str, str]]]:
    """(file, literal) of task names and of queue names used as queues, outside names.py."""
    tasks, queues = set(names.TASK_QUEUES), set(names.QUEUES)
    found_tasks: set[tuple[str, str]] = set()
    found_queues: set[tuple[str, str]] = set()
    for path in python_files():
        tree = ast.parse(path.read_text())
        parents = _parents(tree)
        where = path.relative_to(ROOT).as_posix()
        for node in ast.walk(tree):
            if not isinstance(node, ast.Constant) or not isinstance(node.value, str):
                continue
            if node.value in tasks:
                found_tasks.add((where, node.value))
            elif node.value in queues and not _not_a_queue(node, parents):
                found_queues.add((where, node.value))
    return frozenset(found_tasks), frozenset(found_queues)


def test_no_name_is_spelled_out_outside_names_py() -> None:
    # Given every string literal of the package that equals a task or queue name,
    # Then there is none: code imports names.py's constants
    tasks, queues = spelled_out_names()
    assert tasks == frozenset(), "import these task names from names.py"
    assert queues == frozenset(), "import these queue names from names.py"


def test_the_scan_sees_a_spelled_out_name(tmp_path: Path) -> None:
    # Given code that routes by a literal queue and names a task by a literal, beside
    # code where "sends" is only a dict key and a stats subscript
    source = (
        "app.send_task('tgfleet.sends.deliver', queue='sends')\n"
        "stats = {'sends': 1}\n"
        "stats['edits' if edit else 'sends'] += 1\n"
    )
    tree = ast.parse(source)
    parents = _parents(tree)
    constants = [n for n in ast.walk(tree) if isinstance(n, ast.Constant)]
    # Then the task and the routing queue are caught, the word uses are not
    flagged = [
        (n.lineno, n.value)
        for n in constants
        if n.value in names.TASK_QUEUES
        or (n.value in names.QUEUES and not _not_a_queue(n, parents))
    ]
    assert flagged == [(1, "tgfleet.sends.deliver"), (1, "sends")]
