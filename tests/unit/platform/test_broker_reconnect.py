"""Workers and beat wait for Redis as long as it takes: Celery's default gives up after
100 reconnection attempts (about 50 minutes), and the process exits."""

from __future__ import annotations

from collections.abc import Callable

from tgfleet.platform.celery_app import make_celery
from tgfleet.platform.settings import Settings


def test_the_broker_connection_is_retried_forever(make_settings: Callable[..., Settings]) -> None:
    conf = make_celery(make_settings()).conf
    assert conf.broker_connection_retry_on_startup is True
    assert conf.broker_connection_retry is True
    assert conf.broker_connection_max_retries is None
