"""`dripd status` at a million contacts: its counts read indexes, not the tables.

Contacts per status and stage with their touches come from one index; the
steps held (an enrollment waiting with a reason) from a partial index that
holds only those.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_contacts_status_stage_touches", "contacts", ["status", "stage", "touches"])
    waiting = sa.text("waiting IS NOT NULL")
    op.create_index(
        "ix_enrollments_waiting",
        "enrollments",
        ["id"],
        sqlite_where=waiting,
        postgresql_where=waiting,
    )


def downgrade() -> None:
    op.drop_index("ix_enrollments_waiting", "enrollments")
    op.drop_index("ix_contacts_status_stage_touches", "contacts")
