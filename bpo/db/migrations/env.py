"""Alembic environment: the URL comes from the config bpo builds, never from a file."""

from alembic import context
from sqlalchemy import create_engine

from bpo.db.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url is not None, "bpo.db.session.alembic_config sets sqlalchemy.url"
connectable = create_engine(url)
with connectable.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
connectable.dispose()
