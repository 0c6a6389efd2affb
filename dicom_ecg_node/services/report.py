"""Printouts back into the study: the rendered PDF as Encapsulated PDF, and what the printout reads of the catalog.

Two parts:

:func:`build_encapsulated_pdf` (pure)
    Wraps the PDF bytes, unchanged, in an Encapsulated PDF object (PS3.3 A.45.1, SOP Class
    1.2.840.10008.5.1.4.1.1.104.1) of the ECG's patient and study. Modules:

    - Patient (C.7.1.1) and General Study (C.7.2.1): copied from the ECG, so the printout lands in its study.
    - Encapsulated Document Series (C.24.1): a new series. Modality is Type 1 there and "shall be the modality
      appropriate for the encapsulated document" (Defined Terms of C.7.3.1.1.1). The node uses ``ECG``
      (Electrocardiography) rather than ``DOC`` (Document): the document is a drawing of ECG waveforms, derived
      from an ECG of the same study, and a study-level query then still shows only ``ECG`` in Modalities in Study.
    - General Equipment (C.7.5.1) and SC Equipment (C.8.6.1): this node; Conversion Type ``WSD`` (workstation),
      the term DCMTK's ``pdf2dcm`` and Orthanc use for a PDF made by software.
    - Encapsulated Document (C.24.2): Burned In Annotation ``YES`` (the page carries the patient's name and ID),
      Document Title, Concept Name Code Sequence ``(11524-6, LN, "EKG study")`` (the LOINC document code for an
      electrocardiogram study; LOINC 18750-0 is "Cardiac electrophysiology study", which is not what this is),
      MIME Type ``application/pdf``, Source Instance Sequence (the ECG, and the prior ECG when the printout
      overlays it: "the set of Instances that were used to derive the encapsulated document"), Encapsulated
      Document and Encapsulated Document Length (CP 1851: the PDF's own length, since an odd-length OB value is
      padded to even length on encoding).
    - SOP Common (C.12.1).

:func:`render_context` and :func:`store_printout`
    What ``ecg-node render`` reads from the catalog (the node's measurements and comparison flags, the prior ECG)
    and how it stores the printout (through :meth:`IngestService.store`, sender AE = the node's AE title), so that
    the command line never sees the catalog's models.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

from dicom_ecg_node import __version__
from dicom_ecg_node.config import NodeConfig
from dicom_ecg_node.errors import DatasetError, NotFoundError
from dicom_ecg_node.waveform.sopclass import ENCAPSULATED_PDF

if TYPE_CHECKING:
    from dicom_ecg_node.services.ingest import StoreOutcome

#: Concept Name Code Sequence of the printout (LOINC 11524-6 "EKG study").
EKG_STUDY: tuple[str, str, str] = ("11524-6", "LN", "EKG study")
#: Series Number of the node's printout series (the SR reports use 9901).
PDF_SERIES_NUMBER = 9902
#: Modality of the printout series (see the module docstring).
PDF_MODALITY = "ECG"
MIME_PDF = "application/pdf"

# Patient (C.7.1.1) and General Study (C.7.2.1) attributes copied from the ECG.
_COPIED = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
           "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
           "StudyDescription")
# Type 2 attributes of those modules: present, possibly empty.
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber")


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None:
        return None
    text = str(value).strip("\0 ")
    return text or None


def _content_zone(source: Dataset, zone: tzinfo) -> tzinfo:
    """The zone of the ECG's local times.

    Its Timezone Offset From UTC, else its Acquisition DateTime's own offset, else ``zone`` (the node's zone for
    times without an offset, as the ingest uses).
    """
    from dicom_ecg_node.waveform._datetime import parse_dt, parse_offset

    try:
        offset = _text(source, "TimezoneOffsetFromUTC")
        if offset:
            return parse_offset(offset)
        acquired = _text(source, "AcquisitionDateTime")
        if acquired:
            own = parse_dt(acquired)[1]
            if own is not None:
                return own
    except ValueError:
        pass
    return zone


def build_encapsulated_pdf(
    pdf: bytes,
    source: Dataset,
    *,
    station_aet: str,
    document_title: str,
    other_sources: Sequence[tuple[str, str]] = (),
    zone: tzinfo = UTC,
    now: datetime | None = None,
    sop_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
) -> FileDataset:
    """Wrap a rendered PDF in an Encapsulated PDF object in the study of the ECG it shows.

    Parameters
    ----------
    pdf : bytes
        The PDF file, stored byte for byte.
    source : pydicom.dataset.Dataset
        The ECG the PDF shows: patient and study attributes are copied from it, and it is the first item of
        Source Instance Sequence.
    station_aet : str
        The node's AE title (Station Name).
    document_title : str
        Document Title (0042,0010), at most 1024 characters.
    other_sources : sequence of (str, str)
        (SOP Class UID, SOP Instance UID) of further instances drawn on the PDF (the prior ECG of an overlay).
    zone : tzinfo
        Zone of the ECG's local times when it states no UTC offset; Content Date/Time are written in the ECG's
        zone so that they read like its Study Date/Time.
    now : datetime, optional
        Creation time (default: now).
    sop_instance_uid, series_instance_uid : str, optional
        Default: new UIDs.

    Returns
    -------
    pydicom.dataset.FileDataset
        With file meta (Explicit VR Little Endian), ready to encode with :func:`encode`.

    Raises
    ------
    DatasetError
        ``pdf`` is not a PDF, ``document_title`` is too long, or ``source`` lacks its SOP Class, SOP Instance or
        Study Instance UID.
    """
    from dicom_ecg_node.services.ingest import validate_uid

    if not pdf.startswith(b"%PDF-"):
        raise DatasetError("pdf: the bytes do not start with %PDF-")
    if len(document_title) > 1024:
        raise DatasetError(f"document_title: {len(document_title)} characters, ST holds at most 1024")
    source_class = validate_uid(source.get("SOPClassUID"), "SOPClassUID")
    source_instance = validate_uid(source.get("SOPInstanceUID"), "SOPInstanceUID")
    study_uid = validate_uid(source.get("StudyInstanceUID"), "StudyInstanceUID")
    local_now = (now or datetime.now(UTC)).astimezone(_content_zone(source, zone))

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ENCAPSULATED_PDF
    meta.MediaStorageSOPInstanceUID = sop_instance_uid or generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    # SOP Common (C.12.1). UTF-8 (C.12.1.1.2) encodes the patient's name whatever character set the cart used.
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = ENCAPSULATED_PDF
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.InstanceCreationDate, ds.InstanceCreationTime = local_now.strftime("%Y%m%d"), local_now.strftime("%H%M%S")
    if _text(source, "TimezoneOffsetFromUTC"):  # it applies to the copied Study Date/Time too (C.12.1.1.8)
        ds.TimezoneOffsetFromUTC = _text(source, "TimezoneOffsetFromUTC")
    # Patient (C.7.1.1) and General Study (C.7.2.1): the ECG's.
    for keyword in _COPIED:
        if keyword in source:
            setattr(ds, keyword, source[keyword].value)
    for keyword in _TYPE2:
        if keyword not in ds:
            setattr(ds, keyword, None)
    ds.StudyInstanceUID = study_uid
    # Encapsulated Document Series (C.24.1): a new series.
    ds.Modality = PDF_MODALITY
    ds.SeriesInstanceUID = series_instance_uid or generate_uid()
    ds.SeriesNumber = PDF_SERIES_NUMBER
    ds.SeriesDescription = "ECG printout (dicom-ecg-node)"
    # General Equipment (C.7.5.1) and SC Equipment (C.8.6.1).
    ds.Manufacturer = "dicom-ecg-node"
    ds.ManufacturerModelName = "dicom-ecg-node"
    ds.SoftwareVersions = __version__
    ds.StationName = station_aet
    ds.ConversionType = "WSD"
    # Encapsulated Document (C.24.2).
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = local_now.strftime("%Y%m%d"), local_now.strftime("%H%M%S")
    # Type 2: "the date and time that the original generation of the data in the document started": the ECG's.
    ds.AcquisitionDateTime = _text(source, "AcquisitionDateTime")
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = document_title
    concept = Dataset()
    concept.CodeValue, concept.CodingSchemeDesignator, concept.CodeMeaning = EKG_STUDY
    ds.ConceptNameCodeSequence = [concept]
    items = []
    for cls, inst in dict.fromkeys([(source_class, source_instance), *other_sources]):
        item = Dataset()
        item.ReferencedSOPClassUID = cls
        item.ReferencedSOPInstanceUID = inst
        items.append(item)
    ds.SourceInstanceSequence = items
    ds.MIMETypeOfEncapsulatedDocument = MIME_PDF
    ds.EncapsulatedDocument = pdf
    ds.EncapsulatedDocumentLength = len(pdf)
    return ds


def encode(ds: FileDataset) -> bytes:
    """Encode a dataset built here as a DICOM Part 10 file."""
    buf = io.BytesIO()
    dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def document_bytes(ds: Dataset) -> bytes:
    """The encapsulated document without the padding byte (Encapsulated Document Length, when present)."""
    data = bytes(ds.EncapsulatedDocument)
    length = ds.get("EncapsulatedDocumentLength")
    return data[: int(length)] if length is not None and int(length) in (len(data), len(data) - 1) else data


# -- what ``ecg-node render`` reads and stores --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeMeasurements:
    """The node's global measurements as the printout header shows them (``None``: not measured)."""

    heart_rate_bpm: float | None
    pr_ms: float | None
    qrs_ms: float | None
    qt_ms: float | None
    qtc_ms: float | None
    axis_deg: float | None


