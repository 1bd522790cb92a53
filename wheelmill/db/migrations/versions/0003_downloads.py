"""download statistics: daily rollups per file and per client, and how far each access log was read

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ingested_logs",
        sa.Column("first_line_sha256", sa.String(length=64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("bytes_read", sa.BigInteger(), nullable=False),
        sa.Column("lines_read", sa.BigInteger(), nullable=False),
        sa.Column("ingested_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("first_line_sha256", name=op.f("pk_ingested_logs")),
    )
    op.create_table(
        "file_downloads",
        sa.Column("filename", sa.String(length=300), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("package", sa.String(length=200), nullable=False),
        sa.Column("downloads", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("filename", "day", name=op.f("pk_file_downloads")),
    )
    op.create_index(op.f("ix_file_downloads_day"), "file_downloads", ["day"], unique=False)
    op.create_index(op.f("ix_file_downloads_package"), "file_downloads", ["package"], unique=False)
    op.create_table(
        "client_downloads",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("installer", sa.String(length=50), nullable=False),
        sa.Column("installer_version", sa.String(length=50), nullable=False),
        sa.Column("python", sa.String(length=10), nullable=False),
        sa.Column("system", sa.String(length=50), nullable=False),
        sa.Column("distro", sa.String(length=100), nullable=False),
        sa.Column("downloads", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "day",
            "installer",
            "installer_version",
            "python",
            "system",
            "distro",
            name=op.f("pk_client_downloads"),
        ),
    )


def downgrade() -> None:
    op.drop_table("client_downloads")
    op.drop_index(op.f("ix_file_downloads_package"), table_name="file_downloads")
    op.drop_index(op.f("ix_file_downloads_day"), table_name="file_downloads")
    op.drop_table("file_downloads")
    op.drop_table("ingested_logs")
