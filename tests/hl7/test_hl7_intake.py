"""A real MLLP client (plain sockets) drives ADT and malformed sequences; updates reach C-FIND."""

from __future__ import annotations

from hl7support import Hl7Running, MllpClient, err, message, msa
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import PatientRootQueryRetrieveInformationModelFind as PRFIND  # noqa: N814

PID_DOE = "PID|1||P100^^^HOSP&1.2.3&ISO^MR~X-77^^^OTHER^PI||Doe^Jane^M||19800102|F"


def find_patients(node: Hl7Running, **keys: str) -> list[Dataset]:
    ae = AE(ae_title="FINDSCU")
    ae.add_requested_context(PRFIND)
    r = node.running
    assoc = ae.associate(r.host, r.port, ae_title=r.aet)
    assert assoc.is_established
    ds = Dataset()
    ds.QueryRetrieveLevel = "PATIENT"
    for k in ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "IssuerOfPatientID"):
        setattr(ds, k, keys.get(k, ""))
    try:
        out = [ident for st, ident in assoc.send_c_find(ds, PRFIND) if st.Status in (0xFF00, 0xFF01)]
    finally:
        assoc.release()
    return out


def test_adt_create_then_update_reaches_cfind(hl7_node: Hl7Running, mllp: MllpClient) -> None:
    ack = mllp.send(message("ADT^A01", "C1", "EVN|A01|20260301", PID_DOE, "PV1|1|O"))
    assert msa(ack)[1:3] == ["AA", "C1"]
    assert err(ack) is None
    # Several messages on one connection: A08 corrects name and birth date.
    ack = mllp.send(message("ADT^A08", "C2", "EVN|A08|20260301",
                            "PID|1||P100^^^HOSP^MR||Doe-Smith^Jane^M||19800103|F"))
    assert msa(ack)[1:3] == ["AA", "C2"]
    [answer] = find_patients(hl7_node, PatientID="P100")
    assert str(answer.PatientName) == "Doe-Smith^Jane^M"
    assert answer.PatientBirthDate == "19800103"
    assert answer.PatientSex == "F"
    assert answer.IssuerOfPatientID == "HOSP"


def test_charsets_utf8_and_latin1(hl7_node: Hl7Running, mllp: MllpClient) -> None:
    ack = mllp.send(message("ADT^A04", "U1", "PID|1||P200^^^HOSP^MR||Müller^Jürgen||19700101|M",
                            charset="UNICODE UTF-8"))
    assert msa(ack)[1] == "AA"
    ack = mllp.send(message("ADT^A04", "L1", "PID|1||P201^^^HOSP^MR||Gonçalves^José||19700101|M",
                            charset="8859/1"), encoding="latin-1")
    assert msa(ack, "latin-1")[1] == "AA"
    assert "8859/1" in ack.decode("latin-1").split("\r")[0]
    names = {a.PatientID: str(a.PatientName) for a in find_patients(hl7_node, PatientID="P20*")}
    assert names == {"P200": "Müller^Jürgen", "P201": "Gonçalves^José"}


