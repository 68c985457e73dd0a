"""A real OAuth2 authorization server on 127.0.0.1 for dripd's tests, built on authlib.

What a mail provider's identity platform does, offline:
- device authorization grant (RFC 8628): `/devicecode`, then `authorization_pending`
  at `/token` until the test approves the user code (`approve_device`);
- authorization code grant with PKCE (RFC 7636, S256 required) and any loopback
  redirect URI (RFC 8252 7.3): `/authorize` plays the browser's sign-in for the
  user the test names (`sign_in`), and redirects with a code;
- refresh_token grant with strict rotation: each use returns a new refresh token,
  and the one used is dead from then on (`invalid_grant` if used again);
- revocation (RFC 7009, `/revoke`), and `revoke_user` for what an admin or a
  password change does: every token of that user dead at once;
- introspection (RFC 7662, `/introspect`) for the mail servers: Dovecot's oauth2
  passdb and the aiosmtpd XOAUTH2 authenticator ask it whether a token is active;
- short-lived access tokens (`access_lifetime` seconds).

The protocol (parameter checks, client authentication, error replies, PKCE) is
authlib's; this module keeps the tokens in memory and serves authlib's
framework-agnostic server over wsgiref in a thread. Every token it issues is
kept in `issued()`, so a test can look for them in captured output.
"""

from __future__ import annotations

import base64
import json
import secrets
import socketserver
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, ClassVar
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from authlib.oauth2 import AuthorizationServer, OAuth2Error
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.requests import JsonRequest, OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc8628 import (
    DeviceAuthorizationEndpoint,
    DeviceCodeGrant,
    DeviceCredentialDict,
)

HOST = "127.0.0.1"
CLIENT_ID = "dripd-test-client"
RESOURCE_ID = "mail-server"  # the mail servers' own client, for introspection
RESOURCE_SECRET = "mail-server-secret"
SCOPES = ("mail.send", "mail.read", "offline_access")
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
_SECRET_AUTH = ["client_secret_basic", "client_secret_post"]
_ANY_AUTH = [*_SECRET_AUTH, "none"]  # public clients (dripd: no secret) too


