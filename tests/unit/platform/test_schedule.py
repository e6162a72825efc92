"""Beat's schedule: known tasks on their queues, intervals from Settings, stale runs expire."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tgfleet.legacy.format import COMPONENT_ORDER
from tgfleet.platform import names
from tgfleet.platform.celery_app import make_celery
from tgfleet.platform.errors import ConfigError
from tgfleet.platform.schedule import (
    MIGRATION_BEAT_S,
    MIGRATION_COMPONENTS,
    beat_schedule,
    migration_schedule,
)
from tgfleet.platform.settings import Settings


def test_migration_components_are_the_legacy_store_s_in_order() -> None:
    # platform may not import legacy, so the tuple is spelled twice; this keeps them equal
    assert tuple(c.value for c in COMPONENT_ORDER) == MIGRATION_COMPONENTS


def test_every_scheduled_task_exists_and_runs_on_its_queue(
    make_settings: Callable[..., Settings],
) -> None:
    schedule = beat_schedule(make_settings())
    for entry, job in schedule.items():
        assert job["task"] in names.TASK_QUEUES, entry
        queue = job.get("options", {}).get("queue")
        assert queue in (None, names.TASK_QUEUES[job["task"]]), entry


def test_intervals_come_from_settings(make_settings: Callable[..., Settings]) -> None:
    # Given intervals set in the environment
    settings = make_settings(
        TGFLEET_PARTITIONS_EVERY_S="7200",
        TGFLEET_ROLLUP_EVERY_S="120",
        TGFLEET_CLEANUP_EVERY_S="600",
        TGFLEET_HEALTH_EVERY_S="15",
        TGFLEET_REDELIVER_EVERY_S="9",
    )
    # When the schedule is built
    schedule = beat_schedule(settings)
    # Then each job runs at its interval, and a run nobody took expires with its period
    every = {job["task"]: job["schedule"] for job in schedule.values()}
    assert every[names.PARTITIONS] == 7200.0
    assert every[names.ROLLUP] == 120.0
    assert every[names.CLEANUP] == 600.0
    assert every[names.HEALTH] == 15.0
    assert every[names.RESTORE_UNACKED] == 9.0
    for job in schedule.values():
        expires = job.get("options", {}).get("expires")
        assert expires in (None, job["schedule"])


def test_each_component_is_offered_a_batch() -> None:
    # When the migration schedule is built with a batch size
    schedule = migration_schedule(interval=5.0, batch_size=100)
    # Then there is one entry per component, in order, passing it and the size
    assert [job["args"] for job in schedule.values()] == [(c,) for c in MIGRATION_COMPONENTS]
    assert all(job["kwargs"] == {"batch_size": 100} for job in schedule.values())
    assert all(job["options"]["expires"] == 5.0 for job in schedule.values())
    assert migration_schedule()["migration-users"]["kwargs"] == {}
    assert migration_schedule()["migration-users"]["schedule"] == MIGRATION_BEAT_S


def test_the_app_carries_the_schedule(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    app = make_celery(settings)
    assert app.conf.beat_schedule == beat_schedule(settings)
    assert app.conf.broker_url == settings.redis_url
    assert app.conf.broker_transport_options["visibility_timeout"] == 43_200


@pytest.mark.parametrize("timeout", ["600", "21600"])
def test_a_visibility_timeout_within_the_longest_countdown_is_refused(
    make_settings: Callable[..., Settings], timeout: str
) -> None:
    # Given a visibility timeout no longer than the longest countdown (6 h)
    settings = make_settings(TGFLEET_VISIBILITY_TIMEOUT_S=timeout)
    # Then the app refuses to start: delayed tasks would be delivered twice
    with pytest.raises(ConfigError, match="TGFLEET_VISIBILITY_TIMEOUT_S must exceed"):
        make_celery(settings)
