"""A worker's database pool fits its threads.

A worker with the threads pool (``-P threads -c 8``: the senders) runs its tasks on
that many threads at once, each with a transaction of its own. Before its pool starts,
its engines are told so (``tgfleet.db.session.expect_threads``): they keep a connection
for each thread instead of the default five, and do not close the ones past five as
they come back, to open them again a moment later. A prefork pool process runs one task
at a time and keeps the default.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.concurrency import get_implementation
from celery.concurrency.thread import TaskPool as ThreadsPool
from celery.signals import celeryd_after_setup

from tgfleet.db.session import expect_threads, pool_size

log = logging.getLogger(__name__)


@celeryd_after_setup.connect
def _size_pool_for_threads(instance: Any = None, **_: Any) -> None:
    # (sent once logging is set up, before the pool starts or any task runs)
    pool = get_implementation(instance.pool_cls)
    threads = instance.concurrency
    if not (isinstance(pool, type) and issubclass(pool, ThreadsPool)):
        return
    if not isinstance(threads, int) or threads < 1:
        return
    expect_threads(threads)
    log.info(
        "database pool: %d connections kept for %d threads",
        pool_size(instance.app.settings),
        threads,
    )
