"""the image catalogue and tenants' private images (issue 9)

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("live_name", sa.String(length=64), nullable=True),
        sa.Column("base", sa.String(length=64), nullable=False),
        sa.Column("source_instance_id", sa.String(length=32), nullable=False),
        sa.Column("packages", sa.JSON(), nullable=False),
        sa.Column("layer_bytes", sa.BigInteger(), nullable=False),
        sa.Column("layer_files", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("deleted_at", _WHEN, nullable=True),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.create_index("ix_images_tenant_id", ["tenant_id", "id"], unique=False)
        batch_op.create_index("ix_images_live_name", ["tenant_id", "live_name"], unique=True)
    op.create_table(
        "image_builds",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("node_id", sa.String(length=128), nullable=False),
        sa.Column("recipe_key", sa.String(length=96), nullable=False),
        sa.Column("image", sa.String(length=64), nullable=False),
        sa.Column("image_ref", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=True),
        sa.Column(
            "state",
            sa.Enum("ABSENT", "BUILDING", "READY", "FAILED", name="buildstate",
                    native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("builds", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("requested_at", _WHEN, nullable=False),
        sa.Column("started_at", _WHEN, nullable=True),
        sa.Column("finished_at", _WHEN, nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("image_builds", schema=None) as batch_op:
        batch_op.create_index("ix_image_builds_node_key", ["node_id", "recipe_key"],
                              unique=True)
        batch_op.create_index("ix_image_builds_state", ["state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("image_builds", schema=None) as batch_op:
        batch_op.drop_index("ix_image_builds_state")
        batch_op.drop_index("ix_image_builds_node_key")
    op.drop_table("image_builds")
    with op.batch_alter_table("images", schema=None) as batch_op:
        batch_op.drop_index("ix_images_live_name")
        batch_op.drop_index("ix_images_tenant_id")
    op.drop_table("images")
