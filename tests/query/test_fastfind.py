"""net/fastfind.py: C-FIND answers encoded without pydicom, byte for byte what pynetdicom/pydicom produce."""

from __future__ import annotations

from io import BytesIO

import pytest
from helpers import RunningNode
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.dimse_messages import C_FIND_RSP
from pynetdicom.dimse_primitives import C_FIND
from pynetdicom.dsutils import encode
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as SRFIND  # noqa: N814
from querydata import make_record
from test_find_scp import filled  # noqa: F401 (fixture)

from dicom_ecg_node.net.fastfind import encode_identifier, p_data, pending_command

SYNTAXES = [(True, True), (False, True), (False, False)]  # implicit LE, explicit LE, explicit BE


@pytest.mark.parametrize("status", [0xFF00, 0xFF01])
@pytest.mark.parametrize("msg_id", [1, 7, 65535])
@pytest.mark.parametrize("sop_class", ["1.2.840.10008.5.1.4.1.2.2.1", "1.2.840.10008.5.1.4.31"])
def test_pending_command_is_pynetdicoms_command_set(status: int, msg_id: int, sop_class: str) -> None:
    rsp = C_FIND()
    rsp.MessageIDBeingRespondedTo = msg_id
    rsp.AffectedSOPClassUID = sop_class
    rsp.Status = status
    rsp.Identifier = BytesIO(b"\x08\x00\x52\x00\x00\x00\x00\x00")
    msg = C_FIND_RSP()
    msg.primitive_to_message(rsp)
    assert pending_command(msg_id, sop_class, status) == encode(msg.command_set, True, True)


def _answers(node: RunningNode, keys: dict[str, str], charset: str | None = None) -> list[Dataset]:
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.QueryRetrieveLevel = "STUDY"
    for kw in ("StudyInstanceUID", "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
               "StudyTime", "AccessionNumber", "StudyID", "StudyDescription", "ReferringPhysicianName",
               "ModalitiesInStudy", "SOPClassesInStudy", "NumberOfStudyRelatedSeries",
               "NumberOfStudyRelatedInstances", "RetrieveAETitle", "InstanceAvailability"):
        setattr(ds, kw, "")
    for kw, value in keys.items():
        setattr(ds, kw, value)
    return [a for _, a in node.node.query.find(ds, SRFIND)]


@pytest.mark.parametrize(("implicit", "little"), SYNTAXES)
def test_real_answers_encode_as_pydicom_does(filled: RunningNode, implicit: bool, little: bool) -> None:  # noqa: F811
    node = filled
    node.ingest.catalog.add_instance(make_record("1.2.826.7.1", patient_id="P7", name="Yamada^Tarou=山田^太郎",
                                                 study="1.2.826.7", accession=None, description="Ruhe-EKG ÄÖÜ",
                                                 referring="Smith^John^^Dr", modality="ECG"))
    answers = _answers(node, {}) + _answers(node, {}, "ISO_IR 192") + _answers(node, {"PatientID": "P1"},
                                                                                "ISO_IR 100")
    assert len(answers) == 5 + 5 + 2  # every study twice, then P1's two
    fast = 0
    for answer in answers:
        mine = encode_identifier(answer, implicit, little)
        assert mine is None or mine == encode(answer, implicit, little), answer
        # The query service encodes an answer's text itself (raw elements): the same bytes as pydicom writes
        # for the decoded values.
        decoded = Dataset()
        for elem in answer:
            decoded.add(elem)
        assert mine == encode(decoded, implicit, little), answer
        fast += mine is not None
    assert fast == len(answers)  # every flat STUDY answer takes the fast path
    mine = next(a for a in answers if a.PatientID == "P7")
    assert (str(mine.PatientName), mine.StudyDescription, mine.ReferringPhysicianName, mine.SpecificCharacterSet) == (
        "Yamada^Tarou=山田^太郎", "Ruhe-EKG ÄÖÜ", "Smith^John^^Dr", "ISO_IR 192")
    assert mine.AccessionNumber in (None, "") and mine.NumberOfStudyRelatedInstances == 1


