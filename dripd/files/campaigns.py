"""Campaign files: one TOML file per milestone, validated into immutable campaigns.

A campaign file that does not validate never half-loads: `load_all` returns
every problem as one line naming the file and the step, and the caller keeps
whatever version it had before.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pydantic

from dripd import errors
from dripd.files import tomlfile, validation
from dripd.plan import dates, durations, schedule, stages, templates
from dripd.plan import windows as windows_mod

StepKind = Literal["email", "call", "card", "task"]
TASK_KINDS = frozenset({"call", "card", "task"})
_TIMING_KEYS = ("wait", "before", "after", "every", "yearly")


class _Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class VariantModel(_Model):
    """One version of an email step (A/B testing): the step's content keys, any of them."""

    id: str = pydantic.Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)
    weight: float = pydantic.Field(default=1.0, gt=0)
    subject: str | None = None
    template: str | None = None
    body: str | None = None
    attach: list[str] | None = None


class StepModel(_Model):
    id: str = pydantic.Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)
    kind: StepKind
    wait: str | None = None
    before: str | None = None
    after: str | None = None
    anchor: str | None = None
    every: str | None = None
    count: int | None = pydantic.Field(default=None, ge=1)
    yearly: str | None = None
    subject: str | None = None
    template: str | None = None
    body: str | None = None
    note: str | None = None
    attach: list[str] = []
    sender: str | None = pydantic.Field(default=None, alias="from")
    wait_for_task: bool = False
    variants: list[VariantModel] = []


