"""A C-MOVE of 500 ECGs into DCMTK storescp holds one object at a time: the traced peak does not grow with size."""

from __future__ import annotations

import linecache
import tracemalloc

import pytest
from helpers import run_dcmtk
from retrievesupport import fill

pytestmark = [pytest.mark.slow, pytest.mark.dcmtk]


def interned_table_growth(snapshot: tracemalloc.Snapshot) -> int:
    """Bytes of live blocks over 1 MB allocated by a ``sys.intern`` call: the interpreter's table of interned
    strings, rebuilt larger now and then (pathlib interns every new file name it parses).

    In a long test session that table is several megabytes, and when a rebuild falls inside the traced move the
    new table counts in the peak (the old one was never traced, so its release does not). It belongs to the
    process, not to the move, and is taken out of the peak.
    """
    total = 0
    for trace in snapshot.traces:
        frame = trace.traceback[0]
        if trace.size > 1_000_000 and "sys.intern(" in linecache.getline(frame.filename, frame.lineno):
            total += trace.size
    return total


def traced_move(node, storescp, patient_id: str) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = run_dcmtk("movescu", "-P", "-aet", "VIEWSCU", "-aec", node.aet, "-aem", storescp.aet,
                           "-k", "QueryRetrieveLevel=PATIENT", "-k", f"PatientID={patient_id}", node.host,
                           str(node.port), timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
        peak = tracemalloc.get_traced_memory()[1]
        return peak - interned_table_growth(tracemalloc.take_snapshot())
    finally:
        tracemalloc.stop()


def test_move_of_500_instances_keeps_memory_flat(node_factory, dcmtk_storescp):
    # The traced peak covers every thread of this process: no background ECG analysis, and the derived work of
    # the 550 stores done before the moves, so only the retrieve is measured.
    node = node_factory(analysis="off")
    node.node.retrieve.registry.add(dcmtk_storescp.aet, "127.0.0.1", dcmtk_storescp.port)
    fill(node, 50, patient_id="SMALL")
    fill(node, 500, patient_id="LARGE")
    assert node.node.dispatcher.wait_idle(120)
    small = traced_move(node, dcmtk_storescp, "SMALL")
    large = traced_move(node, dcmtk_storescp, "LARGE")
    assert sum(1 for f in dcmtk_storescp.out.iterdir() if f.is_file()) == 550
    # Ten times the instances (each ~126 KB: 63 MB in all) may not cost more than a couple of objects' worth.
    assert large < small + 2_000_000, (small, large)
    assert large < 16_000_000, large
