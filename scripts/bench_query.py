#!/usr/bin/env python3
"""C-FIND benchmark: catalogs of 10,000 and 100,000 synthetic ECG instances, filled through the catalog's bulk path.

The catalog models an archive that grows by 10,000 ECGs a year (so a catalog of N instances spans N/10,000 years,
ending in 2026), one ECG per study, about five ECGs per patient. For each query the script reports the median and
p95 round trip of C-FIND on an already open pynetdicom association (answers included), the whole-process time of
DCMTK ``findscu`` for the same query (median of runs), and a C-ECHO baseline (``echoscu``). The node runs in its
own process (``ecg-node serve``). Rows are catalog rows only (no files: C-FIND never reads them).

Usage: .venv/bin/python scripts/bench_query.py [--sizes 10000 100000] [--repeat 30] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as SrFind

from dicom_ecg_node.catalog import (
    Catalog,
    GroupData,
    InstanceRecord,
    MeasurementData,
    PatientData,
    SeriesData,
    StudyData,
)
from dicom_ecg_node.net.handlers import set_nodelay
from dicom_ecg_node.net.scu import echo

PY = sys.executable
SURNAMES = ["SMITH", "JONES", "MÜLLER", "GARCIA", "NGUYEN", "KIM", "DUBOIS", "ROSSI", "SATO", "PATEL", "O_BRIEN",
            "COHEN", "SILVA", "NOVAK", "LARSEN", "IVANOV", "AHMED", "CHEN", "WILSON", "BROWN"]
GIVEN = ["JOHN", "JANE", "ALI", "MARIA", "LI", "OMAR", "ANNA", "PAUL", "SARA", "TOM"]
ZONES = [timezone(timedelta(hours=h)) for h in (-8, -5, -4, 0, 1, 2)] + [timezone(timedelta(hours=5, minutes=30))]
PER_YEAR = 10_000


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fill(url: str, n: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    end = datetime(2026, 12, 31, tzinfo=UTC)
    span = timedelta(days=365.25 * n / PER_YEAR)
    n_patients = max(1, n // 5)
    with Catalog.open(url) as cat:
        if cat.sqlite:  # bulk fill: no fsync per row (a benchmark catalog need not survive power loss)
            cat.db.close_all()
            cat.db._pragmas = [(k, v) for k, v in cat.db._pragmas if k != "synchronous"] + [("synchronous", "off")]
        t0 = time.perf_counter()
        for i in range(n):
            p = rng.randrange(n_patients)
            prng = random.Random(p)
            when = (end - span * rng.random()).astimezone(rng.choice(ZONES)).replace(microsecond=0)
            local = when
            name = f"{prng.choice(SURNAMES)}^{prng.choice(GIVEN)}"
            rec = InstanceRecord(
                patient=PatientData(f"PID{p:07d}", "", name, f"19{prng.randrange(30, 99)}0101", prng.choice("FM")),
                study=StudyData(f"1.2.826.0.1.{i}", local.strftime("%Y%m%d"), local.strftime("%H%M%S"),
                                f"ACC{i:08d}", "1", "Resting ECG"),
                series=SeriesData(f"1.2.826.0.1.{i}.1", "ECG", 1),
                sop_instance_uid=f"1.2.826.0.1.{i}.1.1", sop_class_uid="1.2.840.10008.5.1.4.1.1.9.1.1",
                path=f"archive/{i}.dcm", size=200_000, sha256=f"{i:064x}", received_at=datetime.now(UTC),
                instance_number=1, acquisition_datetime=local.strftime("%Y%m%d%H%M%S%z"), acquisition_utc=when,
                utc_offset_minutes=int(local.utcoffset().total_seconds()) // 60, zone_source="datetime",
                content_date=local.strftime("%Y%m%d"), content_time=local.strftime("%H%M%S"),
                manufacturer="ACME", model_name="CART", device_serial_number="SN1",
                groups=(GroupData(0, "RHYTHM", 500.0, 5000, 12, ("I", "II"), 10.0, "SS", 16),),
                measurements=(MeasurementData("8867-4", "LN", "Heart rate", 60 + rng.random() * 40, "/min"),))
            cat.add_instance(rec)
            if (i + 1) % 10000 == 0:
                print(f"  filled {i + 1}/{n} ({(i + 1) / (time.perf_counter() - t0):.0f}/s)", file=sys.stderr)


def queries(n: int) -> list[tuple[str, dict[str, str], bool, int]]:
    """(label, keys, relational?, repeats) for a catalog of ``n`` instances."""
    rng = random.Random(7)
    pid = f"PID{rng.randrange(max(1, n // 5)):07d}"
    study_keys = {"StudyInstanceUID": "", "StudyDate": "", "StudyTime": "", "PatientName": "",
                  "AccessionNumber": "", "ModalitiesInStudy": "", "NumberOfStudyRelatedInstances": ""}
    return [
        ("exact PatientID, STUDY", {"QueryRetrieveLevel": "STUDY", **study_keys, "PatientID": pid}, False, 30),
        ("PatientName wildcard (COHEN^A*)", {"QueryRetrieveLevel": "STUDY", **study_keys,
                                             "PatientName": "COHEN^A*"}, False, 10),
        ("StudyDate range (1 week)", {"QueryRetrieveLevel": "STUDY", **study_keys,
                                      "StudyDate": "20260601-20260607"}, False, 10),
        ("ECG studies of 2026", {"QueryRetrieveLevel": "STUDY", "StudyInstanceUID": "",
                                 "StudyDate": "20260101-20261231", "ModalitiesInStudy": "ECG"}, False, 3),
        ("patient's IMAGE serial list", {"QueryRetrieveLevel": "IMAGE", "PatientID": pid, "SOPInstanceUID": "",
                                         "AcquisitionDateTime": "", "StudyInstanceUID": ""}, True, 30),
    ]


def _ds(keys: dict[str, str]) -> Dataset:
    ds = Dataset()
    for k, v in keys.items():
        setattr(ds, k, v)
    return ds


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p * (len(values) - 1)))]


def bench(port: int, n: int) -> list[dict[str, object]]:
    env = dict(os.environ, TCP_NODELAY="1")
    ae = AE(ae_title="BENCH")
    ae.add_requested_context(SrFind)
    ext = SOPClassExtendedNegotiation()
    ext.sop_class_uid = SrFind
    ext.service_class_application_information = b"\x01"  # relational (for the IMAGE serial list)
    # TCP_NODELAY on the requestor too: a C-FIND request is two P-DATA writes, and Nagle would hold the second
    # one until the node's delayed ACK (~40 ms).
    assoc = ae.associate("127.0.0.1", port, ae_title="ECGNODE", ext_neg=[ext],
                         evt_handlers=[(evt.EVT_CONN_OPEN, set_nodelay)])
    if not assoc.is_established:
        raise RuntimeError("association failed")
    rows = []
    try:
        for label, keys, relational, repeats in queries(n):
            times, answers = [], 0
            for _ in range(repeats):
                t = time.perf_counter()
                got = [s for s, _ in assoc.send_c_find(_ds(keys), SrFind)]
                times.append((time.perf_counter() - t) * 1e3)
                answers = len(got) - 1
                if int(got[-1].Status) != 0:
                    raise RuntimeError(f"{label}: status 0x{int(got[-1].Status):04X}")
            fs = None
            if not relational:  # findscu cannot negotiate relational queries
                args = ["findscu", "-S", "-aec", "ECGNODE", "127.0.0.1", str(port)]
                for k, v in keys.items():
                    args += ["-k", f"{k}={v}" if v else k]
                runs = []
                for _ in range(min(repeats, 5)):
                    t = time.perf_counter()
                    subprocess.run(args, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    runs.append((time.perf_counter() - t) * 1e3)
                fs = statistics.median(runs)
            rows.append({"n": n, "query": label, "answers": answers, "median_ms": statistics.median(times),
                         "p95_ms": pct(times, 0.95), "findscu_ms": fs})
    finally:
        assoc.release()
    runs = []
    for _ in range(10):
        t = time.perf_counter()
        subprocess.run(["echoscu", "-aec", "ECGNODE", "127.0.0.1", str(port)], env=env, check=True)
        runs.append((time.perf_counter() - t) * 1e3)
    rows.append({"n": n, "query": "C-ECHO baseline (echoscu)", "answers": 0, "median_ms": None, "p95_ms": None,
                 "findscu_ms": statistics.median(runs)})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--keep", type=Path, default=None, help="Keep (and reuse) catalogs in this directory.")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-query-"))
    all_rows = []
    try:
        for n in args.sizes:
            data = root / f"n{n}"
            url = f"sqlite:///{data / 'catalog.sqlite'}"
            if not (data / "catalog.sqlite").exists():
                data.mkdir(parents=True, exist_ok=True)
                t = time.perf_counter()
                fill(url, n)
                print(f"filled {n} instances in {time.perf_counter() - t:.0f} s", file=sys.stderr)
            port = free_port()
            proc = subprocess.Popen([PY, "-m", "dicom_ecg_node", "serve", "--host", "127.0.0.1", "--port", str(port),
                                     "--data-dir", str(data), "--workers", "1", "--log-level", "WARNING"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
            try:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        echo("127.0.0.1", port, called_aet="ECGNODE", timeout=2)
                        break
                    except Exception:
                        if time.monotonic() > deadline or proc.poll() is not None:
                            raise
                        time.sleep(0.05)
                all_rows += bench(port, n)
            finally:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=60)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"{'instances':>9}  {'query':<34} {'answers':>7} {'median ms':>9} {'p95 ms':>8} {'findscu ms':>10}")
    for r in all_rows:
        def f(v: object) -> str:
            return "-" if v is None else f"{v:.1f}"  # type: ignore[str-format]
        print(f"{r['n']:>9}  {r['query']:<34} {r['answers']:>7} {f(r['median_ms']):>9} {f(r['p95_ms']):>8} "
              f"{f(r['findscu_ms']):>10}")
    sizes = sorted({int(r["n"]) for r in all_rows})  # type: ignore[call-overload]
    if len(sizes) >= 2:
        small, big = sizes[0], sizes[-1]
        print(f"\nratio {big} / {small} (C-FIND median):")
        for r in all_rows:
            if r["n"] == big and r["median_ms"] is not None:
                base = next(x for x in all_rows if x["n"] == small and x["query"] == r["query"])
                print(f"  {r['query']:<34} {float(r['median_ms']) / float(base['median_ms']):.2f}x")  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
