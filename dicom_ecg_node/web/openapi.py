"""The OpenAPI 3.1 description of the web viewer's API, served at ``/api/openapi.json`` (written by hand)."""

from __future__ import annotations

from typing import Any

_UID = {"name": "uid", "in": "path", "required": True, "description": "SOP Instance UID",
        "schema": {"type": "string", "pattern": "^[0-9.]{1,64}$"}}
_RENDER = [
    {"name": "layout", "in": "query", "schema": {"type": "string", "enum": ["3x4+1", "6x2", "12x1"],
                                                 "default": "3x4+1"}},
    {"name": "speed", "in": "query", "description": "mm/s", "schema": {"type": "number", "enum": [25, 50],
                                                                         "default": 25}},
    {"name": "gain", "in": "query", "description": "mm/mV", "schema": {"type": "number", "enum": [5, 10, 20],
                                                                         "default": 10}},
    {"name": "paper", "in": "query", "schema": {"type": "string", "enum": ["a4", "letter"], "default": "a4"}},
]
_ERROR_BODY = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
_ERRORS = {
    "400": {"description": "Invalid parameter", "content": _ERROR_BODY},
    "401": {"description": "Not logged in", "content": _ERROR_BODY},
    "404": {"description": "Unknown ECG, group or patient", "content": _ERROR_BODY},
}


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