@dataclass(slots=True, kw_only=True)
class Client:
    """A registered application: public (no secret) unless `secret` is set."""

    client_id: str
    secret: str | None = None
    grant_types: tuple[str, ...] = (
        "authorization_code",
        "refresh_token",
        DeviceCodeGrant.GRANT_TYPE,
    )

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None

    def get_allowed_scope(self, scope: str) -> str:
        wanted = (scope or "").split()
        return " ".join(s for s in wanted if s in SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        """Any port on a loopback address (RFC 8252 7.3), as Microsoft and Google allow."""
        parts = urllib.parse.urlsplit(redirect_uri)
        return parts.scheme == "http" and parts.netloc.rsplit(":", 1)[0] in LOOPBACK

    def check_client_secret(self, client_secret: str) -> bool:
        return self.secret is not None and secrets.compare_digest(client_secret, self.secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.secret is None:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass(slots=True, kw_only=True)
class Token:
    """One issued access token and, with it, the refresh token of the same response."""

    client_id: str
    user: str
    scope: str
    access_token: str
    refresh_token: str | None
    issued_at: float
    expires_in: int
    revoked: bool = False
    refresh_used: bool = False  # rotated: the refresh token of this response is dead

    def check_client(self, client: Client) -> bool:
        return self.client_id == client.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def get_expires_at(self) -> float:
        return self.issued_at + self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.get_expires_at()

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> str:
        return self.user

    def get_client(self) -> str:
        return self.client_id


@dataclass(slots=True, kw_only=True)
class Code:
    """An authorization code, with its PKCE challenge."""

    code: str
    client_id: str
    user: str
    scope: str
    redirect_uri: str
    code_challenge: str | None
    code_challenge_method: str | None

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> None:
        return None

    def get_auth_time(self) -> None:
        return None


@dataclass(slots=True)
class _State:
    """Everything the server knows, under one lock (wsgiref serves each request in a thread)."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    clients: dict[str, Client] = field(default_factory=dict)
    tokens: list[Token] = field(default_factory=list)
    codes: dict[str, Code] = field(default_factory=dict)
    devices: dict[str, DeviceCredentialDict] = field(default_factory=dict)
    approvals: dict[str, tuple[str, bool]] = field(default_factory=dict)  # user code → (user, ok)
    issued: list[str] = field(default_factory=list)  # every token and code handed out
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def by_access(self, value: str) -> Token | None:
        return next((t for t in self.tokens if t.access_token == value), None)

    def by_refresh(self, value: str) -> Token | None:
        return next((t for t in self.tokens if t.refresh_token == value), None)


# ---------------------------------------------------------------- authlib's parts


class _Payload(OAuth2Payload):
    def __init__(self, values: dict[str, list[str]]) -> None:
        self._values = values

    @property
    def data(self) -> dict[str, str]:
        return {key: values[0] for key, values in self._values.items()}

    @property
    def datalist(self) -> dict[str, list[str]]:
        return self._values


class _Request(OAuth2Request):
    """A WSGI request as authlib wants it: query and form values together, as Flask's `values`."""

    def __init__(self, environ: dict[str, Any]) -> None:
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        form: dict[str, list[str]] = {}
        if environ["REQUEST_METHOD"] == "POST":
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length).decode("utf-8")
            form = urllib.parse.parse_qs(body)
        headers = {
            key[5:].replace("_", "-").title(): value
            for key, value in environ.items()
            if key.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        uri = f"http://{environ['HTTP_HOST']}{environ['PATH_INFO']}"
        if environ.get("QUERY_STRING"):
            uri += "?" + environ["QUERY_STRING"]
        super().__init__(environ["REQUEST_METHOD"], uri, headers=headers)
        self._query = {k: v[0] for k, v in query.items()}
        self._form = {k: v[0] for k, v in form.items()}
        self.payload = _Payload({**query, **form})

    @property
    def args(self) -> dict[str, str]:
        return self._query

    @property
    def form(self) -> dict[str, str]:
        return self._form


Response = tuple[int, bytes, list[tuple[str, str]]]


class _Server(AuthorizationServer):  # type: ignore[misc]
    def __init__(self, state: _State, lifetime: Callable[[], int]) -> None:
        super().__init__(scopes_supported=list(SCOPES))
        self.state = state
        generator = BearerTokenGenerator(
            access_token_generator=lambda **_: "at-" + secrets.token_urlsafe(24),
            refresh_token_generator=lambda **_: "rt-" + secrets.token_urlsafe(32),
            expires_generator=lambda client, grant_type: lifetime(),
        )
        self.register_token_generator("default", generator)

    def query_client(self, client_id: str) -> Client | None:
        return self.state.clients.get(client_id)

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        state = self.state
        with state.lock:
            state.tokens.append(
                Token(
                    client_id=request.client.client_id,
                    user=request.user,
                    scope=token.get("scope", ""),
                    access_token=token["access_token"],
                    refresh_token=token.get("refresh_token"),
                    issued_at=time.time(),
                    expires_in=token["expires_in"],
                )
            )
            state.issued += [token["access_token"]] + (
                [token["refresh_token"]] if token.get("refresh_token") else []
            )
            state.counts["tokens"] += 1

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        return request if isinstance(request, OAuth2Request) else _Request(request)

    def create_json_request(self, request: Any) -> JsonRequest:
        raise NotImplementedError("no JSON endpoints here")

    def handle_response(self, status: int, body: Any, headers: Iterable[Any]) -> Response:
        data = json.dumps(body).encode() if isinstance(body, dict) else str(body or "").encode()
        pairs = [(str(k), str(v)) for k, v in headers]
        if not any(k.lower() == "content-type" for k, _ in pairs):
            pairs.append(("Content-Type", "application/json"))
        return status, data, pairs

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass


class _CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = _ANY_AUTH

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        state: _State = self.server.state
        data = request.payload.data
        with state.lock:
            state.codes[code] = Code(
                code=code,
                client_id=request.client.client_id,
                user=request.user,
                scope=request.scope or "",
                redirect_uri=data.get("redirect_uri", ""),
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
            )
            state.issued.append(code)

    def query_authorization_code(self, code: str, client: Client) -> Code | None:
        found = self.server.state.codes.get(code)
        return found if found is not None and found.client_id == client.client_id else None

    def delete_authorization_code(self, authorization_code: Code) -> None:
        self.server.state.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: Code) -> str:
        return authorization_code.user


class _RefreshGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = _ANY_AUTH
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation, as Microsoft does

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        state: _State = self.server.state
        with state.lock:
            state.counts["refresh_requests"] += 1
            token = state.by_refresh(refresh_token)
            if token is None or token.revoked or token.refresh_used:
                state.counts["refresh_refused"] += 1
                return None
            return token

    def authenticate_user(self, refresh_token: Token) -> str:
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: Token) -> None:
        with self.server.state.lock:
            refresh_token.refresh_used = True
            self.server.state.counts["rotations"] += 1


