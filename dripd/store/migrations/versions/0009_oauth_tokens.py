"""OAuth2 sign-in: each rep's refresh token (and current access token), shared by the fleet.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from dripd.store.schema import UTCDateTime

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "oauth_tokens",
        sa.Column("rep", sa.String(64), primary_key=True),
        sa.Column("subject", sa.Text, nullable=False, server_default=""),
        sa.Column("refresh_token", sa.Text),
        sa.Column("access_token", sa.Text),
        sa.Column("access_fresh_until", UTCDateTime),
        sa.Column("signed_in_at", UTCDateTime, nullable=False),
        sa.Column("refreshed_at", UTCDateTime),
        sa.Column("refreshing_by", sa.String(64)),
        sa.Column("refreshing_until", UTCDateTime),
        sa.Column("lost_at", UTCDateTime),
        sa.Column("lost_reason", sa.Text),
    )


def downgrade() -> None:
    op.drop_table("oauth_tokens")
