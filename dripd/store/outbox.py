"""The durable outbox: queued emails and every change of their state, one transaction each.

States: queued → sending → sent, or → failed / skipped. `sending` is
committed before the SMTP transaction starts and `sent` right after the
server's 250, so after a crash only a row left in `sending` is uncertain;
`reconcile` decides it (see daemon.py for the rule).
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.elements import Grouping

from dripd.store import contacts, events, membership, schema, statements

RETRY_BASE = 60.0  # seconds before the first retry of a temporary failure
RETRY_MAX = 6 * 3600.0  # seconds: the longest wait between two tries
MAX_ATTEMPTS = 12  # then the email fails for good and the rep is told
STUCK = timedelta(minutes=10)  # a mailbox problem lasting this long is named by `status`
# What people read of a wait (in `last_error`, beside the value in `wait`).
WAIT_TEXT = {
    schema.Wait.WINDOW: "waiting for the sending window",
    schema.Wait.AWAY: "the contact is out of office",
}

_t = schema.outbox
_bodies = schema.outbox_bodies
# Outbox rows with their message bytes.
_ROWS = sa.select(_t, _bodies.c.data.label("message")).join(
    _bodies, _bodies.c.message_id == _t.c.message_id
)

# Built once: the per-message statements of the sending hot path (see statements.py).
_UPDATE = sa.update(_t).where(_t.c.id == sa.bindparam("oid"))
_contacts, _enrollments = schema.contacts, schema.enrollments
# The claim re-checks, in the same statement, that the contact is still
# active and the sequence not stopped: nothing goes to an address that
# unsubscribed or bounced a moment ago. Each check reads one row by primary
# key, whatever the planner knows: as EXISTS under an OR, PostgreSQL without
# statistics on the tables (fresh after an import, before autovacuum's
# ANALYZE) hashed every active contact (and every stopped enrollment) at
# each claim: ~2 ms of server CPU an email at 5,000 contacts, growing with them.
_contact_may_get = (
    sa.select(
        sa.and_(
            _contacts.c.status == "active",
            sa.or_(
                _contacts.c.paused_until.is_(None),
                _contacts.c.paused_until <= sa.bindparam("now"),
            ),
        )
    )
    .where(_contacts.c.id == _t.c.contact_id)
    .scalar_subquery()
)
_sequence_status = (
    sa.select(_enrollments.c.status)
    .where(_enrollments.c.id == _t.c.enrollment_id)
    .scalar_subquery()
)
_CLAIM = (
    sa.update(_t)
    .where(
        _t.c.id == sa.bindparam("oid"),
        sa.or_(
            _t.c.status == "queued",
            # Its own claim, made by the same instance at the same moment: the
            # claim run again after its connection was lost during its commit
            # (store/retry.py), when that commit did happen. Nobody else can
            # have sent it since: it is claimed again, and goes once.
            sa.and_(
                _t.c.status == "sending",
                _t.c.claimed_by == sa.bindparam("by"),
                _t.c.sending_at == sa.bindparam("now"),
            ),
        ),
        # An email to the rep, or a contact that is there and may get it (a
        # contact gone makes the subquery NULL: refused).
        sa.or_(_t.c.contact_id.is_(None), _contact_may_get),
        # No sequence (NULL), or one not stopped.
        _sequence_status.is_distinct_from("stopped"),
    )
    .values(status="sending", sending_at=sa.bindparam("now"), claimed_by=sa.bindparam("by"))
)
_CLAIM_PREPARED = statements.Prepared(_CLAIM)
# PostgreSQL: the claim and the `sent` of the emails accepted since the last
# one, in one statement run in autocommit (store.engine.claims_engine):
# one round trip where BEGIN, two UPDATEs and COMMIT were four. The rows are
# found by primary key (`= ANY`), each one's time taken from the array at its
# id's position: joined to `unnest` of the arrays instead, the planner
# without statistics scanned the whole outbox at each claim.
_sent_ids = sa.cast(sa.bindparam("sent_ids"), postgresql.ARRAY(sa.Integer))
# in parentheses: PostgreSQL subscripts `(CAST(...))[i]`, not `CAST(...)[i]`
_sent_ats = Grouping(sa.cast(sa.bindparam("sent_ats"), postgresql.ARRAY(sa.DateTime)))
_MARK_ALL = (
    sa.update(_t)
    .where(_t.c.id == sa.any_(_sent_ids))
    .values(status="sent", sent_at=_sent_ats[sa.func.array_position(_sent_ids, _t.c.id)])
)
_CLAIM_AND_MARK = statements.Prepared(_CLAIM.add_cte(_MARK_ALL.cte("marked")))
_MARK_ALL_PREPARED = statements.Prepared(_MARK_ALL)
_MARK_SENT = statements.Prepared(_UPDATE, keys=("status", "sent_at"))
_ORDER = (_t.c.priority, _t.c.due_at, _t.c.id)  # follow-ups first, then by due time
# The first `limit` ready emails, chosen on the small rows before their message
# bytes are joined: joined first, every call read every queued message (a
# 10,000-email backlog: 20 MB a call, a fifth of the sending time).
_READY_IDS = (
    sa.select(_t.c.id)
    .where(
        _t.c.rep == sa.bindparam("rep"),
        _t.c.status == "queued",
        _t.c.next_attempt_at <= sa.bindparam("now"),
    )
    .order_by(*_ORDER)
    .limit(sa.bindparam("limit"))
)
_READY = _ROWS.where(_t.c.id.in_(_READY_IDS)).order_by(*_ORDER)
_READY_PREPARED = statements.Prepared(_READY)
# A mailbox's pause and its rep's, each by primary key: one statement a drain.
# (Reading every rep's pause there, a drain's cost grew with the reps.)
_PAUSES = statements.Prepared(
    sa.select(
        sa.select(schema.mailboxes.c.paused_until)
        .where(schema.mailboxes.c.rep == sa.bindparam("rep"))
        .scalar_subquery()
        .label("mailbox"),
        sa.select(schema.reps.c.paused_until)
        .where(schema.reps.c.id == sa.bindparam("rep"))
        .scalar_subquery()
        .label("rep"),
    )
)
_INSTALL_ID = sa.select(schema.settings.c.value).where(schema.settings.c.key == "install_id")
_UNRECORDED_COLUMNS = (
    _t.c.id,
    _t.c.contact_id,
    _t.c.campaign,
    _t.c.step,
    _t.c.subject,
    _t.c.rep,
    _t.c.message_id,
    _t.c.sent_at,
)
# Instances on one PostgreSQL record apart: each its own rows, none twice.
_UNRECORDED = (
    sa.select(*_UNRECORDED_COLUMNS)
    .where(_t.c.status == "sent", _t.c.recorded_at.is_(None))
    .order_by(_t.c.id)
    .limit(sa.bindparam("limit"))
    .with_for_update(skip_locked=True)
)
# The sender's own, just marked sent: found by primary key. (With `status`
# in the condition SQLite's planner went through the status index instead.)
_UNRECORDED_OF = (
    sa.select(*_UNRECORDED_COLUMNS)
    .where(_t.c.id.in_(sa.bindparam("ids", expanding=True)), _t.c.recorded_at.is_(None))
    .order_by(_t.c.id)
    .with_for_update(skip_locked=True)
)
_DELIVERABLE = (
    sa.select(schema.contacts.c.status, schema.enrollments.c.status, schema.contacts.c.paused_until)
    .select_from(schema.contacts)
    .outerjoin(schema.enrollments, schema.enrollments.c.id == sa.bindparam("eid"))
    .where(schema.contacts.c.id == sa.bindparam("cid"))
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    id: int
    message_id: str
    enrollment_id: int | None
    contact_id: int | None  # None: an email to the rep
    campaign: str | None
    step: str | None
    occurrence: int
    rep: str
    recipient: str
    subject: str
    message: bytes
    status: str
    priority: int
    due_at: datetime
    not_after: datetime | None
    timezone: str
    send_window: str | None
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    sending_at: datetime | None
    claimed_by: str | None
    sent_at: datetime | None
    copied_at: datetime | None
    recorded_at: datetime | None
    variant: str | None = None
    wait: schema.Wait | None = None  # why it waits, if that is no problem
    planned_at: datetime | None = None  # NULL for rows queued before 0012: due_at
    holidays_of: str | None = None  # the contact's owner: whose holidays the window skips


def _row(record: sa.Row[Any]) -> Row:
    return _row_of(dict(record._mapping))


def _row_of(values: dict[str, Any]) -> Row:
    if values["wait"] is not None:
        values["wait"] = schema.Wait(values["wait"])
    return Row(**values)


_ROW_KEYS = tuple(_ROWS.selected_columns.keys())


def _rows(records: Sequence[Sequence[Any]]) -> list[Row]:
    """Rows of `_ROWS`' columns, in their order (SQLAlchemy's, or a driver's converted)."""
    return [_row_of(dict(zip(_ROW_KEYS, record, strict=True))) for record in records]