class _DeviceGrant(DeviceCodeGrant):  # type: ignore[misc]
    def query_device_credential(self, device_code: str) -> DeviceCredentialDict | None:
        return self.server.state.devices.get(device_code)

    def query_user_grant(self, user_code: str) -> tuple[str, bool] | None:
        state: _State = self.server.state
        with state.lock:
            state.counts["device_polls"] += 1
            return state.approvals.get(user_code)

    def should_slow_down(self, credential: DeviceCredentialDict) -> bool:
        return False

    def create_token_response(self) -> Any:
        # A device code is good for one token response (RFC 8628 3.5).
        response = super().create_token_response()
        self.server.state.devices.pop(self.request.payload.data["device_code"], None)
        return response


class _DeviceEndpoint(DeviceAuthorizationEndpoint):  # type: ignore[misc]
    INTERVAL = 1  # seconds between polls: the tests approve within a second or two

    def get_verification_uri(self) -> str:
        return self.server.verification_uri

    def save_device_credential(self, client_id: str, scope: str, data: dict[str, Any]) -> None:
        state: _State = self.server.state
        with state.lock:
            state.devices[data["device_code"]] = DeviceCredentialDict(
                client_id=client_id,
                scope=scope,
                user_code=data["user_code"],
                expires_at=time.time() + data["expires_in"],
            )
            state.issued.append(data["device_code"])


class _TokenQuery:
    """query_token for revocation and introspection: an access or a refresh token."""

    server: _Server

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        state = self.server.state
        with state.lock:
            if token_type_hint != "refresh_token":
                found = state.by_access(token_string)
                if found is not None:
                    return found
            return state.by_refresh(token_string)


