"""Logging: one event a line on stderr, `key=value` context after the message.

No timestamps of our own (the journal adds them). Only the fields passed in
`extra` are printed, and no code passes a secret there.
"""

from __future__ import annotations

import logging
import sys

_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message"}


class EventFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname.lower()} {record.getMessage()}"
        context = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        if context:
            text += " " + " ".join(f"{k}={_value(v)}" for k, v in context.items())
        if record.exc_info and record.levelno <= logging.DEBUG:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _value(value: object) -> str:
    text = " ".join(str(value).split())
    return f'"{text}"' if " " in text or not text else text


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EventFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aioimaplib", "aiosmtplib", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # flufl.bounce logs every detector it runs; dripd.mail.bounces reports what matters.
    logging.getLogger("flufl.bounce").setLevel(logging.CRITICAL)