def insert_many(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    """Queue emails in one statement; one whose Message-ID is already queued is left out.

    The engine advances an enrollment and queues its email in one
    transaction, so a second row for the same Message-ID is not expected;
    ignoring it (rather than failing the whole batch) keeps a surprise from
    stopping every other contact's email.
    """
    bodies = [{"message_id": r["message_id"], "data": r["message"]} for r in rows]
    statements.bulk_insert(conn, _bodies, bodies, ignore_conflicts=True)
    heads = [{k: v for k, v in r.items() if k != "message"} for r in rows]
    statements.bulk_insert(conn, _t, heads, ignore_conflicts=True)


def thread_of(conn: sa.Connection, enrollment_id: int) -> list[tuple[str, str]]:
    """(Message-ID, subject) of the enrollment's earlier emails, oldest first."""
    query = (
        sa.select(_t.c.message_id, _t.c.subject)
        .where(_t.c.enrollment_id == enrollment_id, _t.c.status.in_(("queued", "sending", "sent")))
        .order_by(_t.c.id)
    )
    return [(mid, subject) for mid, subject in conn.execute(query)]


def ready(conn: sa.Connection, rep: str, now: datetime, limit: int) -> list[Row]:
    """Queued emails of a mailbox whose time has come: follow-ups first, then by due time."""
    return ready_query(rep, now, limit).run(conn)


def ready_query(rep: str, now: datetime, limit: int) -> statements.Query[list[Row]]:
    """`ready` as a Query, to run on a connection or on the event loop's (dripd.daemon.claims)."""
    params = {"rep": rep, "now": now, "limit": limit}
    return statements.Query(_READY_PREPARED, params, _rows)


def pauses_query(rep: str) -> statements.Query[tuple[datetime | None, datetime | None]]:
    """Until when the mailbox is paused, and its rep (a vacation): None where not."""
    return statements.Query(_PAUSES, {"rep": rep}, _pair)


def _pair(rows: Sequence[Sequence[Any]]) -> tuple[datetime | None, datetime | None]:
    ((mailbox, rep),) = rows
    return mailbox, rep


def next_queued(conn: sa.Connection) -> Row | None:
    """The queued email to a contact to be tried first (through the status index)."""
    query = (
        _ROWS.where(_t.c.status == "queued", _t.c.contact_id.is_not(None))
        .order_by(_t.c.next_attempt_at)
        .limit(1)
    )
    record = conn.execute(query).first()
    return _row(record) if record is not None else None


def outbox_backlog(conn: sa.Connection) -> int:
    """Emails waiting to be sent (queued, including those retried later)."""
    query = sa.select(sa.func.count()).select_from(_t).where(_t.c.status == "queued")
    return int(conn.execute(query).scalar_one())


_SENT_REF = sa.select(
    _t.c.message_id,
    _t.c.contact_id,
    _t.c.recipient,
    _t.c.rep,
    _t.c.enrollment_id,
    _t.c.campaign,
    _t.c.step,
).where(
    _t.c.message_id == sa.bindparam("mid"),
    _t.c.status.in_(("sending", "sent")),
    _t.c.contact_id.is_not(None),
)


def sent_to_contact(conn: sa.Connection, message_id: str) -> dict[str, Any] | None:
    """Who and what an email sent (or being sent) to a contact was, by its Message-ID."""
    row = conn.execute(_SENT_REF, {"mid": message_id}).first()
    return dict(row._mapping) if row else None


def first_sent_at(conn: sa.Connection, rep: str) -> datetime | None:
    """When the rep's first email went out: nothing older can answer one."""
    earliest = sa.func.min(_t.c.sent_at, type_=schema.UTCDateTime())
    value: datetime | None = conn.execute(sa.select(earliest).where(_t.c.rep == rep)).scalar()
    return value


def in_state(conn: sa.Connection, status: str) -> list[Row]:
    query = _ROWS.where(_t.c.status == status).order_by(_t.c.id)
    return [_row(r) for r in conn.execute(query)]


def orphaned(conn: sa.Connection, reps: Collection[str], mine: str | None = None) -> list[Row]:
    """Emails of `reps` left `sending` by an instance that is gone (killed, or its host lost).

    Those claimed by a live instance are in flight there and left alone,
    except those claimed by `mine`: this instance, whose sender for `reps`
    failed and is starting again (nothing of theirs is in flight).
    The mailboxes are picked here rather than in SQL: with `rep` in the
    condition SQLite went through every email of the rep (70 ms at 200,000)
    instead of the few in `sending`.
    """
    claimer_alive = (
        sa.exists()
        .where(schema.instances.c.id == _t.c.claimed_by, membership.alive_clause())
        .correlate(_t)
    )
    left = sa.or_(_t.c.claimed_by.is_(None), ~claimer_alive)
    if mine is not None:
        left = sa.or_(left, _t.c.claimed_by == mine)
    query = _ROWS.where(_t.c.status == "sending", left).order_by(_t.c.id)
    return [row for row in map(_row, conn.execute(query)) if row.rep in reps]


@dataclass(frozen=True, slots=True, kw_only=True)
class Recipient:
    """An email's contact and sequence as they are now: what plan.decide asks of them."""

    status: str  # the contact's
    stopped: bool  # its sequence was stopped (a reply, `stop`, a bounce); a completed one sends
    away_until: datetime | None  # the contact's out-of-office pause


def recipient(conn: sa.Connection, row: Row) -> Recipient | None:
    """Why a claim may have refused `row`, as facts; None for an email to the rep."""
    if row.contact_id is None:
        return None
    params = {"eid": row.enrollment_id, "cid": row.contact_id}
    status, enrollment_status, away_until = conn.execute(_DELIVERABLE, params).one()
    stopped = row.enrollment_id is not None and enrollment_status == "stopped"
    return Recipient(status=status, stopped=stopped, away_until=away_until)


def hold_contact(conn: sa.Connection, contact_id: int, until: datetime) -> int:
    """Put a contact's queued emails back until `until` (an out-of-office pause); how many."""
    query = (
        sa.update(_t)
        .where(
            _t.c.contact_id == contact_id,
            _t.c.status == "queued",
            _t.c.next_attempt_at < until,
        )
        .values(next_attempt_at=until, **_waiting(schema.Wait.AWAY))
    )
    return conn.execute(query).rowcount


def claim(
    conn: sa.Connection,
    row: Row,
    now: datetime,
    by: str | None = None,
    *,
    sent: Sequence[tuple[Row, datetime]] = (),
) -> bool:
    """Mark `row` as being sent by instance `by`; False if it was taken, or may no longer go.

    (`recipient` reads what may no longer go: the contact, its pause, its sequence.)
    `sent`: emails the server accepted, with when, marked sent first (`mark_sent`);
    on PostgreSQL in the same statement, so that on a connection in
    autocommit the whole is one round trip and one commit. Running it again
    with the same `by` and `now` after it was committed claims the row again
    and marks nothing more: the claim may be retried after a connection
    lost during its commit.
    """
    params = {"oid": row.id, "now": now, "by": by}
    if conn.dialect.name == "postgresql":
        return _CLAIM_AND_MARK.execute(conn, _claim_and_mark(conn.dialect, params, sent)) == 1
    for r, at in sent:
        mark_sent(conn, r, at)
    return _CLAIM_PREPARED.execute(conn, params) == 1


def _claim_and_mark(
    dialect: sa.Dialect, params: dict[str, Any], sent: Sequence[tuple[Row, datetime]]
) -> dict[str, Any]:
    to_utc = schema.UTCDateTime().process_bind_param
    params["sent_ids"] = [r.id for r, _ in sent]
    params["sent_ats"] = [to_utc(at, dialect) for _, at in sent]
    return params


def claim_statement(
    dialect: sa.Dialect,
    row: Row,
    now: datetime,
    by: str | None = None,
    *,
    sent: Sequence[tuple[Row, datetime]] = (),
) -> tuple[str, Any]:
    """PostgreSQL: `claim`'s one statement as the driver runs it (SQL and parameters).

    For a connection SQLAlchemy does not hold (dripd.daemon.claims, on the
    event loop); it changes one row when the claim is taken.
    """
    params = _claim_and_mark(dialect, {"oid": row.id, "now": now, "by": by}, sent)
    return _CLAIM_AND_MARK.driver_statement(dialect, params)


def mark_sent_statement(
    dialect: sa.Dialect, sent: Sequence[tuple[Row, datetime]]
) -> tuple[str, Any]:
    """PostgreSQL: `mark_sent` of each of `sent`, as one statement the driver runs.

    Setting `sent` again changes nothing: safe to run again after a lost connection.
    """
    return _MARK_ALL_PREPARED.driver_statement(dialect, _claim_and_mark(dialect, {}, sent))


def mark_sent(conn: sa.Connection, row: Row, now: datetime) -> None:
    """The server accepted it. The touch and the history event follow in `record_sent`."""
    _MARK_SENT.execute(conn, {"oid": row.id, "status": "sent", "sent_at": now})


def record_sent(
    conn: sa.Connection, now: datetime, limit: int = 1000, *, ids: Collection[int] | None = None
) -> int:
    """Write the history event and the touch of emails marked sent; how many.

    `ids`: only these, emails the caller marked sent (the sender's own);
    else any sent email not yet recorded, which on SQLite reads the state of
    every email ever sent (its planner, without statistics, takes the status
    index over ix_outbox_unrecorded: 44 ms at 200,000 sent, against 0.02 ms
    through the partial index), so that is for catching up after a crash
    (sent_copies.reconcile).

    Kept out of the per-email transaction so the one commit that matters for
    exactly-once (status = sent) is as short as possible; a crash in between
    only delays these records until the catching up.
    """
    if ids is None:
        rows = conn.execute(_UNRECORDED, {"limit": limit}).all()
    else:
        rows = conn.execute(_UNRECORDED_OF, {"ids": list(ids)}).all()
    if not rows:
        return 0
    to_contacts = [r for r in rows if r.contact_id is not None]
    events.add_events(
        conn,
        [
            {
                "contact_id": r.contact_id,
                "at": r.sent_at,
                "kind": "email_sent",
                "campaign": r.campaign,
                "step": r.step,
                "detail": f"sent: {r.subject}",
                "cause": f"from {r.rep}",
                "message_id": r.message_id,
            }
            for r in to_contacts
        ],
    )
    contacts.count_touches(conn, [(r.contact_id, r.sent_at) for r in to_contacts])
    conn.execute(sa.update(_t).where(_t.c.id.in_([r.id for r in rows])).values(recorded_at=now))
    return len(rows)


def retry_later(conn: sa.Connection, row: Row, now: datetime, error: str) -> datetime:
    """Count a failed try and put `row` back after an exponential, jittered delay.

    Only temporary failures of the email itself count; a rest of the mailbox
    (unreachable, refused login, quota), a closed window or a crash puts it
    back through `requeue` without using up its tries.
    """
    tries = row.attempts + 1
    delay = min(RETRY_BASE * 2 ** (tries - 1), RETRY_MAX) * random.uniform(0.5, 1.5)
    when = now + timedelta(seconds=delay)
    conn.execute(
        sa.update(_t)
        .where(_t.c.id == row.id)
        .values(
            status="queued", attempts=tries, next_attempt_at=when, last_error=error[:500], wait=None
        )
    )
    return when


def requeue(conn: sa.Connection, row: Row, when: datetime, reason: str | None = None) -> None:
    """Back to the queue without counting a try (a mailbox problem, a crash).

    `reason` replaces the last error (and so any wait); None keeps both.
    """
    values: dict[str, Any] = {"status": "queued", "next_attempt_at": when}
    if reason is not None:
        values.update(last_error=reason, wait=None)
    conn.execute(sa.update(_t).where(_t.c.id == row.id).values(**values))


def wait_for_window(conn: sa.Connection, row: Row, opens: datetime) -> None:
    """Back to the queue until its sending window opens (no try counted, not stuck)."""
    _postpone(conn, row, opens, schema.Wait.WINDOW)


def wait_for_contact(conn: sa.Connection, row: Row, until: datetime) -> None:
    """Back to the queue until the contact is back from out of office (not stuck)."""
    _postpone(conn, row, until, schema.Wait.AWAY)


def _postpone(conn: sa.Connection, row: Row, until: datetime, wait: schema.Wait) -> None:
    values = {"status": "queued", "next_attempt_at": until, **_waiting(wait)}
    conn.execute(sa.update(_t).where(_t.c.id == row.id).values(**values))


def _waiting(wait: schema.Wait) -> dict[str, str]:
    """The columns of a wait: its value, and its text for people."""
    return {"wait": wait, "last_error": WAIT_TEXT[wait]}


def give_up(
    conn: sa.Connection, row: Row, now: datetime, *, status: str, kind: str, reason: str
) -> None:
    """End `row` for good (failed or skipped) and say so in the contact's history."""
    conn.execute(
        sa.update(_t)
        .where(_t.c.id == row.id)
        .values(status=status, last_error=reason[:500], wait=None)
    )
    if row.contact_id is None:
        return
    events.add_event(
        conn,
        contact_id=row.contact_id,
        at=now,
        kind=kind,
        campaign=row.campaign,
        step=row.step,
        detail=f"{row.subject}: {reason}",
        cause=reason[:200],
        message_id=row.message_id,
    )


def sent_since(conn: sa.Connection, rep: str, since: datetime) -> list[datetime]:
    """When each email of the mailbox went out since `since` (sent or being sent).

    Two index ranges: the mailbox's sent emails by `sent_at`, and the few in
    `sending` (one condition on both read every email of the mailbox).
    """
    sent = sa.select(_t.c.sent_at).where(_t.c.rep == rep, _t.c.sent_at >= since)
    sending = sa.select(_t.c.rep, _t.c.sending_at).where(
        _t.c.status == "sending", _t.c.sending_at >= since
    )
    times: list[datetime] = list(conn.execute(sent).scalars())
    times += [at for who, at in conn.execute(sending) if who == rep]
    return sorted(times)


def uncopied(conn: sa.Connection, rep: str, limit: int) -> list[Row]:
    query = (
        _ROWS.where(_t.c.rep == rep, _t.c.status == "sent", _t.c.copied_at.is_(None))
        .order_by(_t.c.id)
        .limit(limit)
    )
    return [_row(r) for r in conn.execute(query)]


def reps_uncopied(conn: sa.Connection) -> set[str]:
    """The mailboxes with sent emails not yet copied to their Sent folders (one read for all)."""
    query = (
        sa.select(_t.c.rep)
        .where(_t.c.status == "sent", _t.c.copied_at.is_(None))
        .group_by(_t.c.rep)
    )
    return set(conn.execute(query).scalars())


def next_attempts(conn: sa.Connection, until: datetime) -> dict[str, datetime]:
    """Each mailbox's first queued email to be tried by `until`, when: one read for all of them.

    From the status index (the range of queued emails due by then), so a
    daemon's look at a thousand idle mailboxes is one small query.
    """
    query = (
        sa.select(_t.c.rep, sa.func.min(_t.c.next_attempt_at))
        .where(_t.c.status == "queued", _t.c.next_attempt_at <= until)
        .group_by(_t.c.rep)
    )
    return {rep: at for rep, at in conn.execute(query)}


def mark_copied(conn: sa.Connection, ids: list[int], now: datetime) -> None:
    if ids:
        conn.execute(sa.update(_t).where(_t.c.id.in_(ids)).values(copied_at=now))


def mailbox_pause(conn: sa.Connection, rep: str) -> tuple[datetime | None, str | None]:
    table = schema.mailboxes
    row = conn.execute(
        sa.select(table.c.paused_until, table.c.reason).where(table.c.rep == rep)
    ).first()
    return (row[0], row[1]) if row else (None, None)


def pause_mailbox(
    conn: sa.Connection, rep: str, until: datetime, reason: str, now: datetime
) -> None:
    table = schema.mailboxes
    values = {"paused_until": until, "reason": reason[:500], "updated_at": now}
    updated = conn.execute(sa.update(table).where(table.c.rep == rep).values(**values))
    if updated.rowcount == 0:
        conn.execute(sa.insert(table).values(rep=rep, **values))


def install_id(conn: sa.Connection) -> str:
    return str(conn.execute(_INSTALL_ID).scalar_one())


@dataclass(frozen=True, slots=True, kw_only=True)
class Stuck:
    count: int
    since: datetime  # the earliest due time among them
    error: str  # the latest


def stuck(conn: sa.Connection, now: datetime) -> dict[str, Stuck]:
    """Per rep: emails due for over STUCK and put back with an error (not a Wait).

    What `status` says of a mailbox the daemon cannot reach (its rests are in
    its memory). Read through the status index (the queue, not the history:
    by rep, SQLite's planner took (rep, sent_at)); filtered here.
    """
    query = sa.select(_t.c.rep, _t.c.due_at, _t.c.next_attempt_at, _t.c.last_error).where(
        _t.c.status == "queued", _t.c.last_error.is_not(None), _t.c.wait.is_(None)
    )
    found: dict[str, list[tuple[datetime, datetime, str]]] = {}
    for rep, due_at, next_at, error in conn.execute(query):
        if due_at <= now - STUCK:
            found.setdefault(rep, []).append((due_at, next_at, error))
    return {
        rep: Stuck(
            count=len(rows),
            since=min(due for due, _, _ in rows),
            error=max(rows, key=lambda r: r[1])[2],
        )
        for rep, rows in found.items()
    }


def uncopied_count(conn: sa.Connection, rep: str, sent_before: datetime) -> int:
    """Emails of `rep` sent before `sent_before` and still not in its Sent folder.

    Read through ix_outbox_uncopied (the few not yet copied); with `sent_at`
    in the SQL, SQLite's planner took (rep, sent_at) and read the history.
    """
    query = sa.select(_t.c.sent_at).where(
        _t.c.rep == rep, _t.c.status == "sent", _t.c.copied_at.is_(None)
    )
    return sum(1 for (at,) in conn.execute(query) if at is not None and at <= sent_before)


def mailbox_stats(conn: sa.Connection) -> dict[str, dict[str, Any]]:
    """Per sending rep: emails by status and the last one sent."""
    query = sa.select(_t.c.rep, _t.c.status, sa.func.count(), sa.func.max(_t.c.sent_at)).group_by(
        _t.c.rep, _t.c.status
    )
    decode = schema.UTCDateTime().process_result_value
    stats: dict[str, dict[str, Any]] = {}
    for rep, status, count, last in conn.execute(query):
        entry = stats.setdefault(rep, {"last_sent_at": None})
        entry[status] = count
        if status == "sent" and last is not None:
            entry["last_sent_at"] = decode(last, conn.dialect)
    return stats


# -- what `dripd status` reports of the outbox ------------------------------------------


def last_sent_at(conn: sa.Connection) -> datetime | None:
    decode = schema.UTCDateTime().process_result_value
    value = conn.execute(sa.select(sa.func.max(_t.c.sent_at))).scalar()
    return decode(value, conn.dialect)


def queued_counts(conn: sa.Connection, now: datetime) -> tuple[int, int]:
    """Emails queued, and of them those ready to go now."""
    return _count(conn, _t.c.status == "queued"), _count(
        conn, _t.c.status == "queued", _t.c.next_attempt_at <= now
    )


def failed_emails(conn: sa.Connection) -> list[Any]:
    """The emails that failed for good (recipient, subject, last_error), newest first."""
    query = (
        sa.select(_t.c.recipient, _t.c.subject, _t.c.last_error)
        .where(_t.c.status == "failed")
        .order_by(_t.c.id.desc())
    )
    return list(conn.execute(query).all())


def _count(conn: sa.Connection, *where: sa.ColumnElement[bool]) -> int:
    query = sa.select(sa.func.count()).select_from(_t).where(*where)
    return int(conn.execute(query).scalar_one())
