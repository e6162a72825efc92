"""Alembic environment: the URL and options come from tgfleet's Settings.

Run through ``tgfleet db ...`` / ``tgfleet.db.migrate.upgrade_database(settings)`` (the
Settings arrive in ``config.attributes``) or plain ``alembic`` from the repository root
(the Settings are read from the environment). Migrations connect with
``Settings.owner_database_url`` and act as ``<prefix>_super_admin`` for the objects
they create (see tgfleet/db/security.py).
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool, text

from tgfleet.db.migrate import SETTINGS_KEY, make_include_object
from tgfleet.db.models import Base
from tgfleet.db.session import sqlalchemy_url
from tgfleet.platform.settings import Settings, settings_or_exit

config = context.config

if config.cmd_opts is not None and config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

settings = config.attributes.get(SETTINGS_KEY)
if not isinstance(settings, Settings):
    settings = settings_or_exit()
    config.attributes[SETTINGS_KEY] = settings


def run_migrations_online() -> None:
    engine = create_engine(sqlalchemy_url(settings.owner_database_url), poolclass=pool.NullPool)
    with engine.connect() as connection:
        # Partitions are managed outside the models; autogenerate must not see them.
        partitions = set(
            connection.execute(
                text("SELECT relname FROM pg_class WHERE relispartition AND relkind IN ('r', 'p')")
            ).scalars()
        )
        connection.commit()
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            include_object=make_include_object(partitions),
            compare_type=True,
        )
        with context.begin_transaction():
            # One migrator at a time per database (e.g. a compose `migrate` service
            # racing a developer's `tgfleet db upgrade`).
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext('tgfleet.migrations'))"))
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit(
        "tgfleet migrations need a live database (they read the catalog to manage "
        "partitions); offline --sql mode is not supported"
    )
run_migrations_online()
