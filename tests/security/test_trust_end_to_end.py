"""Issue 5 end to end: a registered cart with a certificate stores over TLS and gets its commitment receipt on the
same association; an unregistered device and a wrong certificate are refused; every access is in the audit trail."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, evt
from securitysupport import audit_events, rejection

from dicom_ecg_node.catalog.registry import AERegistry
from dicom_ecg_node.waveform.synth import synthesize_ecg

TWELVE_LEAD = "1.2.840.10008.5.1.4.1.1.9.1.1"
STORAGE_COMMITMENT = "1.2.840.10008.1.20.1"
STORAGE_COMMITMENT_INSTANCE = "1.2.840.10008.1.20.1.1"


def _tls_associate(node, pki, calling: str, client: str, reports: list, arrived: threading.Event):
    ae = AE(ae_title=calling)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 10
    ae.add_requested_context(TWELVE_LEAD, ExplicitVRLittleEndian)
    ae.add_requested_context(STORAGE_COMMITMENT)

    def on_report(event):
        reports.append((int(event.event_type), event.event_information))
        arrived.set()
        return 0x0000, None

    return ae.associate(node.host, node.node.tls_address[1], ae_title=node.aet,
                        tls_args=(pki.client_context(client), "localhost"),
                        evt_handlers=[(evt.EVT_N_EVENT_REPORT, on_report)])


def test_registered_cart_stores_over_tls_and_receives_its_commitment_report(secure_node, pki):
    node = secure_node(tls_cert=pki.path("node.crt"), tls_key=pki.path("node.key"), tls_ca=pki.path("ca.crt"),
                       tls_port=0)
    AERegistry(node.ingest.catalog).add("CART1", "127.0.0.1", 104, permissions="echo,store,commit",
                                        cert_fingerprint=pki.fingerprint("cart"))
    ecg = synthesize_ecg(patient_id="TLS-PATIENT-1", acquisition_datetime=datetime(2026, 5, 4, 9, 0, tzinfo=UTC),
                         transfer_syntax="explicit", seed=11)

    reports: list = []
    arrived = threading.Event()
    assoc = _tls_associate(node, pki, "CART1", "cart", reports, arrived)
    assert assoc.is_established
    try:
        assert assoc.send_c_store(ecg).Status == 0x0000
        info = Dataset()
        info.TransactionUID = generate_uid()
        ref = Dataset()
        ref.ReferencedSOPClassUID = TWELVE_LEAD
        ref.ReferencedSOPInstanceUID = ecg.SOPInstanceUID
        info.ReferencedSOPSequence = [ref]
        status, _ = assoc.send_n_action(info, 1, STORAGE_COMMITMENT, STORAGE_COMMITMENT_INSTANCE)
        assert status.Status == 0x0000
        assert arrived.wait(20), "no N-EVENT-REPORT on the requesting association"
    finally:
        if assoc.is_established:
            assoc.release()
    [(event_type, report)] = reports
    assert event_type == 1  # all committed (PS3.4 J.3.3.1)
    assert report.TransactionUID == info.TransactionUID
    assert [str(i.ReferencedSOPInstanceUID) for i in report.ReferencedSOPSequence] == [ecg.SOPInstanceUID]
    assert node.ingest.catalog.get_instance(ecg.SOPInstanceUID).summary.patient_id == "TLS-PATIENT-1"

    # An unregistered device (valid certificate of the CA) and a certificate of another CA are refused.
    stranger = _tls_associate(node, pki, "STRANGER", "cart2", [], threading.Event())
    assert stranger.is_rejected and rejection(stranger) == (1, 1, 3)
    rogue = _tls_associate(node, pki, "CART1", "rogue", [], threading.Event())
    assert not rogue.is_established

    # Every access is in the audit trail: the TLS association, the store (with the patient), the commitment
    # request and its report, and both refusals.
    def events():
        return audit_events(node)

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not (
            any(e["event"] == "commitment" and e["outcome"] == "reported" for e in events())
            and any(e["event"] == "tls" for e in events())):
        time.sleep(0.05)
    trail = events()
    accepted = [e for e in trail if e["event"] == "association" and e["outcome"] == "accepted"]
    assert accepted and accepted[0]["ae"] == "CART1" and accepted[0]["detail"]["tls"] is True
    stores = [e for e in trail if e["event"] == "store" and ecg.SOPInstanceUID in e.get("sop_instance_uids", [])]
    assert stores and "TLS-PATIENT-1" in stores[0]["patient_ids"]
    assert [e["outcome"] for e in trail if e["event"] == "commitment"] == ["requested", "reported"]
    assert any(e["event"] == "association" and e["outcome"] == "refused" and e["ae"] == "STRANGER" for e in trail)
    assert any(e["event"] == "tls" and e["outcome"] == "refused" for e in trail)
