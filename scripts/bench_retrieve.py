#!/usr/bin/env python3
"""C-MOVE throughput benchmark: 500 synthetic ECGs of one patient moved from the node to a DCMTK storescp.

In the same run, the node's own ingest rate of the same files (DCMTK storescu → node, one association) is measured
first, so the two figures come from the same machine and moment. Then, with the node still holding the files:
DCMTK movescu (PATIENT level) into DCMTK storescp, repeated, and DCMTK getscu (C-GET on the same association)
into a folder. Target: C-MOVE at least as fast as ingest. The node runs with strict access control: the calling AE
(BENCHSCU) and the destination (STORESCP) are registered with ``ecg-node ae add`` before it starts.

With ``--orthanc``, the same files are also stored into Orthanc (Debian package ``orthanc``, installed with apt-get
only when missing; started with its own config in a temp dir on free loopback ports) and moved from it to the same
kind of DCMTK storescp with the same movescu command; the script prints both rates and the ratio node/Orthanc.

Usage: .venv/bin/python scripts/bench_retrieve.py [--count 500] [--repeat 3] [--keep DIR] [--orthanc]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_ingest import wait_ready
from bench_query import (
    CALLER,
    ENV,
    NODE_ANALYSIS,
    ensure_orthanc,
    free_port,
    register_aes,
    start_node,
    start_orthanc,
    stop,
    store_files,
)

PY = sys.executable


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, env=ENV, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({result.returncode}): {(result.stdout + result.stderr)[-800:]}")
    return elapsed


def move_rate(work: Path, tag: str, aec: str, port: int, dest_port: int, patient_id: str, n_files: int,
              repeat: int) -> tuple[float, list[float]]:
    """movescu (PATIENT level) from ``aec`` into a fresh DCMTK storescp, ``repeat`` times.

    Returns the rate of the median run (files/s) and the times of all runs (s).
    """
    move_times = []
    for i in range(repeat):
        out = work / f"moved-{tag}-{i}"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir()
        scp = subprocess.Popen(["storescp", "-aet", "STORESCP", "-od", str(out), "--max-pdu", "131072",
                                str(dest_port)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
        try:
            wait_ready(dest_port, scp, "STORESCP")
            elapsed = timed(["movescu", "-P", "-aet", CALLER, "-aec", aec, "-aem", "STORESCP",
                             "-k", "QueryRetrieveLevel=PATIENT", "-k", f"PatientID={patient_id}",
                             "127.0.0.1", str(port)])
        finally:
            stop(scp)
        received = sum(1 for f in out.iterdir() if f.is_file())
        shutil.rmtree(out, ignore_errors=True)
        if received != n_files:
            raise RuntimeError(f"storescp received {received} of {n_files} files from {aec}")
        move_times.append(elapsed)
    return n_files / statistics.median(move_times), move_times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=500, help="synthetic ECGs of one patient (default 500)")
    ap.add_argument("--repeat", type=int, default=3, help="C-MOVE runs; the median is reported (default 3)")
    ap.add_argument("--keep", type=Path, help="keep the work directory here")
    ap.add_argument("--orthanc", action="store_true",
                    help="also C-MOVE the same files from Orthanc (installed with apt-get if missing)")
    args = ap.parse_args()
    for tool in ("storescu", "storescp", "movescu", "getscu"):
        if shutil.which(tool) is None:
            print(f"DCMTK {tool} is required (apt-get install dcmtk)", file=sys.stderr)
            return 2

    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-retrieve-"))
    try:
        run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


def run(args: argparse.Namespace, work: Path) -> None:
    src = work / "ecgs"
    shutil.rmtree(src, ignore_errors=True)
    subprocess.run([PY, "-m", "dicom_ecg_node", "synth", str(src), "--count", str(args.count), "--patients", "1",
                    "--seed", "1"], check=True, stdout=subprocess.DEVNULL)
    files = sorted(src.glob("*.dcm"))
    import pydicom

    patient_id = str(pydicom.dcmread(files[0], stop_before_pixels=True).PatientID)
    total_mb = sum(f.stat().st_size for f in files) / 1e6
    print(f"{len(files)} files of patient {patient_id}, {total_mb:.1f} MB; {os.cpu_count()} CPUs; "
          f"node analysis={NODE_ANALYSIS}")

    data = work / "node"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    port, dest_port = free_port(), free_port()
    while dest_port == port:
        dest_port = free_port()
    # the node refuses unregistered calling AEs: register the benchmark's SCU and the move destination
    register_aes(data, [(CALLER, 11111, "echo,store,move,get"), ("STORESCP", dest_port, "echo")])
    aet = "ECGNODE"
    node = start_node(data, port)
    try:
        ingest_s = store_files(port, aet, files)
        ingest_rate = len(files) / ingest_s
        print(f"  ingest  storescu → ecg-node          {ingest_rate:8.1f} files/s  ({ingest_s:.2f} s)")

        rate: float | None = None
        try:
            rate, move_times = move_rate(work, "node", aet, port, dest_port, patient_id, len(files), args.repeat)
            print(f"  C-MOVE  ecg-node → storescp (movescu) {rate:8.1f} files/s  (median of "
                  f"{', '.join(f'{t:.2f}' for t in move_times)} s)")
        except RuntimeError as exc:  # reported, and the run goes on (C-GET, Orthanc)
            print(f"  C-MOVE  ecg-node → storescp (movescu) FAILED: {exc}")

        got = work / "got"
        shutil.rmtree(got, ignore_errors=True)
        got.mkdir()
        try:
            get_s = timed(["getscu", "-P", "-aet", CALLER, "-aec", aet, "-od", str(got), "-k",
                           "QueryRetrieveLevel=PATIENT", "-k", f"PatientID={patient_id}", "127.0.0.1", str(port)])
            print(f"  C-GET   ecg-node → getscu             {len(files) / get_s:8.1f} files/s  ({get_s:.2f} s)")
        except RuntimeError as exc:
            print(f"  C-GET   ecg-node → getscu             FAILED: {exc}")
        shutil.rmtree(got, ignore_errors=True)
    finally:
        stop(node)
    if rate is not None:
        verdict = "meets" if rate >= ingest_rate else "MISSES"
        print(f"  C-MOVE / ingest: {rate / ingest_rate:.2f}x ({verdict} the target of at least 1.0x)")

    exe = ensure_orthanc() if args.orthanc else None
    if exe is not None:
        orthanc, o_port = start_orthanc(exe, work / "orthanc", {"bench": (CALLER, 11111),
                                                                 "rx": ("STORESCP", dest_port)})
        try:
            o_ingest = store_files(o_port, "ORTHANC", files)
            print(f"  ingest  storescu → Orthanc           {len(files) / o_ingest:8.1f} files/s  ({o_ingest:.2f} s)")
            o_rate, o_times = move_rate(work, "orthanc", "ORTHANC", o_port, dest_port, patient_id, len(files),
                                        args.repeat)
            print(f"  C-MOVE  Orthanc → storescp (movescu)  {o_rate:8.1f} files/s  (median of "
                  f"{', '.join(f'{t:.2f}' for t in o_times)} s)")
        finally:
            stop(orthanc)
        if rate is not None:
            verdict = "at least as fast as" if rate >= o_rate else "SLOWER than"
            print(f"  C-MOVE ecg-node / Orthanc: {rate / o_rate:.2f}x (the node is {verdict} Orthanc)")
        else:
            print("  C-MOVE ecg-node / Orthanc: no ratio (the node's C-MOVE failed)")


if __name__ == "__main__":
    sys.exit(main())
