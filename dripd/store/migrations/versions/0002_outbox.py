"""The outbox, settings (the install id) and mailbox state.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa
from alembic import op

from dripd.store.schema import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("message_id", sa.String(255), nullable=False),
        sa.Column("enrollment_id", sa.Integer, sa.ForeignKey("enrollments.id")),
        sa.Column("contact_id", sa.Integer, sa.ForeignKey("contacts.id"), nullable=False),
        sa.Column("campaign", sa.Text),
        sa.Column("step", sa.Text),
        sa.Column("occurrence", sa.Integer, nullable=False, server_default="1"),
        sa.Column("rep", sa.Text, nullable=False),
        sa.Column("recipient", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False, server_default="queued"),
        sa.Column("priority", sa.Integer, nullable=False, server_default="1"),
        sa.Column("due_at", UTCDateTime, nullable=False),
        sa.Column("not_after", UTCDateTime),
        sa.Column("timezone", sa.Text, nullable=False, server_default="UTC"),
        sa.Column("send_window", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", UTCDateTime, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("sending_at", UTCDateTime),
        sa.Column("sent_at", UTCDateTime),
        sa.Column("copied_at", UTCDateTime),
        sa.Column("recorded_at", UTCDateTime),
        sa.UniqueConstraint("message_id", name="uq_outbox_message_id"),
    )
    op.create_index("ix_outbox_status_next_attempt_at", "outbox", ["status", "next_attempt_at"])
    op.create_index("ix_outbox_rep_sent_at", "outbox", ["rep", "sent_at"])
    op.create_index("ix_outbox_enrollment_id", "outbox", ["enrollment_id"])
    unrecorded = sa.text("status = 'sent' AND recorded_at IS NULL")
    op.create_index(
        "ix_outbox_unrecorded",
        "outbox",
        ["id"],
        sqlite_where=unrecorded,
        postgresql_where=unrecorded,
    )
    uncopied = sa.text("status = 'sent' AND copied_at IS NULL")
    op.create_index(
        "ix_outbox_uncopied",
        "outbox",
        ["rep", "id"],
        sqlite_where=uncopied,
        postgresql_where=uncopied,
    )
    op.create_table(
        "outbox_bodies",
        sa.Column("message_id", sa.String(255), primary_key=True),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    settings = op.create_table(
        "settings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    # A random id per database, part of every Message-ID: two installs (or a
    # database started over) never produce the same Message-ID.
    op.bulk_insert(settings, [{"key": "install_id", "value": secrets.token_hex(4)}])
    op.create_table(
        "mailboxes",
        sa.Column("rep", sa.Text, primary_key=True),
        sa.Column("paused_until", UTCDateTime),
        sa.Column("reason", sa.Text),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    for table in ("mailboxes", "settings", "outbox_bodies", "outbox"):
        op.drop_table(table)
