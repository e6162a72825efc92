"""The app ``celery -A tgfleet worker|beat|flower`` finds.

Importing this module builds Settings from the environment (exit code 2 with a
readable message when something is missing) and the Celery app; it opens no
connection.
"""

from tgfleet.platform.celery_app import make_celery
from tgfleet.platform.settings import settings_or_exit

app = make_celery(settings_or_exit())

__all__ = ["app"]
