"""An OAuth2 provider as dripd talks to it: its endpoints and scopes, and its grants.

The protocol is authlib's (its requests client): the device authorization
grant (RFC 8628), the authorization code grant with PKCE (RFC 7636), the
refresh token grant, revocation (RFC 7009). Calls here block (requests):
the daemon runs them in a thread (dripd.mailbox.tokens), `dripd auth` directly.

Nothing here logs or puts a token in an exception's text; provider errors
are carried as their standard code (`invalid_grant`) and description.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc6749.errors import OAuth2Error

from dripd import errors
from dripd.files import config

TIMEOUT = 30.0  # seconds for any one request to the provider
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# The provider says the sign-in itself is gone (RFC 6749 5.2, OpenID Connect 3.1.2.6):
# only a person signing in again helps. Any other error is tried again later.
REFUSALS = frozenset(
    {
        "invalid_grant",
        "invalid_client",
        "unauthorized_client",
        "access_denied",
        "interaction_required",
        "consent_required",
        "login_required",
    }
)
_MICROSOFT = "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/"


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoints:
    """Where a provider's grants are, and what dripd asks for."""

    device_authorization_url: str | None
    authorization_url: str | None
    token_url: str
    revocation_url: str | None
    scopes: tuple[str, ...]


def endpoints(settings: config.OAuth2Config) -> Endpoints:
    """The provider's preset with the config's overrides (a custom provider: the config's)."""
    preset = _preset(settings)
    return Endpoints(
        device_authorization_url=settings.device_authorization_url
        or (preset.device_authorization_url if preset else None),
        authorization_url=settings.authorization_url
        or (preset.authorization_url if preset else None),
        token_url=settings.token_url or (preset.token_url if preset else ""),
        revocation_url=settings.revocation_url or (preset.revocation_url if preset else None),
        scopes=tuple(settings.scopes or (preset.scopes if preset else ())),
    )


def _preset(settings: config.OAuth2Config) -> Endpoints | None:
    if settings.provider == "microsoft":
        base = _MICROSOFT.format(tenant=settings.tenant or "organizations")
        return Endpoints(
            device_authorization_url=base + "devicecode",
            authorization_url=base + "authorize",
            token_url=base + "token",
            revocation_url=None,  # Microsoft has no RFC 7009 endpoint
            scopes=(
                "https://outlook.office.com/SMTP.Send",
                "https://outlook.office.com/IMAP.AccessAsUser.All",
                "offline_access",
            ),
        )
    if settings.provider == "google":
        return Endpoints(
            device_authorization_url=None,  # Google's device flow refuses the mail scope
            authorization_url="https://accounts.google.com/o/oauth2/v2/auth",
            token_url="https://oauth2.googleapis.com/token",
            revocation_url="https://oauth2.googleapis.com/revoke",
            scopes=("https://mail.google.com/",),
        )
    return None


