"""self-healing: device quarantine and retirement, job restart state, the faults table

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("quarantine_source", sa.String(length=16), nullable=False, server_default="")
        )
    with op.batch_alter_table("devices", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quarantined_at", _WHEN, nullable=True))
        batch_op.add_column(
            sa.Column("quarantine_reason", sa.Text(), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("retired_at", _WHEN, nullable=True))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("restarts_since_progress", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("last_checkpoint_step", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("last_checkpoint_at", _WHEN, nullable=True))
        batch_op.add_column(sa.Column("not_before", _WHEN, nullable=True))
        batch_op.add_column(sa.Column("fault_at", _WHEN, nullable=True))
        batch_op.add_column(
            sa.Column("fault_lost_s", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_table(
        "faults",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("engine", sa.String(length=16), nullable=False),
        sa.Column("engine_seq", sa.BigInteger(), nullable=True),
        sa.Column("at", _WHEN, nullable=False),
        sa.Column("node_id", sa.String(length=128), nullable=False),
        sa.Column("device_index", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("code", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("alert", sa.Boolean(), nullable=False),
        sa.Column("job_ids", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("faults", schema=None) as batch_op:
        batch_op.create_index("ix_faults_node_id", ["node_id"], unique=False)
        batch_op.create_index("ix_faults_engine_seq", ["engine", "engine_seq"], unique=True)


def downgrade() -> None:
    op.drop_table("faults")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        for column in ("fault_lost_s", "fault_at", "not_before", "last_checkpoint_at",
                       "last_checkpoint_step", "restarts_since_progress"):
            batch_op.drop_column(column)
    with op.batch_alter_table("devices", schema=None) as batch_op:
        for column in ("retired_at", "quarantine_reason", "quarantined_at"):
            batch_op.drop_column(column)
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_column("quarantine_source")
