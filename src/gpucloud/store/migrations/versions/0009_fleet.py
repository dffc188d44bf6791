"""the asset register (servers, switches, storage, links) and bare-metal leases

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "assets",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column(
            "kind",
            sa.Enum("server", "switch", "storage", name="assetkind", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column(
            "role",
            sa.Enum(
                "ai", "storage", "edge", "cpu", name="serverrole", native_enum=False, length=16
            ),
            nullable=True,
        ),
        sa.Column("vendor", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("serial", sa.String(length=64), nullable=True),
        sa.Column("hostname", sa.String(length=128), nullable=True),
        sa.Column("rack", sa.String(length=32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=True),
        sa.Column("accelerator_model", sa.String(length=32), nullable=True),
        sa.Column("accelerator_count", sa.Integer(), nullable=False),
        sa.Column("cpus", sa.Integer(), nullable=False),
        sa.Column("memory_gib", sa.Integer(), nullable=False),
        sa.Column("disks", sa.JSON(), nullable=False),
        sa.Column("bmc_address", sa.String(length=255), nullable=False),
        sa.Column("nvlink_island", sa.String(length=64), nullable=False),
        sa.Column("baremetal", sa.Boolean(), nullable=False),
        sa.Column(
            "fabric",
            sa.Enum("ethernet", "infiniband", name="fabric", native_enum=False, length=16),
            nullable=True,
        ),
        sa.Column(
            "tier",
            sa.Enum("leaf", "spine", name="switchtier", native_enum=False, length=16),
            nullable=True,
        ),
        sa.Column("ports", sa.Integer(), nullable=False),
        sa.Column("capacity_gib", sa.BigInteger(), nullable=False),
        sa.Column("protocol", sa.String(length=16), nullable=False),
        sa.Column("purchase_date", sa.Date(), nullable=True),
        sa.Column("purchase_cost_minor", sa.BigInteger(), nullable=False),
        sa.Column("depreciation_months", sa.Integer(), nullable=False),
        sa.Column("power_watts", sa.Integer(), nullable=False),
        sa.Column("opex_month_minor", sa.BigInteger(), nullable=False),
        sa.Column("retired_at", _WHEN, nullable=True),
        sa.Column("retire_reason", sa.Text(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
        sa.UniqueConstraint("serial"),
    )
    with op.batch_alter_table("assets", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_assets_hostname"), ["hostname"], unique=False)

    op.create_table(
        "boot_images",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("url", sa.String(length=1024), nullable=False),
        sa.Column("purpose", sa.String(length=8), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "asset_links",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("switch_id", sa.String(length=32), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("peer_id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["peer_id"],
            ["assets.id"],
        ),
        sa.ForeignKeyConstraint(
            ["switch_id"],
            ["assets.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("switch_id", "port", name="uq_asset_links_port"),
    )
    with op.batch_alter_table("asset_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_asset_links_peer_id"), ["peer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_asset_links_switch_id"), ["switch_id"], unique=False)

    op.create_table(
        "baremetal_servers",
        sa.Column("asset_id", sa.String(length=32), nullable=False),
        sa.Column(
            "state",
            sa.Enum(
                "available",
                "provisioning",
                "leased",
                "releasing",
                "cleaning",
                "maintenance",
                name="baremetalstate",
                native_enum=False,
                length=16,
            ),
            nullable=False,
        ),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=True),
        sa.Column("image", sa.String(length=64), nullable=False),
        sa.Column("progress", sa.JSON(), nullable=False),
        sa.Column("state_since", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["asset_id"],
            ["assets.id"],
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
        ),
        sa.PrimaryKeyConstraint("asset_id"),
    )
    with op.batch_alter_table("baremetal_servers", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_baremetal_servers_tenant_id"), ["tenant_id"], unique=False
        )

    op.create_table(
        "wipe_attestations",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("asset_id", sa.String(length=32), nullable=False),
        sa.Column("tenant_id", sa.String(length=32), nullable=True),
        sa.Column("method", sa.String(length=128), nullable=False),
        sa.Column("started_at", _WHEN, nullable=False),
        sa.Column("finished_at", _WHEN, nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["asset_id"],
            ["assets.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("wipe_attestations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_wipe_attestations_asset_id"), ["asset_id"], unique=False
        )


def downgrade() -> None:
    for table in ("wipe_attestations", "baremetal_servers", "asset_links", "boot_images", "assets"):
        op.drop_table(table)