class Refused(Exception):
    """The provider refused the grant (`error` is its code, e.g. invalid_grant)."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.description = description

    @property
    def final(self) -> bool:
        """Whether only signing in again can help (else: try again later)."""
        return self.error in REFUSALS


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceGrant:
    """What the person must do (open `verification_uri`, type `user_code`), and the poll."""

    device_code: str
    user_code: str
    verification_uri: str
    interval: float  # seconds between polls
    expires_in: float  # seconds
    message: str | None = None  # the provider's own instruction (Microsoft gives one)


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeRequest:
    """An authorization code request under way: where to send the person, and its PKCE secret."""

    url: str
    redirect_uri: str
    state: str
    code_verifier: str


class Provider:
    """One rep's app registration at its provider."""

    def __init__(self, settings: config.OAuth2Config) -> None:
        self.settings = settings
        self.endpoints = endpoints(settings)
        # Given with each request: requests lets $REQUESTS_CA_BUNDLE override a
        # session's `verify`, which would drop ca_file on hosts that set it.
        self.http: dict[str, Any] = {"timeout": TIMEOUT, "verify": settings.ca_file or True}

    def _session(self) -> OAuth2Session:
        """A new client: raises ConfigError if the client secret can't be read."""
        secret = self.settings.client_secret()
        session = OAuth2Session(
            client_id=self.settings.client_id,
            client_secret=secret,
            scope=" ".join(self.endpoints.scopes),
            token_endpoint_auth_method="client_secret_post" if secret else "none",
            code_challenge_method="S256",
        )
        return session

    def _call(self, action: Callable[[OAuth2Session], Any]) -> dict[str, Any]:
        """Run one grant; Refused for the provider's error, SignInUnavailable for the network."""
        try:
            with self._session() as session:
                return dict(action(session))
        except (OAuthError, OAuth2Error) as exc:  # the provider's answer; a bad redirect URL
            raise Refused(str(exc.error or "error"), str(exc.description or "")) from None
        except requests.exceptions.SSLError as exc:
            host = self.endpoints.token_url
            raise errors.SignInUnavailable(
                f"cannot reach {host}: {_reason(exc)}; if its certificate is from a private "
                "CA, set ca_file in [reps.oauth2]"
            ) from None
        except (requests.RequestException, ValueError) as exc:
            raise errors.SignInUnavailable(
                f"cannot reach {self.endpoints.token_url}: {_reason(exc)}"
            ) from None

    # -- grants

    def refresh(self, refresh_token: str) -> dict[str, Any]:
        """A new access token (and, where the provider rotates them, a new refresh token)."""
        url = self.endpoints.token_url
        return self._call(lambda s: s.refresh_token(url, refresh_token=refresh_token, **self.http))

    def start_device(self) -> DeviceGrant:
        """RFC 8628 3.1: ask for a device code and the code the person types."""
        url = self.endpoints.device_authorization_url
        if url is None:
            raise errors.ConfigError("this provider offers no device sign-in")
        data = {"client_id": self.settings.client_id, "scope": " ".join(self.endpoints.scopes)}

        def ask(session: OAuth2Session) -> dict[str, Any]:
            response = session.post(url, data=data, withhold_token=True, **self.http)
            body = response.json()
            if "error" in body:
                raise OAuthError(body["error"], body.get("error_description", ""))
            response.raise_for_status()
            return dict(body)

        body = self._call(ask)
        return DeviceGrant(
            device_code=body["device_code"],
            user_code=body["user_code"],
            verification_uri=body.get("verification_uri") or body["verification_url"],
            interval=float(body.get("interval", 5)),
            expires_in=float(body.get("expires_in", 900)),
            message=body.get("message"),
        )

    def wait_device(
        self, grant: DeviceGrant, sleep: Callable[[float], None] = time.sleep
    ) -> dict[str, Any]:
        """Poll the token endpoint until the person approved (RFC 8628 3.4-3.5)."""
        url, interval = self.endpoints.token_url, grant.interval
        deadline = time.monotonic() + grant.expires_in
        while time.monotonic() < deadline:
            sleep(interval)
            try:
                return self._call(
                    lambda s: s.fetch_token(
                        url, grant_type=DEVICE_GRANT, device_code=grant.device_code, **self.http
                    )
                )
            except Refused as exc:
                if exc.error == "slow_down":
                    interval += 5
                elif exc.error != "authorization_pending":
                    raise
        raise Refused("expired_token", "the code was not entered in time")

    def start_code(self, redirect_uri: str) -> CodeRequest:
        """The authorization URL (with a PKCE challenge) for the person's browser."""
        verifier = generate_token(64)
        url = self.endpoints.authorization_url
        if url is None:
            raise errors.ConfigError("this provider offers no browser sign-in")
        with self._session() as session:
            link, state = session.create_authorization_url(
                url,
                redirect_uri=redirect_uri,
                code_verifier=verifier,
                # Google: a refresh token only with offline access, and again at each consent
                access_type="offline",
                prompt="consent",
            )
        return CodeRequest(url=link, redirect_uri=redirect_uri, state=state, code_verifier=verifier)

    def finish_code(self, request: CodeRequest, redirected_to: str) -> dict[str, Any]:
        """Exchange the code in the URL the browser was sent back to (state checked)."""
        url = self.endpoints.token_url

        def exchange(session: OAuth2Session) -> dict[str, Any]:
            session.state = request.state
            return dict(
                session.fetch_token(
                    url,
                    authorization_response=redirected_to,
                    redirect_uri=request.redirect_uri,
                    code_verifier=request.code_verifier,
                    state=request.state,
                    **self.http,
                )
            )

        return self._call(exchange)

    def revoke(self, refresh_token: str) -> bool:
        """Revoke at the provider where it has an endpoint; whether it was asked."""
        url = self.endpoints.revocation_url
        if url is None:
            return False
        self._call(
            lambda s: {
                "status": s.revoke_token(
                    url, refresh_token, token_type_hint="refresh_token", **self.http
                ).status_code
            }
        )
        return True


def _reason(exc: BaseException) -> str:
    """A short reason for a network failure (no URL with a query, no token: requests puts none)."""
    seen: BaseException | None = exc
    while seen is not None and seen.__context__ is not None:
        seen = seen.__context__
    return str(seen or exc).splitlines()[0][:200]
