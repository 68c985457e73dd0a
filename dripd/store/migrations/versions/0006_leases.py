"""Several instances on one database: leases on mailboxes, instances' expiry, who claimed an email.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dripd.store.schema import UTCDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "instances", sa.Column("expires_at", sa.Float, nullable=False, server_default="0")
    )
    op.add_column("instances", sa.Column("campaigns", sa.Text, nullable=False, server_default=""))
    role = sa.Column("role", sa.String(16), nullable=False, server_default="daemon")
    op.add_column("instances", role)
    op.add_column("outbox", sa.Column("claimed_by", sa.String(64)))
    op.create_table(
        "leases",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("holder", sa.String(64)),
        sa.Column("taken_at", UTCDateTime),
    )


def downgrade() -> None:
    op.drop_table("leases")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("claimed_by")
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("role")
        batch.drop_column("campaigns")
        batch.drop_column("expires_at")
