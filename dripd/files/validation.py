"""Turn schema errors on user files into one line that names the place and suggests the near key."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

import pydantic

LocFormatter = Callable[[Sequence[int | str]], str]


def first_error(
    exc: pydantic.ValidationError, model: type[pydantic.BaseModel], where: LocFormatter
) -> str:
    """The first error of `exc` as `PLACE: problem`, with a "did you mean" for unknown keys."""
    found = exc.errors()
    # a misspelt required key is both "missing" and "extra": the extra one carries the hint
    error = next((e for e in found if e["type"] == "extra_forbidden"), found[0])
    loc = tuple(error["loc"])
    if error["type"] == "extra_forbidden":
        key = str(loc[-1])
        place = where(loc[:-1])
        hint = suggest(key, _allowed_keys(model, loc[:-1]))
        return f"{place}unknown key {key!r}{hint}"
    if error["type"] == "missing":
        return f"{where(loc[:-1])}missing key {str(loc[-1])!r}"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where(loc)}{message}"


def suggest(key: str, allowed: Sequence[str]) -> str:
    """` — did you mean 'near'?` when one of `allowed` is close to `key`, else ""."""
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    return f" — did you mean {close[0]!r}?" if close else ""


def _allowed_keys(model: type[pydantic.BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The field names (aliases where set) of the model found at `loc` below `model`."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(str(part)) if _is_model(current) else None
        if field is None:
            return []
        current = _model_in(field.annotation)
    if not _is_model(current):
        return []
    return [f.alias or name for name, f in current.model_fields.items()]


def model_of(model: type[pydantic.BaseModel], key: str) -> type[pydantic.BaseModel] | None:
    """The model of `model`'s field `key` (`smtp: SmtpConfig | None` → SmtpConfig), if any."""
    field = model.model_fields.get(key)
    found = _model_in(field.annotation) if field is not None else None
    return found if _is_model(found) else None


def _model_in(annotation: Any) -> Any:
    """The BaseModel class inside an annotation such as `list[Step] | None`."""
    if _is_model(annotation):
        return annotation
    args = typing.get_args(annotation)
    if isinstance(annotation, types.UnionType) or args:
        for arg in args:
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _is_model(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, pydantic.BaseModel)
