"""`schedule --json`'s items spliced from shared parts are the items' own encoding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from dripd.pipeline import reports
from dripd.store import listing

texts = st.text()  # quotes, backslashes, controls, non-ASCII, surrogates
instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


@given(
    at=instants,
    zone=offsets,
    email=texts,
    name=texts,
    campaign=texts,
    step=texts,
    kind=texts,
    occurrence=st.integers(min_value=1, max_value=10**6),
    note=texts,
)
def test_spliced_json_is_the_encoded_item(
    at: datetime,
    zone: timezone,
    email: str,
    name: str,
    campaign: str,
    step: str,
    kind: str,
    occurrence: int,
    note: str,
) -> None:
    local = at.astimezone(zone)
    head, tail = reports._json_parts((at, local, step, kind, occurrence, note), campaign)
    spliced = f"{head}{reports._contact_json(email, name)}{tail}"
    item = reports.Scheduled(
        at=at, local=local, email=email, name=name, campaign=campaign,
        step=step, kind=kind, occurrence=occurrence, note=note,
    )  # fmt: skip
    assert spliced == listing.encode(item.to_json())
