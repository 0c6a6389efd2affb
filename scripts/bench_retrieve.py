#!/usr/bin/env python3
"""C-MOVE throughput benchmark: 500 synthetic ECGs of one patient moved from the node to a DCMTK storescp.

In the same run, the node's own ingest rate of the same files (DCMTK storescu → node, one association) is measured
first, so the two figures come from the same machine and moment. Then, with the node still holding the files:
DCMTK movescu (PATIENT level) into DCMTK storescp, repeated, and DCMTK getscu (C-GET on the same association)
into a folder. Target: C-MOVE at least as fast as ingest.

Usage: .venv/bin/python scripts/bench_retrieve.py [--count 500] [--repeat 3] [--keep DIR]
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

from bench_ingest import free_port, receiver, run_storescu, stop

PY = sys.executable
ENV = dict(os.environ, TCP_NODELAY="1")  # without it every DCMTK DIMSE message waits on Nagle's algorithm


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, env=ENV, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({result.returncode}): {(result.stdout + result.stderr)[-800:]}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=500, help="synthetic ECGs of one patient (default 500)")
    ap.add_argument("--repeat", type=int, default=3, help="C-MOVE runs; the median is reported (default 3)")
    ap.add_argument("--keep", type=Path, help="keep the work directory here")
    args = ap.parse_args()
    for tool in ("storescu", "storescp", "movescu", "getscu"):
        if shutil.which(tool) is None:
            print(f"DCMTK {tool} is required (apt-get install dcmtk)", file=sys.stderr)
            return 2

    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-retrieve-"))
    src = work / "ecgs"
    shutil.rmtree(src, ignore_errors=True)
    subprocess.run([PY, "-m", "dicom_ecg_node", "synth", str(src), "--count", str(args.count), "--patients", "1",
                    "--seed", "1"], check=True, stdout=subprocess.DEVNULL)
    files = sorted(src.glob("*.dcm"))
    import pydicom

    patient_id = str(pydicom.dcmread(files[0], stop_before_pixels=True).PatientID)
    total_mb = sum(f.stat().st_size for f in files) / 1e6
    print(f"{len(files)} files of patient {patient_id}, {total_mb:.1f} MB; {os.cpu_count()} CPUs")

    data = work / "node"
    shutil.rmtree(data, ignore_errors=True)
    port = free_port()
    node, aet = receiver("ecg-node", port, data, 1)
    try:
        ingest_s = run_storescu(port, aet, files, 1)
        ingest_rate = len(files) / ingest_s
        print(f"  ingest  storescu → ecg-node          {ingest_rate:8.1f} files/s  ({ingest_s:.2f} s)")

        dest_port = free_port()
        subprocess.run([PY, "-m", "dicom_ecg_node", "ae", "add", "STORESCP", "--host", "127.0.0.1", "--port",
                        str(dest_port), "--data-dir", str(data)], check=True, stdout=subprocess.DEVNULL)
        move_times = []
        for i in range(args.repeat):
            out = work / f"moved-{i}"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            scp = subprocess.Popen(["storescp", "-aet", "STORESCP", "-od", str(out), "--max-pdu", "131072",
                                    str(dest_port)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
            try:
                from bench_ingest import wait_ready

                wait_ready(dest_port, scp, "STORESCP")
                elapsed = timed(["movescu", "-P", "-aet", "VIEWSCU", "-aec", aet, "-aem", "STORESCP",
                                 "-k", "QueryRetrieveLevel=PATIENT", "-k", f"PatientID={patient_id}",
                                 "127.0.0.1", str(port)])
            finally:
                stop(scp)
            received = sum(1 for f in out.iterdir() if f.is_file())
            if received != len(files):
                raise RuntimeError(f"storescp received {received} of {len(files)} files")
            move_times.append(elapsed)
        move_s = statistics.median(move_times)
        move_rate = len(files) / move_s
        print(f"  C-MOVE  ecg-node → storescp (movescu) {move_rate:8.1f} files/s  (median of "
              f"{', '.join(f'{t:.2f}' for t in move_times)} s)")

        got = work / "got"
        shutil.rmtree(got, ignore_errors=True)
        got.mkdir()
        get_s = timed(["getscu", "-P", "-aet", "VIEWSCU", "-aec", aet, "-od", str(got),
                       "-k", "QueryRetrieveLevel=PATIENT", "-k", f"PatientID={patient_id}", "127.0.0.1", str(port)])
        print(f"  C-GET   ecg-node → getscu             {len(files) / get_s:8.1f} files/s  ({get_s:.2f} s)")
    finally:
        stop(node)
    verdict = "meets" if move_rate >= ingest_rate else "MISSES"
    print(f"  C-MOVE / ingest: {move_rate / ingest_rate:.2f}x ({verdict} the target of at least 1.0x)")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
