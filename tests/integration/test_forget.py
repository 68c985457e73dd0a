"""`dripd contacts forget` after a real exchange (aiosmtpd, Dovecot): no trace is left."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import servers.imap
import sqlalchemy as sa
from test_inbox import reply, sent_ids
from worlds import World

from dripd import errors
from dripd.pipeline import importer, lifecycle
from dripd.plan import contacts
from dripd.store import contacts as store_contacts
from dripd.store import forget, schema

ANN = "Ann.Lee@Northwind.example"  # erased; written with capitals on purpose


def _traces(world: World, address: str) -> list[str]:
    """Every place in the database where `address` still appears, any case."""
    needle = address.lower()
    found = []
    with world.app.engine.connect() as conn:
        for table in schema.metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                for name, value in row._mapping.items():
                    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
                    if isinstance(text, str) and needle in text.lower():
                        found.append(f"{table.name}.{name}")
    return found


def test_forget_leaves_no_trace_of_the_address_and_refuses_it_later(
    make_world, dovecot: servers.imap.Dovecot, imap_user: servers.imap.ImapAccount, tmp_path: Path
) -> None:
    world = make_world(imap=imap_user, dovecot=dovecot)
    world.add(ANN, first_name="Ann", company="Northwind")
    world.add("bob@contoso.example", first_name="Bob", company="Contoso", referred_by=ANN)
    assert world.run().sent == 2
    (hello,) = sent_ids(world, ANN)
    dovecot.deliver(imap_user.address, reply(ANN, hello, "Yes, call me.", msgid="<a1@x>"))
    world.clock.advance(timedelta(days=1))  # the next morning's digest lists her reply
    summary = world.run()
    assert summary.inbox == 1 and summary.to_rep >= 1
    assert _traces(world, ANN)  # she is everywhere: contact, history, outbox, digest, inbox

    with world.app.engine.begin() as conn:
        erased = forget.erase(conn, ANN, world.clock.now())
    assert erased.contact and erased.rows > 0
    assert _traces(world, ANN) == []
    with world.app.engine.connect() as conn:
        bob = store_contacts.contact_by_email(conn, "bob@contoso.example")
        assert bob is not None and bob.referred_by is None  # Bob stays, without her

    # She cannot come back by an import, `contacts set` or a referral.
    csv = tmp_path / "again.csv"
    csv.write_text(f"email,first_name\n{ANN.upper()},Ann\nnew@example.org,New\n", encoding="utf-8")
    report = importer.import_csv(world.app, csv)
    assert report.created == 1
    assert report.problems == [f"line 2: {ANN.lower()} asked to be forgotten: not imported"]
    values = contacts.validate({"email": ANN}, world.app.contact_rules())
    with world.app.engine.begin() as conn, pytest.raises(errors.ContactError, match="forgotten"):
        lifecycle.create_contact(world.app, conn, ANN, values, world.clock.now(), cause="test")
    assert _traces(world, ANN) == []