@dataclass(frozen=True, slots=True)
class ComparisonFlag:
    """A stored serial-comparison flag: the rule, the leads it fired in, and the prior it compared with."""

    rule: str
    leads: tuple[str, ...]
    detail: str
    prior_sop_instance_uid: str


@dataclass(frozen=True, slots=True)
class RenderContext:
    """What the catalog knows of an ECG that the printout shows.

    Attributes
    ----------
    sop_instance_uid : str
    sop_class_uid : str
    study_instance_uid : str
    measurements : NodeMeasurements or None
        The node's measurements when its analysis of this very file is current and measured.
    flags : tuple of ComparisonFlag
        The stored comparison flags against ``comparison_prior_uid``.
    comparison_prior_uid : str or None
        The prior ECG the stored comparison used (``None``: not compared, or no prior).
    prior_uid : str or None
        The prior to overlay when asked for one (see :func:`render_context`); ``None``: the patient has none.
    prior_source : str
        How ``prior_uid`` was found: ``"comparison"``, ``"measured"``, ``"catalog"`` or ``""``.
    """

    sop_instance_uid: str
    sop_class_uid: str
    study_instance_uid: str
    measurements: NodeMeasurements | None = None
    flags: tuple[ComparisonFlag, ...] = ()
    comparison_prior_uid: str | None = None
    prior_uid: str | None = None
    prior_source: str = ""

    def changed_leads(self, prior_uid: str | None) -> list[str]:
        """Leads flagged against ``prior_uid`` (none when the stored comparison used another prior)."""
        if prior_uid is None or prior_uid != self.comparison_prior_uid:
            return []
        return sorted({lead for f in self.flags for lead in f.leads})

    def flags_against(self, prior_uid: str | None) -> tuple[ComparisonFlag, ...]:
        """The flags when they compare with ``prior_uid``, else none."""
        return self.flags if prior_uid is not None and prior_uid == self.comparison_prior_uid else ()


