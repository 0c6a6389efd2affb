"""The node's ECG measurements and serial comparison as a Comprehensive SR document (PS3.16 TID 3700 ECG Report).

Pure: builds a :class:`~pydicom.dataset.FileDataset` in memory; storing it is the analysis service's business.

IOD: Comprehensive SR (PS3.3 A.35.3; SOP Class 1.2.840.10008.5.1.4.1.1.88.33): Patient and General Study copied
from the analysed ECG (same patient, same study), SR Document Series (C.17.1: Modality ``SR``, one series per
study for this node's reports, Series Instance UID derived from the Study Instance UID and the node's AE title),
General Equipment, SR Document General (C.17.2: the analysed ECG in Current Requested Procedure Evidence, the prior
ECG in Pertinent Other Evidence, an earlier report of the same ECG in Predecessor Documents), SR Document Content
(C.17.3) and SOP Common.

Content tree (PS3.16 TID 3700 "ECG Report", root ``(28010-7, LN, "ECG Report")``)::

    CONTAINER ECG Report
      HAS CONCEPT MOD   CODE Language of Content Item and Descendants = English     (TID 1204)
      HAS OBS CONTEXT   CODE Observer Type = Device; UIDREF/TEXT Device Observer...  (TID 1001 / TID 1004)
      CONTAINS          CODE Comparison with Prior Study Done = Yes|No               (TID 3702 Prior ECG Exam)
                          HAS PROPERTIES WAVEFORM Source of Measurement -> prior ECG; DATETIME Procedure DateTime
      CONTAINS          WAVEFORM Source of Measurement -> analysed ECG; DATETIME Procedure DateTime (TID 3708)
      CONTAINS          CONTAINER ECG Global Measurements                           (TID 3713)
                          NUM Heart rate, R-R interval, P-R interval, QRS duration, Q-T interval, Q-T interval
                          corrected (HAS CONCEPT MOD Measurement Method = Bazett/Fridericia QTc Algorithm, CID 3678),
                          QRS axis; TEXT Algorithm Name / Version
      CONTAINS          CONTAINER ECG Lead Measurements, one per lead               (TID 3714)
                          HAS CONCEPT MOD CODE Lead ID (CID 3001, SCPECG); NUM ST at J, J+60, J+80, T, R, S, Q
      CONTAINS          CONTAINER Qualitative Analysis                              (TID 3717)
                          CODE or TEXT Finding per change flag, with its rule, leads, values, threshold, source
      CONTAINS          TEXT Summary                                                (TID 3719)

Codes: LOINC for the global measurements (8867-4 heart rate, 8625-6 P-R interval, 8633-0 QRS duration, 8634-8 Q-T
interval, 8636-3 Q-T interval corrected, 8632-2 QRS axis, as in PS3.16 CID 3229/3226), DCM for structure
(122158, 122159, 122148, 122140, 122144/122145, 121112, 122146, 122182, 122730/122732 of CID 3678), SNOMED CT
for coded findings (CID 3230: 76388001 ST elevation, 26141007 ST depression). Per-lead amplitudes and the rule
bookkeeping have no standard codes that mean exactly what the node measures (ST relative to the PQ junction at
J+60/J+80, the rule name...), so they use the private scheme ``99ECGNODE``, declared in Coding Scheme
Identification Sequence (PS3.3 C.12.1.1.2) as PS3.16 8.2 asks of local codes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from dicom_ecg_node import __version__
from dicom_ecg_node.waveform.sopclass import COMPREHENSIVE_SR
from dicom_ecg_node.waveform.synth import LEADS

#: Private coding scheme of this node's local codes (PS3.16 8.2: designators beginning with "99").
LOCAL_SCHEME = "99ECGNODE"
#: Series Number of the node's report series.
SR_SERIES_NUMBER = 9901

_Code = tuple[str, str, str]

ECG_REPORT: _Code = ("28010-7", "LN", "ECG Report")
LANGUAGE: _Code = ("121049", "DCM", "Language of Content Item and Descendants")
ENGLISH: _Code = ("en", "RFC5646", "English")
OBSERVER_TYPE: _Code = ("121005", "DCM", "Observer Type")
DEVICE: _Code = ("121007", "DCM", "Device")
DEVICE_UID: _Code = ("121012", "DCM", "Device Observer UID")
DEVICE_NAME: _Code = ("121013", "DCM", "Device Observer Name")
DEVICE_MANUFACTURER: _Code = ("121014", "DCM", "Device Observer Manufacturer")
DEVICE_MODEL: _Code = ("121015", "DCM", "Device Observer Model Name")
PRIOR_DONE: _Code = ("122140", "DCM", "Comparison with Prior Study Done")
YES: _Code = ("373066001", "SCT", "Yes")
NO: _Code = ("373067005", "SCT", "No")
SOURCE: _Code = ("121112", "DCM", "Source of Measurement")
PROCEDURE_DT: _Code = ("122146", "DCM", "Procedure DateTime")
GLOBAL: _Code = ("122158", "DCM", "ECG Global Measurements")
LEAD_MEAS: _Code = ("122159", "DCM", "ECG Lead Measurements")
LEAD_ID: _Code = ("122148", "DCM", "Lead ID")
QUALITATIVE: _Code = ("122145", "DCM", "Qualitative Analysis")
FINDING: _Code = ("121071", "DCM", "Finding")
SUMMARY: _Code = ("121111", "DCM", "Summary")
ALGORITHM_NAME: _Code = ("111001", "DCM", "Algorithm Name")
ALGORITHM_VERSION: _Code = ("111003", "DCM", "Algorithm Version")
METHOD: _Code = ("370129005", "SCT", "Measurement Method")
QTC_METHOD: dict[str, _Code] = {"bazett": ("122730", "DCM", "Bazett QTc Algorithm"),
                                "fridericia": ("122732", "DCM", "Fridericia QTc Algorithm")}

#: Global measurements: EcgMeasurements field → (concept, UCUM unit code, unit meaning).
GLOBAL_ITEMS: tuple[tuple[str, _Code, str, str], ...] = (
    ("heart_rate_bpm", ("8867-4", "LN", "Heart rate"), "/min", "per minute"),
    ("rr_ms", ("122182", "DCM", "R-R interval"), "ms", "millisecond"),
    ("pr_ms", ("8625-6", "LN", "P-R interval"), "ms", "millisecond"),
    ("qrs_ms", ("8633-0", "LN", "QRS duration"), "ms", "millisecond"),
    ("qt_ms", ("8634-8", "LN", "Q-T interval"), "ms", "millisecond"),
    ("qtc_ms", ("8636-3", "LN", "Q-T interval corrected"), "ms", "millisecond"),
    ("axis_deg", ("8632-2", "LN", "QRS axis"), "deg", "degree"),
    ("beats_used", ("BEATS-USED", LOCAL_SCHEME, "Beats in median beat"), "{beats}", "beats"),
    ("beats_rejected", ("BEATS-REJECTED", LOCAL_SCHEME, "Beats left out of median beat"), "{beats}", "beats"),
)
#: Per-lead measurements: LeadMeasurements field → (concept, UCUM unit code, unit meaning).
LEAD_ITEMS: tuple[tuple[str, _Code, str, str], ...] = (
    ("st_j_uv", ("ST-J", LOCAL_SCHEME, "ST level at J point"), "uV", "microvolt"),
    ("st_j60_uv", ("ST-J60", LOCAL_SCHEME, "ST level at J+60 ms"), "uV", "microvolt"),
    ("st_j80_uv", ("ST-J80", LOCAL_SCHEME, "ST level at J+80 ms"), "uV", "microvolt"),
    ("t_amplitude_uv", ("T-AMP", LOCAL_SCHEME, "T wave amplitude"), "uV", "microvolt"),
    ("r_amplitude_uv", ("R-AMP", LOCAL_SCHEME, "R wave amplitude"), "uV", "microvolt"),
    ("s_amplitude_uv", ("S-AMP", LOCAL_SCHEME, "S wave amplitude"), "uV", "microvolt"),
    ("q_amplitude_uv", ("Q-AMP", LOCAL_SCHEME, "Q wave amplitude"), "uV", "microvolt"),
    ("q_duration_ms", ("Q-DUR", LOCAL_SCHEME, "Q wave duration"), "ms", "millisecond"),
)
RULE: _Code = ("RULE", LOCAL_SCHEME, "Serial comparison rule")
LEAD_LABEL: _Code = ("LEAD", LOCAL_SCHEME, "Lead")
VALUES: _Code = ("VALUES", LOCAL_SCHEME, "Values before and after")
THRESHOLD: _Code = ("THRESHOLD", LOCAL_SCHEME, "Threshold")
RULE_SOURCE: _Code = ("RULE-SOURCE", LOCAL_SCHEME, "Source of rule")
DETAIL: _Code = ("DETAIL", LOCAL_SCHEME, "Detail")
MEASUREMENT_SOURCE: _Code = ("BEAT-SOURCE", LOCAL_SCHEME, "Beat used for measurement")
#: Coded findings for rules with a SNOMED CT concept of CID 3230 "ECG Finding"; others are TEXT findings.
RULE_FINDINGS: dict[str, _Code] = {
    "st-elevation": ("76388001", "SCT", "ST elevation"),
    "st-depression": ("26141007", "SCT", "ST depression"),
}
_LEAD_CODES = {label: (code, "SCPECG", meaning) for label, code, meaning in LEADS}


@dataclass(frozen=True, slots=True)
class ReportReference:
    """A composite instance the report refers to.

    Attributes
    ----------
    sop_class_uid, sop_instance_uid, series_instance_uid, study_instance_uid : str
    acquisition_utc : datetime or None
    """

    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    acquisition_utc: datetime | None = None


@dataclass(frozen=True, slots=True)
class ReportFlag:
    """A change flag as the report shows it."""

    rule: str
    leads: tuple[str, ...]
    values: Mapping[str, Sequence[float | None]]
    threshold: Mapping[str, float]
    source: str
    detail: str = ""


def _code(code: _Code) -> Dataset:
    ds = Dataset()
    ds.CodeValue, ds.CodingSchemeDesignator, ds.CodeMeaning = code
    return ds


def _item(relationship: str | None, value_type: str, concept: _Code) -> Dataset:
    ds = Dataset()
    if relationship is not None:
        ds.RelationshipType = relationship
    ds.ValueType = value_type
    ds.ConceptNameCodeSequence = [_code(concept)]
    return ds


def _container(relationship: str, concept: _Code, children: list[Dataset]) -> Dataset:
    ds = _item(relationship, "CONTAINER", concept)
    ds.ContinuityOfContent = "SEPARATE"
    ds.ContentSequence = children
    return ds


def _text(relationship: str, concept: _Code, text: str) -> Dataset:
    ds = _item(relationship, "TEXT", concept)
    text = text.replace("µ", "u").replace("→", "->")  # UCUM spelling; keeps the usual report plain ASCII
    ds.TextValue = text[:1024] if text else "-"  # UT is unlimited; keep items readable in any viewer
    return ds


def _coded(relationship: str, concept: _Code, value: _Code) -> Dataset:
    ds = _item(relationship, "CODE", concept)
    ds.ConceptCodeSequence = [_code(value)]
    return ds


def _num(relationship: str, concept: _Code, value: float, unit: str, unit_meaning: str) -> Dataset:
    ds = _item(relationship, "NUM", concept)
    mv = Dataset()
    mv.NumericValue = f"{float(value):.6g}"
    mv.MeasurementUnitsCodeSequence = [_code((unit, "UCUM", unit_meaning))]
    ds.MeasuredValueSequence = [mv]
    return ds


def _waveform(relationship: str, concept: _Code, ref: ReportReference) -> Dataset:
    ds = _item(relationship, "WAVEFORM", concept)
    sop = Dataset()
    sop.ReferencedSOPClassUID = ref.sop_class_uid
    sop.ReferencedSOPInstanceUID = ref.sop_instance_uid
    ds.ReferencedSOPSequence = [sop]
    return ds


def _datetime(relationship: str, concept: _Code, when: datetime) -> Dataset:
    ds = _item(relationship, "DATETIME", concept)
    # UTC without a suffix: the document's Timezone Offset From UTC (+0000) applies (PS3.3 C.12.1.1.8); DCMTK
    # rejects an offset suffix in a DATETIME content item.
    ds.DateTime = when.astimezone(UTC).strftime("%Y%m%d%H%M%S")
    return ds


def _evidence(refs: Sequence[ReportReference]) -> list[Dataset]:
    """Hierarchical SOP Instance Reference Macro items (PS3.3 C.17.2.3, Table C.17-3), one per study."""
    studies: dict[str, dict[str, list[ReportReference]]] = {}
    for ref in refs:
        studies.setdefault(ref.study_instance_uid, {}).setdefault(ref.series_instance_uid, []).append(ref)
    out = []
    for study_uid, series in studies.items():
        st = Dataset()
        st.StudyInstanceUID = study_uid
        st.ReferencedSeriesSequence = []
        for series_uid, items in series.items():
            se = Dataset()
            se.SeriesInstanceUID = series_uid
            se.ReferencedSOPSequence = []
            for ref in items:
                sop = Dataset()
                sop.ReferencedSOPClassUID = ref.sop_class_uid
                sop.ReferencedSOPInstanceUID = ref.sop_instance_uid
                se.ReferencedSOPSequence.append(sop)
            st.ReferencedSeriesSequence.append(se)
        out.append(st)
    return out


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def describe_flag(flag: ReportFlag) -> str:
    """One line: rule, leads, values before → after, threshold."""
    values = "; ".join(f"{k} {_fmt(v[0])} -> {_fmt(v[1])}" for k, v in flag.values.items())
    threshold = ", ".join(f"{k} {v:g}" for k, v in flag.threshold.items())
    leads = f" in {', '.join(flag.leads)}" if flag.leads else ""
    return f"{flag.rule}{leads}: {values} (threshold {threshold})"


def _flag_item(flag: ReportFlag) -> Dataset:
    if flag.rule in RULE_FINDINGS:
        item = _coded("CONTAINS", FINDING, RULE_FINDINGS[flag.rule])
    else:
        item = _text("CONTAINS", FINDING, flag.detail or flag.rule)
    children = [_text("HAS PROPERTIES", RULE, flag.rule)]
    for lead in flag.leads:
        code = _LEAD_CODES.get(lead)
        # -aVR (aVR inverted, Cabrera order) has no code of its own in CID 3001: said as text.
        children.append(_coded("HAS PROPERTIES", LEAD_ID, code) if code else
                        _text("HAS PROPERTIES", LEAD_LABEL, lead))
    children.append(_text("HAS PROPERTIES", VALUES, "; ".join(
        f"{k}: {_fmt(v[0])} -> {_fmt(v[1])}" for k, v in flag.values.items())))
    children.append(_text("HAS PROPERTIES", THRESHOLD, ", ".join(f"{k} = {v:g}" for k, v in flag.threshold.items())))
    children.append(_text("HAS PROPERTIES", RULE_SOURCE, flag.source))
    if flag.detail:
        children.append(_text("HAS PROPERTIES", DETAIL, flag.detail))
    item.ContentSequence = children
    return item


def build_ecg_report(
    source: Dataset,
    *,
    current: ReportReference,
    measurements: Mapping[str, Any],
    leads: Mapping[str, Mapping[str, float | None]],
    prior: ReportReference | None,
    flags: Sequence[ReportFlag],
    observer_aet: str,
    predecessor: ReportReference | None = None,
    instance_number: int = 1,
    now: datetime | None = None,
) -> FileDataset:
    """Build the Comprehensive SR of one ECG's measurements and its comparison with the prior ECG.

    Parameters
    ----------
    source : Dataset
        The analysed ECG object: Patient and General Study attributes are copied from it.
    current : ReportReference
        The analysed ECG.
    measurements : mapping
        ``heart_rate_bpm``, ``rr_ms``, ``pr_ms``, ``qrs_ms``, ``qt_ms``, ``qtc_ms``, ``qtc_formula``, ``axis_deg``,
        ``source``, ``beats_used``, ``beats_rejected`` (``None`` values are left out).
    leads : mapping of str to mapping
        Lead label → per-lead values (``st_j_uv``... as :class:`~dicom_ecg_node.analysis.LeadMeasurements`).
    prior : ReportReference or None
        The prior ECG compared with (``None``: there is none).
    flags : sequence of ReportFlag
        The change flags against ``prior``.
    observer_aet : str
        The node's AE title (the device observer).
    predecessor : ReportReference, optional
        An earlier report of the same ECG this one replaces (Predecessor Documents Sequence, PS3.3 C.17.2.3).
    instance_number : int
        Instance Number of the report.
    now : datetime, optional
        Content date and time (default: now, UTC).

    Returns
    -------
    pydicom.dataset.FileDataset
        With file meta (Explicit VR Little Endian), ready to encode.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = COMPREHENSIVE_SR
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    # UTF-8 (PS3.3 C.12.1.1.2): it encodes the patient's name whatever the cart used, and the rules' texts (µV).
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = COMPREHENSIVE_SR
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    # Timezone Offset From UTC (C.12.1.1.8) applies to every date and time of the object, the Study Date/Time copied
    # from the ECG included: keep the ECG's offset and write the SR's own times in it; without one, claim none.
    source_offset = str(source.get("TimezoneOffsetFromUTC", "") or "").strip()
    if len(source_offset) == 5 and source_offset[0] in "+-" and source_offset[1:].isdigit():
        minutes = int(source_offset[1:3]) * 60 + int(source_offset[3:])
        now = now.astimezone(timezone(timedelta(minutes=-minutes if source_offset[0] == "-" else minutes)))
        ds.TimezoneOffsetFromUTC = source_offset
    ds.InstanceCreationDate, ds.InstanceCreationTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    # Patient (C.7.1.1) and General Study (C.7.2.1): the ECG's, so the report lands in the same study.
    for kw in ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
               "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
               "AccessionNumber", "StudyDescription"):
        if kw in source:
            setattr(ds, kw, source[kw].value)
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
               "ReferringPhysicianName", "StudyID", "AccessionNumber"):  # type 2: present, possibly empty
        if kw not in ds:
            setattr(ds, kw, None)
    ds.StudyInstanceUID = current.study_instance_uid
    # SR Document Series (C.17.1): one report series per study for this node.
    ds.Modality = "SR"
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[current.study_instance_uid, observer_aet, "ecg-node-sr"])
    ds.SeriesNumber = SR_SERIES_NUMBER
    ds.SeriesDescription = "ECG serial comparison (dicom-ecg-node)"
    ds.ReferencedPerformedProcedureStepSequence = []
    # General Equipment (C.7.5.1)
    ds.Manufacturer = "dicom-ecg-node"
    ds.ManufacturerModelName = "dicom-ecg-node"
    ds.SoftwareVersions = __version__
    # SR Document General (C.17.2)
    ds.InstanceNumber = instance_number
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"  # machine measurements; a physician has not verified them
    ds.PerformedProcedureCodeSequence = []
    ds.CurrentRequestedProcedureEvidenceSequence = _evidence([current])
    if prior is not None:
        ds.PertinentOtherEvidenceSequence = _evidence([prior])
    if predecessor is not None:
        ds.PredecessorDocumentsSequence = _evidence([predecessor])
    scheme = Dataset()
    scheme.CodingSchemeDesignator = LOCAL_SCHEME
    scheme.CodingSchemeName = "dicom-ecg-node local codes"
    scheme.CodingSchemeResponsibleOrganization = "dicom-ecg-node"
    ds.CodingSchemeIdentificationSequence = [scheme]

    # SR Document Content (C.17.3): TID 3700
    content: list[Dataset] = [
        _coded("HAS CONCEPT MOD", LANGUAGE, ENGLISH),
        _coded("HAS OBS CONTEXT", OBSERVER_TYPE, DEVICE),
    ]
    uid_item = _item("HAS OBS CONTEXT", "UIDREF", DEVICE_UID)
    uid_item.UID = generate_uid(entropy_srcs=["dicom-ecg-node device observer", observer_aet])
    content += [uid_item, _text("HAS OBS CONTEXT", DEVICE_NAME, observer_aet),
                _text("HAS OBS CONTEXT", DEVICE_MANUFACTURER, "dicom-ecg-node"),
                _text("HAS OBS CONTEXT", DEVICE_MODEL, "dicom-ecg-node")]
    # TID 3702 Prior ECG Exam
    prior_item = _coded("CONTAINS", PRIOR_DONE, YES if prior is not None else NO)
    if prior is not None:
        prior_children = [_waveform("HAS PROPERTIES", SOURCE, prior)]
        if prior.acquisition_utc is not None:
            prior_children.append(_datetime("HAS PROPERTIES", PROCEDURE_DT, prior.acquisition_utc))
        prior_item.ContentSequence = prior_children
    content.append(prior_item)
    # TID 3708 ECG Waveform Information: the analysed waveform
    content.append(_waveform("CONTAINS", SOURCE, current))
    if current.acquisition_utc is not None:
        content.append(_datetime("CONTAINS", PROCEDURE_DT, current.acquisition_utc))
    # TID 3713 ECG Global Measurements
    glob: list[Dataset] = [
        _text("HAS CONCEPT MOD", ALGORITHM_NAME, "dicom-ecg-node median-beat analysis"),
        _text("HAS CONCEPT MOD", ALGORITHM_VERSION, __version__),
    ]
    for name, concept, unit, unit_meaning in GLOBAL_ITEMS:
        value = measurements.get(name)
        if value is None:
            continue
        item = _num("CONTAINS", concept, value, unit, unit_meaning)
        if name == "qtc_ms" and measurements.get("qtc_formula") in QTC_METHOD:
            item.ContentSequence = [_coded("HAS CONCEPT MOD", METHOD, QTC_METHOD[measurements["qtc_formula"]])]
        glob.append(item)
    if measurements.get("source"):
        glob.append(_text("CONTAINS", MEASUREMENT_SOURCE, str(measurements["source"])))
    content.append(_container("CONTAINS", GLOBAL, glob))
    # TID 3714 ECG Lead Measurements, one container per lead
    for label, values in leads.items():
        code = _LEAD_CODES.get(label)
        children = [_coded("HAS CONCEPT MOD", LEAD_ID, code) if code else
                    _text("HAS CONCEPT MOD", LEAD_LABEL, label)]
        children += [_num("CONTAINS", concept, values[name], unit, unit_meaning)
                     for name, concept, unit, unit_meaning in LEAD_ITEMS if values.get(name) is not None]
        content.append(_container("CONTAINS", LEAD_MEAS, children))
    # TID 3717 ECG Qualitative Analysis: the comparison's findings
    if prior is not None:
        content.append(_container("CONTAINS", QUALITATIVE, [_flag_item(f) for f in flags]))
    # TID 3719 Summary
    if prior is None:
        summary = "No prior ECG of this patient: measurements only."
    elif flags:
        summary = (f"Compared with the prior ECG {prior.sop_instance_uid}: "
                   + " | ".join(describe_flag(f) for f in flags))
    else:
        summary = f"Compared with the prior ECG {prior.sop_instance_uid}: no significant change by the node's rules."
    content.append(_text("CONTAINS", SUMMARY, summary))

    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = [_code(ECG_REPORT)]
    ds.ContinuityOfContent = "SEPARATE"
    template = Dataset()
    template.MappingResource = "DCMR"
    template.TemplateIdentifier = "3700"
    ds.ContentTemplateSequence = [template]
    ds.ContentSequence = DicomSequence(content)
    if all(str(e.value).isascii() for e in ds.iterall()
           if e.VR in ("PN", "LO", "SH", "LT", "ST", "UT", "UC") and e.value is not None):
        del ds.SpecificCharacterSet  # plain ASCII: the default repertoire, readable by every checker
    return ds


__all__ = ["LOCAL_SCHEME", "ReportFlag", "ReportReference", "build_ecg_report", "describe_flag"]
