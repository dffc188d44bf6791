"""workload kinds on jobs (instances, service replicas); metered leases (volumes, servers)

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "workload",
                sa.Enum(
                    "job",
                    "instance",
                    "service-replica",
                    name="workload",
                    native_enum=False,
                    length=16,
                ),
                nullable=False,
                server_default="job",
            )
        )
        batch_op.add_column(sa.Column("owner_id", sa.String(length=32), nullable=True))
        batch_op.create_index("ix_jobs_owner_id", ["owner_id"], unique=False)
    with op.batch_alter_table("price_versions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("server_hour", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
    op.create_table(
        "metered_leases",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("ref_id", sa.String(length=64), nullable=False),
        sa.Column("item", sa.String(length=64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("started_at", _WHEN, nullable=False),
        sa.Column("ended_at", _WHEN, nullable=True),
        sa.Column("charged_until", _WHEN, nullable=False),
        sa.Column("remainder", sa.BigInteger(), nullable=False),
        sa.Column("charged_minor", sa.BigInteger(), nullable=False),
        sa.Column("settled", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("metered_leases", schema=None) as batch_op:
        batch_op.create_index("ix_metered_leases_tenant_id", ["tenant_id"], unique=False)
        batch_op.create_index("ix_metered_leases_ref_id", ["ref_id"], unique=False)
        batch_op.create_index("ix_metered_leases_settled", ["settled"], unique=False)


def downgrade() -> None:
    op.drop_table("metered_leases")
    with op.batch_alter_table("price_versions", schema=None) as batch_op:
        batch_op.drop_column("server_hour")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_owner_id")
        batch_op.drop_column("owner_id")
        batch_op.drop_column("workload")
