"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from wheelmill.db.engine import Database
from wheelmill.db.migrate import current_revision, upgrade
from wheelmill.db.tables import Base


def test_migrations_match_models(db: Database) -> None:
    with db.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    # Expression indexes (the claim index) cannot be reflected on SQLite; compare the rest.
    assert [d for d in differences if "ix_jobs_claim" not in str(d)] == []
    indexes = {index["name"] for index in inspect(db.engine).get_indexes("jobs")}
    assert "ix_jobs_claim" in indexes


def test_upgrade_is_idempotent(db: Database) -> None:
    upgrade(db)
    assert current_revision(db) is not None
