"""Prometheus metrics: one set of names for every tgfleet process, each served on /metrics.

Each long-running process calls :func:`serve` once at its start: ``tgfleet listen``, and
every Celery worker and beat (``tgfleet.tasks.telemetry``). It builds the process's
:class:`Metrics`, starts prometheus_client's HTTP server on ``TGFLEET_METRICS_HOST``
(127.0.0.1 unless widened) and ``TGFLEET_METRICS_PORT`` (0: a free port), logs the URL
and announces it in Redis, where ``tgfleet status --json`` and ``tgfleet metrics
targets`` (a Prometheus file_sd list) find it. Code anywhere records with
``metrics().sends.labels(bot, "sent").inc()``; in a process that serves nothing (the CLI,
a test, ``TGFLEET_METRICS=false``) every metric is a no-op, so counting costs nothing.

A prefork worker's tasks run in pool processes that cannot each open the worker's port.
The worker serves with prometheus_client's multiprocess mode instead: before the pool
forks, ``serve(..., pool=True)`` points ``PROMETHEUS_MULTIPROC_DIR`` at a directory of its
own (``TGFLEET_METRICS_DIR``/``<role>-<pid>``, emptied first), every pool process writes
its values to files there, and the worker's main process sums them on each scrape.
:func:`stop` removes the directory at the worker's end; one left by a worker that was
killed is removed by the next worker that starts on the machine. Counters and histograms
of a pool process that exited stay in the sums, as Prometheus expects of counters.

Labels are bounded: bot ids, outcomes, queues, reasons from fixed lists; never a user, a
chat or a token.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    make_wsgi_app,
)
from prometheus_client import values as prometheus_values
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from tgfleet.platform.names import METRICS_ENDPOINTS
from tgfleet.platform.periodic import PeriodicThread
from tgfleet.platform.redis import redis_client
from tgfleet.platform.settings import Settings

log = logging.getLogger(__name__)

#: A process announces its endpoint this often; readers drop one silent for ENDPOINT_TTL_S.
ANNOUNCE_EVERY_S = 15.0
ENDPOINT_TTL_S = 60.0
#: Seconds, from 5 ms to half an hour (a broadcast's rows wait their turn for minutes).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800)


class CounterLike(Protocol):
    def labels(self, *values: str) -> CounterLike: ...
    def inc(self, amount: float = 1) -> None: ...


class HistogramLike(Protocol):
    def labels(self, *values: str) -> HistogramLike: ...
    def observe(self, amount: float) -> None: ...


class GaugeLike(Protocol):
    def labels(self, *values: str) -> GaugeLike: ...
    def set(self, value: float) -> None: ...


class _Off:
    """Every metric of a process that serves none: records nothing."""

    def labels(self, *values: str) -> _Off:
        return self

    def inc(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass

    def set(self, value: float) -> None:
        pass


class Metrics:
    """Every metric tgfleet's processes record (docs/operations.md: meanings, labels).

    ``Metrics(registry)`` makes them in ``registry``; ``Metrics(None)`` is the no-op set."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        def counter(name: str, doc: str, *labels: str) -> CounterLike:
            return _Off() if registry is None else Counter(name, doc, labels, registry=registry)

        def histogram(name: str, doc: str, *labels: str) -> HistogramLike:
            if registry is None:
                return _Off()
            return Histogram(name, doc, labels, registry=registry, buckets=LATENCY_BUCKETS)

        def gauge(name: str, doc: str, *labels: str) -> GaugeLike:
            return _Off() if registry is None else Gauge(name, doc, labels, registry=registry)

        # the listener
        self.updates_received = counter(
            "tgfleet_updates_received", "Updates a listener got from Telegram.", "bot"
        )
        self.updates_published = counter(
            "tgfleet_updates_published", "Updates a listener published to the updates queue.", "bot"
        )
        self.lease_held = gauge(
            "tgfleet_lease_held", "1 while this listener holds the bot's lease, else 0.", "bot"
        )
        # the update workers
        self.updates_handled = counter(
            "tgfleet_updates_handled",
            "Envelopes an update worker took, by outcome "
            "(processed, recorded, duplicate, dead, retry).",
            "bot",
            "outcome",
        )
        self.update_latency = histogram(
            "tgfleet_update_latency_seconds",
            "Telegram's date of a message or edit to the end of its handling (date: 1 s steps).",
            "bot",
        )
        self.handler_errors = counter(
            "tgfleet_handler_errors", "Handlers that raised (their updates dead-lettered).", "bot"
        )
        self.dead_letters = counter(
            "tgfleet_dead_letters", "Updates dead-lettered, by reason (a fixed list).", "reason"
        )
        # the senders
        self.sends = counter(
            "tgfleet_sends",
            "Outbox operations a sender finished, by outcome (sent, failed, blocked, dead).",
            "bot",
            "outcome",
        )
        self.send_latency = histogram(
            "tgfleet_send_latency_seconds",
            "An outbox row's creation to its sent mark, by kind (reply or broadcast).",
            "bot",
            "kind",
        )
        self.flood_waits = counter("tgfleet_flood_waits", "FLOOD_WAIT errors from Telegram.", "bot")
        self.flood_wait_seconds = counter(
            "tgfleet_flood_wait_seconds", "Seconds of sending paused by FLOOD_WAITs.", "bot"
        )
        self.limiter_refusals = counter(
            "tgfleet_limiter_refusals",
            "Sends the cluster-wide limiter refused at the last moment (back to the pacer).",
            "bot",
        )
        self.stars_spent = counter(
            "tgfleet_stars_spent", "Telegram Stars paid for broadcast messages.", "bot"
        )
        # the legacy migration
        self.migration_records = counter(
            "tgfleet_migration_records",
            "Legacy records migration batches wrote, by component and result "
            "(inserted, updated, deleted, quarantined).",
            "component",
            "result",
        )