def openapi_document() -> dict[str, Any]:
    """The API description (a fresh dict per call).

    Returns
    -------
    dict
        An OpenAPI 3.1 document.
    """
    measurements = {"type": "object", "additionalProperties": {"type": "number"},
                    "description": "Known values only, among heart_rate_bpm, pr_ms, qrs_ms, qt_ms, qtc_ms, "
                                   "p_axis_deg, axis_deg, t_axis_deg."}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "dicom-ecg-node web viewer API",
            "version": "1",
            "description": (
                "Read the node's ECGs. Authentication: POST /login (form fields username, password, csrf_token "
                "from GET /api/me or the login page) sets a session cookie (HttpOnly, SameSite=Strict, Secure "
                "under HTTPS). Every POST must carry the session's CSRF token in the X-CSRF-Token header. "
                "Without a session every path answers 401 (API) or redirects to /login (pages).\n\n"
                "Scale: the pages draw 1 mm of ECG paper as 1 CSS millimetre (96/25.4 CSS px) at 100 % zoom; "
                "whether that is a true millimetre on a screen depends on the display and the browser's "
                "devicePixelRatio. Calipers convert through the page's mm/s and mm/mV, so they read ms and µV "
                "of the recording whatever the zoom."),
        },
        "paths": {
            "/api/ecgs": {"get": {
                "summary": "Worklist: stored ECGs, newest first",
                "parameters": [
                    {"name": "since", "in": "query", "description": "Only ECGs with id greater than this",
                     "schema": {"type": "integer"}},
                    {"name": "before", "in": "query", "description": "Only ECGs with id below this (paging)",
                     "schema": {"type": "integer"}},
                    {"name": "patient", "in": "query", "description": "Patient ID (exact)",
                     "schema": {"type": "string"}},
                    {"name": "flagged", "in": "query", "description": "Only ECGs with serial-comparison flags",
                     "schema": {"type": "boolean"}},
                    {"name": "unreviewed", "in": "query", "description": "Only ECGs the user has not reviewed",
                     "schema": {"type": "boolean"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500,
                                                                "default": 100}},
                ],
                "responses": {"200": {"description": "Worklist", "content": _json("Worklist")}, **_ERRORS},
            }},
            "/api/ecgs/{uid}": {"get": {
                "summary": "One ECG: metadata, groups, channels, measurements, flags, prior",
                "parameters": [_UID],
                "responses": {"200": {"description": "ECG", "content": _json("EcgDetail")}, **_ERRORS},
            }},
            "/api/ecgs/{uid}/groups/{index}/samples": {"get": {
                "summary": "Calibrated samples of one multiplex group",
                "description": (
                    "Body: n_channels x n_samples float32 little-endian values, channel-major (all samples of "
                    "channel 0, then channel 1, ...), i.e. a C-order array of shape (n_channels, n_samples). "
                    "Voltage channels are in µV (stored value x sensitivity x correction + baseline, PS3.3 "
                    "C.10.9.1.4, converted from the sent unit); other channels keep their own unit (see "
                    "channels[].units). NaN marks a missing sample (Waveform Padding Value). Headers: "
                    "X-Channels, X-Samples, X-Sampling-Frequency (Hz), X-Units (comma-separated)."),
                "parameters": [_UID, {"name": "index", "in": "path", "required": True,
                                      "schema": {"type": "integer", "minimum": 0}}],
                "responses": {"200": {"description": "Samples", "content": {"application/octet-stream": {
                    "schema": {"type": "string", "format": "binary"}}}}, **_ERRORS},
            }},
            "/api/ecgs/{uid}/layout": {"get": {
                "summary": "The printout's geometry in mm: grid, panels (lead, x, baseline, time window, channel), "
                           "calibration pulses, per-channel display centre (µV)",
                "parameters": [_UID, *_RENDER],
                "responses": {"200": {"description": "Layout", "content": _json("Layout")}, **_ERRORS},
            }},
            "/api/ecgs/{uid}/overlay": {"get": {
                "summary": "Current and prior median beats per lead, aligned on QRS onset, as mm polylines",
                "parameters": [_UID, *_RENDER],
                "responses": {"200": {"description": "Overlay page", "content": _json("Layout")},
                              "422": {"description": "No median beats to overlay", "content": _json("Error")},
                              **_ERRORS},
            }},
            "/api/ecgs/{uid}/pdf": {"get": {
                "summary": "Vector PDF printout at true scale, rendered on demand",
                "parameters": [_UID, *_RENDER, {"name": "prior", "in": "query", "description":
                                                "Add the serial overlay page", "schema": {"type": "boolean"}}],
                "responses": {"200": {"description": "PDF", "content": {"application/pdf": {
                    "schema": {"type": "string", "format": "binary"}}}}, **_ERRORS},
            }},
            "/api/ecgs/{uid}/review": {"post": {
                "summary": "Mark or unmark the ECG as reviewed by the logged-in user",
                "parameters": [_UID, {"name": "X-CSRF-Token", "in": "header", "required": True,
                                      "schema": {"type": "string"}}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"reviewed": {"type": "boolean"}}, "required": ["reviewed"]}}}},
                "responses": {"200": {"description": "Updated entry", "content": _json("EcgSummary")},
                              "403": {"description": "CSRF token missing or wrong", "content": _json("Error")},
                              **_ERRORS},
            }},
            "/api/patients/{patient_id}/timeline": {"get": {
                "summary": "A patient's ECGs in true (UTC) time order, earliest first",
                "parameters": [{"name": "patient_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "Timeline", "content": _json("Timeline")}, **_ERRORS},
            }},
            "/api/events": {"get": {
                "summary": "Server-Sent Events: an 'ecg' event (data: EcgSummary) per newly stored ECG",
                "description": (
                    "Each 'ecg' event has id = the ECG's worklist id. A client that reconnects with the "
                    "Last-Event-ID header (browsers do so by themselves) receives every ECG stored after that "
                    "id, in order. Without it, 'since' gives the cursor; without both, only ECGs stored from now "
                    "on are sent. A first 'ready' event (no id) carries the cursor; comment lines are keep-alive "
                    "pings."),
                "parameters": [{"name": "Last-Event-ID", "in": "header", "schema": {"type": "string"}},
                               {"name": "since", "in": "query", "schema": {"type": "integer"}}],
                "responses": {"200": {"description": "Event stream",
                                      "content": {"text/event-stream": {"schema": {"type": "string"}}}}, **_ERRORS},
            }},
            "/api/me": {"get": {
                "summary": "The logged-in user, the session's CSRF token, and whether login is disabled",
                "responses": {"200": {"description": "Session", "content": {"application/json": {"schema": {
                    "type": "object", "properties": {"user": {"type": "string"}, "csrf_token": {"type": "string"},
                                                     "open_access": {"type": "boolean"}}}}}}, "401": _ERRORS["401"]},
            }},
        },
        "components": {"schemas": {
            "Error": {"type": "object", "properties": {"error": {"type": "string"}}},
            "EcgSummary": {"type": "object", "properties": {
                "id": {"type": "integer", "description": "Worklist id (grows with each stored ECG)"},
                "sop_instance_uid": {"type": "string"}, "sop_class_uid": {"type": "string"},
                "study_instance_uid": {"type": "string"},
                "patient": {"type": "object", "properties": {
                    "id": {"type": "string"}, "issuer": {"type": "string"}, "name": {"type": ["string", "null"]},
                    "birth_date": {"type": ["string", "null"]}, "sex": {"type": ["string", "null"]}}},
                "acquisition": {"type": "object", "properties": {
                    "dicom": {"type": ["string", "null"], "description": "As the cart wrote it"},
                    "utc": {"type": ["string", "null"], "format": "date-time"},
                    "local": {"type": ["string", "null"], "format": "date-time",
                              "description": "In the cart's own UTC offset"},
                    "utc_offset_minutes": {"type": ["integer", "null"]}}},
                "received_at": {"type": "string", "format": "date-time"},
                "device": {"type": "object", "properties": {
                    "manufacturer": {"type": ["string", "null"]}, "model": {"type": ["string", "null"]},
                    "serial": {"type": ["string", "null"]}, "sender_ae": {"type": ["string", "null"]}}},
                "measurements": {"type": "object", "properties": {
                    "cart": measurements, "node": {"oneOf": [measurements, {"type": "null"}]}}},
                "flags": {"type": "array", "items": {"type": "object", "properties": {
                    "rule": {"type": "string"}, "leads": {"type": "array", "items": {"type": "string"}},
                    "description": {"type": "string"}}}},
                "reviewed_by": {"type": "array", "items": {"type": "object", "properties": {
                    "user": {"type": "string"}, "at": {"type": "string", "format": "date-time"}}}},
                "reviewed": {"type": "boolean", "description": "Reviewed by the logged-in user"},
            }},
            "Worklist": {"type": "object", "properties": {
                "items": {"type": "array", "items": {"$ref": "#/components/schemas/EcgSummary"}},
                "latest_id": {"type": "integer", "description": "Newest ECG id: the cursor for /api/events"}}},
            "EcgDetail": {"allOf": [{"$ref": "#/components/schemas/EcgSummary"}, {"type": "object", "properties": {
                "groups": {"type": "array", "items": {"type": "object", "properties": {
                    "index": {"type": "integer"}, "label": {"type": "string"},
                    "sampling_frequency": {"type": "number"}, "n_samples": {"type": "integer"},
                    "n_channels": {"type": "integer"}, "duration_s": {"type": "number"},
                    "samples_url": {"type": "string"},
                    "channels": {"type": "array", "items": {"type": "object", "properties": {
                        "index": {"type": "integer"}, "label": {"type": "string"},
                        "lead": {"type": ["string", "null"], "description": "Canonical lead (I, II, ..., V6)"},
                        "units": {"type": ["string", "null"], "description": "Unit of the samples endpoint"},
                        "units_sent": {"type": ["string", "null"]}}}}}}},
                "rhythm_group": {"type": ["integer", "null"]}, "median_group": {"type": ["integer", "null"]},
                "statements": {"type": "array", "items": {"type": "string"}},
                "warnings": {"type": "array", "items": {"type": "string"}},
                "prior": {"type": ["string", "null"], "description": "SOP Instance UID of the previous ECG"},
                "pdf_url": {"type": "string"}}}]},
            "Layout": {"type": "object", "description": "Page geometry in mm, y downwards (see render.layout)",
                       "properties": {
                           "speed_mm_s": {"type": "number"}, "gain_mm_mv": {"type": "number"},
                           "layout": {"type": "string"}, "grid": {"type": "object"},
                           "panels": {"type": "array", "items": {"type": "object"}},
                           "calibration": {"type": "array", "items": {"type": "array"}},
                           "group": {"type": ["integer", "null"]},
                           "center_uv": {"type": "array", "items": {"type": ["number", "null"]}}}},
            "Timeline": {"type": "object", "properties": {
                "patient_id": {"type": "string"},
                "items": {"type": "array", "items": {"$ref": "#/components/schemas/EcgSummary"}}}},
        }},
    }


__all__ = ["openapi_document"]
