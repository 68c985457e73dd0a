"""The first schema: contacts, enrollments, events, tasks, reps.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dripd.store.schema import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contacts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("email_key", sa.String(254), nullable=False),
        sa.Column("first_name", sa.Text, nullable=False, server_default=""),
        sa.Column("last_name", sa.Text, nullable=False, server_default=""),
        sa.Column("company", sa.Text, nullable=False, server_default=""),
        sa.Column("phone", sa.Text, nullable=False, server_default=""),
        sa.Column("timezone", sa.Text),
        sa.Column("owner", sa.Text),
        sa.Column("stage", sa.String(16), nullable=False, server_default="suspect"),
        sa.Column("status", sa.String(16), nullable=False, server_default="active"),
        sa.Column("referred_by", sa.Text),
        sa.Column("fields", sa.Text, nullable=False, server_default="{}"),
        sa.Column("touches", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_touch_at", UTCDateTime),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.UniqueConstraint("email_key", name="uq_contacts_email_key"),
    )
    op.create_index("ix_contacts_stage", "contacts", ["stage"])
    op.create_index("ix_contacts_owner", "contacts", ["owner"])
    op.create_table(
        "enrollments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("contact_id", sa.Integer, sa.ForeignKey("contacts.id"), nullable=False),
        sa.Column("campaign", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False, server_default="active"),
        sa.Column("enrolled_at", UTCDateTime, nullable=False),
        sa.Column("ended_at", UTCDateTime),
        sa.Column("end_reason", sa.Text),
        sa.Column("progress", sa.Text, nullable=False, server_default="{}"),
        sa.Column("next_due_at", UTCDateTime),
        sa.Column("waiting", sa.Text),
    )
    op.create_index("ix_enrollments_next_due_at", "enrollments", ["next_due_at"])
    op.create_index("ix_enrollments_contact_id_status", "enrollments", ["contact_id", "status"])
    op.create_index("ix_enrollments_campaign_status", "enrollments", ["campaign", "status"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("contact_id", sa.Integer, sa.ForeignKey("contacts.id"), nullable=False),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("campaign", sa.Text),
        sa.Column("step", sa.Text),
        sa.Column("detail", sa.Text, nullable=False, server_default=""),
        sa.Column("cause", sa.Text),
        sa.Column("message_id", sa.Text),
    )
    op.create_index("ix_events_contact_id_at", "events", ["contact_id", "at"])
    op.create_index(
        "ix_events_campaign_step_kind",
        "events",
        ["campaign", "step", "kind"],
        sqlite_where=sa.text("step IS NOT NULL"),
        postgresql_where=sa.text("step IS NOT NULL"),
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("contact_id", sa.Integer, sa.ForeignKey("contacts.id"), nullable=False),
        sa.Column("enrollment_id", sa.Integer, sa.ForeignKey("enrollments.id")),
        sa.Column("campaign", sa.Text),
        sa.Column("step", sa.Text),
        sa.Column("occurrence", sa.Integer, nullable=False, server_default="1"),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("rep", sa.Text),
        sa.Column("due_at", UTCDateTime, nullable=False),
        sa.Column("note", sa.Text, nullable=False, server_default=""),
        sa.Column("status", sa.String(16), nullable=False, server_default="open"),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("done_at", UTCDateTime),
        sa.UniqueConstraint(
            "enrollment_id", "step", "occurrence", name="uq_tasks_enrollment_id_step_occurrence"
        ),
    )
    op.create_index("ix_tasks_rep_status_due_at", "tasks", ["rep", "status", "due_at"])
    op.create_table(
        "reps",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("paused_until", UTCDateTime),
        sa.Column("updated_at", UTCDateTime, nullable=False),
    )


def downgrade() -> None:
    for table in ("reps", "tasks", "events", "enrollments", "contacts"):
        op.drop_table(table)