class CampaignModel(_Model):
    name: str
    description: str = ""
    stage: str | None = None
    on_reply: Literal["stop", "continue"] = "stop"
    # a reply in the thread from someone else at the contact's company: stop, or tell the rep
    colleague_replies: Literal["stop", "note"] = "stop"
    # the contact's date field a meeting they book or accept by calendar email sets
    meeting_field: str = pydantic.Field(default="appointment_at", pattern=r"^[a-z_][a-z0-9_]*$")
    promote_on_reply: str | None = None
    next: str | None = None
    send_window: str | None = None
    thread: bool = False
    starts_when: str | None = None
    exclusive: bool = True
    steps: list[StepModel] = pydantic.Field(min_length=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class Variant:
    """A version of an email step, its content complete (the step's where it sets none)."""

    id: str
    weight: float
    subject: str | None
    template: str | None
    body: str | None
    attach: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One step of a campaign, with its timing parsed."""

    id: str
    kind: StepKind
    timing: schedule.Timing
    subject: str | None = None
    template: str | None = None
    body: str | None = None
    note: str | None = None
    attach: tuple[str, ...] = ()
    sender: str | None = None
    wait_for_task: bool = False
    variants: tuple[Variant, ...] = ()  # A/B versions of an email step: see `version_for`

    @property
    def is_email(self) -> bool:
        return self.kind == "email"

    @property
    def date_field(self) -> str | None:
        """The contact's date field this step is timed by (an anchor, a yearly field), if any."""
        field = getattr(self.timing, "anchor", None) or getattr(self.timing, "field", None)
        return field if isinstance(field, str) else None

    @property
    def plan(self) -> schedule.StepPlan:
        return schedule.StepPlan(
            id=self.id,
            timing=self.timing,
            windowed=self.is_email,
            wait_for_task=self.wait_for_task,
            is_task=self.kind in TASK_KINDS,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Campaign:
    """A validated campaign file."""

    id: str
    path: Path
    name: str
    description: str
    stage: str | None
    on_reply: Literal["stop", "continue"]
    colleague_replies: Literal["stop", "note"]
    meeting_field: str
    promote_on_reply: str | None
    next: str | None
    send_window: windows_mod.Window | None
    thread: bool
    starts_when: str | None
    exclusive: bool
    steps: tuple[Step, ...]
    plans: tuple[schedule.StepPlan, ...]
    version: str

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        known = ", ".join(s.id for s in self.steps)
        raise errors.CampaignError(f"campaign {self.id!r} has no step {step_id!r} (steps: {known})")

    @property
    def starts_at_stage(self) -> str | None:
        """The stage whose reaching enrolls a contact automatically (`starts_when`)."""
        return self.starts_when.split(":", 1)[1] if self.starts_when else None


@dataclass(frozen=True, slots=True, kw_only=True)
class Catalog:
    """Every loaded campaign by id, and the problems found while loading."""

    campaigns: Mapping[str, Campaign] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    def get(self, campaign_id: str) -> Campaign:
        try:
            return self.campaigns[campaign_id]
        except KeyError:
            known = ", ".join(sorted(self.campaigns)) or "none"
            raise errors.CampaignError(
                f"unknown campaign {campaign_id!r} (campaigns: {known})"
            ) from None

    def ordered(self) -> list[Campaign]:
        """Campaigns in pipeline order: by stage, then along their `next` chains."""
        depth = {cid: self._depth(cid) for cid in self.campaigns}

        def key(c: Campaign) -> tuple[int, int, str]:
            return (stages.rank(c.stage) if c.stage else -1, depth[c.id], c.id)

        return sorted(self.campaigns.values(), key=key)

    def _depth(self, campaign_id: str) -> int:
        previous = {c.next: c.id for c in self.campaigns.values() if c.next}
        depth, seen = 0, {campaign_id}
        while campaign_id in previous and previous[campaign_id] not in seen:
            campaign_id = previous[campaign_id]
            seen.add(campaign_id)
            depth += 1
        return depth

    @property
    def version(self) -> str:
        digest = hashlib.sha256()
        for campaign_id in sorted(self.campaigns):
            digest.update(f"{campaign_id}:{self.campaigns[campaign_id].version};".encode())
        return digest.hexdigest()[:12]


SHIPPED = Path(__file__).resolve().parents[2] / "campaigns"  # beside the package, in the repository


def shipped_folder() -> Path | None:
    """The campaigns that come with dripd (the demo's, `dripd init`'s first copy), if here."""
    return SHIPPED if (SHIPPED / "qualification.toml").is_file() else None


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadOptions:
    """What a campaign is checked against beyond its own file."""

    env: templates.Renderer | None = None


def load_all(folder: Path, options: LoadOptions | None = None) -> Catalog:
    """Load every `*.toml` in `folder`; all problems are collected, none raised."""
    options = options or LoadOptions()
    if not folder.is_dir():
        return Catalog(problems=(f"{folder}: campaigns folder not found",))
    renderer = options.env or templates.Renderer(folder)
    loaded: dict[str, Campaign] = {}
    problems: list[str] = []
    paths = sorted(folder.glob("*.toml"))
    for path in paths:
        try:
            loaded[path.stem] = load_file(path, renderer, options)
        except errors.CampaignError as exc:
            problems.extend(str(exc).splitlines())
    # a `next` naming a file that exists but failed is that file's problem, already reported
    problems.extend(_cross_check(loaded, {path.stem for path in paths}))
    return Catalog(campaigns=loaded, problems=tuple(problems))


def load_file(path: Path, renderer: templates.Renderer, options: LoadOptions) -> Campaign:
    """One campaign file, fully checked; raises CampaignError with one line per problem."""
    document = tomlfile.load(path, errors.CampaignError)
    try:
        model = CampaignModel.model_validate(document)
    except pydantic.ValidationError as exc:
        where = _campaign_place(path, document)
        raise errors.CampaignError(validation.first_error(exc, CampaignModel, where)) from exc
    problems = _check_campaign(path, model)
    steps: list[Step] = []
    seen: set[str] = set()
    for step_model in model.steps:
        place = f"{path}: step {step_model.id!r}: "
        if step_model.id in seen:
            problems.append(f"{place}duplicate step id")
        seen.add(step_model.id)
        try:
            steps.append(_build_step(step_model, renderer, options))
        except ValueError as exc:
            problems.append(f"{place}{exc}")
    if problems:
        raise errors.CampaignError("\n".join(problems))
    return _campaign(path, model, tuple(steps), document)


def _campaign(
    path: Path, model: CampaignModel, steps: tuple[Step, ...], document: dict[str, Any]
) -> Campaign:
    window = windows_mod.parse_window(model.send_window) if model.send_window else None
    version = hashlib.sha256(repr(sorted(document.items())).encode()).hexdigest()[:12]
    return Campaign(
        id=path.stem,
        path=path,
        name=model.name,
        description=model.description,
        stage=model.stage,
        on_reply=model.on_reply,
        colleague_replies=model.colleague_replies,
        meeting_field=model.meeting_field,
        promote_on_reply=model.promote_on_reply,
        next=model.next,
        send_window=window,
        thread=model.thread,
        starts_when=model.starts_when,
        exclusive=model.exclusive,
        steps=steps,
        plans=tuple(step.plan for step in steps),
        version=version,
    )


def _check_campaign(path: Path, model: CampaignModel) -> list[str]:
    problems: list[str] = []
    for key in ("stage", "promote_on_reply"):
        value = getattr(model, key)
        if value is not None and value not in stages.STAGES:
            problems.append(f"{path}: {key}: unknown stage {value!r} ({', '.join(stages.STAGES)})")
    if model.send_window:
        try:
            windows_mod.parse_window(model.send_window)
        except ValueError as exc:
            problems.append(f"{path}: send_window: {exc}")
    if model.starts_when is not None:
        kind, _, stage = model.starts_when.partition(":")
        if kind != "stage" or stage not in stages.STAGES:
            problems.append(
                f"{path}: starts_when: expected 'stage:STAGE' ({', '.join(stages.STAGES)}), "
                f"got {model.starts_when!r}"
            )
    return problems


def _build_step(model: StepModel, renderer: templates.Renderer, options: LoadOptions) -> Step:
    timing = parse_timing(model)
    _check_content(model, renderer)
    # `from` names a rep or a role ([roles] in the config): config.Config.sender_of;
    # one that names neither is a `check` warning, and the contact's owner sends.
    if model.sender is not None and model.kind != "email":
        raise ValueError("'from' is only for email steps")
    return Step(
        id=model.id,
        kind=model.kind,
        timing=timing,
        subject=model.subject,
        template=model.template,
        body=model.body,
        note=model.note,
        attach=tuple(model.attach),
        sender=model.sender,
        wait_for_task=model.wait_for_task,
        variants=_variants(model, renderer),
    )


def _variants(model: StepModel, renderer: templates.Renderer) -> tuple[Variant, ...]:
    """The step's variants, each checked as an email of its own; ValueError names the bad one."""
    if not model.variants:
        return ()
    if model.kind != "email":
        raise ValueError("only email steps have variants")
    ids = [v.id for v in model.variants]
    if len(set(ids)) != len(ids):
        raise ValueError(f"variant ids must differ: {', '.join(ids)}")
    found = []
    for variant in model.variants:
        content = _variant_content(model, variant)
        try:
            _check_email(content, renderer)
        except ValueError as exc:
            raise ValueError(f"variant {variant.id!r}: {exc}") from exc
        found.append(
            Variant(
                id=variant.id,
                weight=variant.weight,
                subject=content.subject,
                template=content.template,
                body=content.body,
                attach=tuple(content.attach),
            )
        )
    return tuple(found)


def _variant_content(step: StepModel, variant: VariantModel) -> StepModel:
    """The step as this variant has it: its template or body replaces the step's both."""
    text = (
        {"template": variant.template, "body": variant.body}
        if variant.template is not None or variant.body is not None
        else {}
    )
    return step.model_copy(
        update={
            "subject": variant.subject if variant.subject is not None else step.subject,
            "attach": variant.attach if variant.attach is not None else step.attach,
            "variants": [],
            **text,
        }
    )


def version_for(step: Step, enrollment_id: int) -> tuple[Step, str | None]:
    """The step as this enrollment gets it, and the id of its variant (None: no variants).

    Chosen by weight and remembered: a stable number per enrollment picks the
    variant, so every render of the step picks the same one, and a later step
    with the same variants and weights keeps the contact's (a thread stays
    one version). Removing a variant moves its enrollments to the others.
    """
    if not step.variants:
        return step, None
    digest = hashlib.sha256(f"dripd-variant:{enrollment_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64 * sum(v.weight for v in step.variants)
    chosen = step.variants[-1]
    for variant in step.variants:
        if point < variant.weight:
            chosen = variant
            break
        point -= variant.weight
    return variant_step(step, chosen), chosen.id


def variant_step(step: Step, variant: Variant) -> Step:
    """`step` with `variant`'s content."""
    return dataclasses.replace(
        step,
        subject=variant.subject,
        template=variant.template,
        body=variant.body,
        attach=variant.attach,
    )


def parse_timing(model: StepModel) -> schedule.Timing:
    """The step's one timing form; raises ValueError naming what is wrong."""
    present = [key for key in _TIMING_KEYS if getattr(model, key) is not None]
    if model.yearly is not None:
        return _yearly(model, present)
    if model.count is not None and model.every is None:
        raise ValueError("'count' only goes with 'every'")
    if len(present) != 1:
        return _timing_problem(present)
    if model.anchor is not None and present[0] not in ("before", "after"):
        raise ValueError("'anchor' only goes with 'before' or 'after'")
    if model.wait is not None:
        return schedule.Wait(duration=durations.parse_duration(model.wait))
    if model.every is not None:
        return schedule.Every(period=_positive(model.every, "every"), count=model.count)
    return _anchored(model)


def _timing_problem(present: Sequence[str]) -> schedule.Timing:
    if not present:
        raise ValueError("no timing: give one of wait, before/after + anchor, every, yearly")
    joined = " and ".join(repr(k) for k in present)
    raise ValueError(f"two timing forms ({joined}): a step has exactly one")


def _anchored(model: StepModel) -> schedule.Timing:
    if model.anchor is None:
        raise ValueError("'before'/'after' need 'anchor = \"FIELD\"' (a date field of the contact)")
    direction: Literal["before", "after"] = "before" if model.before is not None else "after"
    text = model.before if model.before is not None else model.after
    assert text is not None
    offset = durations.parse_duration(text)
    return schedule.Anchored(anchor=model.anchor, offset=offset, direction=direction)


def _yearly(model: StepModel, present: Sequence[str]) -> schedule.Timing:
    extra = [key for key in present if key not in ("yearly", "before")]
    if extra or model.anchor is not None or model.count is not None:
        others = extra + [k for k in ("anchor", "count") if getattr(model, k) is not None]
        raise ValueError(f"'yearly' takes only an optional 'before', not {', '.join(others)}")
    before = durations.parse_duration(model.before) if model.before is not None else None
    assert model.yearly is not None
    if model.yearly[:1].isdigit():
        return schedule.Yearly(month_day=dates.parse_month_day(model.yearly), before=before)
    return schedule.Yearly(field=model.yearly, before=before)


def _positive(text: str, key: str) -> durations.Duration:
    duration = durations.parse_duration(text)
    if duration.amount <= 0:
        raise ValueError(f"{key} = {text!r} must be longer than zero")
    return duration


def _check_content(model: StepModel, renderer: templates.Renderer) -> None:
    if model.kind == "email":
        _check_email(model, renderer)
    else:
        if model.subject or model.template or model.body or model.attach:
            raise ValueError(
                f"a {model.kind} step takes a 'note', not subject/template/body/attach"
            )
        if not model.note:
            raise ValueError(f"a {model.kind} step needs a 'note' (what the rep should do or say)")
        renderer.check_source(model.note, "note")


def _check_email(model: StepModel, renderer: templates.Renderer) -> None:
    if model.variants:
        return  # each variant is checked as an email of its own (_variants)
    if model.note:
        raise ValueError("an email step takes 'template' or 'body', not 'note'")
    if not model.subject:
        raise ValueError("an email step needs a 'subject'")
    if (model.template is None) == (model.body is None):
        raise ValueError("an email step needs exactly one of 'template' or 'body'")
    renderer.check_source(model.subject, "subject")
    if model.body is not None:
        renderer.check_source(model.body, "body")
    if model.template is not None:
        renderer.check_file(model.template)
    for pattern in model.attach:
        renderer.check_source(pattern, "attach")


def _cross_check(loaded: Mapping[str, Campaign], files: Set[str]) -> list[str]:
    problems: list[str] = []
    for campaign in loaded.values():
        if campaign.next is not None and campaign.next not in files:
            problems.append(f"{campaign.path}: next: unknown campaign {campaign.next!r}")
    return problems


def _campaign_place(path: Path, document: dict[str, Any]) -> validation.LocFormatter:
    def where(loc: Sequence[int | str]) -> str:
        if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
            step_id = _step_id(document, loc[1])
            rest = ".".join(str(p) for p in loc[2:])
            return f"{path}: step {step_id}: " + (f"{rest}: " if rest else "")
        return f"{path}: " + (".".join(str(p) for p in loc) + ": " if loc else "")

    return where


def _step_id(document: dict[str, Any], index: int) -> str:
    steps = document.get("steps")
    if isinstance(steps, list) and index < len(steps) and isinstance(steps[index], dict):
        step_id = steps[index].get("id")
        if isinstance(step_id, str):
            return repr(step_id)
    return f"#{index + 1}"


def load_checked(folder: Path, options: LoadOptions | None = None) -> Catalog:
    """Like `load_all`, but raise CampaignError if anything is wrong."""
    catalog = load_all(folder, options)
    if catalog.problems:
        raise errors.CampaignError("\n".join(catalog.problems))
    return catalog
