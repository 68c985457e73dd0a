"""The tables, as SQLAlchemy Core metadata: portable between SQLite and PostgreSQL.

Times are stored as naive UTC (`UTCDateTime` converts), so comparisons are
plain and identical on both databases.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out; stored as naive UTC."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC)  # type: ignore[no-any-return]


class Wait(enum.StrEnum):
    """Why a queued email waits that is no problem (outbox.wait); NULL: it waits on none.

    Its human text stays in `last_error`; `status` names only the other waits
    (a mailbox problem, a failed try) as stuck.
    """

    WINDOW = "window"  # until the sending window opens
    AWAY = "away"  # until the contact is back from out of office


class MessageOutcome(enum.StrEnum):
    """What became of an incoming message (inbox_messages.outcome)."""

    HANDLED = "handled"
    FAILED = "failed"  # could not be handled: it stays in the mailbox for a person


metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

contacts = sa.Table(
    "contacts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("email", sa.String(254), nullable=False),
    sa.Column("email_key", sa.String(254), nullable=False, unique=True),
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
    # No email goes to the contact before this (an out-of-office reply).
    sa.Column("paused_until", UTCDateTime),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)
sa.Index("ix_contacts_stage", contacts.c.stage)
sa.Index("ix_contacts_owner", contacts.c.owner)
# `status` counts contacts per status and stage, and their touches, from this
# index alone: at a million contacts a scan of the table took 0.4-0.8 s.
sa.Index(
    "ix_contacts_status_stage_touches", contacts.c.status, contacts.c.stage, contacts.c.touches
)

enrollments = sa.Table(
    "enrollments",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("contact_id", sa.Integer, sa.ForeignKey("contacts.id"), nullable=False),
    sa.Column("campaign", sa.Text, nullable=False),
    sa.Column("status", sa.String(16), nullable=False, server_default="active"),
    sa.Column("enrolled_at", UTCDateTime, nullable=False),
    sa.Column("ended_at", UTCDateTime),
    sa.Column("end_reason", sa.Text),
    sa.Column("progress", sa.Text, nullable=False, server_default="{}"),
    # The earliest due time of what is pending; NULL once the enrollment ended
    # or is waiting on something (a field, a task). The due query scans only
    # this index's head, so its cost grows with what is due, not with the total.
    sa.Column("next_due_at", UTCDateTime),
    sa.Column("waiting", sa.Text),
)
sa.Index("ix_enrollments_next_due_at", enrollments.c.next_due_at)
sa.Index("ix_enrollments_contact_id_status", enrollments.c.contact_id, enrollments.c.status)
sa.Index("ix_enrollments_campaign_status", enrollments.c.campaign, enrollments.c.status)
# The few enrollments waiting with a reason (a held step): `status` lists them
# without reading every enrollment.
sa.Index(
    "ix_enrollments_waiting",
    enrollments.c.id,
    sqlite_where=enrollments.c.waiting.is_not(None),
    postgresql_where=enrollments.c.waiting.is_not(None),
)

events = sa.Table(
    "events",
    metadata,
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
sa.Index("ix_events_contact_id_at", events.c.contact_id, events.c.at)
# The digest's news: replies, bounces, unsubscribes since the last one.
sa.Index("ix_events_kind_at", events.c.kind, events.c.at)
# Only step events feed the per-step statistics; leaving the others (created,
# enrolled, promoted, …) out keeps bulk imports fast.
sa.Index(
    "ix_events_campaign_step_kind",
    events.c.campaign,
    events.c.step,
    events.c.kind,
    sqlite_where=events.c.step.is_not(None),
    postgresql_where=events.c.step.is_not(None),
)

tasks = sa.Table(
    "tasks",
    metadata,
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
    sa.UniqueConstraint("enrollment_id", "step", "occurrence"),
)
sa.Index("ix_tasks_rep_status_due_at", tasks.c.rep, tasks.c.status, tasks.c.due_at)

reps = sa.Table(
    "reps",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("paused_until", UTCDateTime),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# The durable outbox: every email is written here, rendered, with its stable
# Message-ID, before any SMTP transaction starts. Its status moves
# queued → sending → sent (or failed / skipped), each change committed on
# its own, so a crash leaves at most the one message in flight uncertain.
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("message_id", sa.String(255), nullable=False, unique=True),
    sa.Column("enrollment_id", sa.Integer, sa.ForeignKey("enrollments.id")),
    # NULL for an email to the rep (a digest, a confirmation of commands).
    sa.Column("contact_id", sa.Integer, sa.ForeignKey("contacts.id")),
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
    # When the campaign planned it (plan.decide: lateness counts from here); NULL: due_at.
    sa.Column("planned_at", UTCDateTime),
    sa.Column("timezone", sa.Text, nullable=False, server_default="UTC"),
    sa.Column("send_window", sa.Text),
    # The rep whose holidays its send window skips: the contact's owner (NULL: [dripd]'s).
    sa.Column("holidays_of", sa.Text),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime, nullable=False),
    sa.Column("last_error", sa.Text),
    sa.Column("wait", sa.String(16)),  # a Wait, or NULL
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.Column("sending_at", UTCDateTime),
    # The `dripd run` instance that claimed it (instances.id): a row left
    # `sending` is reconciled only once that instance is gone.
    sa.Column("claimed_by", sa.String(64)),
    sa.Column("sent_at", UTCDateTime),
    sa.Column("copied_at", UTCDateTime),
    sa.Column("recorded_at", UTCDateTime),
    sa.Column("variant", sa.String(64)),  # the A/B version of its step (campaigns.Variant)
)
sa.Index("ix_outbox_status_next_attempt_at", outbox.c.status, outbox.c.next_attempt_at)
sa.Index("ix_outbox_rep_sent_at", outbox.c.rep, outbox.c.sent_at)
sa.Index("ix_outbox_enrollment_id", outbox.c.enrollment_id)
# Sent emails whose history and touch are not written yet, and those without
# a Sent-folder copy: small sets found without scanning every email ever sent
# (SQLite's planner passes over the first without statistics: see
# outbox.record_sent).
sa.Index(
    "ix_outbox_unrecorded",
    outbox.c.id,
    sqlite_where=sa.and_(outbox.c.status == "sent", outbox.c.recorded_at.is_(None)),
    postgresql_where=sa.and_(outbox.c.status == "sent", outbox.c.recorded_at.is_(None)),
)
sa.Index(
    "ix_outbox_uncopied",
    outbox.c.rep,
    outbox.c.id,
    sqlite_where=sa.and_(outbox.c.status == "sent", outbox.c.copied_at.is_(None)),
    postgresql_where=sa.and_(outbox.c.status == "sent", outbox.c.copied_at.is_(None)),
)

# The message bytes, apart from the outbox row: status changes rewrite the
# small row, not a page holding the whole email.
outbox_bodies = sa.Table(
    "outbox_bodies",
    metadata,
    sa.Column("message_id", sa.String(255), primary_key=True),
    sa.Column("data", sa.LargeBinary, nullable=False),
)

# Addresses erased by `dripd contacts forget`: only a keyed hash (HMAC-SHA256 with
# this database's own key, settings "forget_key"), so a later import is refused.
forgotten = sa.Table(
    "forgotten",
    metadata,
    sa.Column("hash", sa.String(64), primary_key=True),
    sa.Column("at", UTCDateTime, nullable=False),
)

settings = sa.Table(
    "settings",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# A mailbox the server told us to stop using for a while (a daily quota).
mailboxes = sa.Table(
    "mailboxes",
    metadata,
    sa.Column("rep", sa.Text, primary_key=True),
    sa.Column("paused_until", UTCDateTime),
    sa.Column("reason", sa.Text),
    sa.Column("updated_at", UTCDateTime, nullable=False),
)

# What the inbox watcher has read of each rep's folder: the last UID handled
# under the folder's UIDVALIDITY. Advanced in the same transaction as the
# effects of the messages up to that UID, so a crash neither skips nor
# repeats one.
inbox_folders = sa.Table(
    "inbox_folders",
    metadata,
    sa.Column("rep", sa.Text, primary_key=True),
    sa.Column("folder", sa.Text, primary_key=True),
    sa.Column("uidvalidity", sa.BigInteger, nullable=False),
    sa.Column("last_uid", sa.BigInteger, nullable=False),
    sa.Column("checked_at", UTCDateTime, nullable=False),
)

# Every incoming message handled, whatever its class: the key (its
# Message-ID, or a digest of its headers when it has none) keeps a message
# from being handled twice when the folder's UIDs change; the summary is
# what the rep's digest shows of a reply.
inbox_messages = sa.Table(
    "inbox_messages",
    metadata,
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
    sa.Column(
        "outcome", sa.String(16), nullable=False, server_default=MessageOutcome.HANDLED.value
    ),
    sa.UniqueConstraint("rep", "message_key"),
)
sa.Index("ix_inbox_messages_rep_received_at", inbox_messages.c.rep, inbox_messages.c.received_at)

# One row per rep and digest slot, written when the slot is handled (also
# when there was nothing to say: then no Message-ID), so a slot is never
# handled twice, whatever restarts or other instances do. `tasks` holds the
# task ids in the order the digest numbered them: a reply's `done 3` means
# the third task of the digest it answers.
digests = sa.Table(
    "digests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("rep", sa.Text, nullable=False),
    sa.Column("slot_at", UTCDateTime, nullable=False),
    sa.Column("message_id", sa.String(255), unique=True),
    sa.Column("tasks", sa.Text, nullable=False, server_default="[]"),
    sa.Column("covers_until", UTCDateTime, nullable=False),
    sa.Column("created_at", UTCDateTime, nullable=False),
    sa.UniqueConstraint("rep", "slot_at"),
)

# Each `dripd run` writes a row at start and refreshes `seen_at` at every
# pass of its loop (at most POLL seconds apart); `dripd status` tells from it
# whether a daemon is running and when it last made progress. `expires_at`
# is its lease on life, in seconds since the epoch by the database's clock
# (hosts' clocks may disagree): renewed every few seconds, and once it has
# passed, the instance is dead and its mailboxes free (dripd.store.membership).
instances = sa.Table(
    "instances",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("host", sa.Text, nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", UTCDateTime, nullable=False),
    sa.Column("seen_at", UTCDateTime, nullable=False),
    sa.Column("stopped_at", UTCDateTime),
    sa.Column("expires_at", sa.Float, nullable=False, server_default="0"),
    sa.Column("campaigns", sa.Text, nullable=False, server_default=""),  # version hash
    # "daemon" (dripd run) or "once" (run --once: not counted in the fair shares)
    sa.Column("role", sa.String(16), nullable=False, server_default="daemon"),
    # Its tasks that failed and were restarted, one line each (dripd.daemon.supervise),
    # for `dripd status`; empty while all is well.
    sa.Column("troubles", sa.Text, nullable=False, server_default=""),
)

# Which instance does a rep's mailbox work (sending, inbox, digests, Sent
# copies): one at a time across the fleet. Free when `holder` is NULL or the
# holder's instance row has expired.
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("name", sa.String(255), primary_key=True),
    sa.Column("holder", sa.String(64)),
    sa.Column("taken_at", UTCDateTime),
)

# A rep's OAuth2 sign-in (dripd.mailbox.tokens): its refresh token, shared by every
# instance of a fleet, and the access token it last gave (used until
# `access_fresh_until`, a margin before it expires, then refreshed).
# `refreshing_by`/`refreshing_until`: the instance refreshing right now (one
# at a time, so a provider that rotates refresh tokens never sees one used
# twice); the new refresh token is written by compare-and-swap on the old one.
# `lost_at`/`lost_reason`: the provider refused the refresh token (revoked,
# expired): the rep must sign in again.
oauth_tokens = sa.Table(
    "oauth_tokens",
    metadata,
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
