"""Orders over MLLP become Modality Worklist entries; carts query them (pynetdicom and DCMTK findscu -W)."""

from __future__ import annotations

import pytest
from helpers import run_dcmtk
from hl7support import Hl7Running, err, message, msa
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import ModalityWorklistInformationFind as MWL  # noqa: N814

from dicom_ecg_node.hl7.mllp import send_message
from dicom_ecg_node.services.worklist import OrderData, WorklistService, set_step_status


def orm(control_id: str, control: str, placer: str, *, pid: str = "P1", name: str = "Doe^Jane", start: str = "",
        station: str = "CART1", accession: str = "", rp_id: str = "", sps_id: str = "", modality: str = "ECG",
        priority: str = "R", status: str = "", location: str = "CARDIO^101", omg: bool = False) -> str:
    tq1 = f"TQ1|1||||||{start}||{priority}"
    orc_fields = [""] * 19
    orc_fields[1:6] = [control, placer, "", placer, status]
    orc_fields[7] = "" if omg else f"^^^{start}^^{priority}"
    orc_fields[18] = station
    orc = "ORC" + "|".join(orc_fields)
    obr_fields = [""] * 25
    obr_fields[1:5] = ["1", placer, "", "ECG12^12-lead resting ECG^L"]
    obr_fields[16], obr_fields[18], obr_fields[19], obr_fields[20] = "9999^Smith^John", accession, rp_id, sps_id
    obr_fields[24] = modality
    obr = "OBR" + "|".join(obr_fields)
    segs = [f"PID|1||{pid}^^^HOSP^MR||{name}||19800102|F", "PV1|1|O|" + location + "|" * 16 + f"V{pid}", orc]
    segs += [tq1, obr] if omg else [obr]
    return message("OMG^O19" if omg else "ORM^O01", control_id, *segs)


def send(node: Hl7Running, text: str) -> bytes:
    return send_message("127.0.0.1", node.mllp_port, text.encode())


def mwl_query(node: Hl7Running, *, sps: dict[str, str] | None = None, **top: str) -> list[Dataset]:
    ae = AE(ae_title="CART1")
    ae.add_requested_context(MWL)
    r = node.running
    assoc = ae.associate(r.host, r.port, ae_title=r.aet)
    assert assoc.is_established
    ds = Dataset()
    for k in ("PatientName", "PatientID", "AccessionNumber", "RequestedProcedureID", "AdmissionID",
              "StudyInstanceUID"):
        setattr(ds, k, top.get(k, ""))
    item = Dataset()
    for k in ("Modality", "ScheduledStationAETitle", "ScheduledProcedureStepStartDate",
              "ScheduledProcedureStepStartTime", "ScheduledProcedureStepLocation", "ScheduledProcedureStepID"):
        setattr(item, k, (sps or {}).get(k, ""))
    item.ScheduledProtocolCodeSequence = []
    ds.ScheduledProcedureStepSequence = [item]
    try:
        rsp = [(int(st.Status), i) for st, i in assoc.send_c_find(ds, MWL)]
    finally:
        assoc.release()
    assert rsp[-1][0] == 0x0000
    return [i for s, i in rsp if s in (0xFF00, 0xFF01)]


@pytest.fixture
def scheduled(hl7_node: Hl7Running) -> Hl7Running:
    orders = [
        orm("O1", "NW", "ORD1", start="202603011015", accession="ACC1", rp_id="RP1", sps_id="SPS1"),
        orm("O2", "NW", "ORD2", pid="P2", name="Roe^Rick", start="202603021400", accession="ACC2", rp_id="RP2",
            sps_id="SPS2", station="CART2", omg=True, priority="S"),
        orm("O3", "NW", "ORD3", pid="P3", name="Poe^Pam", start="202603031000", accession="ACC3", sps_id="SPS3",
            modality="US", location="ER^1"),
    ]
    for text in orders:
        assert msa(send(hl7_node, text))[1] == "AA"
    return hl7_node