class _Revocation(_TokenQuery, RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = _ANY_AUTH

    def revoke_token(self, token: Token, request: OAuth2Request) -> None:
        with self.server.state.lock:
            token.revoked = True


class _Introspection(_TokenQuery, IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = _SECRET_AUTH

    def check_permission(self, token: Token, client: Client, request: OAuth2Request) -> bool:
        return client.client_id == RESOURCE_ID

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        with self.server.state.lock:
            self.server.state.counts["introspections"] += 1
            found = self.server.state.by_access(token_string)
        return found  # introspection here is for access tokens: a refresh token is no login

    def introspect_token(self, token: Token) -> dict[str, Any]:
        return {
            "active": True,
            "client_id": token.client_id,
            "token_type": "Bearer",
            "username": token.user,
            "scope": token.scope,
            "exp": int(token.get_expires_at()),
            "iat": int(token.issued_at),
        }


# ---------------------------------------------------------------- the HTTP side


class _Threading(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class OAuthServer:
    """The authorization server; start() it, point dripd at `url(...)`, approve in the test."""

    def __init__(
        self,
        *,
        access_lifetime: int = 3600,
        tls: ssl.SSLContext | None = None,
        client_tls: ssl.SSLContext | None = None,
    ) -> None:
        self.access_lifetime = access_lifetime  # seconds; tests set a few
        self.tls = tls  # a server context: https:// (clients then need the test CA)
        self.client_tls = client_tls  # what `introspect` and `sign_in` trust, with `tls`
        self.state = _State()
        self.state.clients[CLIENT_ID] = Client(client_id=CLIENT_ID)
        self.state.clients[RESOURCE_ID] = Client(
            client_id=RESOURCE_ID, secret=RESOURCE_SECRET, grant_types=()
        )
        server = _Server(self.state, lambda: self.access_lifetime)
        server.register_grant(_CodeGrant, [CodeChallenge(required=True)])
        server.register_grant(_RefreshGrant)
        server.register_grant(_DeviceGrant)
        server.register_endpoint(_DeviceEndpoint)
        server.register_endpoint(_Revocation)
        server.register_endpoint(_Introspection)
        self._server = server
        self._http: _Threading | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self._signed_in: str | None = None

    # -- lifecycle

    def start(self) -> OAuthServer:
        http = make_server(HOST, 0, self._wsgi, server_class=_Threading, handler_class=_Quiet)
        if self.tls is not None:
            http.socket = self.tls.wrap_socket(http.socket, server_side=True)
        self._http = http
        self.port = int(http.server_address[1])
        server: Any = self._server
        server.verification_uri = self.url("device")
        self._thread = threading.Thread(target=http.serve_forever, name="oauth", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    def __enter__(self) -> OAuthServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, path: str) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{HOST}:{self.port}/{path}"

    @property
    def introspection_url(self) -> str:
        """With the mail servers' client credentials in it (Dovecot sends them as Basic auth)."""
        return f"http://{RESOURCE_ID}:{RESOURCE_SECRET}@{HOST}:{self.port}/introspect"

    # -- what the person at the browser does

    def approve_device(self, user_code: str, user: str, *, allow: bool = True) -> None:
        """The user typed `user_code` at the verification page and signed in as `user`."""
        with self.state.lock:
            if not any(d["user_code"] == user_code for d in self.state.devices.values()):
                raise KeyError(f"no pending device code {user_code!r}")
            self.state.approvals[user_code] = (user, allow)

    def pending_user_codes(self) -> list[str]:
        with self.state.lock:
            return [d["user_code"] for d in self.state.devices.values()]

    def sign_in(self, authorization_url: str, user: str) -> str:
        """Open `authorization_url` in "the browser" as `user`, consent; the redirect's Location."""
        parts = urllib.parse.urlsplit(authorization_url)
        query = parts.query + "&" + urllib.parse.urlencode({"test_user": user})
        request = urllib.request.Request(urllib.parse.urlunsplit(parts._replace(query=query)))
        opener = urllib.request.build_opener(
            _NoRedirect(), urllib.request.HTTPSHandler(context=self.client_tls)
        )
        try:
            opener.open(request, timeout=10)
        except urllib.error.HTTPError as exc:
            if exc.code == HTTPStatus.FOUND:
                return str(exc.headers["Location"])
            raise
        raise AssertionError("the authorization endpoint did not redirect")

    # -- what an administrator does

    def revoke_user(self, user: str) -> int:
        """Every token of `user` dead (consent withdrawn, password changed); how many."""
        with self.state.lock:
            found = [t for t in self.state.tokens if t.user == user and not t.revoked]
            for token in found:
                token.revoked = True
        return len(found)

    # -- what tests look at

    def issued(self) -> list[str]:
        """Every access token, refresh token, device code and authorization code handed out."""
        with self.state.lock:
            return list(self.state.issued)

    def count(self, name: str) -> int:
        """tokens, rotations, refresh_requests, refresh_refused, introspections, device_polls."""
        with self.state.lock:
            return self.state.counts[name]

    def introspect(self, access_token: str) -> dict[str, Any]:
        """What the mail servers ask: RFC 7662 over HTTP, with their client credentials."""
        data = urllib.parse.urlencode({"token": access_token}).encode()
        request = urllib.request.Request(self.url("introspect"), data=data)
        basic = base64.b64encode(f"{RESOURCE_ID}:{RESOURCE_SECRET}".encode()).decode()
        request.add_header("Authorization", f"Basic {basic}")
        with urllib.request.urlopen(request, timeout=10, context=self.client_tls) as response:
            return dict(json.load(response))

    # -- WSGI

    def _wsgi(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        status, body, headers = self._route(environ)
        start_response(f"{status} {HTTPStatus(status).phrase}", headers)
        yield body

    def _route(self, environ: dict[str, Any]) -> Response:
        path = environ["PATH_INFO"]
        endpoints = {
            "/devicecode": "device_authorization",
            "/revoke": "revocation",
            "/introspect": "introspection",
        }
        request = _Request(environ)
        with self.state.lock:
            if path == "/token":
                return self._server.create_token_response(request)  # type: ignore[no-any-return]
            if path in endpoints:
                return self._server.create_endpoint_response(endpoints[path], request)  # type: ignore[no-any-return]
            if path == "/authorize":
                return self._authorize(request)
        return 404, b"not found", [("Content-Type", "text/plain")]

    def _authorize(self, request: _Request) -> Response:
        """The sign-in and consent page, played by the user the test named in `test_user`."""
        user = request.args.get("test_user")
        try:
            grant = self._server.get_consent_grant(request, end_user=user)
        except OAuth2Error as error:
            return self._server.handle_error_response(request, error)  # type: ignore[no-any-return]
        return self._server.create_authorization_response(request, grant_user=user, grant=grant)  # type: ignore[no-any-return]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None
