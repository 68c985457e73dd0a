"""The rep's digests, emails to the rep in the outbox (no contact), events by kind and time.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dripd.store.schema import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# SQLite rebuilds the table to change a column; its partial indexes are
# dropped first and made again after, so their WHERE clauses survive.
_PARTIAL = {
    "ix_outbox_unrecorded": (["id"], "status = 'sent' AND recorded_at IS NULL"),
    "ix_outbox_uncopied": (["rep", "id"], "status = 'sent' AND copied_at IS NULL"),
}


def upgrade() -> None:
    _contact_id(nullable=True)
    op.create_table(
        "digests",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("rep", sa.Text, nullable=False),
        sa.Column("slot_at", UTCDateTime, nullable=False),
        sa.Column("message_id", sa.String(255)),
        sa.Column("tasks", sa.Text, nullable=False, server_default="[]"),
        sa.Column("covers_until", UTCDateTime, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("rep", "slot_at", name="uq_digests_rep_slot_at"),
        sa.UniqueConstraint("message_id", name="uq_digests_message_id"),
    )
    op.create_index("ix_events_kind_at", "events", ["kind", "at"])


def downgrade() -> None:
    op.drop_index("ix_events_kind_at", "events")
    op.drop_table("digests")
    op.execute("DELETE FROM outbox WHERE contact_id IS NULL")
    _contact_id(nullable=False)


def _contact_id(*, nullable: bool) -> None:
    for name in _PARTIAL:
        op.drop_index(name, "outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column("contact_id", existing_type=sa.Integer, nullable=nullable)
    for name, (columns, where) in _PARTIAL.items():
        clause = sa.text(where)
        op.create_index(name, "outbox", columns, sqlite_where=clause, postgresql_where=clause)