def _issuer(config: NodeConfig, path: str) -> str:
    import pydicom

    try:
        ds = pydicom.dcmread(Path(config.data_dir) / path, stop_before_pixels=True,
                             specific_tags=["IssuerOfPatientID"])
    except (OSError, ValueError, TypeError, AttributeError, EOFError):
        return ""
    return _text(ds, "IssuerOfPatientID") or ""


def _catalog_prior(config: NodeConfig, catalog: Any, target: Any, classes: Sequence[str]) -> str | None:
    """The previous dated ECG of an analysed class in the patient's timeline whose analysis has not failed."""
    from dicom_ecg_node.catalog.analysis import analyses_for
    from dicom_ecg_node.catalog.sql import fetch_timeline

    if target.acquisition_utc is None:
        return None
    key = (target.acquisition_utc, target.sop_instance_uid)
    earlier = [e for e in fetch_timeline(catalog, target.patient_id, _issuer(config, target.path))
               if e.sop_class_uid in classes and e.acquisition_utc is not None
               and (e.acquisition_utc, e.sop_instance_uid) < key]
    failed = {uid for uid, row in analyses_for(catalog, [e.sop_instance_uid for e in earlier]).items()
              if row.status == "failed"}
    candidates = [e.sop_instance_uid for e in earlier if e.sop_instance_uid not in failed]
    return candidates[-1] if candidates else None


