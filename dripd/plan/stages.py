"""The types of contact in their order, and contact statuses."""

from __future__ import annotations

STAGES = ("suspect", "prospect", "lead", "customer")
STATUSES = ("active", "unsubscribed", "bounced")


def rank(stage: str) -> int:
    """The position of `stage` in the pipeline; raises ValueError for an unknown stage."""
    try:
        return STAGES.index(stage)
    except ValueError:
        raise ValueError(f"unknown stage {stage!r} (stages: {', '.join(STAGES)})") from None


def forward(current: str, target: str) -> str:
    """The stage after an automatic promotion: never moves a contact backwards."""
    return target if rank(target) > rank(current) else current


def check(stage: str) -> str:
    rank(stage)
    return stage
