"""HL7 v2 over MLLP: ADT and orders in (to patients and the Modality Worklist), ORU^R01 results out.

Modules: :mod:`.mllp` (framing, listener, sender), :mod:`.messages` (charsets, fields, ACKs, segment mapping),
:mod:`.intake` (one message → services → one ACK, idempotent), :mod:`.results` (ORU^R01 of a stored ECG),
:mod:`.runtime` (the listener and the results sender of a running node). This package uses the services and
python-hl7; it never imports pynetdicom.
"""
