"""Presentation contexts the node accepts (PS3.4 B.5 storage classes, PS3.5 A.1-A.5 uncompressed syntaxes)."""

from __future__ import annotations

from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)
from pynetdicom.presentation import PresentationContext, build_context
from pynetdicom.sop_class import Verification

from dicom_ecg_node.waveform.sopclass import STORAGE_SOP_CLASSES

#: The uncompressed transfer syntaxes, in the order of preference the node uses when several are proposed.
TRANSFER_SYNTAXES: tuple[str, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
)


def supported_contexts() -> list[PresentationContext]:
    """Verification plus every storage SOP class the node stores, each with the four uncompressed syntaxes.

    Anything else proposed by a peer is rejected at negotiation with "abstract syntax not supported" (PS3.8 9.3.3.2),
    as the standard intends, rather than accepted and then refused per object.
    """
    contexts = [build_context(Verification, list(TRANSFER_SYNTAXES))]
    contexts.extend(build_context(uid, list(TRANSFER_SYNTAXES)) for uid in STORAGE_SOP_CLASSES)
    return contexts
