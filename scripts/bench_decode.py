"""Benchmark: full decoding with dicom_ecg_node.waveform.decode against pydicom's waveform_array.

Usage: .venv/bin/python scripts/bench_decode.py DIR [--repeat N]

Both arms read every file from disk in the same run (decode takes the path, so its fast byte reader runs).
The decode arm produces calibrated samples, per-channel times, measurements and statements; the baseline arm is
``pydicom.dcmread(path)`` then ``waveform_array(i)`` for every multiplex group (which does far less: no G.711, no
padding, no time, no annotations). Files the baseline cannot read are skipped in both arms and listed.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import pydicom

from dicom_ecg_node.waveform import decode


def _baseline(path: Path) -> None:
    ds = pydicom.dcmread(path)
    for i in range(len(ds.WaveformSequence)):
        ds.waveform_array(i)


def _full(path: Path) -> None:
    rec = decode(path)
    for g in rec.groups:
        g.samples  # noqa: B018 - calibrated values are computed by decode; touch them as a reader would
        for c in range(g.n_channels):
            g.times(c)
    _ = (rec.measurements, rec.statements)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--repeat", type=int, default=3, help="passes over the folder per arm (best is kept)")
    args = parser.parse_args(argv)
    files = sorted(p for p in args.directory.rglob("*") if p.is_file() and p.suffix.lower() in (".dcm", ""))
    usable: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the invalid UIDs of some sample files
        for p in files:
            try:
                _baseline(p)
                decode(p)
            except Exception as exc:  # the benchmark reports every failure instead of stopping
                skipped.append((p, f"{type(exc).__name__}: {exc}"))
            else:
                usable.append(p)
        if not usable:
            print("no usable files", file=sys.stderr)
            return 1
        total_bytes = sum(p.stat().st_size for p in usable)
        results = {}
        for name, fn in (("pydicom waveform_array", _baseline), ("ecg-node decode", _full)):
            best = float("inf")
            for _ in range(max(1, args.repeat)):
                t0 = time.perf_counter()
                for p in usable:
                    fn(p)
                best = min(best, time.perf_counter() - t0)
            results[name] = best
    print(f"{len(usable)} files, {total_bytes / 1e6:.2f} MB, best of {args.repeat} passes")
    for name, seconds in results.items():
        print(f"  {name:24s} {len(usable) / seconds:9.1f} recordings/s {total_bytes / 1e6 / seconds:8.1f} MB/s")
    for name, seconds in results.items():
        print(f"  {name:24s} {seconds / len(usable) * 1e3:9.3f} ms per file")
    ratio = results["pydicom waveform_array"] / results["ecg-node decode"]
    print(f"  speed ratio decode / baseline: {ratio:.2f}x ({'faster' if ratio >= 1 else 'slower'})")
    for p, why in skipped:
        print(f"  skipped in both arms: {p} ({why})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
