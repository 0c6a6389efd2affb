"""Lead contiguity for the comparison rules.

Lead identity (canonical names from codes and labels) is :mod:`dicom_ecg_node.waveform.leads`, shared with the
printouts; its names are re-exported here for the analysis modules.
"""

from __future__ import annotations

from dicom_ecg_node.waveform.leads import STANDARD_LEADS, canonical_lead, lead_from_code, lead_from_label

#: Limb leads in Cabrera order (Thygesen et al. 2018, Fourth Universal Definition of MI, Figure 4 / "contiguous
#: leads"); ``-aVR`` is aVR inverted. Neighbours in this tuple are anatomically contiguous.
CABRERA_ORDER: tuple[str, ...] = ("aVL", "I", "-aVR", "II", "aVF", "III")
#: Precordial leads; neighbours are contiguous.
PRECORDIAL_ORDER: tuple[str, ...] = ("V1", "V2", "V3", "V4", "V5", "V6")
#: The two contiguity sequences.
CONTIGUITY_SEQUENCES: tuple[tuple[str, ...], ...] = (CABRERA_ORDER, PRECORDIAL_ORDER)


def contiguous_runs(positive: set[str]) -> list[tuple[str, ...]]:
    """Runs of two or more neighbouring leads, in each contiguity sequence, that are all in ``positive``.

    Parameters
    ----------
    positive : set of str
        Lead names meeting a criterion; ``"-aVR"`` stands for inverted aVR.

    Returns
    -------
    list of tuple of str
        Each run in sequence order; empty when no two contiguous leads meet the criterion.
    """
    runs: list[tuple[str, ...]] = []
    for order in CONTIGUITY_SEQUENCES:
        run: list[str] = []
        for lead in (*order, None):
            if lead is not None and lead in positive:
                run.append(lead)
                continue
            if len(run) >= 2:
                runs.append(tuple(run))
            run = []
    return runs


__all__ = ["CABRERA_ORDER", "CONTIGUITY_SEQUENCES", "PRECORDIAL_ORDER", "STANDARD_LEADS", "canonical_lead",
           "contiguous_runs", "lead_from_code", "lead_from_label"]
