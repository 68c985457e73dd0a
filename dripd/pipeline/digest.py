"""The rep's digest: what goes in it, when it is due, and queueing it, once per slot.

Each rep has weekly slots (`digest = "mon-fri 07:30"`, in the rep's zone).
A slot is handled by writing its `digests` row; the row's unique (rep,
slot) makes that happen once, whatever restarts or other instances do. The
email itself goes through the outbox like every other, so it inherits the
outbox's exactly-once sending, retries and rate limits. A slot missed
while dripd was down is still served within `GRACE`; older ones are let go
(the next digest carries everything still open). Nothing is sent when there
is nothing to say.

The digest numbers its tasks, and the row keeps the task ids in that
order: a reply's `done 3` means the third task of the digest it answers.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta

import sqlalchemy as sa

from dripd.files import config
from dripd.mail import mime
from dripd.pipeline import compose, digest_render
from dripd.pipeline.app import App
from dripd.plan import windows
from dripd.store import contacts, digests, outbox, tasks
from dripd.store import reps as store_reps

logger = logging.getLogger("dripd.digest")

GRACE = timedelta(hours=12)  # a slot missed by less than this is still served
CATCH_UP = timedelta(minutes=10)  # how long a slot waits for the engine to catch up
AHEAD_DAYS = 7
FIRST_SINCE = timedelta(days=1)  # the first digest's news reach back this far
FEW_TOUCHES = 5  # seed: 80% of sales come after the fifth contact
MAX_LISTED = 50  # per section: a digest is read, not scrolled
NEWS_KINDS = {
    "replied": "reply",
    "bounced": "bounce",
    "delivery_blocked": "blocked",
    "unsubscribed": "unsubscribe",
    "complaint": "complaint",
    "send_failed": "failed",
    "colleague_replied": "colleague",
    "meeting": "meeting",
    "someone_answered": "someone",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Digest:
    """A digest gathered for a rep at a moment: its content and the task ids by number."""

    content: digest_render.Content
    task_ids: tuple[int, ...]
    newly_stuck: bool

    @property
    def says_something(self) -> bool:
        """Tasks due, news, or someone newly stuck: the week ahead alone is no reason to write."""
        return bool(self.content.due or self.content.news or self.newly_stuck)


# -- when ------------------------------------------------------------------------


def slots_of(rep: config.RepConfig) -> windows.Slots:
    return windows.parse_slots(rep.digest)


def due_slot(app: App, rep: config.RepConfig, now: datetime) -> datetime | None:
    """The latest slot of `rep` at or before `now`, if it is less than GRACE old."""
    tz = app.config.rep_timezone(rep.id)
    latest = None
    slot = windows.next_slot(now - GRACE, slots_of(rep), tz)
    while slot <= now:
        latest = slot
        slot = windows.next_slot(slot, slots_of(rep), tz)
    return latest


def next_slot(app: App, now: datetime) -> datetime | None:
    """The next digest slot of any rep that can be sent one (for the daemon's sleep)."""
    upcoming = [
        windows.next_slot(now, slots_of(rep), app.config.rep_timezone(rep.id))
        for rep in _mailed_reps(app)
    ]
    return min(upcoming, default=None)


def _mailed_reps(app: App) -> Iterator[config.RepConfig]:
    """Reps dripd can send a digest to: those with a mailbox to send from."""
    return (rep for rep in app.config.reps if rep.smtp is not None)


# -- queueing ------------------------------------------------------------------------


def _engine_behind(app: App, conn: sa.Connection, rep_id: str, now: datetime) -> bool:
    """Whether steps of the rep's contacts due by `now` are not yet done.

    The daemon runs the engine before the digest, so this is the case only
    while another instance's engine has them in hand (or is behind): the
    calls and cards due this morning are not tasks yet, and a digest made
    now would leave them out (and its slot would be used up).
    """
    return digests.steps_due(conn, rep_id, _unowned(app, rep_id), now)


def queue_due(app: App, now: datetime, reps: Collection[str] | None = None) -> int:
    """Handle every rep's (or `reps`') due, unhandled slot; how many digests were queued.

    With several instances, each handles the reps whose mailbox it holds;
    the unique (rep, slot) row stays the guarantee.
    """
    queued = 0
    for rep in _mailed_reps(app):
        if reps is not None and rep.id not in reps:
            continue
        slot = due_slot(app, rep, now)
        if slot is None:
            continue
        try:
            with app.engine.begin() as conn:
                queued += _handle_slot(app, conn, rep, slot, now)
        except sa.exc.IntegrityError:
            continue  # another instance handled this slot first
    return queued


def _handle_slot(
    app: App, conn: sa.Connection, rep: config.RepConfig, slot: datetime, now: datetime
) -> int:
    if digests.handled(conn, rep.id, slot):
        return 0
    if now < slot + CATCH_UP and _engine_behind(app, conn, rep.id, now):
        return 0  # the steps due by now first (the next pass comes back)
    vacation = store_reps.rep_pauses(conn).get(rep.id)
    if vacation is not None and vacation > now:
        return 0  # on return, the next slot's digest holds everything still open
    digest = gather(app, conn, rep, now)
    message_id = rep_message_id(conn, rep, "digest") if digest.says_something else None
    digests.add(
        conn, rep=rep.id, slot=slot, message_id=message_id, task_ids=digest.task_ids, now=now
    )
    if message_id is None:
        logger.info("nothing for the digest", extra={"action": "digest_empty", "rep": rep.id})
        return 0
    _queue(app, conn, rep, digest, message_id, slot, now)
    logger.info(
        "digest queued",
        extra={"action": "digest_queued", "rep": rep.id, "message_id": message_id},
    )
    return 1


def rep_message_id(conn: sa.Connection, rep: config.RepConfig, kind: str) -> str:
    """A new Message-ID for an email to the rep; unguessable (commands answer digests only)."""
    token = secrets.token_hex(16)
    install = outbox.install_id(conn)
    return f"<dripd.{install}.{kind}.{rep.id}.{token}@{mime.domain_of(rep.email)}>"


def _queue(
    app: App,
    conn: sa.Connection,
    rep: config.RepConfig,
    digest: Digest,
    message_id: str,
    slot: datetime,
    now: datetime,
) -> None:
    rendered = digest_render.render(digest.content)
    events = digest_render.call_events(digest.content, domain=mime.domain_of(rep.email))
    email = compose.Email(
        sender=rep,
        to=rep.email,
        to_name=rep.name,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        attachments=tuple(events),
    )
    built = mime.build(email, msgid=message_id, date=now, automatic=True)
    queue_to_rep(app, conn, rep, built, step="digest", due_at=slot, now=now, not_after=slot + GRACE)


def queue_to_rep(
    app: App,
    conn: sa.Connection,
    rep: config.RepConfig,
    built: mime.Built,
    *,
    step: str,
    due_at: datetime,
    now: datetime,
    not_after: datetime | None = None,
) -> None:
    """Put an email to the rep (a digest, a confirmation) in the outbox, ahead of the rest."""
    outbox.insert_many(
        conn,
        [
            {
                "message_id": built["Message-ID"],
                "message": built.data,
                "enrollment_id": None,
                "contact_id": None,
                "campaign": None,
                "step": step,
                "occurrence": 1,
                "rep": rep.id,
                "recipient": rep.email,
                "subject": built["Subject"],
                "status": "queued",
                "priority": 0,
                "due_at": due_at,
                "not_after": not_after,
                "timezone": app.config.rep_timezone(rep.id).key,
                "send_window": None,
                "next_attempt_at": now,
                "created_at": now,
            }
        ],
    )


# -- what goes in -------------------------------------------------------------------


def gather(app: App, conn: sa.Connection, rep: config.RepConfig, now: datetime) -> Digest:
    """What `rep`'s digest says at `now` (read-only)."""
    tz = app.config.rep_timezone(rep.id)
    today_ends = datetime.combine(now.astimezone(tz).date() + timedelta(days=1), time(), tz)
    ahead_ends = today_ends + timedelta(days=AHEAD_DAYS)
    rows = digests.open_tasks(conn, rep.id, _unowned(app, rep.id), ahead_ends, 2 * MAX_LISTED)
    people = contacts.contacts_by_ids(conn, {row.contact_id for row in rows})
    due_rows = [r for r in rows if r.due_at < today_ends]
    ahead_rows = [r for r in rows if r.due_at >= today_ends]
    items = [
        _task_item(number, row, people[row.contact_id], now)
        for number, row in enumerate(due_rows + ahead_rows, start=1)
    ]
    since = digests.covered_until(conn, rep.id) or now - FIRST_SINCE
    stuck, newly_stuck = _stuck(app, conn, rep.id, since)
    content = digest_render.Content(
        rep=rep,
        now=now,
        tz=tz,
        due=tuple(items[: len(due_rows)]),
        ahead=tuple(items[len(due_rows) :]),
        news=(*_sign_in_lost(conn, rep), *_news(app, conn, rep.id, since)),
        stuck=tuple(stuck),
    )
    return Digest(
        content=content,
        task_ids=tuple(item.task_id for item in items),
        newly_stuck=newly_stuck,
    )


def _sign_in_lost(conn: sa.Connection, rep: config.RepConfig) -> list[digest_render.NewsItem]:
    """The rep's OAuth2 sign-in stopped working: said in every digest until it is renewed.

    A digest waits in the rep's own mailbox like their other emails: when the
    inbox's sign-in is the one lost it goes out at once; when sending's is,
    it goes out (with this) as soon as the rep has signed in again.
    """
    from dripd.store import oauth_tokens

    if rep.oauth2 is None:
        return []
    stored = oauth_tokens.read(conn, rep.id)
    if stored is None or stored.lost_at is None:
        return []
    why = f" ({stored.lost_reason})" if stored.lost_reason else ""
    summary = (
        f"dripd can no longer sign in to your mailbox{why}. Run `dripd auth {rep.id}` "
        "on the server to sign in again: until then your emails wait; nothing is lost."
    )
    return [
        digest_render.NewsItem(
            kind="signin", at=stored.lost_at, contact_name="", email=rep.email, summary=summary
        )
    ]


def _unowned(app: App, rep_id: str) -> bool:
    """Whether contacts and tasks with no owner are `rep_id`'s: the first rep's."""
    return bool(app.config.reps) and app.config.reps[0].id == rep_id


def _task_item(
    number: int, row: tasks.Task, contact: contacts.Contact, now: datetime
) -> digest_render.TaskItem:
    return digest_render.TaskItem(
        number=number,
        task_id=row.id,
        kind=row.kind,
        due_at=row.due_at,
        overdue=row.due_at < now,
        contact_name=contact.name,
        email=contact.email,
        company=contact.company,
        phone=contact.phone,
        note=row.note,
        touches=contact.touches,
        campaign=row.campaign,
        step=row.step,
    )


def _news(
    app: App, conn: sa.Connection, rep_id: str, since: datetime
) -> list[digest_render.NewsItem]:
    rows = digests.news(
        conn, rep_id, _unowned(app, rep_id), since=since, kinds=NEWS_KINDS, limit=MAX_LISTED
    )
    return [
        digest_render.NewsItem(
            kind=NEWS_KINDS[row.kind],
            at=row.at,
            contact_name=f"{row.first_name} {row.last_name}".strip(),
            email=row.email,
            summary=_summary(row.kind, row.detail),
        )
        for row in rows
    ]


def _summary(kind: str, detail: str) -> str:
    if kind in {"send_failed", "bounced", "delivery_blocked"}:
        return detail.removeprefix("sent: ")
    return detail


def _stuck(
    app: App, conn: sa.Connection, rep_id: str, since: datetime
) -> tuple[list[digest_render.StuckItem], bool]:
    """Contacts whose follow-up stopped short of five touches, with no reply.

    Also whether one of them stopped since `since` (that alone is news).
    """
    rows = digests.stuck_contacts(
        conn, rep_id, _unowned(app, rep_id), few=FEW_TOUCHES, limit=MAX_LISTED
    )
    items = [
        digest_render.StuckItem(
            contact_name=f"{row['first_name']} {row['last_name']}".strip(),
            email=row["email"],
            company=row["company"],
            touches=row["touches"],
            last_touch_at=row["last_touch_at"],
            stage=row["stage"],
        )
        for row in rows
    ]
    return items, any(row["ended_at"] is not None and row["ended_at"] > since for row in rows)
