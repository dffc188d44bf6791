"""the asset register and bare-metal leases

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # filled in with the tables of store/models_fleet.py


def downgrade() -> None:
    pass
