"""Benchmark: sensitivity and false-alarm rate of the ``st-elevation`` rule, and measurement throughput.

Usage: .venv/bin/python scripts/bench_serial.py [--pairs N] [--throughput N] [--seed S]

Synthetic pairs (prior, current) come from :func:`dicom_ecg_node.analysis.simulate.simulate_ecg`: the same
patient's morphology with independent noise, beat timing, baseline wander (200 µV) and 50 Hz mains (50 µV). The
current ECG carries an injected ST elevation of 0, 50, 100, 150, 200 µV and of 1.5 x the rule's threshold in one
lead group (anterior V2-V4, inferior II, III, aVF). Both ECGs are measured by :func:`measure` and compared by
:func:`compare`. The patient is a woman of 50, so the Fourth Universal Definition cut-points are 150 µV in V2-V3
and 100 µV elsewhere: 1.5 x threshold is 225 µV (anterior) and 150 µV (inferior).

A pair counts as detected when an ``st-elevation`` flag names at least two leads of the injected group; the false
alarm rate is the share of unchanged pairs (0 µV) with any ``st-elevation`` flag. Targets (issue 6): sensitivity
>= 95 % at 1.5 x threshold, false alarms <= 5 %, >= 50 ECGs/s measured.
"""

from __future__ import annotations

import argparse
import time

from dicom_ecg_node.analysis import compare, measure
from dicom_ecg_node.analysis.simulate import simulate_ecg

GROUPS: dict[str, tuple[tuple[str, ...], float]] = {
    # group: (leads, 1.5 x the highest cut-point in the group for a woman)
    "anterior V2-V4": (("V2", "V3", "V4"), 1.5 * 150.0),
    "inferior II/III/aVF": (("II", "III", "aVF"), 1.5 * 100.0),
}
INJECTED = (0.0, 50.0, 100.0, 150.0, 200.0)
NOISE_UV = (10.0, 25.0, 50.0)


def _pair(leads: tuple[str, ...], delta: float, noise: float, seed: int) -> tuple[bool, bool]:
    """(detected, any st-elevation flag) for one synthetic pair."""
    common = {"noise_uv": noise, "wander_uv": 200.0, "mains_uv": 50.0, "sex": "F", "birth_date": "19751001",
              "heart_rate_bpm": 60.0 + (seed % 5) * 8.0}
    prior = measure(simulate_ecg(seed=seed, **common).recording)
    current = measure(simulate_ecg(seed=seed + 100_000, st_uv=dict.fromkeys(leads, delta), **common).recording)
    flags = [f for f in compare(current, prior) if f.rule == "st-elevation"]
    detected = any(len(set(f.leads) & set(leads)) >= 2 for f in flags)
    return detected, bool(flags)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=30, help="pairs per cell (default 30)")
    parser.add_argument("--throughput", type=int, default=200, help="ECGs timed for throughput (default 200)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)

    print(f"st-elevation over synthetic pairs ({args.pairs} per cell; woman of 50: V2-V3 150 µV, others 100 µV)")
    header = "group                 noise  " + "  ".join(f"{d:>6.0f}" for d in INJECTED) + "   1.5x thr"
    print(header)
    worst_sens, worst_fa = 1.0, 0.0
    for name, (leads, x15) in GROUPS.items():
        for noise in NOISE_UV:
            cells = []
            for delta in (*INJECTED, x15):
                hits = alarms = 0
                for k in range(args.pairs):
                    detected, flagged = _pair(leads, delta, noise, args.seed + 1000 * k + int(delta) + int(noise))
                    hits += detected
                    alarms += flagged
                rate = (alarms if delta == 0 else hits) / args.pairs
                cells.append(rate)
                if delta == 0:
                    worst_fa = max(worst_fa, rate)
                if delta == x15:
                    worst_sens = min(worst_sens, rate)
            text = "  ".join(f"{100 * c:5.0f}%" for c in cells[:-1])
            print(f"{name:20s} {noise:4.0f}µV  {text}   {100 * cells[-1]:5.0f}%")
    print("(0 µV column: false-alarm rate, any st-elevation flag; other columns: sensitivity)")
    print(f"worst sensitivity at 1.5x threshold: {100 * worst_sens:.1f} % (target >= 95 %)")
    print(f"worst false-alarm rate: {100 * worst_fa:.1f} % (target <= 5 %)")

    recordings = [simulate_ecg(seed=args.seed + i, noise_uv=20.0, wander_uv=200.0, mains_uv=50.0,
                               heart_rate_bpm=50.0 + (i % 8) * 10.0).recording for i in range(args.throughput)]
    measure(recordings[0])  # warm-up
    start = time.perf_counter()
    for rec in recordings:
        measure(rec)
    elapsed = time.perf_counter() - start
    print(f"throughput: {len(recordings) / elapsed:.1f} ECGs/s (10 s, 12 leads, 500 Hz; one process; target >= 50)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
