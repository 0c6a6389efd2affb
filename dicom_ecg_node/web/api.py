"""The JSON / binary API the pages use (documented for other clients in :mod:`dicom_ecg_node.web.openapi`).

Every handler runs its catalog and decoding work in the thread pool: the event loop only moves bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from dicom_ecg_node.errors import NotFoundError
from dicom_ecg_node.services.viewer import EcgEntry
from dicom_ecg_node.web.context import ctx, username
from dicom_ecg_node.web.openapi import openapi_document

log = logging.getLogger("dicom_ecg_node.web")

#: Events sent per catalog read while an event stream catches up.
_EVENT_BATCH = 100
_SPEEDS = (25.0, 50.0)
_GAINS = (5.0, 10.0, 20.0)


class BadRequest(Exception):
    """A query parameter is invalid (answered with 400 and the message)."""


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _local(utc: datetime | None, offset_minutes: int | None) -> str | None:
    """The acquisition time in the cart's own UTC offset (UTC when the offset is unknown)."""
    if utc is None:
        return None
    zone = timezone(timedelta(minutes=offset_minutes)) if offset_minutes is not None else UTC
    return utc.astimezone(zone).isoformat()


def entry_json(entry: EcgEntry, user: str | None) -> dict[str, Any]:
    """A worklist entry as the API's ``EcgSummary`` object."""
    r = entry.row
    return {
        "id": r.row_id,
        "sop_instance_uid": r.sop_instance_uid,
        "sop_class_uid": r.sop_class_uid,
        "study_instance_uid": r.study_instance_uid,
        "patient": {"id": r.patient_id, "issuer": r.issuer, "name": r.patient_name,
                    "birth_date": r.patient_birth_date, "sex": r.patient_sex},
        "acquisition": {"dicom": r.acquisition_datetime, "utc": _iso(r.acquisition_utc),
                        "local": _local(r.acquisition_utc, r.utc_offset_minutes),
                        "utc_offset_minutes": r.utc_offset_minutes},
        "received_at": _iso(r.received_at),
        "device": {"manufacturer": r.manufacturer, "model": r.model_name, "serial": r.device_serial_number,
                   "sender_ae": r.sender_ae},
        "measurements": {"cart": entry.cart, "node": entry.node},
        "flags": entry.flags,
        "reviewed_by": [{"user": u, "at": _iso(at)} for u, at in entry.reviewed_by],
        "reviewed": any(u == user for u, _ in entry.reviewed_by),
    }


