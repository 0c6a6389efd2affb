#!/usr/bin/env python3
"""Ingest benchmark: DCMTK storescu sending synthetic 12-lead ECGs to three receivers in the same run.

Receivers: (a) this node (validating, fsyncing, indexing), (b) DCMTK storescp writing files, (c) pynetdicom's bundled
storescp app. Each is sent the same files over 1 association and over 4 concurrent associations. Prints files/s,
MB/s, the receiver's peak RSS and its resident memory early in the run and at its end (a leak shows as growth;
``--count 10000 --receivers ecg-node`` is the issue's memory check), the CPU time per file of the receiver (all its
processes) and of the senders, how busy the machine's CPUs were during the run, and the ratios of (a) to (b) and
(c).

Reading the 4-association ratios: near 100% busy, the node's run is bound by the whole machine (its workers, the
four senders and the kernel share the cores), while pynetdicom's storescp is bound by one core (its interpreter
lock). Their ratio therefore moves with the host's state: measured here on one day, 1.79x while the host was fast
(pynetdicom 252-266 files/s) and 2.05-2.21x on slower hours (191-220 files/s), with the node's code unchanged
(both with the prescanning sender below). Since the node writes staged objects' blocks directly (archive module
notes, "Direct writes"), with senders in their default mode: 2.10-2.18x in four invocations of 3 to 5 rounds on one
day (pynetdicom's medians 237-248 files/s), every round at 1.98x or above.

Sender: storescu runs in its default mode, whose fixed list of 64 proposed SOP classes includes 12-lead ECG. With
``-R`` (``--prescan``; needed only for the classes outside that list) each storescu first reads and parses every
file it was given, to propose only their classes, and then reads each again to send it: measured here, 1.3-1.4 ms
of CPU per file against 0.8-1.0 ms. A cart is a machine of its own, so none of that is the receiver's work; but on
a 2-CPU host the four senders share the cores with a receiver that uses both, so the prescan lowers the node's
4-association rate and not the peers', which leave a core idle. Measured here in alternating 3-round runs of the
same half hour: with ``-R`` the node 472 and 505 files/s, pynetdicom's storescp 255 and 254 (1.90x and 2.00x);
without, the node 541 and 539, pynetdicom 258 and 252 (2.10x and 2.13x).

The node runs with two receiving processes per core (``--workers 0``, as the README advises for throughput) for
every association count: one association is served by one worker, and the parent process does the derived work
(clock observation, reconciliation) that ``--workers 1`` would do in the serving process. The parent waits for a
lull in the stores (services/dispatch.py, at most 30 s): in a run of this length that work starts after the last
file, so the CPU per file counts the stores only (what the receiver stopped before doing is caught up at the
node's next start, from the catalog).

With ``--rounds N`` every receiver is measured N times, the receivers taking turns (node, DCMTK, pynetdicom, node,
...), and the medians and the median of the per-round ratios are printed: on a shared machine one sequential pass
can put a busy minute on one receiver only (seen here: the same peer at 232, 346 and 470 files/s in three runs).

Outputs: every run writes into a folder of its own, and none is deleted before the last run. On this machine's
ext4 (no journal), a file created up to 5 minutes after a mass delete pays for every recently deleted inode of its
block group (``recently_deleted`` in the kernel's inode allocator, which delays their reuse that long on a file
system without a journal): deleting the previous round's output right before a run cost 6% of the node's CPU
there, and more for the node than for the peers, whose outputs have no folders. The disk needs room for them all
(about 0.9 GB per 1,000 files and round). What creating a file costs in the outputs' folder is printed before and
after the runs: 17-30 µs on this machine normally, 200-600 µs within minutes of deleting a test run's or a
benchmark's files there. Every receiver pays it once per ECG, which narrows every ratio towards 1.

Sources: the files sent are read into the page cache before each run. Otherwise the first run of an invocation (the
node's) can find them evicted by whatever ran on the machine since they were last read, and its senders read them
from the disk: measured here on one association after dropping the page cache, the node's first round at 266
files/s against 326 in its second; with the files read first, 327 and 329. Before this, the node's first round came
out 5-10% below its others in three invocations out of four, its senders using more CPU per file.

Writeback: the peers do not ``fsync``, so each of their runs leaves its files dirty in the page cache (~0.14 GB
per 1,000 ECGs), and the kernel writes them back about 30 s later (``vm.dirty_expire_centisecs``), during whichever
run comes then; a node's fsyncs then wait behind that writeback. Before each run the benchmark therefore
syncs what earlier runs left (printed when there was any), so that no receiver is charged for another's
files.

Usage: .venv/bin/python scripts/bench_ingest.py [--count 2000] [--workers 0] [--rounds 1] [--keep DIR]
       [--prescan]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from dicom_ecg_node.net.scu import echo
from dicom_ecg_node.net.workers import worker_count

PY = sys.executable


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(port: int, proc: subprocess.Popen[bytes], aet: str = "ANY-SCP") -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"receiver exited with {proc.returncode}")
        try:
            echo("127.0.0.1", port, called_aet=aet, timeout=2)
            return
        except Exception:
            time.sleep(0.05)
    raise RuntimeError("receiver did not come up")


def process_tree(pid: int) -> list[int]:
    """``pid`` and its children (the node's worker processes)."""
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return pids


def largest_mb(pid: int, field: str) -> float:
    """The largest memory ``field`` of /proc/PID/status (``VmHWM``, ``VmRSS``) in MB, 0 when all are gone.

    Among ``pid`` and its children (the node's worker processes).
    """
    largest = 0.0
    for p in process_tree(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith(f"{field}:"):
                    largest = max(largest, int(line.split()[1]) / 1024)
        except OSError:
            pass
    return largest


def peak_rss_mb(pid: int) -> float:
    """Peak resident memory (VmHWM) of the receiver's largest process, in MB."""
    return largest_mb(pid, "VmHWM")


def rss_mb(pid: int) -> float:
    """Resident memory (VmRSS) of the receiver's largest process now, in MB."""
    return largest_mb(pid, "VmRSS")


class RssTrace:
    """The receiver's resident memory (:func:`rss_mb`) sampled on a thread while the files arrive.

    ``early`` is the first sample taken once a tenth of the run had passed (the receiver has warmed up: caches,
    pooled connections, the threads of its associations) and ``end`` the last one; a leak makes ``end - early``
    grow with the number of files.
    """

    def __init__(self, pid: int, every_s: float = 0.2) -> None:
        self.pid = pid
        self.every_s = every_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssTrace:
        self._start = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((time.monotonic() - self._start, rss_mb(self.pid)))

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.samples.append((time.monotonic() - self._start, rss_mb(self.pid)))

    @property
    def early(self) -> float:
        """RSS (MB) once a tenth of the run had passed."""
        cut = self.samples[-1][0] / 10 if self.samples else 0.0
        return next((rss for t, rss in self.samples if t >= cut), 0.0)

    @property
    def end(self) -> float:
        """RSS (MB) at the end of the run."""
        return self.samples[-1][1] if self.samples else 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and of its live children (worker processes)."""
    total = 0.0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


def sender_cpu_seconds() -> float:
    """CPU seconds used so far by this process's waited-for children (the storescu senders)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_ticks() -> tuple[int, int]:
    """(busy, all) CPU ticks of the whole machine so far (/proc/stat; idle and iowait are not busy)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values[:8]) - idle, sum(values[:8])  # guest time is already in user


def warm_sources(files: list[Path]) -> None:
    """Read the files to be sent, so that no run's senders read them from the disk (module notes, "Sources")."""
    for f in files:
        f.read_bytes()


def settle_writeback() -> float:
    """``sync`` what earlier runs left dirty (see "Writeback" in the module notes); the MB that were dirty."""
    pending = 0.0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("Dirty", "Writeback"):
                pending += int(value.split()[0]) / 1024
    os.sync()
    return pending


def run_storescu(port: int, aet: str, files: list[Path], streams: int, prescan: bool = False) -> float:
    """Send ``files`` split over ``streams`` concurrent storescu processes; return the wall time in seconds.

    storescu runs in its default mode, whose fixed list of proposed SOP classes includes 12-lead ECG: ``-R``
    (``prescan``) would make each sender read and parse every file once more before the association, to propose
    only the classes it holds (module notes, "Sender").
    """
    env = dict(os.environ, TCP_NODELAY="1")  # without it storescu waits on Nagle: ~40x slower
    chunks = [files[i::streams] for i in range(streams)]
    options = ["-R"] if prescan else []
    start = time.perf_counter()
    procs = [
        subprocess.Popen(["storescu", *options, "-aec", aet, "--max-send-pdu", "131072", "127.0.0.1", str(port),
                          *map(str, chunk)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for chunk in chunks
    ]
    failures = [p for p in procs if p.wait() != 0]
    elapsed = time.perf_counter() - start
    if failures:
        raise RuntimeError(f"storescu failed: {failures[0].stderr.read().decode()[-500:]}")
    return elapsed


#: Microseconds to create a file above which the outputs' file system is still slowed by a recent mass delete.
SLOW_CREATION_US = 100.0


def creation_us(folder: Path, count: int = 200) -> float:
    """Median microseconds to create an empty file in a new ``folder`` (the files stay until the outputs go).

    Every receiver creates a file per ECG, so this is a cost they all pay (module notes, "Outputs").
    """
    folder.mkdir(parents=True)
    times = []
    for i in range(count):
        start = time.perf_counter()
        os.close(os.open(folder / f"{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def receiver(kind: str, port: int, out: Path, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TCP_NODELAY="1")
    # The node's background serial analysis (~0.1 s of CPU per ECG) would compete with the receiver for the cores
    # during the measurement; it is measured by scripts/bench_serial.py instead. Set ECG_NODE_ANALYSIS to override.
    env.setdefault("ECG_NODE_ANALYSIS", "off")
    log = None
    if kind == "ecg-node":
        # storescu's calling AE is not registered: --accept-unknown (the node refuses unknown AEs by default).
        # The node logs at its default level (INFO: a line per association and per stored object) into a file.
        cmd = [PY, "-m", "dicom_ecg_node", "serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir",
               str(out), "--workers", str(workers), "--log-level", "INFO", "--accept-unknown"]
        aet = "ECGNODE"
        log = out.parent / f"{out.name}.log"
    elif kind == "dcmtk-storescp":
        cmd = ["storescp", "-od", str(out), "--max-pdu", "131072", str(port)]
        aet = "ANY-SCP"
    else:  # pynetdicom's bundled storescp app (decodes and re-encodes each file)
        cmd = [PY, "-m", "pynetdicom", "storescp", "-od", str(out), str(port)]
        aet = "STORESCP"
    with open(log or os.devnull, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env, start_new_session=True)
    wait_ready(port, proc, aet)
    if log is not None and worker_count(workers) > 1:
        # One worker answering the echo is not enough: a worker still starting leaves every association to the
        # other (both cores are measured only once the parent says that all of them accept).
        deadline = time.monotonic() + 60
        while "workers accepting on port" not in log.read_text(errors="replace"):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"ecg-node workers did not all start: {log.read_text(errors='replace')[-500:]}")
            time.sleep(0.05)
    return proc, aet


def associations_per_worker(log: Path, workers: int) -> list[int]:
    """How many of storescu's associations each worker process of the node served, from its log.

    A worker serving two associations while another serves none halves their speed (they share its interpreter
    lock): when a round of 4 associations is slow, this tells a placement from a slow machine.
    """
    counts = [0] * workers
    for match in re.finditer(r"\[w(\d+)\]: association accepted: calling AE 'STORESCU'",
                             log.read_text(errors="replace")):
        counts[int(match.group(1))] += 1
    return counts


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=2000, help="synthetic ECGs to send (default 2000)")
    ap.add_argument("--workers", type=int, default=0,
                    help="ecg-node worker processes for every association count (0: two per core)")
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 4], help="concurrent associations to test")
    ap.add_argument("--receivers", nargs="+", default=["ecg-node", "dcmtk-storescp", "pynetdicom-storescp"])
    ap.add_argument("--rounds", type=int, default=1, help="measure each receiver this many times, taking turns")
    ap.add_argument("--keep", type=Path, help="keep the work directory here")
    ap.add_argument("--prescan", action="store_true",
                    help="run storescu with -R, which parses every file once more first (module notes, \"Sender\")")
    args = ap.parse_args()
    if shutil.which("storescu") is None:
        print("DCMTK storescu is required (apt-get install dcmtk)", file=sys.stderr)
        return 2

    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-ingest-"))
    work.mkdir(parents=True, exist_ok=True)
    runs = Path(tempfile.mkdtemp(prefix="runs-", dir=work))  # the receivers' outputs, this invocation only
    src = work / "ecgs"
    if not src.exists():
        subprocess.run([PY, "-m", "dicom_ecg_node", "synth", str(src), "--count", str(args.count), "--patients",
                        str(max(1, args.count // 10))], check=True, stdout=subprocess.DEVNULL)
    files = sorted(src.glob("*.dcm"))[: args.count]
    total_mb = sum(f.stat().st_size for f in files) / 1e6
    created_us = creation_us(runs / "creation-before")
    print(f"{len(files)} files, {total_mb:.1f} MB ({total_mb / len(files) * 1000:.0f} KB each); "
          f"{os.cpu_count()} CPUs; ecg-node workers={worker_count(args.workers)}; creating a file there: "
          f"{created_us:.0f} µs")
    if created_us > SLOW_CREATION_US:
        print("  (slow: files deleted there in the last minutes, see \"Outputs\" in --help; every receiver pays "
              "this per ECG, so the ratios come out narrower: wait 5 minutes, or use --keep DIR elsewhere)")
    for streams in args.streams:
        rates: dict[str, list[float]] = {kind: [] for kind in args.receivers}
        for turn in range(max(1, args.rounds)):
            for kind in args.receivers:
                # A fresh folder per run, all removed at the end (see "Outputs" in the module notes).
                out = runs / f"out-{kind}-{streams}-{turn + 1}"
                port = free_port()
                proc, aet = receiver(kind, port, out, args.workers if kind == "ecg-node" else 1)
                try:
                    settled = settle_writeback()
                    warm_sources(files)
                    cpu0, sender0 = cpu_seconds(proc.pid), sender_cpu_seconds()
                    busy0, all0 = machine_ticks()
                    with RssTrace(proc.pid) as trace:
                        elapsed = run_storescu(port, aet, files, streams, args.prescan)
                    busy1, all1 = machine_ticks()
                    rss = peak_rss_mb(proc.pid)
                    # The receiver's CPU while the files arrived (derived work still running after is not in it)
                    # and the senders': on 2 cores their sum per file bounds what 4 associations can reach.
                    cpu_ms = (cpu_seconds(proc.pid) - cpu0) / len(files) * 1000
                    sender_ms = (sender_cpu_seconds() - sender0) / len(files) * 1000
                finally:
                    stop(proc)
                rate = len(files) / elapsed
                rates[kind].append(rate)
                label = f" (round {turn + 1})" if args.rounds > 1 else ""
                if settled >= 1:
                    label += f" ({settled:.0f} MB of earlier runs written back first)"
                workers = worker_count(args.workers)
                placed = ""
                if kind == "ecg-node" and streams > 1 and workers > 1:
                    per = associations_per_worker(out.parent / f"{out.name}.log", workers)
                    placed = f", associations per worker {'/'.join(map(str, per))}"
                # How busy all the CPUs were: near 100% the run was bound by the machine (receiver, senders and
                # kernel together), not by the receiver alone.
                busy = f", machine {100 * (busy1 - busy0) / (all1 - all0):.0f}% busy" if all1 > all0 else ""
                print(f"  {streams} assoc  {kind:22s} {rate:8.1f} files/s {total_mb / elapsed:7.1f} MB/s "
                      f"peak RSS {rss:6.1f} MB (RSS {trace.early:.1f} -> {trace.end:.1f})  "
                      f"CPU/file: receiver {cpu_ms:4.2f} ms, storescu {sender_ms:4.2f} ms{busy}{placed}{label}")
        if args.rounds > 1:
            for kind, values in rates.items():
                print(f"  {streams} assoc  {kind:22s} median {statistics.median(values):8.1f} files/s "
                      f"(min {min(values):.1f}, max {max(values):.1f})")
        node = rates.get("ecg-node")
        for peer in ("dcmtk-storescp", "pynetdicom-storescp"):
            if node and rates.get(peer):
                # The ratio of each round (measured minutes apart at most), then their median.
                ratios = [a / b for a, b in zip(node, rates[peer], strict=True)]
                spread = f" (rounds {', '.join(f'{r:.2f}' for r in ratios)})" if len(ratios) > 1 else ""
                print(f"  {streams} assoc  ecg-node / {peer}: {statistics.median(ratios):.2f}x{spread}")
    print(f"creating a file there after the runs: {creation_us(runs / 'creation-after'):.0f} µs")
    shutil.rmtree(runs, ignore_errors=True)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
