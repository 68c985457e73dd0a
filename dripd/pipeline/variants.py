"""A/B variants in `dripd status`: sent, replied and reply rate per version, and whether it tells.

A reply counts for the version of the step it answered (the contact's email
of that campaign step). With the few hundred emails a rep sends, most
differences are noise: each step gets an honest note from a two-proportion
z-test between its two best versions (the exact formula, a few lines).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from dripd.store import events

SIGNIFICANT = 0.05  # p-value below which a difference is called one
FEWEST = 20  # sent per version below which nothing is concluded at all


@dataclass(frozen=True, slots=True, kw_only=True)
class Version:
    variant: str
    sent: int
    replied: int

    @property
    def reply_rate(self) -> float | None:
        return self.replied / self.sent if self.sent else None


@dataclass(frozen=True, slots=True, kw_only=True)
class StepVariants:
    campaign: str
    step: str
    versions: tuple[Version, ...]

    @property
    def note(self) -> str:
        return compare(self.versions)

    def to_json(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "step": self.step,
            "note": self.note,
            "versions": [
                {
                    "variant": v.variant,
                    "sent": v.sent,
                    "replied": v.replied,
                    "reply_rate": v.reply_rate,
                }
                for v in self.versions
            ],
        }


def stats(conn: sa.Connection) -> list[StepVariants]:
    """Every campaign step that has sent more than one version, with its counts."""
    sent, replied = events.variant_counts(conn)
    steps: dict[tuple[str, str], list[Version]] = {}
    for (campaign, step, variant), count in sent.items():
        answers = replied.get((campaign, step, variant), 0)
        version = Version(variant=variant, sent=count, replied=answers)
        steps.setdefault((campaign, step), []).append(version)
    return [
        StepVariants(campaign=c, step=s, versions=tuple(sorted(v, key=lambda x: x.variant)))
        for (c, s), v in sorted(steps.items())
    ]


def compare(versions: Sequence[Version]) -> str:
    """What the numbers say, honestly: a leader only when the difference is unlikely noise."""
    if len(versions) < 2:
        return "one version sent so far"
    ranked = sorted(versions, key=lambda v: v.reply_rate or 0.0, reverse=True)
    best, second = ranked[0], ranked[1]
    if min(v.sent for v in versions) < FEWEST:
        return f"too few to tell (fewer than {FEWEST} sent of a version)"
    p = two_proportion_p(best.replied, best.sent, second.replied, second.sent)
    if p >= SIGNIFICANT:
        return f"no clear difference yet (p = {p:.2f})"
    return f"{best.variant!r} leads (p = {p:.3f})"


def two_proportion_p(r1: int, n1: int, r2: int, n2: int) -> float:
    """Two-sided p-value of the z-test that two reply rates are the same."""
    pooled = (r1 + r2) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if spread == 0:
        return 1.0
    z = (r1 / n1 - r2 / n2) / spread
    return math.erfc(abs(z) / math.sqrt(2))
