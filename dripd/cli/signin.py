"""`dripd auth REP`: a rep signs in to their provider, on a server without a browser.

- The device flow (RFC 8628) where the provider offers it (Microsoft, custom
  providers with `device_authorization_url`): dripd prints an address and a
  code, the rep enters the code on any device, dripd waits.
- Else (Google, or `--browser`) the authorization code flow with PKCE: dripd
  prints the address to open, and listens on 127.0.0.1 for the browser to
  come back (RFC 8252 loopback redirect). On a headless server the browser
  is elsewhere and that page fails to load: the rep pastes its address here.

The refresh token goes straight into the database (dripd.mailbox.tokens); nothing
printed here ever holds a token.
"""

from __future__ import annotations

import http.server
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from dripd import errors
from dripd.files import config
from dripd.mailbox import oauth, tokens
from dripd.pipeline.app import App
from dripd.store import oauth_tokens

WAIT = 15 * 60.0  # seconds to wait for the browser or a pasted address
_DONE_PAGE = b"dripd: signed in. You can close this tab.\n"

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """One rep's sign-in as `dripd auth --list` shows it (never a token)."""

    rep: str
    auth: str  # "oauth2" or "password"
    signed_in: bool
    subject: str | None
    since: datetime | None
    refreshed_at: datetime | None
    problem: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "rep": self.rep,
            "auth": self.auth,
            "signed_in": self.signed_in,
            "as": self.subject,
            "since": self.since.isoformat() if self.since else None,
            "refresh_token_used_at": self.refreshed_at.isoformat() if self.refreshed_at else None,
            "problem": self.problem,
        }


def oauth_settings(rep: config.RepConfig) -> config.OAuth2Config:
    if rep.oauth2 is None or not rep.uses_oauth2:
        raise errors.UsageError(
            f'rep {rep.id} signs in with a password: set auth = "oauth2" in [reps.smtp] or '
            "[reps.imap] and add a [reps.oauth2] table"
        )
    return rep.oauth2


def sign_in(app: App, rep: config.RepConfig, say: Say, paste: TextIO, *, browser: bool) -> None:
    """Sign `rep` in and store the refresh token; SignInError if the provider refused."""
    provider = oauth.Provider(oauth_settings(rep))
    try:
        if provider.endpoints.device_authorization_url and not browser:
            token = _device(provider, rep, say)
        else:
            token = _browser(provider, rep, say, paste)
    except oauth.Refused as exc:
        raise errors.SignInError(f"rep {rep.id}: the provider refused the sign-in: {exc}") from None
    if not token.get("refresh_token"):
        raise errors.SignInError(
            f"rep {rep.id}: the provider gave no refresh token (the app needs offline access)"
        )
    with app.engine.begin() as conn:
        oauth_tokens.save_sign_in(conn, rep.id, rep.login, token, app.clock.now())
    say(f"Signed in: rep {rep.id} ({rep.login}). `dripd check --connect` tries the mailbox.")


def _device(provider: oauth.Provider, rep: config.RepConfig, say: Say) -> dict[str, Any]:
    grant = provider.start_device()
    say(f"To sign in rep {rep.id}, open {grant.verification_uri}")
    say(f"and enter the code {grant.user_code} (sign in there as {rep.login}).")
    say(f"Waiting (up to {grant.expires_in / 60:.0f} minutes)…")
    return provider.wait_device(grant)


def _browser(
    provider: oauth.Provider, rep: config.RepConfig, say: Say, paste: TextIO
) -> dict[str, Any]:
    answers: queue.Queue[str] = queue.Queue()
    with _Loopback(answers) as loopback:
        host = "localhost" if provider.settings.provider == "microsoft" else "127.0.0.1"
        request = provider.start_code(f"http://{host}:{loopback.port}/")
        say(f"To sign in rep {rep.id}, open this address in a browser and sign in as {rep.login}:")
        say(request.url)
        say(
            "Waiting for the browser to come back… If it runs on another computer, its last "
            f"page (at http://{host}:{loopback.port}/…) will not load: copy that page's "
            "address from the address bar, paste it here and press Enter."
        )
        threading.Thread(target=_read_pasted, args=(paste, answers), daemon=True).start()
        try:
            redirected = answers.get(timeout=WAIT)
        except queue.Empty:
            raise errors.SignInError(
                f"rep {rep.id}: no sign-in within {WAIT / 60:.0f} minutes"
            ) from None
    return provider.finish_code(request, redirected)


def _read_pasted(paste: TextIO, answers: queue.Queue[str]) -> None:
    for line in paste:
        if line.strip():
            answers.put(line.strip())
            return


class _Loopback:
    """An HTTP listener on 127.0.0.1 for the browser's return (one request with code or error)."""

    def __init__(self, answers: queue.Queue[str]) -> None:
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if "code=" not in self.path and "error=" not in self.path:
                    self.send_error(404)  # a favicon, a probe: not the return
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.end_headers()
                self.wfile.write(_DONE_PAGE)
                answers.put(f"http://127.0.0.1:{outer.port}{self.path}")

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the request line holds the authorization code

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])

    def __enter__(self) -> _Loopback:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def statuses(app: App) -> list[Status]:
    """Every rep's sign-in, in config order."""
    with app.reader.connect() as conn:
        stored = oauth_tokens.read_all(conn)
    found = []
    for rep in app.config.reps:
        row = stored.get(rep.id)
        problem = tokens.problem(rep, row)
        found.append(
            Status(
                rep=rep.id,
                auth="oauth2" if rep.uses_oauth2 else "password",
                signed_in=rep.uses_oauth2 and problem is None,
                subject=row.subject if row else None,
                since=row.signed_in_at if row else None,
                refreshed_at=row.refreshed_at if row else None,
                problem=problem,
            )
        )
    return found


def forget(app: App, rep: config.RepConfig) -> str:
    """Drop the rep's sign-in (revoked at the provider where it can be); what was done."""
    settings = oauth_settings(rep)
    with app.engine.begin() as conn:
        stored = oauth_tokens.forget(conn, rep.id)
    if stored is None or not stored.refresh_token:
        return f"rep {rep.id} was not signed in"
    provider = oauth.Provider(settings)
    try:
        revoked = provider.revoke(stored.refresh_token)
    except (oauth.Refused, errors.DripdError) as exc:
        return f"forgot the sign-in of rep {rep.id}; revoking it at the provider failed: {exc}"
    if revoked:
        return f"forgot the sign-in of rep {rep.id} and revoked it at the provider"
    return (
        f"forgot the sign-in of rep {rep.id}; this provider cannot revoke it from here: "
        "remove dripd's app from the account's apps page to end its access"
    )
