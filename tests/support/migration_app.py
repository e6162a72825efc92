"""A Celery app with the migration task and a fast beat schedule, for the worker tests.

``celery -A tests.support.migration_app worker|beat``: like ``tgfleet.celery`` plus
``tgfleet.tasks.migration`` and its beat entries every second, 40 records a batch.
"""

from tgfleet.platform.celery_app import make_celery
from tgfleet.platform.schedule import migration_schedule
from tgfleet.platform.settings import settings_or_exit

app = make_celery(settings_or_exit())
app.conf.include = [*app.conf.include, "tgfleet.tasks.migration"]
app.conf.beat_schedule = migration_schedule(interval=1.0, batch_size=40)
