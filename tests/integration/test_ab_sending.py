"""A/B variants through aiosmtpd and Dovecot: who got which version, and which works."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import servers.imap
import userfiles
from test_inbox import reply
from worlds import World

from dripd.pipeline import app as app_mod
from dripd.pipeline import reports

VARIANTS = [
    {"id": "short", "subject": "Quick one, {{ contact.first_name }}", "body": "Short and sweet."},
    {"id": "long", "body": "A longer hello, with {{ contact.company }} in it.", "weight": 2},
]


def _ab(variants: list[dict[str, object]]) -> str:
    hello = userfiles.email_step(
        "hello", subject="Hello {{ contact.first_name }}", variants=variants
    )
    return userfiles.campaign("AB", hello, promote_on_reply="lead")


AB = _ab(VARIANTS)


def _versions(world: World) -> dict[str, dict[str, int]]:
    with world.app.reader.connect() as conn:
        (step,) = reports.status(world.app, conn).variants
    return {v["variant"]: v for v in step.to_json()["versions"]}


def test_each_contact_gets_one_version_and_status_counts_replies_per_version(
    make_world, dovecot: servers.imap.Dovecot, imap_user: servers.imap.ImapAccount
) -> None:
    world = make_world(imap=imap_user, dovecot=dovecot, campaigns={"ab": AB})
    people = [f"p{n}@firm{n}.example" for n in range(60)]
    for address in people:
        world.add(address, campaign="ab", first_name=address[:3].title(), company="Firm")
    assert world.run().sent == 60
    rows = {r.recipient: r for r in world.rows()}
    got = Counter(r.variant for r in rows.values())
    assert set(got) == {"short", "long"} and sum(got.values()) == 60
    for message in world.smtp.messages():  # the email each got is its version's
        (to,) = message.rcpt_tos
        subject = str(message.message["Subject"])
        assert subject.startswith("Quick one" if rows[to].variant == "short" else "Hello")

    repliers = people[:9]
    for address in repliers:
        dovecot.deliver(
            imap_user.address,
            reply(address, rows[address].message_id, "Sounds good.", msgid=f"<r.{address}>"),
        )
    world.clock.advance(timedelta(minutes=5))
    assert world.run().inbox == 9
    versions = _versions(world)
    assert {v: versions[v]["sent"] for v in versions} == dict(got)
    expected = Counter(rows[a].variant for a in repliers)
    assert {v: versions[v]["replied"] for v in versions} == {
        v: expected.get(v, 0) for v in versions
    }

    # A version removed from the file keeps its history in status.
    (world.app.config.campaigns_dir / "ab.toml").write_text(_ab(VARIANTS[:1]), encoding="utf-8")
    world.app = app_mod.reloaded(world.app)
    assert _versions(world)["long"]["sent"] == got["long"]
