"""The Starlette application of the web viewer: routes, middleware stack and error mapping."""

from __future__ import annotations

import logging
import secrets
import threading
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from dicom_ecg_node.config import NodeConfig
from dicom_ecg_node.errors import EcgNodeError, NotFoundError, RenderError, WaveformError
from dicom_ecg_node.services.events import EventHub
from dicom_ecg_node.services.viewer import ViewerService
from dicom_ecg_node.web import api, pages
from dicom_ecg_node.web.auth import AccessMiddleware, SecurityHeadersMiddleware, UserVerifier
from dicom_ecg_node.web.context import WebContext

log = logging.getLogger("dicom_ecg_node.web")

#: Session lifetime (seconds): a working day; the cookie then expires and the user logs in again.
SESSION_MAX_AGE_S = 8 * 3600
SESSION_COOKIE = "ecgnode_session"


def _error(request: Request, status: int, message: str) -> Response:
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message}, status_code=status)
    return PlainTextResponse(message, status_code=status)


async def _no_icon(request: Request) -> Response:
    return Response(status_code=204)  # browsers ask for it on every page; answer without a 404 in their console


async def _bad_request(request: Request, exc: Exception) -> Response:
    return _error(request, 400, str(exc))


async def _not_found(request: Request, exc: Exception) -> Response:
    return _error(request, 404, str(exc))


async def _unprocessable(request: Request, exc: Exception) -> Response:
    return _error(request, 422, str(exc))


async def _node_error(request: Request, exc: Exception) -> Response:
    log.error("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    return _error(request, 500, f"{type(exc).__name__}: {exc}")


def create_app(config: NodeConfig, viewer: ViewerService, *, hub: EventHub | None = None,
               verify_user: UserVerifier | None = None, open_access: bool | None = None,
               https: bool | None = None, secret_key: str | None = None, poll_s: float = 1.0,
               stopping: threading.Event | None = None) -> Starlette:
    """Build the web viewer.

    Parameters
    ----------
    config : NodeConfig
        Node settings (``http_open`` and ``tls_cert`` give the defaults of ``open_access`` and ``https``).
    viewer : ViewerService
        The read side (catalog, archive, analysis).
    hub : EventHub, optional
        In-process "stored" notifications, to push new ECGs before the next catalog poll.
    verify_user : callable, optional
        ``verify_user(username, password) -> bool``. Without it nobody can log in (unless ``open_access``).
    open_access : bool, optional
        No login (``serve --http-open``): logged as a warning here and shown as a banner on every page.
    https : bool, optional
        Served over TLS: the session cookie gets ``Secure`` and responses HSTS.
    secret_key : str, optional
        Session signing key; random by default (sessions then end when the node restarts).
    poll_s : float
        Catalog poll interval of the event streams (stores by other worker processes).
    stopping : threading.Event, optional
        Set it to end the event streams (the server does so when it stops).

    Returns
    -------
    starlette.applications.Starlette
    """
    if open_access is None:
        open_access = bool(getattr(config, "http_open", False))
    if https is None:
        https = getattr(config, "tls_cert", None) is not None and getattr(config, "tls_key", None) is not None
    if open_access:
        log.warning("WEB VIEWER OPEN ACCESS: login is disabled (--http-open); anyone who can reach the HTTP port "
                    "sees patient data. Use for demonstrations only.")
    elif verify_user is None:
        log.warning("web viewer: no user verification available; nobody can log in")
    context = WebContext(viewer=viewer, hub=hub, verify_user=verify_user, open_access=open_access, https=https,
                         poll_s=poll_s, stopping=stopping or threading.Event())
    static_dir = Path(__file__).resolve().parent / "static"
    routes = [
        Route("/", pages.worklist),
        Route("/favicon.ico", _no_icon),
        Route("/login", pages.login_form, methods=["GET"]),
        Route("/login", pages.login, methods=["POST"]),
        Route("/logout", pages.logout, methods=["POST"]),
        Route("/ecg/{uid}", pages.ecg_view),
        Route("/patients/{patient_id:path}", pages.timeline),
        Route("/api/openapi.json", api.openapi),
        Route("/api/me", api.me),
        Route("/api/ecgs", api.list_ecgs),
        Route("/api/ecgs/{uid}", api.get_ecg),
        Route("/api/ecgs/{uid}/groups/{index:int}/samples", api.get_samples),
        Route("/api/ecgs/{uid}/layout", api.get_layout),
        Route("/api/ecgs/{uid}/overlay", api.get_overlay),
        Route("/api/ecgs/{uid}/pdf", api.get_pdf),
        Route("/api/ecgs/{uid}/review", api.post_review, methods=["POST"]),
        Route("/api/patients/{patient_id:path}/timeline", api.get_timeline),
        Route("/api/events", api.events),
        Mount("/static", app=StaticFiles(directory=static_dir), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeadersMiddleware, https=https),
        Middleware(SessionMiddleware, secret_key=secret_key or secrets.token_urlsafe(32),
                   session_cookie=SESSION_COOKIE, max_age=SESSION_MAX_AGE_S, same_site="strict", https_only=https),
        Middleware(AccessMiddleware, open_access=open_access),
    ]
    app = Starlette(routes=routes, middleware=middleware, exception_handlers={
        api.BadRequest: _bad_request, NotFoundError: _not_found, RenderError: _unprocessable,
        WaveformError: _unprocessable, EcgNodeError: _node_error})
    app.state.ctx = context
    app.state.templates = pages.Templates()
    return app


__all__ = ["SESSION_COOKIE", "SESSION_MAX_AGE_S", "create_app"]
