"""Migration queue: ``tgfleet.migration.run_batch``, one legacy JSON batch per call.

A thin adapter over ``tgfleet.legacy``: beat enqueues one task per component every
``MIGRATION_BEAT_S`` (``tgfleet.platform.schedule``); each runs one batch for every
store whose component is migrating (state dual or verify) and, if work is left,
enqueues itself again at once. The engine's advisory lock keeps to one batch per
component at a time: a task that finds the lock held retries a little later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import shared_task

from tgfleet.legacy.checkpoints import ConcurrentBatchError
from tgfleet.legacy.engine import DEFAULT_BATCH_SIZE, migrator_for
from tgfleet.legacy.format import Component, LegacyStoreError
from tgfleet.legacy.lifecycle import migrating_roots
from tgfleet.platform.celery_app import TgfleetTask
from tgfleet.platform.errors import PermanentError, RetryLater
from tgfleet.platform.names import MIGRATION_BATCH
from tgfleet.platform.settings import Settings


@shared_task(name=MIGRATION_BATCH, bind=True, ignore_result=True, max_retries=5)
def run_batch(
    self: TgfleetTask,
    component: str,
    root: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    follow: bool = True,
) -> dict[str, Any]:
    """Run one batch of ``component`` for ``root`` (default: every migrating store)."""
    try:
        comp = Component(component)
    except ValueError:
        raise PermanentError(
            f"unknown component {component!r}; expected one of "
            + ", ".join(c.value for c in Component)
        ) from None
    settings: Settings = self.app.settings
    roots = [Path(root)] if root else migrating_roots(settings, comp)
    results = []
    for store in roots:
        try:
            result = migrator_for(settings, store).run_batch(
                comp, batch_size=batch_size, correlation_id=self.request.id
            )
        except ConcurrentBatchError as exc:
            raise RetryLater(str(exc), countdown=5.0) from None
        except LegacyStoreError as exc:
            raise PermanentError(str(exc)) from None
        results.append(result.as_dict() | {"root": str(store)})
        if follow and not (result.idle or result.busy):
            self.apply_async(
                args=(component,),
                kwargs={"root": str(store), "batch_size": batch_size, "follow": True},
            )
    return {"component": comp.value, "batches": results}
