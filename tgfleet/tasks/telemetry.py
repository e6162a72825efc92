"""Every Celery worker and beat serves its metrics (``tgfleet.platform.metrics``) and,
with ``TGFLEET_TRACING`` on, exports its traces (``tgfleet.platform.tracing``).

A worker serves from its main process, its pool processes writing to the worker's own
directory (prometheus_client's multiprocess mode, set up here before the pool forks);
beat serves the fleet's state besides (``tgfleet.ops.metrics``). A pool process exports
its buffered spans before it exits.
"""

from __future__ import annotations

from typing import Any

from celery.signals import beat_init, worker_init, worker_process_shutdown, worker_shutdown

from tgfleet.ops.metrics import ClusterCollector
from tgfleet.platform import metrics, tracing


@worker_init.connect
def _start_worker_telemetry(sender: Any = None, **_: Any) -> None:
    metrics.serve(sender.app.settings, "worker", pool=True)
    tracing.configure(sender.app.settings, "worker")


@worker_process_shutdown.connect
def _flush_pool_process(**_: Any) -> None:
    tracing.flush()


@worker_shutdown.connect
def _stop_worker_telemetry(**_: Any) -> None:
    metrics.stop()
    tracing.shutdown()


@beat_init.connect
def _serve_beat_metrics(sender: Any = None, **_: Any) -> None:
    settings = sender.app.settings
    metrics.serve(settings, "beat", collectors=[ClusterCollector(settings)])
