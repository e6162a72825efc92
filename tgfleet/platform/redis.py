"""One Redis client per process per URL.

A ``redis.Redis`` holds a connection pool: making one per call opens a new TCP
connection each time, and a client made before a fork must not be used in the
child (both would share one socket). ``redis_client(url)`` gives each process its
own client per URL, made on first use; a forked child makes its own.
"""

from __future__ import annotations

import os
import threading

import redis

_clients: dict[tuple[str, int], redis.Redis] = {}
_lock = threading.Lock()


def redis_client(url: str) -> redis.Redis:
    """This process's client for ``url`` (thread-safe; shared by every caller)."""
    key = (url, os.getpid())
    client = _clients.get(key)
    if client is None:
        with _lock:
            client = _clients.get(key)
            if client is None:
                client = redis.Redis.from_url(
                    url, socket_connect_timeout=5, socket_timeout=10, health_check_interval=30
                )
                _clients[key] = client
    return client


def close_clients() -> None:
    """Close this process's clients (tests and process shutdown)."""
    with _lock:
        clients = [c for (_, pid), c in _clients.items() if pid == os.getpid()]
        _clients.clear()
    for client in clients:
        client.close()
