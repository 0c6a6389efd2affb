/* Worklist: newest first, live via Server-Sent Events. EventSource reconnects by itself and sends Last-Event-ID,
   so a tablet that lost its connection receives every ECG stored meanwhile. */
"use strict";

(() => {
  const { el, getJSON, fmtMeas, fmtTime, patientName, flagsCell, device } = ECG;
  const tbody = document.getElementById("ecg-rows");
  const empty = document.getElementById("empty");
  const live = document.getElementById("live");
  const fFlagged = document.getElementById("f-flagged");
  const fUnreviewed = document.getElementById("f-unreviewed");
  const fPatient = document.getElementById("f-patient");
  const seen = new Set();
  let source = null;

  const params = new URLSearchParams(location.search);
  fFlagged.checked = params.get("flagged") === "1";
  fUnreviewed.checked = params.get("unreviewed") === "1";
  fPatient.value = params.get("patient") || "";

  function matches(item) {
    if (fFlagged.checked && !(item.flags && item.flags.length)) return false;
    if (fUnreviewed.checked && item.reviewed) return false;
    if (fPatient.value.trim() && item.patient.id !== fPatient.value.trim()) return false;
    return true;
  }

  function row(item, fresh) {
    const tr = el("tr", { class: "ecg-row" + (fresh ? " new" : "") + (item.reviewed ? " reviewed" : ""),
                          dataset: { uid: item.sop_instance_uid, id: String(item.id) } },
      el("td", { title: item.acquisition.utc ? "UTC " + item.acquisition.utc : "" }, fmtTime(item.acquisition)),
      el("td", {}, patientName(item.patient)),
      el("td", {}, el("a", { href: "/patients/" + encodeURIComponent(item.patient.id) }, item.patient.id)),
      el("td", {}, device(item.device)),
      el("td", { class: "meas" }, fmtMeas(item.measurements.cart)),
      el("td", { class: "meas" }, fmtMeas(item.measurements.node)),
      el("td", {}, flagsCell(item.flags)),
      el("td", {}, item.reviewed ? el("span", { class: "badge" }, "reviewed") : ""));
    tr.addEventListener("click", (ev) => {
      if (ev.target.closest("a")) return;
      location.assign("/ecg/" + encodeURIComponent(item.sop_instance_uid));
    });
    return tr;
  }

  function add(item, fresh) {
    if (seen.has(item.id) || !matches(item)) return;
    seen.add(item.id);
    // Newest first by worklist id: insert before the first row with a smaller id.
    const next = Array.from(tbody.rows).find((r) => Number(r.dataset.id) < item.id);
    tbody.insertBefore(row(item, fresh), next || null);
    empty.hidden = true;
  }

  function connect(cursor) {
    if (source) source.close();
    source = new EventSource("/api/events?since=" + cursor);
    source.addEventListener("open", () => { live.dataset.state = "open"; live.textContent = "live"; });
    source.addEventListener("error", () => { live.dataset.state = "error"; live.textContent = "reconnecting…"; });
    source.addEventListener("ecg", (ev) => add(JSON.parse(ev.data), true));
  }

  async function load() {
    const q = new URLSearchParams();
    if (fFlagged.checked) q.set("flagged", "1");
    if (fUnreviewed.checked) q.set("unreviewed", "1");
    if (fPatient.value.trim()) q.set("patient", fPatient.value.trim());
    history.replaceState(null, "", q.toString() ? "/?" + q : "/");
    const data = await getJSON("/api/ecgs?" + q);
    tbody.replaceChildren();
    seen.clear();
    data.items.forEach((item) => add(item, false));
    empty.hidden = data.items.length > 0;
    connect(data.latest_id);
  }

  document.getElementById("filters").addEventListener("submit", (ev) => { ev.preventDefault(); load(); });
  fFlagged.addEventListener("change", load);
  fUnreviewed.addEventListener("change", load);
  load().catch((e) => { live.dataset.state = "error"; live.textContent = e.message; });
})();
