"""Mail providers' settings, so that most users never type a host or a port.

`preset = "fastmail"` on a rep fills its `[reps.smtp]` and `[reps.imap]`
(host, port, security, the login name, `save_copy`) and, for the providers
that sign in with OAuth2, the kind of sign-in and the `[reps.oauth2]`
provider. Anything the config sets itself wins (config.RepConfig applies
them). The Sent folder is left to dripd/sent.py, which asks the server for
the folder it marks `\\Sent`: its name depends on the mailbox's language
("Sent Items", "Éléments envoyés", "[Gmail]/Sent Mail", "[Google Mail]/Gesendet").

Settings from each provider's own help pages (Microsoft: "POP, IMAP, and SMTP
settings for Outlook.com" and Exchange Online's "SMTP AUTH client
submission"; Google: "Check Gmail through other email platforms"; Fastmail:
"Server names and ports"; Apple: "iCloud Mail server settings for other
email client apps"; Yahoo and Zoho: their IMAP/SMTP help pages).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dripd.files import validation

Auth = Literal["password", "oauth2"]
MAILBOXES = ("smtp", "imap")  # the tables a preset fills even where the config has none
Security = Literal["starttls", "tls", "none"]  # "none": to localhost only (config)


@dataclass(frozen=True, slots=True, kw_only=True)
class Server:
    host: str
    port: int
    security: Security


@dataclass(frozen=True, slots=True, kw_only=True)
class Preset:
    """One provider's mailbox settings, and what a user must do to sign in."""

    name: str
    label: str  # what `dripd init` offers
    smtp: Server
    imap: Server
    # False where the provider files what it sends in the Sent folder itself.
    save_copy: bool
    auth: Auth
    oauth2_provider: str | None = None  # the [reps.oauth2] provider, for auth = "oauth2"
    tenant: str | None = None  # Microsoft only: "organizations" (work) or "consumers"
    password_help: str = ""  # where the app password is made (auth = "password")

    @property
    def uses_oauth2(self) -> bool:
        return self.auth == "oauth2"

    def settings(self, email: str) -> dict[str, dict[str, object]]:
        """The config tables this preset fills for a rep whose address is `email`."""
        tables: dict[str, dict[str, object]] = {
            "smtp": _server(self.smtp, email, self.auth),
            "imap": _server(self.imap, email, self.auth) | {"save_copy": self.save_copy},
        }
        if self.oauth2_provider:
            oauth2: dict[str, object] = {"provider": self.oauth2_provider}
            if self.tenant:
                oauth2["tenant"] = self.tenant
            tables["oauth2"] = oauth2
        return tables


def _server(server: Server, email: str, auth: Auth) -> dict[str, object]:
    return {
        "host": server.host,
        "port": server.port,
        "security": server.security,
        "username": email,
        "auth": auth,
    }


_MICROSOFT_IMAP = Server(host="outlook.office365.com", port=993, security="tls")

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            name="microsoft365",
            label="Microsoft 365 / Exchange Online (work or school)",
            smtp=Server(host="smtp.office365.com", port=587, security="starttls"),
            imap=_MICROSOFT_IMAP,
            save_copy=False,  # Exchange files what SMTP sends in Sent Items
            auth="oauth2",
            oauth2_provider="microsoft",
            tenant="organizations",
        ),
        Preset(
            name="outlook",
            label="Outlook.com, Hotmail, Live (personal Microsoft account)",
            smtp=Server(host="smtp-mail.outlook.com", port=587, security="starttls"),
            imap=_MICROSOFT_IMAP,
            save_copy=False,
            auth="oauth2",  # Microsoft requires modern auth for Outlook.com
            oauth2_provider="microsoft",
            tenant="consumers",
        ),
        Preset(
            name="google",
            label="Google Workspace or Gmail",
            smtp=Server(host="smtp.gmail.com", port=587, security="starttls"),
            imap=Server(host="imap.gmail.com", port=993, security="tls"),
            save_copy=False,  # Gmail files what SMTP sends in Sent Mail
            auth="oauth2",
            oauth2_provider="google",
        ),
        Preset(
            name="fastmail",
            label="Fastmail",
            smtp=Server(host="smtp.fastmail.com", port=465, security="tls"),
            imap=Server(host="imap.fastmail.com", port=993, security="tls"),
            save_copy=True,
            auth="password",
            password_help="Fastmail: Settings → Privacy & Security → Manage app passwords "
            "(access: IMAP and SMTP)",
        ),
        Preset(
            name="icloud",
            label="iCloud Mail (@icloud.com, @me.com, @mac.com)",
            smtp=Server(host="smtp.mail.me.com", port=587, security="starttls"),
            imap=Server(host="imap.mail.me.com", port=993, security="tls"),
            save_copy=True,
            auth="password",
            password_help="Apple: account.apple.com → Sign-In and Security → App-Specific "
            "Passwords (needs two-factor authentication)",
        ),
        Preset(
            name="yahoo",
            label="Yahoo Mail",
            smtp=Server(host="smtp.mail.yahoo.com", port=465, security="tls"),
            imap=Server(host="imap.mail.yahoo.com", port=993, security="tls"),
            save_copy=True,
            auth="password",
            password_help="Yahoo: Account Info → Account Security → Generate app password",
        ),
        Preset(
            name="zoho",
            label="Zoho Mail (zoho.com accounts; others set the hosts, e.g. smtp.zoho.eu)",
            smtp=Server(host="smtp.zoho.com", port=465, security="tls"),
            imap=Server(host="imap.zoho.com", port=993, security="tls"),
            save_copy=True,
            auth="password",
            password_help="Zoho: accounts.zoho.com → Security → App Passwords "
            "(with two-factor authentication; IMAP access on in Mail settings)",
        ),
    )
}


def get(name: str) -> Preset:
    """The preset called `name`; ValueError naming the near one and the known ones if none."""
    found = PRESETS.get(name)
    if found is not None:
        return found
    hint = validation.suggest(name, list(PRESETS))
    raise ValueError(f"unknown preset {name!r}{hint} (presets: {', '.join(PRESETS)})")