def test_worklist_matching(scheduled: Hl7Running) -> None:
    every = mwl_query(scheduled)
    assert [a.AccessionNumber for a in every] == ["ACC1", "ACC2", "ACC3"]
    first = every[0]
    step = first.ScheduledProcedureStepSequence[0]
    assert (first.PatientID, str(first.PatientName), first.RequestedProcedureID, first.AdmissionID) == \
        ("P1", "Doe^Jane", "RP1", "VP1")
    assert (step.Modality, step.ScheduledStationAETitle, step.ScheduledProcedureStepStartDate,
            step.ScheduledProcedureStepStartTime, step.ScheduledProcedureStepLocation,
            step.ScheduledProcedureStepID) == ("ECG", "CART1", "20260301", "1015", "CARDIO", "SPS1")
    assert step.ScheduledProtocolCodeSequence[0].CodeValue == "ECG12"
    # Station AE, modality, date range, start time, location, sequence matching with several item keys.
    assert [a.AccessionNumber for a in mwl_query(scheduled, sps={"ScheduledStationAETitle": "CART2"})] == ["ACC2"]
    assert [a.AccessionNumber for a in mwl_query(scheduled, sps={"Modality": "ECG"})] == ["ACC1", "ACC2"]
    got = mwl_query(scheduled, sps={"ScheduledProcedureStepStartDate": "20260302-20260303"})
    assert [a.AccessionNumber for a in got] == ["ACC2", "ACC3"]
    got = mwl_query(scheduled, sps={"ScheduledProcedureStepStartDate": "20260301-20260303",
                                    "ScheduledProcedureStepStartTime": "1000-1100"})
    # Combined date-time range (PS3.4 C.2.2.2.5.1): 1 Mar 10:00 to 3 Mar 11:00, so 2 Mar 14:00 is in.
    assert [a.AccessionNumber for a in got] == ["ACC1", "ACC2", "ACC3"]
    got = mwl_query(scheduled, sps={"ScheduledProcedureStepStartTime": "1000-1100"})  # a time of day alone
    assert [a.AccessionNumber for a in got] == ["ACC1", "ACC3"]
    got = mwl_query(scheduled, sps={"Modality": "ECG", "ScheduledStationAETitle": "CART1"})
    assert [a.AccessionNumber for a in got] == ["ACC1"]
    assert mwl_query(scheduled, sps={"Modality": "US", "ScheduledStationAETitle": "CART2"}) == []
    assert [a.AccessionNumber for a in mwl_query(scheduled, sps={"ScheduledProcedureStepLocation": "ER"})] == ["ACC3"]
    # Top-level keys: name wildcard (case-insensitive PN), patient ID, accession, requested procedure, admission.
    assert [a.PatientID for a in mwl_query(scheduled, PatientName="ro*")] == ["P2"]
    assert [a.AccessionNumber for a in mwl_query(scheduled, PatientID="P3")] == ["ACC3"]
    assert [a.PatientID for a in mwl_query(scheduled, RequestedProcedureID="RP2")] == ["P2"]
    assert [a.PatientID for a in mwl_query(scheduled, AdmissionID="VP1")] == ["P1"]


def test_order_updates_and_status_changes_leave_the_worklist(scheduled: Hl7Running) -> None:
    # XO moves ORD1 to the 5th; the TQ start is read from ORC-7.4.
    assert msa(send(scheduled, orm("O4", "XO", "ORD1", start="202603050900", accession="ACC1")))[1] == "AA"
    [moved] = mwl_query(scheduled, AccessionNumber="ACC1")
    assert moved.ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate == "20260305"
    # CA cancels ORD2; SC with ORC-5 CM completes ORD3.
    assert msa(send(scheduled, orm("O5", "CA", "ORD2")))[1] == "AA"
    assert msa(send(scheduled, orm("O6", "SC", "ORD3", status="CM")))[1] == "AA"
    assert [a.AccessionNumber for a in mwl_query(scheduled)] == ["ACC1"]
    # The MPPS engineer's interface: completing the step takes it off too.
    assert set_step_status(scheduled.running.ingest.catalog, "COMPLETED", accession_number="ACC1") == 1
    assert mwl_query(scheduled) == []
    # Unknown order and duplicate NW: AE with ERR.
    ack = send(scheduled, orm("O7", "XO", "NOPE"))
    assert msa(ack)[1] == "AE" and "unknown" in err(ack)[8]
    ack = send(scheduled, orm("O8", "NW", "ORD1"))
    assert msa(ack)[1] == "AE" and "already exists" in err(ack)[8]


