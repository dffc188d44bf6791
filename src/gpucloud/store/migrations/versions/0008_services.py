"""inference services

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Kept empty: databases already upgraded through this revision would never run tables
    # added here, so the tables are in later revisions (services: see 0014).
    pass


def downgrade() -> None:
    pass
