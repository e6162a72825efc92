"""The Celery application: ``make_celery(settings)`` and the base task class.

``celeryconfig`` holds the static policy; this module applies the deployment's
values from ``Settings`` (broker, result backend, visibility timeout) and the
cross-cutting task behaviour (log context, correlation id, typed retries) that
every tgfleet task shares, like a dramatiq middleware.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task, current_app
from celery.signals import setup_logging

import celeryconfig
from tgfleet.platform import queues as _queues  # noqa: F401 (stamps publish times)
from tgfleet.platform.errors import ConfigError, PermanentError, RetryLater, backoff
from tgfleet.platform.logconfig import configure_logging, log_context
from tgfleet.platform.poison import set_aside_call, unbound_arguments
from tgfleet.platform.schedule import beat_schedule
from tgfleet.platform.settings import Settings, settings_or_exit
from tgfleet.platform.transport import broker_ssl

log = logging.getLogger(__name__)


class TgfleetCelery(Celery):
    """A Celery app that carries the Settings it was built from."""

    settings: Settings


#: The app ``make_celery`` made last in this process (see ``current_tgfleet_app``).
_made: list[TgfleetCelery] = []


class TgfleetTask(Task):
    """Base task: log context, correlation id, and typed retries.

    * ``RetryLater(reason, countdown)`` -> retried after ``countdown`` (capped).
    * ``PermanentError(reason)`` -> logged once, not retried.
    * arguments the task does not take (a worker's message; the body never runs) -> the
      message is set aside (``platform/poison.py``), not retried.
    * anything else propagates (Celery records the failure); no blanket retries.
    """

    abstract = True
    max_retries: int | None = 12
    #: Backoff cap for exponential retries, seconds.
    backoff_cap_s: float = 300.0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        queue = (request.delivery_info or {}).get("routing_key") if request else None
        with log_context(task_id=request.id, queue=queue, bot_id=kwargs.get("bot_id")):
            if not (request.called_directly or request.is_eager):  # a message a worker took
                unbound = unbound_arguments(self, args, kwargs)
                if unbound is not None:  # the body never ran: keep the call, once
                    set_aside_call(self, args, kwargs, unbound)
                    return None
            try:
                return super().__call__(*args, **kwargs)
            except RetryLater as exc:
                countdown = min(exc.countdown, celeryconfig.MAX_COUNTDOWN_S)
                log.info("retrying %s in %.1fs: %s", self.name, countdown, exc.reason)
                raise self.retry(exc=exc, countdown=countdown) from None
            except PermanentError as exc:
                log.warning("%s failed permanently: %s", self.name, exc.reason)
                return None

    def backoff(self, attempt: int | None = None, base: float = 1.0) -> float:
        """Capped exponential backoff with full jitter for retry ``attempt``."""
        n = self.request.retries if attempt is None else attempt
        return backoff(n, base, self.backoff_cap_s)


def make_celery(settings: Settings) -> TgfleetCelery:
    """Build the Celery app for ``settings``; no connection is opened here."""
    if settings.visibility_timeout_s <= celeryconfig.MAX_COUNTDOWN_S:
        raise ConfigError(
            f"TGFLEET_VISIBILITY_TIMEOUT_S must exceed the longest countdown "
            f"({celeryconfig.MAX_COUNTDOWN_S}s), or delayed tasks are delivered twice"
        )
    app = TgfleetCelery("tgfleet", task_cls=TgfleetTask)
    app.settings = settings
    _made[:] = [app]
    app.config_from_object(celeryconfig)
    visibility = {"visibility_timeout": settings.visibility_timeout_s}
    app.conf.update(
        broker_url=settings.redis_url,
        broker_use_ssl=broker_ssl(settings.redis_url),  # rediss:// means TLS (see transport.py)
        result_backend=settings.result_backend,
        task_ignore_result=settings.result_backend is None,
        # Celery reads the visibility timeout in three places; keep them identical.
        broker_transport_options={
            **visibility,
            "fanout_prefix": True,
            "fanout_patterns": True,
            "tgfleet_handoff": settings.broker_handoff,  # platform/handoff.py
        },
        result_backend_transport_options=visibility,
        visibility_timeout=settings.visibility_timeout_s,
        beat_schedule=beat_schedule(settings),
        beat_scheduler="tgfleet.platform.beat:LockedScheduler",
    )
    return app


def current_tgfleet_app() -> TgfleetCelery:
    """The tgfleet app of this thread, else the one this process made last (Celery's current
    app is per thread: a pool thread of a worker may see none), else one made from the
    environment's Settings (a script that only queues messages)."""
    app = current_app._get_current_object()
    if isinstance(app, TgfleetCelery):
        return app
    if _made:
        return _made[-1]
    return make_celery(settings_or_exit())


@setup_logging.connect
def _celery_logging(**_: Any) -> None:
    """Celery entry points (worker, beat, flower) use tgfleet's logging."""
    settings = getattr(current_app, "settings", None)
    if isinstance(settings, Settings):
        configure_logging(settings)
