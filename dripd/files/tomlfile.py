"""Reading TOML files with errors that name the file."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from dripd import errors


def load(path: Path, error: type[errors.DripdError]) -> dict[str, Any]:
    """The parsed document at `path`; a missing or malformed file raises `error`."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as exc:
        raise error(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise error(f"{path}: is a directory, not a TOML file") from exc
    except PermissionError as exc:
        raise error(f"{path}: permission denied") from exc
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not UTF-8 text") from exc
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: invalid TOML: {exc}") from exc
