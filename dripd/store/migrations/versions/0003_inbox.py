"""The inbox: folder checkpoints, handled messages, contact pauses.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dripd.store.schema import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("contacts") as batch:
        batch.add_column(sa.Column("paused_until", UTCDateTime))
    op.create_table(
        "inbox_folders",
        sa.Column("rep", sa.Text, primary_key=True),
        sa.Column("folder", sa.Text, primary_key=True),
        sa.Column("uidvalidity", sa.BigInteger, nullable=False),
        sa.Column("last_uid", sa.BigInteger, nullable=False),
        sa.Column("checked_at", UTCDateTime, nullable=False),
    )
    op.create_table(
        "inbox_messages",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("rep", sa.Text, nullable=False),
        sa.Column("message_key", sa.String(255), nullable=False),
        sa.Column("uid", sa.BigInteger),
        sa.Column("class", sa.String(16), nullable=False),
        sa.Column("contact_id", sa.Integer, sa.ForeignKey("contacts.id")),
        sa.Column("sender", sa.Text, nullable=False, server_default=""),
        sa.Column("subject", sa.Text, nullable=False, server_default=""),
        sa.Column("summary", sa.Text, nullable=False, server_default=""),
        sa.Column("reasons", sa.Text, nullable=False, server_default=""),
        sa.Column("received_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("rep", "message_key", name="uq_inbox_messages_rep_message_key"),
    )
    op.create_index("ix_inbox_messages_rep_received_at", "inbox_messages", ["rep", "received_at"])


def downgrade() -> None:
    op.drop_table("inbox_messages")
    op.drop_table("inbox_folders")
    with op.batch_alter_table("contacts") as batch:
        batch.drop_column("paused_until")
