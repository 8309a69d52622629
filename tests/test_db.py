"""The ops database: migrations match the models, upgrade is repeatable, downgrade undoes it."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from bpo.db.models import Base
from bpo.db.session import alembic_config, upgrade


def test_migrations_match_the_models_and_upgrade_twice_is_harmless(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/ops.db"
    upgrade(url)
    upgrade(url)
    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models and migrations differ: {diff}"
    command.downgrade(alembic_config(url), "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}


@pytest.mark.slow
def test_migrations_run_on_postgresql(postgres: str) -> None:
    import uuid

    from sqlalchemy import text

    name = f"ops_{uuid.uuid4().hex[:10]}"
    with create_engine(postgres, isolation_level="AUTOCOMMIT").connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = postgres.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    with create_engine(url).connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
