#!/usr/bin/env python3
"""A/B of the node's ingest: two git revisions receive the same ECGs from DCMTK ``storescu``, taking turns.

Each revision is checked out in a temporary worktree and its node runs from that worktree's code (``PYTHONPATH``),
started from a neutral directory: ``python -m dicom_ecg_node`` puts the current directory first on ``sys.path``,
so a node started from a checkout runs that checkout whatever ``PYTHONPATH`` says (an A/B run from the project
root compared the project with itself). Before measuring, each revision's interpreter reports where it imports the
package from, and the run stops unless that is its worktree.

Per round the two revisions receive the same files (``--count`` synthetic 12-lead ECGs, 10 s at 500 Hz) over
``--streams`` associations, in alternating order; printed are files/s, the node's CPU per ECG (all its
processes, while the files arrived) and the per-round ratio B/A with its median. CPU per ECG varies less from
round to round than files/s on a shared machine; both vary by several percent, so use 8 rounds or more for
differences below 10%. The outputs of all rounds are kept until the end (about 0.15 GB per 1,000 files and round).

Usage: .venv/bin/python scripts/bench_ab.py REV_A REV_B [--streams 1 4] [--rounds 8] [--count 1000] [--workers 0]
(REV: anything ``git worktree add`` takes; ``WORKTREE`` uses the working tree as it is, uncommitted changes
included).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_ingest as bench  # the receivers, storescu runs and CPU readings of the ingest benchmark

ROOT = Path(__file__).resolve().parent.parent


def checkout(rev: str, into: Path) -> Path:
    """A worktree of ``rev`` under ``into`` (the project itself for ``WORKTREE``)."""
    if rev == "WORKTREE":
        return ROOT
    path = into / f"rev-{len(list(into.iterdir()))}"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(path), rev], check=True)
    return path


def imported_from(code: Path, cwd: Path) -> Path:
    """Where a node started as the benchmark starts it imports ``dicom_ecg_node`` from."""
    env = dict(os.environ, PYTHONPATH=str(code))
    out = subprocess.run([bench.PY, "-c", "import dicom_ecg_node; print(dicom_ecg_node.__file__)"], cwd=cwd,
                         env=env, check=True, capture_output=True, text=True).stdout.strip()
    return Path(out).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rev_a")
    ap.add_argument("rev_b")
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 4], help="concurrent associations to test")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--count", type=int, default=1000, help="synthetic ECGs per round (default 1000)")
    ap.add_argument("--workers", type=int, default=0, help="node worker processes (0: two per core)")
    args = ap.parse_args()
    if shutil.which("storescu") is None:
        print("DCMTK storescu is required (apt-get install dcmtk)", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="bench-ab-"))
    trees = work / "trees"
    trees.mkdir()
    neutral = work / "cwd"  # no dicom_ecg_node here: PYTHONPATH decides what runs
    neutral.mkdir()
    revisions: list[tuple[str, Path]] = []
    try:
        for rev in (args.rev_a, args.rev_b):
            code = checkout(rev, trees)
            found = imported_from(code, neutral)
            if found != code.resolve():
                print(f"{rev}: the node would import dicom_ecg_node from {found}, not {code}", file=sys.stderr)
                return 2
            revisions.append((rev, code))
        src = work / "ecgs"
        subprocess.run([bench.PY, "-m", "dicom_ecg_node", "synth", str(src), "--count", str(args.count),
                        "--patients", str(max(1, args.count // 10))], check=True, stdout=subprocess.DEVNULL)
        files = sorted(src.glob("*.dcm"))
        print(f"A = {args.rev_a}, B = {args.rev_b}; {len(files)} files, {args.rounds} rounds, "
              f"workers={bench.worker_count(args.workers)}")
        home, saved = Path.cwd(), dict(os.environ)
        os.chdir(neutral)
        try:
            for streams in args.streams:
                rates: dict[str, list[float]] = {"A": [], "B": []}
                cpus: dict[str, list[float]] = {"A": [], "B": []}
                for turn in range(args.rounds):
                    order = [("A", revisions[0][1]), ("B", revisions[1][1])]
                    for label, code in order if turn % 2 == 0 else order[::-1]:
                        os.environ["PYTHONPATH"] = str(code)
                        # Outputs stay until the end: creating files where many were just deleted is slow for
                        # minutes on this machine (see bench_ingest's "Outputs"), and would tax the next round.
                        out = work / f"out-{label}-{streams}-{turn}"
                        port = bench.free_port()
                        proc, aet = bench.receiver("ecg-node", port, out, args.workers)
                        try:
                            bench.settle_writeback()  # nothing written earlier (the ECGs made above) lands in a run
                            bench.warm_sources(files)  # no sender reads them from the disk
                            cpu0 = bench.cpu_seconds(proc.pid)
                            elapsed = bench.run_storescu(port, aet, files, streams)
                            cpu_ms = (bench.cpu_seconds(proc.pid) - cpu0) / len(files) * 1000
                        finally:
                            bench.stop(proc)
                            os.environ.clear()
                            os.environ.update(saved)
                        rates[label].append(len(files) / elapsed)
                        cpus[label].append(cpu_ms)
                ratios = [b / a for a, b in zip(rates["A"], rates["B"], strict=True)]
                for label in ("A", "B"):
                    print(f"  {streams} assoc  {label}: median {statistics.median(rates[label]):.1f} files/s, "
                          f"CPU {statistics.median(cpus[label]):.2f} ms/ECG  "
                          f"(rounds {', '.join(f'{r:.0f}' for r in rates[label])})")
                print(f"  {streams} assoc  B/A files/s: median {statistics.median(ratios):.3f} "
                      f"(rounds {', '.join(f'{r:.2f}' for r in ratios)}); CPU per ECG B/A "
                      f"{statistics.median(cpus['B']) / statistics.median(cpus['A']):.3f}")
        finally:
            os.chdir(home)
    finally:
        for _rev, code in revisions:
            if code != ROOT:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(code)], check=False)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