def test_adt_update_and_merge_reach_the_worklist(scheduled: Hl7Running) -> None:
    assert msa(send(scheduled, message("ADT^A08", "A1", "PID|1||P1^^^HOSP^MR||Doe^Janet||19800102|F")))[1] == "AA"
    assert str(mwl_query(scheduled, PatientID="P1")[0].PatientName) == "Doe^Janet"
    assert msa(send(scheduled, message("ADT^A40", "A2", "PID|1||P9^^^HOSP^MR||Nine^Nina", "MRG|P2^^^HOSP")))[1] \
        == "AA"
    [entry] = mwl_query(scheduled, AccessionNumber="ACC2")
    assert (entry.PatientID, str(entry.PatientName)) == ("P9", "Nine^Nina")


@pytest.mark.dcmtk
def test_findscu_worklist(scheduled: Hl7Running, tmp_path) -> None:
    r = scheduled.running
    proc = run_dcmtk("findscu", "-W", "-aet", "CART1", "-aec", r.aet, "-X", "--output-directory", str(tmp_path),
                     "-k", "PatientName", "-k", "PatientID", "-k", "AccessionNumber",
                     "-k", "ScheduledProcedureStepSequence[0].Modality=ECG",
                     "-k", "ScheduledProcedureStepSequence[0].ScheduledStationAETitle=CART2",
                     "-k", "ScheduledProcedureStepSequence[0].ScheduledProcedureStepStartDate=20260301-20260302",
                     r.host, str(r.port))
    assert proc.returncode == 0, proc.stderr
    import pydicom

    answers = [pydicom.dcmread(p) for p in sorted(tmp_path.glob("rsp*.dcm"))]
    assert [a.AccessionNumber for a in answers] == ["ACC2"]
    assert answers[0].PatientID == "P2"


@pytest.mark.dcmtk
def test_cancel_during_worklist_answers(scheduled: Hl7Running, tmp_path) -> None:
    client = scheduled.client()  # a few orders over HL7 on one connection...
    try:
        for n in range(40):
            assert msa(client.send(orm(f"X{n}", "NW", f"BULK{n}", start="202603041200", accession=f"B{n}")))[1] \
                == "AA"
    finally:
        client.close()
    service = WorklistService(scheduled.running.ingest.catalog)  # ...and enough that the cancel arrives mid-stream
    for n in range(40, 1500):
        service.apply_order(OrderData(control="NW", placer_order=f"BULK{n}", patient_id="P1", patient_name="Doe^Jane",
                                      accession_number=f"B{n}", modality="ECG", start_date="20260304",
                                      start_time="120000", station_ae="CART1"))
    r = scheduled.running
    # DCMTK's findscu sends the C-CANCEL-RQ as soon as it has two answers (a pynetdicom requestor's own threads
    # decode the incoming answers ahead of the one that would send the cancel, so its timing is not the node's).
    proc = run_dcmtk("findscu", "-W", "-v", "--cancel", "2", "-aet", "CART1", "-aec", r.aet, "-X",
                     "--output-directory", str(tmp_path), "-k", "AccessionNumber",
                     "-k", "ScheduledProcedureStepSequence[0].Modality", r.host, str(r.port))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout + proc.stderr
    # PS3.4 C.4.1.2.3 (K.4.1.2.3 for the worklist): matching stops and the last response is Cancel (0xFE00).
    assert "Received Final Find Response (Cancel: MatchingTerminatedDueToCancelRequest)" in text, text[-2000:]
    assert 2 <= len(list(tmp_path.glob("rsp*.dcm"))) < 200
