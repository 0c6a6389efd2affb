"""What every route of the web viewer needs, kept in ``app.state.ctx`` (one per app, never module-global)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from starlette.requests import Request

from dicom_ecg_node.services.events import EventHub
from dicom_ecg_node.services.viewer import ViewerService
from dicom_ecg_node.web.auth import UserVerifier


@dataclass
class WebContext:
    """Services and settings of one web app.

    Attributes
    ----------
    viewer : ViewerService
    hub : EventHub or None
        In-process "stored" notifications (absent in a process that stores nothing itself).
    verify_user : callable or None
        ``verify_user(username, password) -> bool``; ``None`` means nobody can log in (unless open access).
    open_access : bool
        ``serve --http-open``: no login, a banner on every page.
    https : bool
        Served over TLS (the session cookie is then ``Secure``).
    poll_s : float
        How often an event stream reads the catalog for ECGs stored by other processes.
    stopping : threading.Event
        Set when the server stops, so that event streams end.
    """

    viewer: ViewerService
    hub: EventHub | None
    verify_user: UserVerifier | None
    open_access: bool = False
    https: bool = False
    poll_s: float = 1.0
    stopping: threading.Event = field(default_factory=threading.Event)


def ctx(request: Request) -> WebContext:
    """The :class:`WebContext` of the app serving ``request``."""
    return request.app.state.ctx  # type: ignore[no-any-return]


def username(request: Request) -> str | None:
    """The logged-in user (or the open-access user) of ``request``."""
    return getattr(request.state, "username", None)
