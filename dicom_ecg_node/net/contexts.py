"""Presentation contexts the node accepts (PS3.4 B.5 storage classes, PS3.5 A.1-A.5 uncompressed syntaxes)."""

from __future__ import annotations

from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import (
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

from dicom_ecg_node.waveform.sopclass import STORAGE_SOP_CLASSES

#: The uncompressed transfer syntaxes, in the order of preference the node uses when several are proposed.
TRANSFER_SYNTAXES: tuple[str, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
)


def supported_contexts() -> list[PresentationContext]:
    """Verification, every storage SOP class the node stores (also as SCU, for C-GET) and the retrieve classes.

    Each has the four uncompressed syntaxes.

    Anything else proposed by a peer is rejected at negotiation with "abstract syntax not supported" (PS3.8 9.3.3.2),
    as the standard intends, rather than accepted and then refused per object.
    """
    contexts = [build_context(Verification, list(TRANSFER_SYNTAXES))]
    contexts.extend(accept_storage_roles(build_context(uid, list(TRANSFER_SYNTAXES))) for uid in STORAGE_SOP_CLASSES)
    contexts.extend(retrieve_contexts())
    contexts.extend(find_contexts())
    contexts.append(build_context(MPPS_SOP_CLASS, list(TRANSFER_SYNTAXES)))  # N-CREATE / N-SET, PS3.4 F.7
    contexts.extend(commitment_contexts())
    return contexts


#: Modality Performed Procedure Step SOP Class (PS3.4 F.7.1).
MPPS_SOP_CLASS = "1.2.840.10008.3.1.2.3.3"

#: C-FIND of the Patient Root and Study Root models (PS3.4 C.6.1.2.1, C.6.2.2.1).
FIND_SOP_CLASSES: tuple[str, ...] = (
    "1.2.840.10008.5.1.4.1.2.1.1",  # Patient Root Query/Retrieve Information Model - FIND
    "1.2.840.10008.5.1.4.1.2.2.1",  # Study Root Query/Retrieve Information Model - FIND
    "1.2.840.10008.5.1.4.31",  # Modality Worklist Information Model - FIND (PS3.4 K.6.1.2)
)


def find_contexts() -> list[PresentationContext]:
    """The C-FIND SCP contexts, each with the four uncompressed syntaxes."""
    return [build_context(uid, list(TRANSFER_SYNTAXES)) for uid in FIND_SOP_CLASSES]


#: C-MOVE and C-GET of the Patient Root and Study Root models (PS3.4 C.6.1, C.6.2).
RETRIEVE_SOP_CLASSES: tuple[str, ...] = (
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelMove,
    PatientRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelGet,
)


def retrieve_contexts() -> list[PresentationContext]:
    """The C-MOVE and C-GET SCP contexts, each with the four uncompressed syntaxes."""
    return [build_context(uid, list(TRANSFER_SYNTAXES)) for uid in RETRIEVE_SOP_CLASSES]


def accept_storage_roles(context: PresentationContext) -> PresentationContext:
    """Let a requestor take the SCP role (and the SCU role) of a storage context, for C-GET.

    A C-GET SCU receives its objects on the same association, so it proposes the storage classes with an
    SCP/SCU Role Selection item asking to be the Storage SCP (PS3.7 D.3.3.4, PS3.4 C.4.3.1). pynetdicom accepts a
    proposed role only where the acceptor's context sets both ``scu_role`` and ``scp_role``; a requestor that
    proposes no role selection keeps the default (it is the SCU, the node stores), so C-STORE is unchanged.
    """
    context.scu_role = True
    context.scp_role = True
    return context


#: Storage Commitment Push Model SOP Class (PS3.4 J.3.1).
STORAGE_COMMITMENT_PUSH_MODEL = "1.2.840.10008.1.20.1"


def commitment_contexts() -> list[PresentationContext]:
    """The Storage Commitment Push Model SCP context, with the four uncompressed syntaxes.

    Default roles (the requester is the SCU, the node the SCP), so no role selection is needed on it: the node
    sends its N-EVENT-REPORT on that association while it is open (PS3.4 J.3.3).
    """
    return [build_context(STORAGE_COMMITMENT_PUSH_MODEL, list(TRANSFER_SYNTAXES))]