def test_answers_in_other_character_sets(filled: RunningNode) -> None:  # noqa: F811
    filled.ingest.catalog.add_instance(make_record("1.2.826.7.2", patient_id="P8", name="Yamada^Tarou=山田^太郎",
                                                   study="1.2.826.8"))
    filled.ingest.catalog.add_instance(make_record("1.2.826.7.3", patient_id="P9", name="Иванов^Иван",
                                                   study="1.2.826.9"))
    # A query in a character set with code extensions gets UTF-8 answers when they are not plain ASCII.
    [answer] = _answers(filled, {"PatientID": "P8"}, "ISO 2022 IR 87")
    assert answer.SpecificCharacterSet == "ISO_IR 192" and str(answer.PatientName) == "Yamada^Tarou=山田^太郎"
    assert encode_identifier(answer, False, True) == encode(answer, False, True)
    # Cyrillic (ISO_IR 144) can encode the name: the answer keeps it, pydicom encodes it.
    [answer] = _answers(filled, {"PatientID": "P9"}, "ISO_IR 144")
    assert answer.SpecificCharacterSet == "ISO_IR 144" and str(answer.PatientName) == "Иванов^Иван"
    assert encode_identifier(answer, False, True) is None
    assert "Иванов^Иван ".encode("iso8859_5") in encode(answer, False, True)
    # A non-ASCII code string (not conformant, PS3.5 6.2, but stored) makes the answer UTF-8, not unencodable.
    filled.ingest.catalog.add_instance(make_record("1.2.826.7.4", patient_id="P10", study="1.2.826.10",
                                                   modality="ÉCG"))
    [answer] = _answers(filled, {"PatientID": "P10"})
    assert answer.SpecificCharacterSet == "ISO_IR 192"
    mine = encode_identifier(answer, True, True)
    assert mine == encode(answer, True, True) and b"\x08\x00\x61\x00\x04\x00\x00\x00\xc3\x89CG" in mine


_texts = st.text(st.characters(codec="utf-8", exclude_characters="\\\0", exclude_categories=("Cs", "Cc")),
                 max_size=24)


@settings(max_examples=300, deadline=None)
@given(
    syntax=st.sampled_from(SYNTAXES),
    charset=st.sampled_from([None, "ISO_IR 100", "ISO_IR 192", "ISO 2022 IR 87"]),
    name=_texts, lo=_texts,
    cs=st.lists(st.sampled_from(["ECG", "HD", "SR", "DOC"]), max_size=3),
    uid=st.from_regex(r"1\.2(\.[1-9][0-9]{0,6}){0,6}", fullmatch=True),
    count=st.none() | st.integers(0, 2**31 - 1),
    us=st.integers(0, 65535),
    empty=st.booleans(),
)
def test_encoder_matches_pydicom_or_declines(syntax, charset, name, lo, cs, uid, count, us, empty) -> None:
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    ds.PatientName = "" if empty else name
    ds.StudyDescription = lo
    ds.ModalitiesInStudy = cs
    ds.StudyInstanceUID = uid
    ds.NumberOfStudyRelatedInstances = count
    ds.add_new(0x00280010, "US", us)  # Rows: a binary number
    implicit, little = syntax
    mine = encode_identifier(ds, implicit, little)
    if mine is not None:
        assert mine == encode(ds, implicit, little)
    if charset == "ISO 2022 IR 87":
        assert mine is None  # code extensions: left to pydicom
    elif charset == "ISO_IR 192" or (charset is None and (name + lo).isascii()):
        assert mine is not None  # what the node's answers use always takes the fast path


def test_sequences_are_left_to_pydicom() -> None:
    ds = Dataset()
    ds.PatientID = "P1"
    ds.ScheduledProcedureStepSequence = [Dataset()]
    assert encode_identifier(ds, True, True) is None


def test_p_data_fragments_within_the_peer_maximum() -> None:
    payload = bytes(range(100))
    frags = list(p_data(3, payload, False, max_pdu=40))
    pdvs = [f.presentation_data_value_list[0] for f in frags]
    assert all(cx == 3 and len(data) - 1 <= 34 for cx, data in pdvs)
    assert [data[0] for _, data in pdvs] == [0x00, 0x00, 0x02]  # data fragments, the last one marked
    assert b"".join(data[1:] for _, data in pdvs) == payload
    (cmd,) = [f.presentation_data_value_list[0][1] for f in p_data(1, b"abcd", True, max_pdu=0)]
    assert cmd == b"\x03abcd"


def test_answers_arrive_whole_through_a_small_peer_pdu(filled: RunningNode) -> None:  # noqa: F811
    ae = AE(ae_title="SMALLPDU")
    ae.maximum_pdu_size = 128  # every identifier is split over several P-DATA-TF PDUs
    ae.add_requested_context(SRFIND)
    assoc = ae.associate(filled.host, filled.port, ae_title=filled.aet)
    assert assoc.is_established
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientID = "P1"
    ds.StudyInstanceUID = ""
    ds.PatientName = ""
    ds.StudyDescription = ""
    ds.NumberOfStudyRelatedInstances = ""
    try:
        rsp = [(int(s.Status), i) for s, i in assoc.send_c_find(ds, SRFIND)]
    finally:
        assoc.release()
    assert [s for s, _ in rsp] == [0xFF00, 0xFF00, 0x0000]
    assert [str(i.StudyInstanceUID) for _, i in rsp[:2]] == ["1.2.826.1.1", "1.2.826.1.2"]
    assert all(str(i.PatientName) == "Doe^Jane" and int(i.NumberOfStudyRelatedInstances) == 1 for _, i in rsp[:2])
