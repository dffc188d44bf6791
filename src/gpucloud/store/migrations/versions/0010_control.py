"""control-plane leader leases

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Kept empty: databases already upgraded through this revision would never run tables
    # added here, so the tables are in later revisions (the leader lease: see 0015).
    pass


def downgrade() -> None:
    pass
