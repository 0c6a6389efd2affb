"""Login, sessions, CSRF and security headers of the web viewer (pure ASGI middleware, below the routes).

Sessions
    Starlette's ``SessionMiddleware`` keeps the session in a cookie signed with itsdangerous (HMAC): the browser
    can read nothing secret from it and cannot forge it. The cookie is ``HttpOnly`` and ``SameSite=Strict``, and
    ``Secure`` when the viewer is served over HTTPS. The signing key is random per node start unless configured,
    so restarting the node logs everyone out (no key is kept on disk).
Login required
    :class:`AccessMiddleware` lets through only the login page and the static files (CSS/JS, no patient data).
    Anything else without a logged-in session gets ``401`` (``/api/...``) or a redirect to ``/login``.
    With ``open_access`` (``serve --http-open``, demos) every request runs as the user ``demo`` and every page
    carries a banner saying so.
CSRF
    Every session holds a random token (``session["csrf"]``), sent to pages in ``<meta name="csrf-token">``.
    Every unsafe request (POST, PUT, PATCH, DELETE) must repeat it in the ``X-CSRF-Token`` header or, for an
    HTML form, the ``csrf_token`` field; otherwise it is refused with 403 before it reaches a route. SameSite=Strict
    already keeps the cookie off cross-site requests; the token is the second, independent lock.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: ``verify_user(username, password) -> bool``: the node's user check (scrypt hashes, see services.security).
UserVerifier = Callable[[str, str], bool]

CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
OPEN_ACCESS_USER = "demo"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: Paths reachable without a session (the login page and the files it needs).
PUBLIC_PREFIXES = ("/static/",)
PUBLIC_PATHS = frozenset({"/login", "/favicon.ico"})
_MAX_FORM_BYTES = 64 * 1024


def csrf_token(session: dict[str, Any]) -> str:
    """The session's CSRF token, created on first use."""
    token = session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def safe_next(value: str | None) -> str:
    """A local path to go to after login (never another site: ``//host`` and ``scheme:`` are refused)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


async def _send_simple(send: Send, status: int, body: bytes, content_type: str,
                       extra: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
               (b"cache-control", b"no-store"), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _json_error(send: Send, status: int, message: str) -> None:
    await _send_simple(send, status, json.dumps({"error": message}).encode(), "application/json")


class AccessMiddleware:
    """Require a logged-in session (or open access) and a CSRF token on unsafe methods.

    Runs inside ``SessionMiddleware`` (it needs ``scope["session"]``). Sets ``scope["state"]["username"]``.

    Parameters
    ----------
    app : ASGI app
    open_access : bool
        Skip the login: every request runs as :data:`OPEN_ACCESS_USER`.
    """

    def __init__(self, app: ASGIApp, *, open_access: bool) -> None:
        self.app = app
        self.open_access = open_access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Let the request through, or answer 401 / 303 / 403 (see the class docstring)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        session: dict[str, Any] = scope["session"]
        path: str = scope["path"]
        user = OPEN_ACCESS_USER if self.open_access else session.get("user")
        scope.setdefault("state", {})["username"] = user
        public = path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
        if user is None and not public:
            if path.startswith("/api/"):
                await _json_error(send, 401, "login required")
            else:
                query = scope.get("query_string", b"").decode("latin-1")
                target = path + ("?" + query if query else "")
                await _send_simple(send, 303, b"", "text/plain",
                                   [(b"location", ("/login?next=" + quote(target, safe="")).encode())])
            return
        if scope["method"] not in SAFE_METHODS:
            receive = await self._check_csrf(scope, receive, send, session)
            if receive is None:
                return
        await self.app(scope, receive, send)

    async def _check_csrf(self, scope: Scope, receive: Receive, send: Send,
                          session: dict[str, Any]) -> Receive | None:
        """Compare the request's token with the session's; returns a ``receive`` replaying a read body, or None."""
        expected = session.get("csrf")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given = headers.get(CSRF_HEADER)
        replay: Receive = receive
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if given is None and content_type == "application/x-www-form-urlencoded":
            # Read the (small) form to find the token, then hand the same bytes on to the route.
            chunks: list[bytes] = []
            size = 0
            more = True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    return None
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > _MAX_FORM_BYTES:
                    await _json_error(send, 413, "form too large")
                    return None
                chunks.append(chunk)
                more = message.get("more_body", False)
            body = b"".join(chunks)
            given = (parse_qs(body.decode("utf-8", "replace")).get(CSRF_FIELD) or [None])[0]
            sent = False

            async def replay_body() -> Message:
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}
                return await receive()

            replay = replay_body
        if not isinstance(expected, str) or not given or not secrets.compare_digest(given, expected):
            await _json_error(send, 403, "CSRF token missing or wrong: reload the page")
            return None
        return replay


class SecurityHeadersMiddleware:
    """Add a strict Content-Security-Policy and related headers; ``no-store`` on everything but static files.

    Parameters
    ----------
    app : ASGI app
    https : bool
        Also send Strict-Transport-Security.
    """

    CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
           "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'")

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        self.https = https

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, adding the headers to its response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                extra = [(b"content-security-policy", self.CSP.encode()), (b"x-content-type-options", b"nosniff"),
                         (b"referrer-policy", b"same-origin"), (b"x-frame-options", b"DENY")]
                if not static and b"cache-control" not in names:
                    extra.append((b"cache-control", b"no-store"))
                if self.https:
                    extra.append((b"strict-transport-security", b"max-age=31536000"))
                message = {**message, "headers": headers + [h for h in extra if h[0] not in names]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


__all__ = ["CSRF_FIELD", "CSRF_HEADER", "OPEN_ACCESS_USER", "AccessMiddleware", "SecurityHeadersMiddleware",
           "UserVerifier", "csrf_token", "safe_next"]
