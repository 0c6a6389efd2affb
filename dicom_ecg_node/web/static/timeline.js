/* Patient timeline: serial ECGs in true (UTC) time order with measurements and flags. */
"use strict";

(() => {
  const { el, getJSON, fmtMeas, fmtTime, patientName, flagsCell, device } = ECG;
  const main = document.getElementById("timeline");
  const tbody = document.getElementById("timeline-rows");
  const pid = main.dataset.patient;

  getJSON("/api/patients/" + encodeURIComponent(pid) + "/timeline").then((data) => {
    if (data.items.length && data.items[0].patient)
      document.getElementById("patient-name").textContent = patientName(data.items[0].patient);
    data.items.forEach((item, i) => {
      if (!item.patient) return;
      const tr = el("tr", { class: "ecg-row", dataset: { uid: item.sop_instance_uid } },
        el("td", {}, String(i + 1)),
        el("td", { title: item.acquisition.utc ? "UTC " + item.acquisition.utc : "" }, fmtTime(item.acquisition)),
        el("td", {}, device(item.device)),
        el("td", { class: "meas" }, fmtMeas(item.measurements.cart)),
        el("td", { class: "meas" }, fmtMeas(item.measurements.node)),
        el("td", {}, flagsCell(item.flags)),
        el("td", {}, el("a", { href: "/ecg/" + encodeURIComponent(item.sop_instance_uid) }, "open")));
      tr.addEventListener("click", () => location.assign("/ecg/" + encodeURIComponent(item.sop_instance_uid)));
      tbody.append(tr);
    });
  }).catch((e) => tbody.append(el("tr", {}, el("td", { colspan: "7" }, e.message))));
})();
