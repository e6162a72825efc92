"""Every periodic job beat runs, in one place, with its interval from Settings.

A job that nobody picked up within its period is superseded by the next one
(``expires``), so a stopped worker does not come back to a pile of stale runs.
"""

from __future__ import annotations

from typing import Any

from tgfleet.platform import names
from tgfleet.platform.settings import Settings

#: How often beat offers each legacy-migration component a batch, seconds.
MIGRATION_BEAT_S = 30.0
#: The legacy store's components, in the order they migrate (``tgfleet.legacy.format``
#: names them ``Component``; a unit test keeps the two the same).
MIGRATION_COMPONENTS = ("users", "profiles", "conversations")


def migration_schedule(
    interval: float = MIGRATION_BEAT_S, batch_size: int | None = None
) -> dict[str, dict[str, Any]]:
    """Beat entries offering each component a batch every ``interval`` seconds (of
    ``batch_size`` records; the engine's default when None)."""
    return {
        f"migration-{component}": {
            "task": names.MIGRATION_BATCH,
            "schedule": interval,
            "args": (component,),
            "kwargs": {} if batch_size is None else {"batch_size": batch_size},
            "options": {"queue": names.MIGRATION_QUEUE, "expires": interval},
        }
        for component in MIGRATION_COMPONENTS
    }


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every periodic job, with its interval from Settings."""
    periodic = (
        ("partition-maintenance", names.PARTITIONS, settings.partitions_every_s),
        ("analytics-rollup", names.ROLLUP, settings.rollup_every_s),
        ("cleanup", names.CLEANUP, settings.cleanup_every_s),
        ("health", names.HEALTH, settings.health_every_s),
    )
    return {
        **migration_schedule(),
        "restore-unacked-updates": {
            "task": names.RESTORE_UNACKED,
            "schedule": float(settings.redeliver_every_s),
        },
        **{
            name: {"task": task, "schedule": every, "options": {"expires": every}}
            for name, task, every in periodic
        },
    }
