"""Every Celery worker and beat serves its metrics (``tgfleet.platform.metrics``).

A worker serves from its main process, its pool processes writing to the worker's own
directory (prometheus_client's multiprocess mode, set up here before the pool forks);
beat serves the fleet's state besides (``tgfleet.ops.metrics``).
"""

from __future__ import annotations

from typing import Any

from celery.signals import beat_init, worker_init, worker_shutdown

from tgfleet.ops.metrics import ClusterCollector
from tgfleet.platform.metrics import serve, stop


@worker_init.connect
def _serve_worker_metrics(sender: Any = None, **_: Any) -> None:
    serve(sender.app.settings, "worker", pool=True)


@worker_shutdown.connect
def _stop_worker_metrics(**_: Any) -> None:
    stop()


@beat_init.connect
def _serve_beat_metrics(sender: Any = None, **_: Any) -> None:
    settings = sender.app.settings
    serve(settings, "beat", collectors=[ClusterCollector(settings)])
