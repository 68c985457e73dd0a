"""dripd: a sales rep's follow-up, run as a daemon."""

from __future__ import annotations

__version__ = "0.1.0"
