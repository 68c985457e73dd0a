"""Reasons and waits as data: outbox.wait and inbox_messages.outcome, read from the old text.

Before, an email waiting for its window or an absent contact was told apart
from a stuck one by the text of `last_error`, and a message that could not be
handled by the start of its `reasons`. The texts stay (people read them); the
columns say the same as values (schema.Wait, schema.MessageOutcome), copied here as
literals so this revision does not change with the code.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# The texts the code wrote up to revision 0010, and the value each means now.
WAIT_TEXTS = {
    "waiting for the sending window": "window",
    "the contact is out of office": "away",
}
FAILED_PREFIX = "could not be handled"


def upgrade() -> None:
    op.add_column("outbox", sa.Column("wait", sa.String(16)))
    op.add_column(
        "inbox_messages",
        sa.Column("outcome", sa.String(16), nullable=False, server_default="handled"),
    )
    outbox = sa.table("outbox", sa.column("wait"), sa.column("last_error"))
    for text, wait in WAIT_TEXTS.items():
        op.execute(outbox.update().where(outbox.c.last_error == text).values(wait=wait))
    inbox = sa.table("inbox_messages", sa.column("outcome"), sa.column("reasons"))
    op.execute(
        inbox.update().where(inbox.c.reasons.like(f"{FAILED_PREFIX}%")).values(outcome="failed")
    )


def downgrade() -> None:
    with op.batch_alter_table("inbox_messages") as batch:
        batch.drop_column("outcome")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("wait")
