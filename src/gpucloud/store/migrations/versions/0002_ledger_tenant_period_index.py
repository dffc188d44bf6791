"""ledger transactions: one (tenant, time) index instead of three single-column ones

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_transactions_tenant_id")
        batch_op.drop_index("ix_ledger_transactions_job_id")
        batch_op.drop_index("ix_ledger_transactions_at")
        batch_op.create_index("ix_ledger_transactions_tenant_at", ["tenant_id", "at"])


def downgrade() -> None:
    with op.batch_alter_table("ledger_transactions", schema=None) as batch_op:
        batch_op.drop_index("ix_ledger_transactions_tenant_at")
        batch_op.create_index("ix_ledger_transactions_at", ["at"])
        batch_op.create_index("ix_ledger_transactions_job_id", ["job_id"])
        batch_op.create_index("ix_ledger_transactions_tenant_id", ["tenant_id"])
