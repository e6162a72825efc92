"""What the tests share: fixtures and helpers, each defined once.

``tests/conftest.py`` defines the session's services, the simulator and the real
processes (workers, beat, listeners), and registers for every test (``pytest_plugins``):

* ``databases``: fresh PostgreSQL databases, the ops Redis database, superuser queries;
* ``legacy``: the legacy migration's database, generated stores and its CLI.

Fixtures that one folder uses are imported by that folder's ``conftest.py``:

* ``sends``: ``send_world`` (``tests/tasks``: a simulator, bots, users and real sender
  workers) and ``bot_id`` (``tests/sends``: a bot and an empty ``sends`` queue);
* ``simulator``: ``sim``, ``world`` and ``run`` (``tests/simulator``).

Helpers: ``waiting`` (wait for a condition with a deadline, never a fixed time),
``envelopes`` (update envelopes as a listener publishes them), ``rollups`` (an hour of a
bot's life with known metrics). Child-process entry points: ``legacy_cli`` (the legacy
commands) and ``migration_app`` (a Celery app with the migration task).
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
