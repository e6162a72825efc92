"""The Celery app: registered task names and queues, and a real worker round trip."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tgfleet.dev.processes import Child
from tgfleet.ops.ping import ping_round_trip
from tgfleet.platform.celery_app import make_celery
from tgfleet.platform.errors import ConfigError
from tgfleet.platform.settings import Settings, load_settings

#: Every task tgfleet registers, and the queue it is routed to.
EXPECTED_TASKS = {
    "tgfleet.maintenance.ping": "maintenance",
    "tgfleet.maintenance.restore_unacked": "maintenance",
    "tgfleet.maintenance.partitions": "maintenance",
    "tgfleet.maintenance.cleanup": "maintenance",
    "tgfleet.maintenance.health": "maintenance",
    "tgfleet.analytics.rollup": "analytics",
    "tgfleet.sends.deliver": "sends",
    "tgfleet.sends.deliver_batch": "sends",
    "tgfleet.sends.deliver_ready": "sends",
    "tgfleet.updates.handle": "updates",
    "tgfleet.updates.handle_batch": "updates",
    "tgfleet.updates.record_entities": "updates",
    "tgfleet.migration.run_batch": "migration",
}


def test_registered_task_names_and_queues(settings: Settings) -> None:
    # Given the app as workers build it
    app = make_celery(settings)
    app.loader.import_default_modules()
    # Then exactly the expected tasks are registered, each routed to its queue
    names = {name for name in app.tasks if name.startswith("tgfleet.")}
    assert names == set(EXPECTED_TASKS)
    for name, queue in EXPECTED_TASKS.items():
        assert app.amqp.router.route({}, name)["queue"].name == queue


def test_visibility_timeout_is_identical_everywhere(settings: Settings) -> None:
    app = make_celery(settings)
    value = settings.visibility_timeout_s
    assert app.conf.broker_transport_options["visibility_timeout"] == value
    assert app.conf.result_backend_transport_options["visibility_timeout"] == value
    assert app.conf.visibility_timeout == value
    assert app.conf.task_serializer == "json" and app.conf.accept_content == ["json"]
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost


def test_visibility_timeout_shorter_than_countdowns_is_refused(
    service_env: dict[str, str],
) -> None:
    settings = load_settings(**{**service_env, "TGFLEET_VISIBILITY_TIMEOUT_S": "900"})
    with pytest.raises(ConfigError, match="TGFLEET_VISIBILITY_TIMEOUT_S"):
        make_celery(settings)


def test_task_round_trip_through_real_worker(
    settings: Settings, start_worker: Callable[..., Child]
) -> None:
    # Given a real worker process on the real Redis, with no result backend
    worker = start_worker(queues="maintenance", concurrency=1)
    # When a ping is enqueued
    seconds, answer = ping_round_trip(make_celery(settings), timeout=30)
    # Then the worker ran it and its log line carries the task id and queue
    assert answer.startswith("pong from")
    assert seconds < 30
    log = worker.log_path.read_text()
    assert "ping" in log and "queue=maintenance" in log and "task_id=" in log
