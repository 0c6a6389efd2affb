/* ECG view: the printout's layout drawn on a <canvas> at 1 mm = 1 CSS mm (96/25.4 CSS px) x zoom, backed by
   devicePixelRatio device pixels per CSS px; calibrated µV samples from the binary API; Pointer Events calipers
   that read the recording's ms and µV through the page's mm/s and mm/mV (so they are right at any zoom). */
"use strict";

(() => {
  const { el, getJSON, postJSON, fmtMeas, fmtTime, patientName, flagsCell, device } = ECG;
  const CSS_PX_PER_MM = 96 / 25.4;
  const main = document.getElementById("ecg");
  const uid = main.dataset.uid;
  const canvas = document.getElementById("ecg-canvas");
  const wrap = document.getElementById("canvas-wrap");
  const readout = document.getElementById("caliper-readout");
  const controls = {
    layout: document.getElementById("c-layout"), gain: document.getElementById("c-gain"),
    speed: document.getElementById("c-speed"), zoom: document.getElementById("c-zoom"),
    prior: document.getElementById("c-prior"), reviewed: document.getElementById("c-reviewed"),
  };
  const caliperCanvas = el("canvas", { id: "caliper-canvas" });
  wrap.style.position = "relative";
  caliperCanvas.style.position = "absolute";
  caliperCanvas.style.left = "0";
  caliperCanvas.style.top = "0";
  caliperCanvas.style.touchAction = "none";
  wrap.append(caliperCanvas);

  let detail = null;
  const sampleCache = new Map(); // group index -> { data: Float32Array, nChannels, nSamples, fs }
  let geom = null;               // what is on the canvas now (mm frame, scale), also exposed in data-geometry
  let caliper = null;            // { x0, y0, x1, y1 } CSS px relative to the canvas

  function params() {
    const q = new URLSearchParams({ layout: controls.layout.value, gain: controls.gain.value,
                                    speed: controls.speed.value });
    return q.toString();
  }

  async function samples(index) {
    if (!sampleCache.has(index)) {
      const g = detail.groups[index];
      const r = await fetch(g.samples_url, { credentials: "same-origin" });
      if (!r.ok) throw new Error("samples: " + r.status);
      const buf = await r.arrayBuffer();
      const nChannels = Number(r.headers.get("X-Channels"));
      const nSamples = Number(r.headers.get("X-Samples"));
      // float32 little endian, channel-major: read through a DataView so big-endian hosts are right too.
      const view = new DataView(buf);
      const data = new Float32Array(nChannels * nSamples);
      for (let i = 0; i < data.length; i++) data[i] = view.getFloat32(4 * i, true);
      sampleCache.set(index, { data, nChannels, nSamples, fs: Number(r.headers.get("X-Sampling-Frequency")) });
    }
    return sampleCache.get(index);
  }

  function setupCanvas(frame) {
    const g = frame.grid;
    let pxPerMm = CSS_PX_PER_MM;
    if (controls.zoom.value === "fit") pxPerMm = Math.max(1, (wrap.clientWidth - 2) / g.width);
    const dpr = window.devicePixelRatio || 1;
    const cssW = g.width * pxPerMm, cssH = g.height * pxPerMm;
    for (const c of [canvas, caliperCanvas]) {
      c.style.width = cssW + "px";
      c.style.height = cssH + "px";
      c.width = Math.round(cssW * dpr);
      c.height = Math.round(cssH * dpr);
    }
    const ctx = canvas.getContext("2d");
    // Page millimetres straight to device pixels: scale = dpr x CSS px per mm, origin at the grid's corner.
    const k = dpr * pxPerMm;
    ctx.setTransform(k, 0, 0, k, -g.x * k, -g.y * k);
    geom = { pxPerMm, dpr, originX: g.x, originY: g.y, width: g.width, height: g.height,
             speed: frame.speed_mm_s, gain: frame.gain_mm_mv, layout: frame.layout, panels: frame.panels };
    canvas.dataset.geometry = JSON.stringify(geom);
    return { ctx, k };
  }

  function drawGrid(ctx, k, g) {
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(g.x, g.y, g.width, g.height);
    const minPx = 1 / k; // never thinner than one device pixel
    for (const major of [false, true]) {
      const step = g.minor_mm, ratio = Math.round(g.major_mm / g.minor_mm);
      const stroke = major ? g.major : g.minor;
      ctx.strokeStyle = stroke.colour;
      ctx.lineWidth = Math.max(stroke.width_mm, minPx);
      ctx.beginPath();
      const nx = Math.round(g.width / step), ny = Math.round(g.height / step);
      for (let i = 0; i <= nx; i++) {
        if ((i % ratio === 0) !== major) continue;
        ctx.moveTo(g.x + i * step, g.y); ctx.lineTo(g.x + i * step, g.y + g.height);
      }
      for (let j = 0; j <= ny; j++) {
        if ((j % ratio === 0) !== major) continue;
        ctx.moveTo(g.x, g.y + j * step); ctx.lineTo(g.x + g.width, g.y + j * step);
      }
      ctx.stroke();
    }
  }

  function polyline(ctx, pts) {
    ctx.beginPath();
    pts.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
    ctx.stroke();
  }

  function rowPitch(frame) {
    const b = [...new Set(frame.panels.map((p) => p.baseline_y))].sort((a, c) => a - c);
    return b.length > 1 ? b[1] - b[0] : frame.grid.height;
  }

  function labels(ctx, frame, colourOf) {
    const pitch = rowPitch(frame);
    const size = Math.min(3.2, pitch * 0.4);
    ctx.font = "bold " + size + "px sans-serif";
    for (const p of frame.panels) {
      ctx.fillStyle = colourOf ? colourOf(p) : "#000";
      ctx.fillText(p.drawn ? p.lead : p.lead + " (absent)", p.x + 1.2, p.baseline_y - pitch / 2 + Math.min(4, pitch * 0.45));
    }
  }

  async function drawEcg() {
    const frame = await getJSON("/api/ecgs/" + encodeURIComponent(uid) + "/layout?" + params());
    const s = frame.group === null ? null : await samples(frame.group);
    const { ctx, k } = setupCanvas(frame);
    const g = frame.grid;
    drawGrid(ctx, k, g);
    ctx.save();
    ctx.beginPath(); ctx.rect(g.x, g.y, g.width, g.height); ctx.clip();
    ctx.strokeStyle = "#000"; ctx.lineWidth = Math.max(0.22, 1 / k); ctx.lineJoin = "round";
    for (const pts of frame.calibration) polyline(ctx, pts);
    if (s) {
      const channels = detail.groups[frame.group].channels;
      for (const p of frame.panels) {
        if (p.channel === null || p.channel === undefined) continue;
        const base = p.channel * s.nSamples;
        const centre = frame.center_uv[p.channel] || 0;
        const skew = channels[p.channel].skew_s || 0;
        const i0 = Math.max(0, Math.ceil((p.t0_s - skew) * s.fs - 1e-9));
        const i1 = Math.min(s.nSamples - 1, Math.ceil((p.t1_s - skew) * s.fs - 1e-9) - 1);
        ctx.beginPath();
        let pen = false;
        for (let i = i0; i <= i1; i++) {
          const v = s.data[base + i];
          if (!Number.isFinite(v)) { pen = false; continue; }
          const x = p.x + (i / s.fs + skew - p.t0_s) * frame.speed_mm_s;
          const y = p.baseline_y - ((v - centre) / 1000) * frame.gain_mm_mv;
          if (pen) ctx.lineTo(x, y); else { ctx.moveTo(x, y); pen = true; }
        }
        ctx.stroke();
      }
    }
    ctx.restore();
    labels(ctx, frame);
    document.getElementById("ecg-notes").textContent = frame.notes.join(" · ");
    canvas.dataset.ready = "ecg";
  }

  async function drawOverlay() {
    const frame = await getJSON("/api/ecgs/" + encodeURIComponent(uid) + "/overlay?" + params());
    const { ctx, k } = setupCanvas(frame);
    const g = frame.grid;
    drawGrid(ctx, k, g);
    ctx.save();
    ctx.beginPath(); ctx.rect(g.x, g.y, g.width, g.height); ctx.clip();
    for (const p of frame.polylines) {
      ctx.strokeStyle = p.stroke.colour;
      ctx.lineWidth = Math.max(p.stroke.width_mm, 1 / k);
      ctx.setLineDash(p.stroke.dash_mm || []);
      polyline(ctx, p.points);
    }
    ctx.restore();
    labels(ctx, frame, (p) => (p.changed ? "#c00000" : "#000"));
    document.getElementById("ecg-notes").textContent =
      "Current (black) and prior (blue, dashed) median beats, aligned on QRS onset. " + frame.notes.join(" · ");
    canvas.dataset.ready = "overlay";
  }

  async function redraw() {
    canvas.dataset.ready = "";
    try {
      if (controls.prior.checked) await drawOverlay(); else await drawEcg();
    } catch (e) {
      document.getElementById("ecg-notes").textContent = e.message;
      if (controls.prior.checked) { controls.prior.checked = false; await drawEcg(); }
    }
    clearCaliper();
  }

  // -- calipers --------------------------------------------------------------------------------------------
  function drawCaliper() {
    const c = caliperCanvas.getContext("2d");
    const dpr = geom ? geom.dpr : 1;
    c.setTransform(dpr, 0, 0, dpr, 0, 0);
    c.clearRect(0, 0, caliperCanvas.width, caliperCanvas.height);
    if (!caliper) return;
    const h = caliperCanvas.height / dpr;
    c.strokeStyle = "#0b57d0"; c.lineWidth = 1.5;
    c.beginPath();
    c.moveTo(caliper.x0, 0); c.lineTo(caliper.x0, h);
    c.moveTo(caliper.x1, 0); c.lineTo(caliper.x1, h);
    c.moveTo(caliper.x0, caliper.y0); c.lineTo(caliper.x1, caliper.y0);
    c.moveTo(caliper.x1 - 6, caliper.y1); c.lineTo(caliper.x1 + 6, caliper.y1);
    c.stroke();
  }

  function updateReadout() {
    if (!caliper || !geom) return;
    const dxMm = Math.abs(caliper.x1 - caliper.x0) / geom.pxPerMm;
    const dyMm = (caliper.y0 - caliper.y1) / geom.pxPerMm; // up is positive voltage
    const ms = (dxMm / geom.speed) * 1000;
    const uv = (dyMm / geom.gain) * 1000;
    readout.dataset.ms = ms.toFixed(1);
    readout.dataset.uv = uv.toFixed(1);
    readout.textContent = "Δt " + Math.round(ms) + " ms" + (ms > 0 ? " (" + Math.round(60000 / ms) + " /min)" : "") +
      "  ·  ΔV " + Math.round(uv) + " µV";
  }

  function clearCaliper() {
    caliper = null;
    readout.textContent = "–";
    readout.dataset.ms = "";
    readout.dataset.uv = "";
    drawCaliper();
  }

  function pos(ev) {
    const r = caliperCanvas.getBoundingClientRect();
    return [ev.clientX - r.left, ev.clientY - r.top];
  }

  caliperCanvas.addEventListener("pointerdown", (ev) => {
    const [x, y] = pos(ev);
    caliper = { x0: x, y0: y, x1: x, y1: y, active: true };
    caliperCanvas.setPointerCapture(ev.pointerId);
    drawCaliper();
    updateReadout();
    ev.preventDefault();
  });
  caliperCanvas.addEventListener("pointermove", (ev) => {
    if (!caliper || !caliper.active) return;
    [caliper.x1, caliper.y1] = pos(ev);
    drawCaliper();
    updateReadout();
  });
  const end = (ev) => {
    if (!caliper || !caliper.active) return;
    [caliper.x1, caliper.y1] = pos(ev);
    caliper.active = false;
    drawCaliper();
    updateReadout();
  };
  caliperCanvas.addEventListener("pointerup", end);
  caliperCanvas.addEventListener("pointercancel", end);
  document.getElementById("caliper-clear").addEventListener("click", clearCaliper);

  // -- page ------------------------------------------------------------------------------------------------
  function header() {
    const d = detail;
    document.getElementById("ecg-title").replaceChildren(
      patientName(d.patient) + "  ", el("a", { href: "/patients/" + encodeURIComponent(d.patient.id) }, d.patient.id),
      "  ·  " + fmtTime(d.acquisition) + "  ·  " + device(d.device));
    document.getElementById("ecg-meas").textContent =
      "Cart: " + fmtMeas(d.measurements.cart) + (d.measurements.node ? "   Node: " + fmtMeas(d.measurements.node) : "");
    document.getElementById("ecg-flags").replaceChildren(...flagsCell(d.flags));
    document.getElementById("patient-link").href = "/patients/" + encodeURIComponent(d.patient.id);
    controls.reviewed.checked = d.reviewed;
    controls.prior.disabled = !d.prior;
    controls.prior.parentElement.title = d.prior ? "Overlay the previous ECG's median beats" : "No prior ECG";
  }

  function pdfLink() {
    document.getElementById("pdf-link").href = "/api/ecgs/" + encodeURIComponent(uid) + "/pdf?" + params() +
      (controls.prior.checked ? "&prior=1" : "");
  }

  for (const c of [controls.layout, controls.gain, controls.speed, controls.zoom, controls.prior])
    c.addEventListener("change", () => { pdfLink(); redraw(); });
  controls.reviewed.addEventListener("change", async () => {
    try { await postJSON("/api/ecgs/" + encodeURIComponent(uid) + "/review", { reviewed: controls.reviewed.checked }); }
    catch (e) { controls.reviewed.checked = !controls.reviewed.checked; alert(e.message); }
  });
  let resizeTimer = null;
  window.addEventListener("resize", () => {
    if (controls.zoom.value !== "fit") return;
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(redraw, 150);
  });

  getJSON("/api/ecgs/" + encodeURIComponent(uid)).then((d) => {
    detail = d;
    header();
    pdfLink();
    return redraw();
  }).catch((e) => { document.getElementById("ecg-title").textContent = e.message; });
})();