def _int_param(request: Request, name: str, default: int | None = None, *, low: int | None = None,
               high: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise BadRequest(f"{name}: {raw!r} is not an integer") from exc
    if (low is not None and value < low) or (high is not None and value > high):
        raise BadRequest(f"{name}: {value} is outside {low}-{high}")
    return value


def _bool_param(request: Request, name: str) -> bool:
    raw = (request.query_params.get(name) or "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise BadRequest(f"{name}: {raw!r} is not a boolean (true/false)")


def render_options(request: Request) -> Any:
    """RenderOptions from ``layout``, ``speed``, ``gain`` and ``paper`` query parameters (print defaults)."""
    from dicom_ecg_node.render import LAYOUTS, PAPERS, RenderOptions

    q = request.query_params
    layout = q.get("layout") or "3x4+1"
    paper = q.get("paper") or "a4"
    try:
        speed = float(q.get("speed") or 25)
        gain = float(q.get("gain") or 10)
    except ValueError as exc:
        raise BadRequest("speed and gain must be numbers") from exc
    if layout not in LAYOUTS:
        raise BadRequest(f"layout: one of {', '.join(LAYOUTS)}")
    if paper not in PAPERS:
        raise BadRequest(f"paper: one of {', '.join(PAPERS)}")
    if speed not in _SPEEDS or gain not in _GAINS:
        raise BadRequest("speed: 25 or 50 mm/s; gain: 5, 10 or 20 mm/mV")
    return RenderOptions(layout=layout, speed_mm_s=speed, gain_mm_mv=gain, paper=paper)


# ------------------------------------------------------------------------------------------------ handlers


async def openapi(request: Request) -> JSONResponse:
    """``GET /api/openapi.json``."""
    return JSONResponse(openapi_document())


async def me(request: Request) -> JSONResponse:
    """``GET /api/me``: who is logged in, the CSRF token, and whether access is open."""
    from dicom_ecg_node.web.auth import csrf_token

    return JSONResponse({"user": username(request), "csrf_token": csrf_token(request.session),
                         "open_access": ctx(request).open_access})


async def list_ecgs(request: Request) -> JSONResponse:
    """``GET /api/ecgs``: the worklist, newest first."""
    c, user = ctx(request), username(request)
    since = _int_param(request, "since", low=0)
    before = _int_param(request, "before", low=0)
    limit = _int_param(request, "limit", 100, low=1, high=500) or 100
    patient = request.query_params.get("patient") or None
    flagged = _bool_param(request, "flagged")
    unreviewed = _bool_param(request, "unreviewed")
    entries = await run_in_threadpool(c.viewer.worklist, patient_id=patient, flagged=flagged,
                                      unreviewed_by=user if unreviewed else None, before_id=before,
                                      after_id=since, limit=limit)
    latest = await run_in_threadpool(c.viewer.latest_row_id)
    return JSONResponse({"items": [entry_json(e, user) for e in entries], "latest_id": latest})


def _detail_json(request: Request, uid: str) -> dict[str, Any]:
    """Blocking part of :func:`get_ecg`."""
    from dicom_ecg_node.render import canonical_lead
    from dicom_ecg_node.render.layout import pick_median_group, pick_rhythm_group

    c, user = ctx(request), username(request)
    entry = c.viewer.entry(uid)
    rec = c.viewer.recording(uid)
    rhythm, median = pick_rhythm_group(rec), pick_median_group(rec)
    groups = []
    for g in rec.groups:
        groups.append({
            "index": g.index, "label": g.label, "sampling_frequency": float(g.sampling_frequency),
            "n_samples": int(g.n_samples), "n_channels": g.n_channels, "duration_s": float(g.duration_s),
            "samples_url": f"/api/ecgs/{uid}/groups/{g.index}/samples",
            "channels": [{"index": i, "label": ch.label, "lead": canonical_lead(ch), "units_sent": ch.units,
                          "units": "uV" if (ch.units or "").strip() in ("nV", "uV", "µV", "mV", "V") else ch.units,
                          "filter_low_hz": ch.filter_low_hz, "filter_high_hz": ch.filter_high_hz,
                          "notch_hz": ch.notch_hz, "skew_s": ch.skew_s}
                         for i, ch in enumerate(g.channels)],
        })
    out = entry_json(entry, user)
    out.update({
        "groups": groups,
        "rhythm_group": None if rhythm is None else rhythm.index,
        "median_group": None if median is None else median.index,
        "statements": list(rec.statements),
        "warnings": list(rec.warnings),
        "prior": c.viewer.prior_uid(uid),
        "pdf_url": f"/api/ecgs/{uid}/pdf",
    })
    return out


async def get_ecg(request: Request) -> JSONResponse:
    """``GET /api/ecgs/{uid}``: metadata, groups, channels, measurements, flags, prior."""
    return JSONResponse(await run_in_threadpool(_detail_json, request, request.path_params["uid"]))


async def get_samples(request: Request) -> Response:
    """``GET /api/ecgs/{uid}/groups/{index}/samples``: float32 little-endian, channel-major, µV."""
    c = ctx(request)
    uid, index = request.path_params["uid"], int(request.path_params["index"])
    gs = await run_in_threadpool(c.viewer.samples, uid, index)
    body = gs.data.astype("<f4", copy=False).tobytes(order="C")
    n_channels, n_samples = gs.data.shape
    return Response(body, media_type="application/octet-stream", headers={
        "X-Channels": str(n_channels), "X-Samples": str(n_samples),
        "X-Sampling-Frequency": repr(gs.sampling_frequency), "X-Sample-Layout": "channel-major float32 LE",
        "X-Units": ",".join(u or "" for u in gs.units)})


def _stroke(s: Any) -> dict[str, Any]:
    return {"colour": s.colour, "width_mm": s.width_mm, "dash_mm": list(s.dash_mm)}


def _page_frame(page: Any) -> dict[str, Any]:
    g = page.grid
    return {"width_mm": page.width_mm, "height_mm": page.height_mm, "speed_mm_s": page.speed_mm_s,
            "gain_mm_mv": page.gain_mm_mv, "layout": page.layout, "notes": list(page.notes),
            "grid": None if g is None else {"x": g.x, "y": g.y, "width": g.width, "height": g.height,
                                            "minor_mm": g.minor_mm, "major_mm": g.major_mm,
                                            "minor": _stroke(g.minor), "major": _stroke(g.major)},
            "panels": [{"lead": p.lead, "x": p.x, "baseline_y": p.baseline_y, "width": p.width, "t0_s": p.t0_s,
                        "t1_s": p.t1_s, "row": p.row, "column": p.column, "drawn": p.drawn, "changed": p.changed}
                       for p in page.panels]}


def _layout_json(request: Request, uid: str) -> dict[str, Any]:
    from dicom_ecg_node.render import lead_index
    from dicom_ecg_node.render.layout import pick_rhythm_group

    c = ctx(request)
    options = render_options(request)
    page = c.viewer.layout(uid, options)
    rec = c.viewer.recording(uid)
    group = pick_rhythm_group(rec)
    out = _page_frame(page)
    leads = lead_index(group) if group is not None else {}
    labels = {ch.label: i for i, ch in enumerate(group.channels)} if group is not None else {}
    for p in out["panels"]:
        p["channel"] = leads.get(p["lead"], labels.get(p["lead"])) if p["drawn"] else None
    center: list[float | None] = []
    if group is not None:
        gs = c.viewer.samples(uid, group.index)
        for row in gs.data:
            finite = row[np.isfinite(row)]
            # The printout draws each lead around its median (AC-coupled amplifiers): the page does the same.
            center.append(float(np.median(finite)) if finite.size else None)
    out.update({"group": None if group is None else group.index, "center_uv": center,
                "calibration": [p.points.tolist() for p in page.traces("calibration")]})
    return out


async def get_layout(request: Request) -> JSONResponse:
    """``GET /api/ecgs/{uid}/layout``: the printout's geometry in mm (grid, panels, calibration pulses)."""
    return JSONResponse(await run_in_threadpool(_layout_json, request, request.path_params["uid"]))


def _overlay_json(request: Request, uid: str) -> dict[str, Any]:
    c = ctx(request)
    page = c.viewer.overlay(uid, render_options(request))
    if page is None:
        raise NotFoundError("no prior ECG of this patient to compare with")
    out = _page_frame(page)
    out["prior"] = c.viewer.prior_uid(uid)
    out["polylines"] = [{"role": p.role, "lead": p.lead, "stroke": _stroke(p.stroke),
                         "points": np.round(p.points, 3).tolist()}
                        for p in page.polylines]
    out["texts"] = [{"x": t.x, "y": t.y, "text": t.text, "size_mm": t.size_mm, "anchor": t.anchor, "bold": t.bold,
                     "colour": t.colour, "role": t.role}
                    for t in page.texts if t.role in ("lead-label", "legend", "overlay")]
    return out


async def get_overlay(request: Request) -> JSONResponse:
    """``GET /api/ecgs/{uid}/overlay``: current and prior median beats laid out in mm (404 without a prior)."""
    return JSONResponse(await run_in_threadpool(_overlay_json, request, request.path_params["uid"]))


async def get_pdf(request: Request) -> Response:
    """``GET /api/ecgs/{uid}/pdf``: the vector PDF printout, rendered on demand."""
    c, uid = ctx(request), request.path_params["uid"]
    options = render_options(request)
    with_prior = _bool_param(request, "prior")
    data = await run_in_threadpool(c.viewer.pdf, uid, options, with_prior=with_prior)
    return Response(data, media_type="application/pdf",
                    headers={"Content-Disposition": f'inline; filename="ecg-{uid}.pdf"'})


async def post_review(request: Request) -> JSONResponse:
    """``POST /api/ecgs/{uid}/review``: ``{"reviewed": true|false}`` for the logged-in user."""
    c, uid, user = ctx(request), request.path_params["uid"], username(request)
    try:
        body = await request.json()
    except ValueError as exc:
        raise BadRequest("body must be JSON: {\"reviewed\": true}") from exc
    reviewed = body.get("reviewed", True) if isinstance(body, dict) else None
    if not isinstance(reviewed, bool) or user is None:
        raise BadRequest("reviewed must be true or false")
    await run_in_threadpool(c.viewer.set_reviewed, uid, user, reviewed)
    entry = await run_in_threadpool(c.viewer.entry, uid)
    return JSONResponse(entry_json(entry, user))


def _timeline_json(request: Request, patient_id: str) -> dict[str, Any]:
    c, user = ctx(request), username(request)
    items = []
    for t, entry in c.viewer.timeline(patient_id):
        item = entry_json(entry, user) if entry is not None else {"sop_instance_uid": t.sop_instance_uid}
        items.append(item)
    if not items:
        raise NotFoundError(f"no ECG of patient {patient_id}")
    return {"patient_id": patient_id, "items": items}


async def get_timeline(request: Request) -> JSONResponse:
    """``GET /api/patients/{patient_id}/timeline``: the patient's ECGs, earliest first by true (UTC) time."""
    return JSONResponse(await run_in_threadpool(_timeline_json, request, request.path_params["patient_id"]))


async def events(request: Request) -> EventSourceResponse:
    """``GET /api/events``: Server-Sent Events ``ecg`` for every ECG stored after the client's cursor.

    The cursor is the ``Last-Event-ID`` header (sent by browsers when they reconnect), else ``since``, else the
    newest ECG now. Events are read from the catalog, so ECGs stored by other worker processes arrive too
    (within ``poll_s``); an in-process notification only wakes the stream sooner.
    """
    c, user = ctx(request), username(request)
    raw = request.headers.get("last-event-id") or request.query_params.get("since")
    try:
        cursor = int(raw) if raw else None
    except ValueError as exc:
        raise BadRequest("Last-Event-ID / since must be an event id (integer)") from exc
    if cursor is None:
        cursor = await run_in_threadpool(c.viewer.latest_row_id)
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()

    def notify(_event: object) -> None:
        # Called in a C-STORE thread: hand over to the loop (which may have closed if the client left early).
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(wake.set)

    unsubscribe = c.hub.subscribe(notify) if c.hub is not None else None

    async def stream() -> AsyncIterator[ServerSentEvent]:
        nonlocal cursor
        try:
            # No id here: an event without id leaves the browser's Last-Event-ID unchanged.
            yield ServerSentEvent(event="ready", data=json.dumps({"cursor": cursor}), retry=2000)
            while not c.stopping.is_set():
                wake.clear()  # before reading, so a store committed during the read wakes the next wait
                entries = await run_in_threadpool(c.viewer.new_since, cursor, _EVENT_BATCH)
                for e in entries:
                    cursor = e.row.row_id
                    yield ServerSentEvent(id=str(cursor), event="ecg", data=json.dumps(entry_json(e, user)))
                if len(entries) == _EVENT_BATCH:
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), c.poll_s)
        finally:
            if unsubscribe is not None:
                unsubscribe()

    return EventSourceResponse(stream(), ping=15, headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


__all__ = ["BadRequest", "entry_json", "render_options"]