def test_malformed_input_is_answered_and_connection_stays_usable(hl7_node: Hl7Running, mllp: MllpClient) -> None:
    # Garbage, then a frame: the garbage gets an AR, the message an AA.
    mllp.send_raw(b"hello garbage" + b"\x0b" + message("ADT^A01", "G1", PID_DOE).encode() + b"\x1c\x0d")
    first, second = mllp.read_ack(), mllp.read_ack()
    assert msa(first)[1] == "AR" and "outside any block" in err(first)[8]
    assert msa(second)[1:3] == ["AA", "G1"]
    # A frame without its start block.
    mllp.send_raw(message("ADT^A08", "G2", "PID|1||P100^^^HOSP^MR||Wrong^Name").encode() + b"\x1c\x0d")
    ack = mllp.read_ack()
    assert msa(ack)[1] == "AR" and "without a start block" in err(ack)[8]
    # No MSH.
    ack = mllp.send("PID|1||P100^^^HOSP^MR||Wrong^Name\r")
    assert msa(ack)[1] == "AR" and err(ack)[3].startswith("100^") and "MSH" in err(ack)[8]
    # Unknown message type / event.
    ack = mllp.send(message("ZZZ^Z01", "G3", PID_DOE))
    assert msa(ack)[1:3] == ["AR", "G3"] and err(ack)[3].startswith("200^")
    ack = mllp.send(message("ADT^A99", "G4", PID_DOE))
    assert msa(ack)[1:3] == ["AR", "G4"] and err(ack)[3].startswith("201^")
    # A bad value: AE naming the field, nothing changed.
    ack = mllp.send(message("ADT^A08", "G5", "PID|1||P100^^^HOSP^MR||Wrong^Name||notadate|F"))
    assert msa(ack)[1:3] == ["AE", "G5"] and err(ack)[2] == "PID^1^7"
    # An unknown charset: AR.
    ack = mllp.send(message("ADT^A08", "G6", PID_DOE, charset="KLINGON"))
    assert msa(ack)[1:3] == ["AR", "G6"] and err(ack)[2] == "MSH^1^18"
    # Still the same connection, still working, and the name never changed.
    ack = mllp.send(message("ADT^A08", "G7", "PID|1||P100^^^HOSP&1.2.3&ISO^MR||Doe^Jane^M||19800102|F"))
    assert msa(ack)[1:3] == ["AA", "G7"]
    [answer] = find_patients(hl7_node, PatientID="P100")
    assert str(answer.PatientName) == "Doe^Jane^M"


def test_redelivery_is_idempotent(hl7_node: Hl7Running, mllp: MllpClient) -> None:
    first = message("ADT^A08", "R1", "PID|1||P300^^^HOSP^MR||First^Name")
    ack1 = mllp.send(first)
    assert msa(ack1)[1] == "AA"
    assert msa(mllp.send(message("ADT^A08", "R2", "PID|1||P300^^^HOSP^MR||Second^Name")))[1] == "AA"
    again = mllp.send(first)  # re-delivered (same MSH-10 from the same sender): the same ACK, no second change
    assert again == ack1
    [answer] = find_patients(hl7_node, PatientID="P300")
    assert str(answer.PatientName) == "Second^Name"
    # The same MSH-10 for different content is refused.
    ack = mllp.send(message("ADT^A08", "R1", "PID|1||P300^^^HOSP^MR||Third^Name"))
    assert msa(ack)[1:3] == ["AR", "R1"] and err(ack)[3].startswith("205^")
    log = hl7_node.running.ingest.catalog.models.Hl7Message
    with hl7_node.running.ingest.catalog._connection():
        assert log.select().where(log.control_id == "R1").count() == 1


def test_five_megabyte_message(hl7_node: Hl7Running, mllp: MllpClient) -> None:
    big = "NTE|1||" + "A" * (5 * 1024 * 1024)
    ack = mllp.send(message("ADT^A08", "B1", "PID|1||P400^^^HOSP^MR||Big^Message", big))
    assert msa(ack)[1:3] == ["AA", "B1"]
    assert str(find_patients(hl7_node, PatientID="P400")[0].PatientName) == "Big^Message"


def test_sending_facility_and_address_policy(hl7_factory) -> None:
    node = hl7_factory(hl7_allowed_facilities=("HOSP",))
    client = node.client()
    try:
        ack = client.send(message("ADT^A01", "F1", PID_DOE, facility="ELSEWHERE"))
        assert msa(ack)[1:3] == ["AR", "F1"] and "ELSEWHERE" in err(ack)[8]
        assert msa(client.send(message("ADT^A01", "F2", PID_DOE)))[1] == "AA"
    finally:
        client.close()
    other = hl7_factory(hl7_allowed_addresses=("10.0.0.0/8",))
    client = other.client()
    try:
        ack = client.send(message("ADT^A01", "F3", "PID|1||P999^^^HOSP^MR||Not^Allowed"))
        assert msa(ack)[1] == "AR" and "127.0.0.1" in err(ack)[8]
        assert find_patients(other, PatientID="P999") == []
    finally:
        client.close()
