"""The Celery app bench/celery_baseline.py runs its workers with.

tgfleet's own app plus two benchmark-only tasks on a queue of their own, so the
baseline measures Celery + Redis (+ one INSERT) with tgfleet's configuration.
"""

from __future__ import annotations

from typing import Any

import psycopg2
from celery.signals import worker_process_init

from tgfleet.platform.celery_app import make_celery
from tgfleet.platform.settings import settings_or_exit

settings = settings_or_exit()
app = make_celery(settings)
app.conf.task_routes = {"bench.*": {"queue": "bench"}}
app.conf.task_create_missing_queues = True
_conn: Any = None


@worker_process_init.connect
def _connect(**_: Any) -> None:
    global _conn
    _conn = psycopg2.connect(settings.owner_database_url)
    _conn.autocommit = True


@app.task(name="bench.noop", ignore_result=True)
def noop(n: int) -> None:
    return None


@app.task(name="bench.insert", ignore_result=True)
def insert(n: int) -> None:
    with _conn.cursor() as cur:
        cur.execute("INSERT INTO bench_baseline (n) VALUES (%s)", (n,))
