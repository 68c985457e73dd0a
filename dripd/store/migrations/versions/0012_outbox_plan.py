"""What the send decision reads from a queued email: when it was planned, whose holidays.

`planned_at`: when the campaign planned the email (its timing moved into the
send window, before any hold): lateness counts from it (plan.decide).
`holidays_of`: the rep whose holidays the send window skips, the contact's
owner (NULL: [dripd]'s). Rows queued before are given their contact's owner;
their `planned_at` stays NULL, and `due_at` stands in for it.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dripd.store.schema import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("planned_at", UTCDateTime))
    op.add_column("outbox", sa.Column("holidays_of", sa.Text))
    op.execute(
        "UPDATE outbox SET holidays_of = "
        "(SELECT contacts.owner FROM contacts WHERE contacts.id = outbox.contact_id) "
        "WHERE contact_id IS NOT NULL AND status IN ('queued', 'sending')"
    )


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("holidays_of")
        batch.drop_column("planned_at")
