"""inference services and their replicas (issue 10)

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, native_enum=False, length=16)


def upgrade() -> None:
    op.create_table(
        "services",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("live_name", sa.String(length=64), nullable=True),
        sa.Column("state", _enum("servicestate", "STARTING", "RUNNING", "IDLE", "DELETING",
                                 "DELETED"), nullable=False),
        sa.Column("deleting", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("desired_replicas", sa.Integer(), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=True),
        sa.Column("replicas_started", sa.Integer(), nullable=False),
        sa.Column("last_request_at", _WHEN, nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.Column("deleted_at", _WHEN, nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.create_index("ix_services_tenant_id", ["tenant_id", "id"], unique=False)
        batch_op.create_index("ix_services_live_name", ["tenant_id", "live_name"], unique=True)
        batch_op.create_index("ix_services_state", ["state"], unique=False)
    op.create_table(
        "service_replicas",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("service_id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("state", _enum("replicastate", "STARTING", "UNREADY", "READY", "DRAINING",
                                 "STOPPING", "STOPPED", "FAILED"), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("ready_at", _WHEN, nullable=True),
        sa.Column("draining_at", _WHEN, nullable=True),
        sa.Column("ended_at", _WHEN, nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["service_id"], ["services.id"]),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("service_replicas", schema=None) as batch_op:
        batch_op.create_index("ix_service_replicas_service", ["service_id", "ordinal"],
                              unique=True)
        batch_op.create_index("ix_service_replicas_state", ["state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("service_replicas", schema=None) as batch_op:
        batch_op.drop_index("ix_service_replicas_state")
        batch_op.drop_index("ix_service_replicas_service")
    op.drop_table("service_replicas")
    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.drop_index("ix_services_state")
        batch_op.drop_index("ix_services_live_name")
        batch_op.drop_index("ix_services_tenant_id")
    op.drop_table("services")