_OFF = Metrics(None)


@dataclass(frozen=True)
class Endpoint:
    """Where one process serves its metrics."""

    role: str
    node: str
    pid: int
    url: str

    @property
    def target(self) -> str:
        """``host:port``, as Prometheus scrapes it."""
        return self.url.split("://", 1)[1].split("/", 1)[0]


@dataclass
class _Served:
    endpoint: Endpoint
    server: Any
    announcer: _Announcer
    pool_dir: Path | None


_current: Metrics | None = None
_served: _Served | None = None


def metrics() -> Metrics:
    """This process's metrics: the served set, else the no-op one."""
    return _current or _OFF


def serve(
    settings: Settings,
    role: str,
    *,
    pool: bool = False,
    collectors: Iterable[Collector] = (),
) -> Endpoint | None:
    """Start this process's metrics and its endpoint (once; None when metrics are off).

    ``pool``: tasks run in forked pool processes (a prefork worker), which write to the
    worker's own multiprocess directory. ``collectors`` are served besides (beat's view of
    the cluster)."""
    global _current, _served
    if _served is not None:
        return _served.endpoint
    if not settings.metrics_enabled:
        return None
    disable_created_metrics()  # (a ``_created`` series per counter: nothing tgfleet reads)
    registry = CollectorRegistry()
    pool_dir: Path | None = None
    if pool:
        pool_dir = _fresh_pool_dir(settings, role)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(pool_dir)
        # prometheus_client chose its value class when it was imported; choose again
        prometheus_values.ValueClass = prometheus_values.get_value_class()
        MultiProcessCollector(registry, path=str(pool_dir))
        _current = Metrics(CollectorRegistry())  # values go to the files, not a registry
    else:
        _current = Metrics(registry)
    for collector in collectors:
        registry.register(collector)
    server = _serve(settings.metrics_host, settings.metrics_port, registry)
    host = settings.metrics_host
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    endpoint = Endpoint(
        role, settings.node_name, os.getpid(), f"http://{host}:{server.server_port}/metrics"
    )
    announcer = _Announcer(settings, endpoint)
    announcer.tick_quietly()
    announcer.start()
    _served = _Served(endpoint, server, announcer, pool_dir)
    log.info("metrics of this %s at %s", role, endpoint.url)
    return endpoint


