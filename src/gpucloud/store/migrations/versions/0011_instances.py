"""interactive GPU instances and their tenants' idle policies

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=16)


def upgrade() -> None:
    op.create_table(
        "instances",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("live_name", sa.String(length=64), nullable=True),
        sa.Column(
            "state",
            _enum("instancestate", "PENDING", "STARTING", "RUNNING", "STOPPING", "STOPPED",
                  "FAILED", "DELETED"),
            nullable=False,
        ),
        sa.Column("desired", _enum("desired", "RUNNING", "STOPPED", "DELETED"), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("gpus", sa.Integer(), nullable=False),
        sa.Column("gpu_type", sa.String(length=32), nullable=True),
        sa.Column("disk_gib", sa.Integer(), nullable=False),
        sa.Column("no_gpu", sa.Boolean(), nullable=False),
        sa.Column("jupyter_token", sa.String(length=64), nullable=True),
        sa.Column("current_job_id", sa.String(length=32), nullable=True),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("utilization_pct", sa.Integer(), nullable=True),
        sa.Column("utilization_at", _WHEN, nullable=True),
        sa.Column("low_since", _WHEN, nullable=True),
        sa.Column("idle_warned_at", _WHEN, nullable=True),
        sa.Column("reclaimed_at", _WHEN, nullable=True),
        sa.Column("reclaim_rate_minor", sa.BigInteger(), nullable=False),
        sa.Column("saved_minor", sa.BigInteger(), nullable=False),
        sa.Column("saved_seconds", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.Column("started_at", _WHEN, nullable=True),
        sa.Column("stopped_at", _WHEN, nullable=True),
        sa.Column("deleted_at", _WHEN, nullable=True),
        sa.Column("disk_freed_at", _WHEN, nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.create_index("ix_instances_tenant_id", ["tenant_id", "id"], unique=False)
        batch_op.create_index("ix_instances_live_name", ["tenant_id", "live_name"], unique=True)
        batch_op.create_index("ix_instances_state", ["state"], unique=False)
    op.create_table(
        "instance_idle_policies",
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("below_pct", sa.Integer(), nullable=False),
        sa.Column("idle_s", sa.Integer(), nullable=False),
        sa.Column("grace_s", sa.Integer(), nullable=False),
        sa.Column("action", _enum("idleaction", "no-gpu", "stop"), nullable=False),
        sa.Column("updated_by", sa.String(length=64), nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("tenant_id"),
    )


def downgrade() -> None:
    op.drop_table("instance_idle_policies")
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_index("ix_instances_state")
        batch_op.drop_index("ix_instances_live_name")
        batch_op.drop_index("ix_instances_tenant_id")
    op.drop_table("instances")
