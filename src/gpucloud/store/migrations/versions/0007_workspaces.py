"""instances, volumes, datasets and images

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Kept empty: databases already upgraded through this revision would never run tables
    # added here, so the tables are in later revisions (see 0012 and 0013).
    pass


def downgrade() -> None:
    pass
