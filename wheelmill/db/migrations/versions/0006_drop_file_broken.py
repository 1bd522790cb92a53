"""files.broken goes: a wheel that fails its smoke test is never uploaded, so no file was ever marked

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("files") as files:  # SQLite rebuilds the table; PostgreSQL drops a column
        files.drop_column("broken")


def downgrade() -> None:
    with op.batch_alter_table("files") as files:
        files.add_column(sa.Column("broken", sa.Text(), nullable=True))
