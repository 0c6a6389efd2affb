/* Shared helpers of the viewer pages. Data is always inserted with textContent, never as HTML. */
"use strict";

const ECG = (() => {
  function csrf() {
    const m = document.querySelector('meta[name="csrf-token"]');
    return m ? m.content : "";
  }

  function toLogin() {
    window.location.assign("/login?next=" + encodeURIComponent(location.pathname + location.search));
  }

  async function getJSON(url) {
    const r = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (r.status === 401) { toLogin(); throw new Error("login required"); }
    if (!r.ok) {
      let msg = r.status + " " + r.statusText;
      try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
      const err = new Error(msg); err.status = r.status; throw err;
    }
    return r.json();
  }

  async function postJSON(url, body) {
    const r = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() }, body: JSON.stringify(body),
    });
    if (r.status === 401) { toLogin(); throw new Error("login required"); }
    if (!r.ok) throw new Error((await r.json()).error || r.statusText);
    return r.json();
  }

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v; else if (k === "dataset") Object.assign(e.dataset, v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  const r0 = (v) => Math.round(v);
  function fmtMeas(m) {
    if (!m || Object.keys(m).length === 0) return "–";
    const parts = [];
    if (m.heart_rate_bpm != null) parts.push(r0(m.heart_rate_bpm) + " bpm");
    if (m.pr_ms != null) parts.push("PR " + r0(m.pr_ms));
    if (m.qrs_ms != null) parts.push("QRS " + r0(m.qrs_ms));
    if (m.qt_ms != null || m.qtc_ms != null)
      parts.push("QT/QTc " + (m.qt_ms != null ? r0(m.qt_ms) : "–") + "/" + (m.qtc_ms != null ? r0(m.qtc_ms) : "–"));
    if (m.axis_deg != null) parts.push("axis " + r0(m.axis_deg) + "°");
    return parts.join("  ");
  }

  function fmtTime(acq) {
    // The cart's own local time (with its UTC offset) as written; the UTC instant is in the tooltip.
    const t = acq && (acq.local || acq.utc);
    if (!t) return "time unknown";
    const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})(?::\d{2}(?:\.\d+)?)?(.*)$/.exec(t);
    if (!m) return t;
    const off = m[3] === "+00:00" ? " UTC" : " (UTC" + m[3] + ")";
    return m[1] + " " + m[2] + off;
  }

  function patientName(p) {
    if (!p || !p.name) return "";
    const [family, given] = p.name.split("=")[0].split("^");
    return (family || "") + (given ? ", " + given : "");
  }

  function flagsCell(flags) {
    return (flags || []).map((f) => el("span", { class: "flag", title: f.description || "" },
      f.rule + (f.leads && f.leads.length ? " (" + f.leads.join(", ") + ")" : "")));
  }

  function device(d) {
    return [d.manufacturer, d.model].filter(Boolean).join(" ") || d.sender_ae || "";
  }

  return { csrf, getJSON, postJSON, el, fmtMeas, fmtTime, patientName, flagsCell, device };
})();
