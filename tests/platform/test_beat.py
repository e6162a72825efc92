"""Two ``celery beat`` processes: one schedules, the other stands by; no job runs twice."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable

import redis

from tests.support.databases import OPS_REDIS_DB, redis_url_with_db
from tests.support.waiting import wait_for_log, wait_until
from tgfleet.dev.processes import Child
from tgfleet.platform.queues import PUBLISHED_AT_HEADER

PERIOD = 2.0
JOBS = {
    "tgfleet.maintenance.health": "maintenance",
    "tgfleet.maintenance.partitions": "maintenance",
    "tgfleet.maintenance.cleanup": "maintenance",
    "tgfleet.maintenance.restore_unacked": "maintenance",
    "tgfleet.analytics.rollup": "analytics",
}


def published(client: redis.Redis) -> dict[str, list[float]]:
    """Task name -> publish times of the messages waiting in the queues (no worker runs)."""
    times: dict[str, list[float]] = {name: [] for name in JOBS}
    for queue in set(JOBS.values()):
        for raw in client.lrange(queue, 0, -1):
            headers = json.loads(raw)["headers"]
            if headers["task"] in times:
                times[headers["task"]].append(float(headers[PUBLISHED_AT_HEADER]))
    return {name: sorted(found) for name, found in times.items()}


def test_two_beats_run_each_job_exactly_once_per_period(
    start_beat: Callable[..., Child], ops_redis: redis.Redis, service_env: dict[str, str]
) -> None:
    # Given two beats on the same Redis, every job every 2 seconds
    env = {
        "REDIS_URL": redis_url_with_db(service_env["REDIS_URL"], OPS_REDIS_DB),
        "TGFLEET_BEAT_LOCK_TTL_S": "2",
        "TGFLEET_HEALTH_EVERY_S": str(PERIOD),
        "TGFLEET_PARTITIONS_EVERY_S": str(PERIOD),
        "TGFLEET_CLEANUP_EVERY_S": str(PERIOD),
        "TGFLEET_ROLLUP_EVERY_S": str(PERIOD),
        "TGFLEET_REDELIVER_EVERY_S": str(int(PERIOD)),
    }
    beats = [start_beat(extra_env=env), start_beat(extra_env=env)]
    for beat in beats:
        wait_for_log(beat, "tgfleet:beat:lock", 30)
    # When they run for more than 3 periods
    wait_until(
        lambda: min(len(t) for t in published(ops_redis).values()) >= 4,
        30,
        "every job to be published 4 times",
        poll=0.2,
        detail=lambda: f"published: {published(ops_redis)}",
    )
    runs = published(ops_redis)
    # Then exactly one of them is active and the other stands by
    logs = [beat.log_path.read_text() for beat in beats]
    assert sum("is the active scheduler" in log for log in logs) == 1, logs
    assert sum("standing by" in log for log in logs) == 1, logs
    # And each job was sent once per period: never two within a period, never a period missed
    for name, times in runs.items():
        assert len(times) >= 4, (name, times)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert all(PERIOD * 0.75 <= gap <= PERIOD * 1.6 for gap in gaps), (name, gaps)
