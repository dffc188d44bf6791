"""interactive GPU instances

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # filled in with the tables of store/models_instances.py


def downgrade() -> None:
    pass
