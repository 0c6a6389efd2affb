"""HTML pages: a server-rendered shell per page (header, banner, CSRF token); the page's script fills it in.

Templates are plain HTML files with ``string.Template`` ``$placeholders`` (package data under ``templates/``);
every substituted value is HTML-escaped here. No inline script or style: the Content-Security-Policy forbids it.
"""

from __future__ import annotations

import html
import logging
import time
from importlib import resources
from string import Template

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from dicom_ecg_node.web.auth import csrf_token, safe_next
from dicom_ecg_node.web.context import ctx, username

log = logging.getLogger("dicom_ecg_node.web")

OPEN_BANNER = ("OPEN ACCESS: login is disabled (serve --http-open). Anyone who can reach this address sees "
               "patient data. For demonstrations only.")


class Templates:
    """The page templates, read once per app from the package data."""

    def __init__(self) -> None:
        folder = resources.files("dicom_ecg_node.web") / "templates"
        self._t = {name: Template((folder / f"{name}.html").read_text(encoding="utf-8"))
                   for name in ("base", "login", "worklist", "ecg", "timeline")}

    def render(self, name: str, **values: str) -> str:
        """Substitute ``values`` (already escaped where needed) into template ``name``."""
        return self._t[name].substitute(values)


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def page(request: Request, title: str, body: str, *, script: str | None = None, status: int = 200) -> HTMLResponse:
    """A full page: ``body`` inside the common shell (header with user and logout, open-access banner)."""
    c, user = ctx(request), username(request)
    templates: Templates = request.app.state.templates
    token = csrf_token(request.session)
    banner = f'<div class="banner-open" role="alert">{_e(OPEN_BANNER)}</div>' if c.open_access else ""
    if user is not None and not c.open_access:
        account = (f'<form method="post" action="/logout" class="logout"><span class="user">{_e(user)}</span>'
                   f'<input type="hidden" name="csrf_token" value="{_e(token)}">'
                   '<button type="submit" id="logout">Log out</button></form>')
    elif c.open_access:
        account = '<span class="user">demo (no login)</span>'
    else:
        account = ""
    scripts = '<script src="/static/common.js" defer></script>' + (
        f'<script src="/static/{_e(script)}" defer></script>' if script else "")
    text = templates.render("base", title=_e(title), csrf=_e(token), banner=banner, account=account, body=body,
                            scripts=scripts)
    return HTMLResponse(text, status_code=status)


async def worklist(request: Request) -> HTMLResponse:
    """``GET /``: the worklist (filled and kept live by ``worklist.js``)."""
    patient = request.query_params.get("patient", "")
    body = request.app.state.templates.render("worklist", patient=_e(patient))
    return page(request, "Worklist", body, script="worklist.js")


async def ecg_view(request: Request) -> HTMLResponse:
    """``GET /ecg/{uid}``: the ECG view (``ecg.js`` draws the canvas)."""
    uid = request.path_params["uid"]
    body = request.app.state.templates.render("ecg", uid=_e(uid))
    return page(request, "ECG", body, script="ecg.js")


async def timeline(request: Request) -> HTMLResponse:
    """``GET /patients/{patient_id}``: the patient's serial ECGs (``timeline.js``)."""
    pid = request.path_params["patient_id"]
    body = request.app.state.templates.render("timeline", patient=_e(pid))
    return page(request, f"Patient {pid}", body, script="timeline.js")


def _login_page(request: Request, error: str = "", status: int = 200) -> HTMLResponse:
    nxt = safe_next(request.query_params.get("next"))
    body = request.app.state.templates.render(
        "login", next=_e(nxt), error=f'<p class="error" role="alert">{_e(error)}</p>' if error else "",
        csrf=_e(csrf_token(request.session)))
    return page(request, "Log in", body, status=status)


async def login_form(request: Request) -> Response:
    """``GET /login``."""
    if ctx(request).open_access or username(request) is not None:
        return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    return _login_page(request)


async def login(request: Request) -> Response:
    """``POST /login``: check the user's password (CSRF already checked by the middleware)."""
    c = ctx(request)
    form = await request.form()
    user = str(form.get("username") or "").strip()
    password = str(form.get("password") or "")
    nxt = safe_next(str(form.get("next") or "/"))
    ok = False
    if user and password and c.verify_user is not None:
        ok = bool(await run_in_threadpool(c.verify_user, user, password))
    if not ok:
        log.warning("web login failed for user %r from %s", user, request.client.host if request.client else "?")
        return _login_page(request, "Unknown user or wrong password." if c.verify_user is not None
                           else "No user database is configured on this node.", status=401)
    # A fresh session at login: nothing chosen before authentication survives (session fixation).
    request.session.clear()
    request.session["user"] = user
    request.session["login_at"] = int(time.time())
    csrf_token(request.session)
    log.info("web login: user %r from %s", user, request.client.host if request.client else "?")
    return RedirectResponse(nxt, status_code=303)


async def logout(request: Request) -> Response:
    """``POST /logout``."""
    user = username(request)
    request.session.clear()
    if user:
        log.info("web logout: user %r", user)
    return RedirectResponse("/login", status_code=303)


__all__ = ["OPEN_BANNER", "Templates", "ecg_view", "login", "login_form", "logout", "page", "timeline", "worklist"]