def render_context(config: NodeConfig, sop_instance_uid: str, *, find_prior: bool = False) -> RenderContext:
    """The node's analysis of a catalogued ECG and, when asked, its prior ECG.

    The prior is the one the serial analysis uses (:mod:`dicom_ecg_node.services.analysis`): the prior of the
    stored comparison when the analysis of this file has been compared; else the patient's previous measured ECG
    in true UTC order (:func:`~dicom_ecg_node.catalog.analysis.measured_neighbours`, the analysis's own lookup);
    else, when nothing before it has been measured yet, the previous dated resting ECG in the patient's timeline
    (true UTC order) that the analysis has not found unmeasurable (the one the analysis will pick).

    Parameters
    ----------
    config : NodeConfig
        The node whose catalog is read (nothing is written).
    sop_instance_uid : str
        A catalogued instance.
    find_prior : bool
        Look the prior up.

    Raises
    ------
    NotFoundError
        The instance is not in the catalog.
    CatalogError
    """
    from dicom_ecg_node.catalog.analysis import MEASURED, analysis_target, get_analysis, measured_neighbours
    from dicom_ecg_node.services.analysis import ANALYSED_CLASSES
    from dicom_ecg_node.services.maintenance import open_catalog

    with open_catalog(config) as catalog:
        target = analysis_target(catalog, sop_instance_uid)
        if target is None:
            raise NotFoundError(f"SOP Instance UID {sop_instance_uid} is not in the catalog")
        row = get_analysis(catalog, sop_instance_uid)
        current = row is not None and row.status in MEASURED and row.sha256 == target.sha256
        measurements = flags = comparison_prior = None
        if current and row is not None:
            m = row.measurements
            measurements = NodeMeasurements(m.get("heart_rate_bpm"), m.get("pr_ms"), m.get("qrs_ms"),
                                            m.get("qt_ms"), m.get("qtc_ms"), m.get("axis_deg"))
            if row.status == "done":
                comparison_prior = row.prior_sop_instance_uid
                flags = tuple(ComparisonFlag(f.rule, tuple(f.leads), f.detail, f.prior_sop_instance_uid)
                              for f in row.flags)
        prior_uid, prior_source = None, ""
        if find_prior and target.sop_class_uid in ANALYSED_CLASSES:
            if comparison_prior is not None:
                prior_uid, prior_source = comparison_prior, "comparison"
            else:
                measured = measured_neighbours(catalog, target, ANALYSED_CLASSES)[0]
                if measured is not None:
                    prior_uid, prior_source = measured.sop_instance_uid, "measured"
                else:
                    prior_uid = _catalog_prior(config, catalog, target, ANALYSED_CLASSES)
                    prior_source = "catalog" if prior_uid else ""
    return RenderContext(target.sop_instance_uid, target.sop_class_uid, target.study_instance_uid, measurements,
                         flags or (), comparison_prior, prior_uid, prior_source)


def store_printout(config: NodeConfig, sop_instance_uid: str, pdf: bytes, *, document_title: str,
                   other_sources: Sequence[tuple[str, str]] = ()) -> StoreOutcome:
    """Store a rendered PDF of a catalogued ECG in the ECG's study, as Encapsulated PDF from the node's AE title.

    Parameters
    ----------
    config : NodeConfig
        The node: its catalog and archive, its AE title (the sender and Station Name) and zone.
    sop_instance_uid : str
        The ECG the PDF shows (in the catalog).
    pdf : bytes
        The PDF, stored byte for byte.
    document_title : str
        Document Title of the new object.
    other_sources : sequence of (str, str)
        (SOP Class UID, SOP Instance UID) of further instances drawn (the overlaid prior).

    Returns
    -------
    StoreOutcome
        Of :meth:`IngestService.store`; ``sop_instance_uid`` is the new object's.

    Raises
    ------
    NotFoundError
        The ECG is not in the catalog.
    DatasetError, ArchiveError, CatalogError
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    from dicom_ecg_node.services.ingest import IngestService

    with IngestService.open(config) as ingest:
        entry = ingest.catalog.find_instance_file(sop_instance_uid)
        if entry is None:
            raise NotFoundError(f"SOP Instance UID {sop_instance_uid} is not in the catalog")
        try:
            source = pydicom.dcmread(io.BytesIO(ingest.archive.read(entry.path)))
        except (ValueError, TypeError, AttributeError, EOFError, InvalidDicomError) as exc:
            raise DatasetError(f"{sop_instance_uid}: the archived file cannot be read: {exc}") from exc
        ds = build_encapsulated_pdf(pdf, source, station_aet=config.aet, document_title=document_title,
                                    other_sources=other_sources, zone=config.zone)
        return ingest.store(encode(ds), sender_ae=config.aet, sender_address="local")


__all__ = [
    "EKG_STUDY",
    "MIME_PDF",
    "PDF_MODALITY",
    "PDF_SERIES_NUMBER",
    "ComparisonFlag",
    "NodeMeasurements",
    "RenderContext",
    "build_encapsulated_pdf",
    "document_bytes",
    "encode",
    "render_context",
    "store_printout",
]
