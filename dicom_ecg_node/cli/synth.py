"""``ecg-node synth``: write synthetic 12-lead ECG files for demos, tests and benchmarks.

Each ECG is its own study (one order, one acquisition, as a resting-ECG cart sends it) with one series and one
instance. A patient's ECGs are days to months apart, in the order of their true (UTC) acquisition time, so a run
over a few months crosses a daylight-saving change of the chosen zone.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import click

from dicom_ecg_node.cli.common import handle_errors

_FAMILY = ("SMITH", "MARTIN", "GARCIA", "MULLER", "ROSSI", "DUBOIS", "NOVAK", "JANSSEN", "SILVA", "KOWALSKI",
           "BERNARD", "FISCHER", "LEROY", "MORENO", "NILSSON", "OKAFOR", "TANAKA", "HUGHES", "PETIT", "WEBER")
_GIVEN_F = ("ANNA", "CLAIRE", "ELENA", "FATIMA", "GRACE", "INES", "JULIA", "LEA", "MARIA", "SOFIA", "YUKI", "ZOE")
_GIVEN_M = ("ADAM", "BRUNO", "CARLOS", "DAVID", "ERIK", "HUGO", "JONAS", "LUCAS", "MARCO", "NOAH", "OMAR", "PAUL")

_TS_CHOICES = ("implicit", "explicit", "big", "deflated")


@click.command()
@click.argument("outdir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--count", "-n", type=click.IntRange(min=1), default=10, show_default=True, help="Number of files.")
@click.option("--patients", "-p", type=click.IntRange(min=1), default=3, show_default=True,
              help="Number of patients the files are spread over.")
@click.option("--seed", type=int, default=None, help="Random seed (default: different every run).")
@click.option("--start", type=click.DateTime(formats=["%Y-%m-%d"]), default="2026-01-01", show_default=True,
              help="Local date of the earliest ECGs.")
@click.option("--transfer-syntax", type=click.Choice(_TS_CHOICES), default="explicit", show_default=True)
@click.option("--zone", default="Europe/Paris", show_default=True, help="IANA zone of the acquisition times.")
@click.option("--zone-style", type=click.Choice(("offset-in-dt", "timezone-offset", "none")),
              default="offset-in-dt", show_default=True,
              help="UTC offset in Acquisition DateTime, in Timezone Offset From UTC, or nowhere.")
@click.option("--median/--no-median", default=True, show_default=True,
              help="Add a MEDIAN BEAT group (the object is then General ECG Waveform Storage: the 12-lead IOD "
                   "allows 13 channels in all).")
@click.option("--noise", "noise_uv", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="White noise standard deviation, uV.")
@handle_errors
def synth(outdir: Path, count: int, patients: int, seed: int | None, start: datetime, transfer_syntax: str,
          zone: str, zone_style: str, median: bool, noise_uv: float) -> None:
    """Write --count synthetic 12-lead ECGs for --patients patients into OUTDIR (ecg_000001.dcm, ...).

    Existing files of the same names are overwritten. Each ECG is its own study.
    """
    # imported here so that listing commands (`ecg-node --help`) does not pay for numpy and pydicom
    import numpy as np

    from dicom_ecg_node.waveform.synth import synthesize_ecg, write_ecg

    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise click.BadParameter(f"unknown zone {zone!r}", param_hint="--zone") from exc
    if patients > count:
        raise click.BadParameter(f"{patients} patients need at least as many files (--count {count})",
                                 param_hint="--patients")
    outdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    per_patient = [count // patients + (1 if i < count % patients else 0) for i in range(patients)]

    # Plan every ECG first (patient, local time, rate) so that file numbering is independent of generation.
    plan: list[tuple[dict[str, str], datetime, float]] = []
    used_ids: set[str] = set()
    for n in per_patient:
        female = bool(rng.integers(2))
        given = _GIVEN_F if female else _GIVEN_M
        pid = f"SYN{int(rng.integers(10**6)):06d}"
        while pid in used_ids:
            pid = f"SYN{int(rng.integers(10**6)):06d}"
        used_ids.add(pid)
        birth = datetime(1935, 1, 1) + timedelta(days=int(rng.integers(0, 365 * 70)))
        patient = {
            "patient_id": pid,
            "patient_name": f"{rng.choice(_FAMILY)}^{rng.choice(given)}",
            "birth_date": birth.strftime("%Y%m%d"),
            "sex": "F" if female else "M",
        }
        rate = float(rng.uniform(55, 90))
        # first ECG within two weeks of --start during working hours, then 3-75 days apart: a handful of ECGs
        # spans months and, in zones that have one, a daylight-saving change
        day = start + timedelta(days=int(rng.integers(0, 14)))
        for _ in range(n):
            wall = day + timedelta(minutes=int(rng.integers(8 * 60, 18 * 60)))
            plan.append((patient, wall.replace(tzinfo=tz), float(np.clip(rate + rng.normal(0, 6), 40, 140))))
            day += timedelta(days=int(rng.integers(3, 76)))

    t0 = time.perf_counter()
    step = max(1, count // 10)
    for i, (patient, acquired, rate) in enumerate(plan, start=1):
        ds = synthesize_ecg(
            **patient,
            acquisition_datetime=acquired,
            zone_style=zone_style,
            heart_rate_bpm=round(rate),
            transfer_syntax=transfer_syntax,
            include_median=median,
            seed=int(rng.integers(2**63)),
            noise_uv=noise_uv,
            baseline_wander_uv=noise_uv * 3,
        )
        write_ecg(outdir / f"ecg_{i:06d}.dcm", ds)
        if i % step == 0 or i == count:
            click.echo(f"  {i}/{count} files written", err=True)
    elapsed = time.perf_counter() - t0
    click.echo(f"wrote {count} ECG files for {patients} patients to {outdir} in {elapsed:.1f} s "
               f"({count / elapsed if elapsed else float('inf'):.0f} files/s)")
