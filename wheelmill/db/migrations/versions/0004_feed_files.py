"""whole-index follower plans from the feed: files it announced, projects owing details, who yanked

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("versions", sa.Column("yanked_by", sa.String(length=16), nullable=True))
    op.execute("UPDATE versions SET yanked_by = 'upstream' WHERE yanked")
    op.create_table(
        "feed_files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("filename", sa.String(length=300), nullable=False),
        sa.Column("sdist", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"], ["versions.id"], name=op.f("fk_feed_files_version_id_versions"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feed_files")),
        sa.UniqueConstraint("filename", name=op.f("uq_feed_files_filename")),
    )
    op.create_index(op.f("ix_feed_files_version_id"), "feed_files", ["version_id"], unique=False)
    op.create_table(
        "details_owed",
        sa.Column("package_id", sa.Integer(), nullable=False),
        sa.Column("spelling", sa.String(length=200), nullable=False),
        sa.Column("newest", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["package_id"], ["packages.id"], name=op.f("fk_details_owed_package_id_packages"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("package_id", name=op.f("pk_details_owed")),
    )
    op.create_index(op.f("ix_details_owed_newest"), "details_owed", ["newest"], unique=False)
    # Projects owed details used to be "pending:NAME" rows of upstream_state.
    op.execute(
        "INSERT INTO details_owed (package_id, spelling, newest) "
        "SELECT p.id, s.value, p.created_at FROM upstream_state s "
        "JOIN packages p ON s.key = 'pending:' || p.name"
    )
    op.execute("DELETE FROM upstream_state WHERE key LIKE 'pending:%'")


def downgrade() -> None:
    op.execute(
        "INSERT INTO upstream_state (key, value) "
        "SELECT 'pending:' || p.name, d.spelling FROM details_owed d JOIN packages p ON p.id = d.package_id"
    )
    op.drop_index(op.f("ix_details_owed_newest"), table_name="details_owed")
    op.drop_table("details_owed")
    op.drop_index(op.f("ix_feed_files_version_id"), table_name="feed_files")
    op.drop_table("feed_files")
    with op.batch_alter_table("versions") as batch:  # SQLite drops a column by copying the table
        batch.drop_column("yanked_by")