#: How often the endpoint's thread looks for a stop (``socketserver``'s default, 0.5 s,
#: was the most of what stopping a worker took).
SERVE_POLL_S = 0.05


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # a line per scrape otherwise
        pass


def _serve(host: str, port: int, registry: CollectorRegistry) -> ThreadingWSGIServer:
    """``registry`` over HTTP on ``host:port`` (0: any free port) from a daemon thread:
    prometheus_client's ``start_http_server``, with a shutdown that takes SERVE_POLL_S."""
    # (as prometheus_client picks the address family and address)
    info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = info[0]

    class Server(ThreadingWSGIServer):
        address_family = family

    server = make_server(str(address[0]), port, make_wsgi_app(registry), Server, _QuietHandler)
    thread = threading.Thread(
        target=server.serve_forever, args=(SERVE_POLL_S,), name="tgfleet-metrics", daemon=True
    )
    thread.start()
    return server


def stop() -> None:
    """Stop serving: the endpoint closes, its announcement goes, a pool directory too."""
    global _current, _served
    served, _served, _current = _served, None, None
    if served is None:
        return
    served.announcer.stop()
    served.server.shutdown()
    served.server.server_close()
    with contextlib.suppress(Exception):  # Redis may be gone at shutdown; the TTL ends it
        served.announcer.withdraw()
    if served.pool_dir is not None:
        shutil.rmtree(served.pool_dir, ignore_errors=True)


def endpoints(settings: Settings, *, now: float | None = None) -> list[Endpoint]:
    """The endpoints announced within ENDPOINT_TTL_S, by role and node; older ones go."""
    client = redis_client(settings.redis_url)
    cutoff = (time.time() if now is None else now) - ENDPOINT_TTL_S
    with client.pipeline(transaction=False) as pipe:
        pipe.zremrangebyscore(METRICS_ENDPOINTS, "-inf", cutoff)
        pipe.zrangebyscore(METRICS_ENDPOINTS, cutoff, "+inf")
        _, raw = pipe.execute()
    found = [Endpoint(**json.loads(item)) for item in raw]
    return sorted(found, key=lambda e: (e.role, e.node, e.pid))


def announced(settings: Settings, pids: Iterable[int], timeout: float) -> dict[int, Endpoint]:
    """The endpoints of processes ``pids`` by pid, once each announced its own (or after
    ``timeout`` seconds: those that did)."""
    wanted = set(pids)
    deadline = time.monotonic() + timeout
    while True:
        found = {e.pid: e for e in endpoints(settings) if e.pid in wanted}
        if len(found) == len(wanted) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def file_sd(found: Iterable[Endpoint]) -> list[dict[str, Any]]:
    """Prometheus ``file_sd_configs`` groups: one per (role, node)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for endpoint in found:
        groups.setdefault((endpoint.role, endpoint.node), []).append(endpoint.target)
    return [
        {"targets": sorted(targets), "labels": {"role": role, "node": node}}
        for (role, node), targets in sorted(groups.items())
    ]


class _Announcer(PeriodicThread):
    def __init__(self, settings: Settings, endpoint: Endpoint) -> None:
        super().__init__("tgfleet-metrics-announce", ANNOUNCE_EVERY_S, jitter=0.8)
        self._client = redis_client(settings.redis_url)
        self._member = json.dumps(asdict(endpoint), sort_keys=True)

    def tick(self) -> None:
        self._client.zadd(METRICS_ENDPOINTS, {self._member: time.time()})

    def tick_quietly(self) -> None:
        try:
            self.tick()
        except Exception as exc:  # Redis down at start: the next interval announces
            log.warning("could not announce the metrics endpoint yet: %s", exc)

    def withdraw(self) -> None:
        self._client.zrem(METRICS_ENDPOINTS, self._member)


def _fresh_pool_dir(settings: Settings, role: str) -> Path:
    """An empty ``<role>-<pid>`` directory under the metrics directory; directories of
    workers on this machine that no longer run are removed."""
    base = settings.metrics_dir or Path(tempfile.gettempdir()) / "tgfleet-metrics"
    base.mkdir(parents=True, exist_ok=True)
    for old in base.iterdir():
        pid = old.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    path = base / f"{role}-{os.getpid()}"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir()
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
