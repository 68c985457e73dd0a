"""TLS for the mailbox connections (SMTP and IMAP alike): the context, and what a failure means.

Verification is always on; a private CA is added with `ca_file`. A failed
connection becomes one line that says what to change where that is clear.
"""

from __future__ import annotations

import ssl

from dripd import errors
from dripd.files import config


def context(ca_file: str | None) -> ssl.SSLContext:
    """Verification always on; `ca_file` adds a private CA (ConfigError if it can't be read)."""
    if not ca_file:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=ca_file)
    except ssl.SSLError as exc:
        raise errors.ConfigError(
            f"ca_file {ca_file}: no PEM certificate in it ({exc.reason or exc})"
        ) from exc
    except OSError as exc:  # missing or unreadable
        raise errors.ConfigError(f"ca_file {ca_file}: {exc.strerror or exc}") from exc


def connect_failure(host: str, port: int, exc: BaseException, security: str) -> str:
    """The one line for a connection that failed, with what to change where that is clear.

    An untrusted certificate: `ca_file`. TLS or not, the wrong way round for
    the port: a TLS handshake answered in clear ("wrong version number"), or
    no greeting at all (the server waits for a handshake that never comes).
    """
    # str(), not the exception: an exception is always true, and a timeout's text is empty
    message = f"cannot connect to {host}:{port}: {str(exc) or 'no greeting from the server'}"
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"{message}; if the server's certificate is from a private CA, set ca_file"
        if isinstance(seen, ssl.SSLError) and seen.reason == "WRONG_VERSION_NUMBER":
            return f'{message}; this port does not begin with TLS: security = "starttls"?'
        if isinstance(seen, TimeoutError) and security != "tls":
            return f'{message}; a port that begins with TLS (465, 993) needs security = "tls"'
        seen = seen.__cause__ or seen.__context__
    return message


def for_mailbox(settings: config.SmtpConfig | config.ImapConfig) -> ssl.SSLContext | None:
    """The TLS context of a mailbox's connections, made once for all of them."""
    return context(settings.ca_file) if settings.security != "none" else None
