"""Alembic environment: uses the connection handed in by wheelmill.db.migrate."""

from alembic import context
from sqlalchemy import create_engine

from wheelmill.db.tables import Base

config = context.config


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:  # plain `alembic` command line, e.g. for autogenerate
        with create_engine(config.get_main_option("sqlalchemy.url")).connect() as conn:
            _migrate(conn)
            conn.commit()
    else:
        _migrate(connection)


def _migrate(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


run()
