#!/usr/bin/env python3
"""Differential fuzzing of the node's light associations against pynetdicom's own association handling.

The node serves most associations itself (``net/lightassoc.py``, ``net/faststore.py``) and promises to answer
them as pynetdicom would. This script starts two nodes in this process, one as it runs and one with light
associations off (every association pynetdicom's), sends each the same bytes over TCP and compares what comes
back, byte for byte, until the node closes or goes quiet:

``associate``
    an A-ASSOCIATE-RQ (PS3.8 9.3.2) with varied application context, AE titles, maximum length, user items,
    presentation contexts and IDs, half of them then mutated byte-wise; an accepted association is released.
``store``
    an accepted association, then one C-STORE of a synthetic 12-lead ECG in P-DATA-TF PDUs (PS3.8 9.3.5, Annex E)
    split at random, with some command-set bytes, fragment headers, context IDs, fragments, PDU types or lengths
    mutated; then an A-RELEASE-RQ.
``command``
    no nodes: C-STORE-RQ command sets (PS3.7 9.3.1.1, with and without the Move Originator elements) with one or
    two bytes changed, read by the fast path (``faststore.store_request``) and by pynetdicom's DIMSE decoder; a
    command set the fast path hands to pynetdicom counts as the same.
``identifier``
    no nodes: flat C-FIND answer identifiers of random text and number elements in several character sets,
    encoded by the fast path (``fastfind.encode_identifier``) and by pynetdicom (``dsutils.encode``) in the three
    uncompressed transfer syntaxes; one the fast encoder leaves to pydicom counts as the same.

Each difference is printed with its case number and the mutation; ``store`` also prints a summary of outcomes
(A-ABORT source/reason, C-STORE-RSP status). Differences found this way were fixed (see the git log: "found by
differential fuzzing"); those left on malformed P-DATA are described in ``net/lightassoc.py``.

Usage: .venv/bin/python scripts/fuzz_associations.py {associate,store,command,identifier} [--seed 1] [--cases 200]
"""

from __future__ import annotations

import argparse
import logging
import random
import socket
import struct
import sys
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

from pydicom.datadict import DicomDictionary
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode
from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    P_DATA,
    ImplementationClassUIDNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import build_context

from dicom_ecg_node.config import load_config
from dicom_ecg_node.net.fastfind import encode_identifier
from dicom_ecg_node.net.faststore import parse_command, request_primitive, store_request
from dicom_ecg_node.net.lightassoc import DICOM_APPLICATION_CONTEXT as DICOM_CONTEXT
from dicom_ecg_node.net.server import DicomNode
from dicom_ecg_node.services.ingest import IngestService
from dicom_ecg_node.waveform.synth import synthesize_ecg

TWELVE_LEAD = "1.2.840.10008.5.1.4.1.1.9.1.1"
VERIFICATION = "1.2.840.10008.1.1"
RELEASE_RQ = b"\x05\x00\x00\x00\x00\x04\x00\x00\x00\x00"
#: The node's maximum PDU length as this script's requests announce it for the SCU side.
SCU_MAX_PDU = 16384


def start_nodes(base: Path) -> list[tuple[DicomNode, IngestService]]:
    """Two nodes on free loopback ports: light associations on, then off."""
    nodes = []
    for name in ("light", "pynetdicom"):
        # No association limit to hit (cases whose peer goes quiet leave associations open until the timeouts).
        config = load_config(environ={}, data_dir=base / name, host="127.0.0.1", port=0, aet="ECGNODE",
                             accept_unknown=True, max_associations_per_peer=0, prepare_archive=False,
                             max_associations=1000, network_timeout=3.0, acse_timeout=3.0, dimse_timeout=3.0)
        ingest = IngestService.open(config)
        node = DicomNode(config, ingest)
        node.start()
        if name == "pynetdicom":
            node._server.light = None  # every association pynetdicom's
        nodes.append((node, ingest))
    return nodes


def associate_request(rng: random.Random, *, varied: bool) -> bytearray:
    """An encoded A-ASSOCIATE-RQ: the node's own kind of request, or (``varied``) one with unusual fields."""
    primitive = A_ASSOCIATE()
    pick = rng.choice if varied else (lambda options: options[0])
    primitive.application_context_name = pick([DICOM_CONTEXT] * 5 + ["1.2.3", DICOM_CONTEXT + ".0"])
    primitive.calling_ae_title = pick(["CART", "cart", " CART", "CART 2", "A" * 16, "X"])
    primitive.called_ae_title = pick(["ECGNODE"] * 6 + ["ecgnode", " ECGNODE", "ECGNODE2", "ECGNOD"])
    length = MaximumLengthNotification()
    length.maximum_length_received = pick([SCU_MAX_PDU, 0, 131072, 4096, 1, 2**32 - 1])
    implementation = ImplementationClassUIDNotification()
    implementation.implementation_class_uid = "1.2.3.4"
    primitive.user_information = pick([[length, implementation], [length, implementation], [implementation],
                                       [length], [implementation, length]])
    if varied:
        classes = [VERIFICATION, TWELVE_LEAD, "1.2.840.10008.5.1.4.1.2.1.1", "1.2.840.10008.5.1.4.1.2.2.1",
                   "1.2.840.10008.5.1.4.1.1.9.1.2", "1.2.840.10008.1.20.1", "1.2.3.999"]
        syntaxes = ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
                    "1.2.840.10008.1.2.4.50"]
        contexts = []
        for i in range(rng.randint(1, 4)):
            proposed = rng.sample(syntaxes, rng.randint(1, 3))
            if rng.random() < 0.2:
                proposed += proposed[:1]  # a transfer syntax proposed twice
            context = build_context(rng.choice(classes), proposed)
            context._context_id = rng.choice([2 * i + 1] * 5 + [1, 2 * i + 2, 255, 253])
            contexts.append(context)
    else:
        contexts = [build_context(TWELVE_LEAD, ["1.2.840.10008.1.2.1"]), build_context(VERIFICATION,
                                                                                      ["1.2.840.10008.1.2"])]
        contexts[0]._context_id, contexts[1]._context_id = 1, 3
    primitive.presentation_context_definition_list = contexts
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return bytearray(pdu.encode())


def mutate_request(rng: random.Random, data: bytearray) -> tuple[bytes, str]:
    """Half unchanged; otherwise bytes changed, inserted or deleted (the PDU length kept consistent)."""
    roll = rng.random()
    if roll < 0.5 or len(data) <= 75:
        return bytes(data), "fields"
    roll = (roll - 0.5) * 2
    at = rng.randrange(74, len(data))
    if roll < 0.4:
        data[at] = rng.randrange(256)
        kind = f"byte {at} changed"
    elif roll < 0.6:
        data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        kind = f"bytes inserted at {at}"
    elif roll < 0.7:
        del data[at:at + rng.randint(1, 4)]
        kind = f"bytes deleted at {at}"
    else:
        at = rng.randrange(0, 74)
        data[at] = rng.randrange(256)
        kind = f"fixed-field byte {at} changed"
    struct.pack_into(">I", data, 2, len(data) - 6)
    return bytes(data), kind


def _element(number: int, value: bytes) -> bytes:
    return struct.pack("<HHI", 0, number, len(value)) + value


def _even(value: bytes) -> bytes:
    return value + b"\0" if len(value) % 2 else value


def store_pdus(rng: random.Random, dataset: Any) -> tuple[bytes, list[str]]:
    """A C-STORE-RQ (PS3.7 9.3.1.1) of ``dataset`` under a new UID, in P-DATA-TF PDUs, some parts mutated."""
    uid = generate_uid()
    dataset.SOPInstanceUID = uid
    data = encode(dataset, False, True)  # Explicit VR Little Endian: presentation context 1
    body = b"".join((_element(0x0002, _even(TWELVE_LEAD.encode())), _element(0x0100, struct.pack("<H", 1)),
                     _element(0x0110, struct.pack("<H", rng.randrange(1, 65536))),
                     _element(0x0700, struct.pack("<H", 0)), _element(0x0800, struct.pack("<H", 0)),
                     _element(0x1000, _even(uid.encode()))))
    command = bytearray(_element(0x0000, struct.pack("<I", len(body))) + body)
    mutations = []
    if rng.random() < 0.3:
        for _ in range(rng.randint(1, 2)):
            at = rng.randrange(len(command))
            command[at] = rng.randrange(256)
            mutations.append(f"command byte {at}")
    pdvs = [[1, 0x01, part] for part in _split(rng, bytes(command), rng.choice([1, 1, 2, 3]))]
    pdvs[-1][1] = 0x03
    fragments = [[1, 0x00, part] for part in _split(rng, data, rng.choice([9, 10, 12, 20]))]
    fragments[-1][1] = 0x02
    pdvs += fragments
    if rng.random() < 0.3:
        at, roll = rng.randrange(len(pdvs)), rng.random()
        if roll < 0.3:
            header = rng.choice([0, 1, 2, 3, 4, 0xFF])
            mutations.append(f"fragment {at} header {pdvs[at][1]}->{header}")
            pdvs[at][1] = header
        elif roll < 0.6:
            context = rng.choice([3, 5, 0, 255])
            mutations.append(f"fragment {at} context {context}")
            pdvs[at][0] = context
        elif roll < 0.8:
            mutations.append(f"fragment {at} deleted")
            del pdvs[at]
        else:
            extra = [1, rng.choice([0, 1, 2, 3]), bytes(rng.randrange(256) for _ in range(rng.randint(0, 20)))]
            mutations.append(f"fragment inserted at {at} (header {extra[1]}, {len(extra[2])} bytes)")
            pdvs.insert(at, extra)
    pdus: list[bytearray] = []
    items: list[bytes] = []
    for context, header, value in pdvs:
        item = struct.pack(">IBB", len(value) + 2, context, header) + value
        if items and (sum(map(len, items)) + len(item) > SCU_MAX_PDU - 6 or rng.random() < 0.5):
            pdus.append(bytearray(b"\x04\x00" + struct.pack(">I", sum(map(len, items))) + b"".join(items)))
            items = []
        items.append(item)
    pdus.append(bytearray(b"\x04\x00" + struct.pack(">I", sum(map(len, items))) + b"".join(items)))
    if rng.random() < 0.15:
        at, roll = rng.randrange(len(pdus)), rng.random()
        if roll < 0.3:
            pdus[at][0] = rng.choice([0x05, 0x06, 0x07, 0x08, 0x01])
            mutations.append(f"PDU {at} type {pdus[at][0]:#04x}")
        elif roll < 0.6:
            change = rng.choice([-3, -1, 1, 2])
            struct.pack_into(">I", pdus[at], 2, max(0, len(pdus[at]) - 6 + change))
            mutations.append(f"PDU {at} length {change:+d}")
        else:
            pdus[at][1] = rng.randrange(1, 256)
            mutations.append(f"PDU {at} reserved byte")
    return b"".join(bytes(pdu) for pdu in pdus), mutations


def _split(rng: random.Random, data: bytes, parts: int) -> list[bytes]:
    if parts <= 1 or len(data) < parts:
        return [data]
    cuts = sorted(rng.sample(range(1, len(data)), parts - 1))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]


def _read_until_quiet(sock: socket.socket, quiet_s: float) -> tuple[bytes, str]:
    received = b""
    sock.settimeout(quiet_s)
    try:
        while chunk := sock.recv(65536):
            received += chunk
        return received, "closed"
    except TimeoutError:
        return received, "open"
    except ConnectionResetError:
        return received, "reset"


def exchange(port: int, first: bytes, then: bytes | None) -> tuple[object, ...]:
    """Send ``first``; if accepted and ``then`` is given send it; release an association still open."""
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        sock.sendall(first)
        answer, state = _read_until_quiet(sock, 0.5 if then is None else 0.3)
        if state != "open" or not answer.startswith(b"\x02"):
            return answer, state
        steps: list[object] = [answer[:1]]
        for data in (then, RELEASE_RQ):
            if data is None:
                continue
            try:
                sock.sendall(data)
            except OSError:
                return (*steps, "send failed")
            got, state = _read_until_quiet(sock, 0.6)
            steps += [got, state]
            if state != "open":
                break
        return tuple(steps)


def summary(result: tuple[object, ...]) -> str:
    """Each PDU the node sent as a word: ABORTs/r, RSPxxxx (C-STORE-RSP status), RELEASE-RP...; repeats counted."""
    words: list[list[Any]] = []  # [word, repeats]
    for part in result:
        if not isinstance(part, bytes):
            words.append([str(part), 1])
            continue
        at = 0
        while at + 6 <= len(part):
            kind = part[at]
            length = struct.unpack_from(">I", part, at + 2)[0]
            body = part[at + 6:at + 6 + length]
            if kind == 0x07 and len(body) >= 4:
                word = f"ABORT{body[2]}/{body[3]}"
            elif kind == 0x04:
                status = body.find(struct.pack("<HHI", 0, 0x0900, 2))
                word = f"RSP{struct.unpack_from('<H', body, status + 8)[0]:04X}" if status >= 0 else "P-DATA"
            else:
                word = {0x02: "AC", 0x03: "RJ", 0x06: "RELEASE-RP"}.get(kind, f"PDU{kind:#04x}")
            if words and words[-1][0] == word:
                words[-1][1] += 1
            else:
                words.append([word, 1])
            at += 6 + length
    return " ".join(word if repeats == 1 else f"{word}*{repeats}" for word, repeats in words)


def store_command(rng: random.Random, move: bool) -> bytes:
    """A C-STORE-RQ command set, optionally with Move Originator AE title and Message ID, 1-2 bytes changed."""
    body = bytearray(b"".join((
        _element(0x0002, _even(TWELVE_LEAD.encode())), _element(0x0100, struct.pack("<H", 1)),
        _element(0x0110, struct.pack("<H", 7)), _element(0x0700, struct.pack("<H", 0)),
        _element(0x0800, struct.pack("<H", 0)), _element(0x1000, b"1.2.3.4\0"),
        *((_element(0x1030, b"MOVESCU "), _element(0x1031, struct.pack("<H", 5))) if move else ()))))
    command = bytearray(_element(0x0000, struct.pack("<I", len(body))) + body)
    for _ in range(rng.randint(1, 2)):
        at = rng.randrange(len(command))
        command[at] = rng.randrange(256) if rng.random() < 0.5 else command[at] ^ (1 << rng.randrange(8))
    return bytes(command)


def _request_fields(primitive: C_STORE) -> tuple[object, ...]:
    return (primitive.MessageID, str(primitive.AffectedSOPClassUID), str(primitive.AffectedSOPInstanceUID),
            primitive.Priority, primitive.MoveOriginatorApplicationEntityTitle, primitive.MoveOriginatorMessageID)


def fast_reading(command: bytes) -> tuple[object, ...] | None:
    """The request as the fast path builds it for the handler; ``None`` when it leaves the message to pynetdicom."""
    fields = parse_command(command)
    if fields is None or fields.get(0x0100) != b"\x01\x00" or fields.get(0x0800) == b"\x01\x01":
        return None
    request = store_request(fields, 1)
    if request is None:
        return None
    try:
        return _request_fields(request_primitive(request))
    except (TypeError, ValueError) as exc:  # the fast path aborts, as pynetdicom's provider does
        return ("refused", type(exc).__name__)


def pynetdicom_reading(command: bytes) -> tuple[object, ...]:
    """The request pynetdicom's DIMSE decoder makes of the same command set and a data set fragment."""
    message = C_STORE_RQ()
    pdata = P_DATA()
    pdata.presentation_data_value_list = [[1, b"\x03" + command], [1, b"\x02DATA"]]
    try:
        message.decode_msg(pdata)
        return _request_fields(message.message_to_primitive())
    except Exception as exc:  # what pynetdicom's provider turns into an abort
        return ("refused", type(exc).__name__)


def fuzz_commands(rng: random.Random, cases: int, show: int) -> int:
    """The ``command`` kind: returns the number of differences."""
    differences = 0
    handed = 0
    for case in range(cases):
        command = store_command(rng, move=case % 2 == 1)
        fast = fast_reading(command)
        if fast is None:
            handed += 1
            continue
        theirs = pynetdicom_reading(command)
        if fast != theirs:
            differences += 1
            if differences <= show:
                print(f"case {case} {command.hex()}:\n  fast       {fast}\n  pynetdicom {theirs}")
    print(f"{cases} cases, {handed} left to pynetdicom, {differences} differences")
    return differences


#: VRs of the identifiers the query service answers with (text and binary numbers; no sequences).
_IDENTIFIER_VRS = ("AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI", "UR", "PN", "LO", "SH", "LT", "ST", "UT",
                   "UC", "US", "UL", "SS", "SL", "FL", "FD")
_TEXT = {"ascii": "ABCxyz019 ^=-._/\\:", "latin": "\u00e4\u00f6\u00fc\u00c9\u00f1\u00df",
         "other": "\u6f22\u5b57\ud55c\uae00\u03a9\u0436"}


def _tags_by_vr() -> dict[str, list[tuple[int, str]]]:
    tags: dict[str, list[tuple[int, str]]] = {}
    for tag, (vr, vm, _name, _retired, keyword) in DicomDictionary.items():
        if vr in _IDENTIFIER_VRS and keyword and tag >> 16 not in (0x0000, 0x0002) and tag & 0xFFFF:
            tags.setdefault(vr, []).append((tag, vm))
    return tags


def _identifier_value(rng: random.Random, vr: str, vm: str, charset: object) -> object:
    def one() -> object:
        if vr in ("US", "UL"):
            return rng.choice([0, 1, 65535 if vr == "US" else 2**32 - 1, rng.randrange(1000)])
        if vr in ("SS", "SL"):
            return rng.choice([0, -1, 32767 if vr == "SS" else 2**31 - 1, -5])
        if vr in ("FL", "FD"):
            return rng.choice([0.0, 1.5, -2.25, 1e10, rng.randrange(100) / 3])
        choices = {"DS": ["1.5", "0", "-3", " 2.0", "1e3", 1.5, 2], "IS": ["1", "-12", 7, 0, " 3 "],
                   "DA": ["20240101", "", "20240101-20240102"], "TM": ["120000", "1200", "120000.123456", ""],
                   "UI": ["1.2.3", VERIFICATION, ""]}.get(vr)
        if choices is not None:
            return rng.choice(choices)
        pool = _TEXT["ascii"]
        if vr in ("PN", "LO", "SH", "LT", "ST", "UT", "UC"):
            if charset in ("ISO_IR 100", "ISO_IR 192") and rng.random() < 0.5:
                pool += _TEXT["latin"] + (_TEXT["other"] if charset == "ISO_IR 192" else "")
            if rng.random() < 0.1:
                pool += _TEXT["other"]  # not encodable in the character set: left to pydicom
        return "".join(rng.choice(pool) for _ in range(rng.choice([0, 1, 2, 3, 5, 8, 16, 64])))

    if vm != "1" and rng.random() < 0.3:
        return [one() for _ in range(rng.randint(0, 3))]
    return one()


def fuzz_identifiers(rng: random.Random, cases: int, show: int) -> int:
    """The ``identifier`` kind: returns the number of differences."""
    tags = _tags_by_vr()
    differences = encoded = 0
    for case in range(cases):
        identifier = Dataset()
        charset = rng.choice([None, None, "ISO_IR 100", "ISO_IR 192", "ISO_IR 6", "", "ISO_IR 144",
                              ["", "ISO 2022 IR 100"]])
        if charset is not None:
            identifier.SpecificCharacterSet = charset
        for _ in range(rng.randint(0, 8)):
            vr = rng.choice(sorted(tags))
            tag, vm = rng.choice(tags[vr])
            try:
                identifier.add_new(tag, vr, _identifier_value(rng, vr, vm, charset))
            except (TypeError, ValueError, OverflowError):
                continue  # a value pydicom itself refuses to hold
        implicit, little = rng.choice([(True, True), (False, True), (False, False)])
        try:
            fast = encode_identifier(identifier, implicit, little)
        except Exception as exc:  # a bug of the fast encoder: always a difference
            fast = f"{type(exc).__name__}: {exc}".encode()
        if fast is None:
            continue
        encoded += 1
        theirs = encode(identifier, implicit, little)
        if fast != theirs:
            differences += 1
            if differences <= show:
                print(f"case {case} ({'implicit' if implicit else 'explicit'} {'LE' if little else 'BE'}, "
                      f"{charset!r}):\n{identifier}\n  fast       {fast[:160]!r}\n  pynetdicom {theirs!r:.160}")
    print(f"{cases} cases, {encoded} encoded by the fast path, {differences} differences")
    return differences


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=["associate", "store", "command", "identifier"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cases", type=int, default=200)
    ap.add_argument("--show", type=int, default=5, help="differences printed in full (default 5)")
    args = ap.parse_args()
    logging.disable(logging.CRITICAL)  # malformed input makes both nodes log errors by design
    warnings.simplefilter("ignore")  # and pydicom warn about the values it reads
    rng = random.Random(args.seed)
    if args.kind == "command":
        fuzz_commands(rng, args.cases, args.show)
        return 0
    if args.kind == "identifier":
        fuzz_identifiers(rng, args.cases, args.show)
        return 0
    with tempfile.TemporaryDirectory(prefix="fuzz-associations-") as base:
        nodes = start_nodes(Path(base))
        dataset = synthesize_ecg(seed=args.seed) if args.kind == "store" else None
        outcomes: Counter[tuple[str, str]] = Counter()
        differences = 0
        try:
            for case in range(args.cases):
                if args.kind == "associate":
                    first, mutation = mutate_request(rng, associate_request(rng, varied=True))
                    then, label = None, mutation
                else:
                    first = bytes(associate_request(rng, varied=False))
                    then, mutations = store_pdus(rng, dataset)
                    label = ", ".join(mutations) or "unmutated"
                light, plain = (exchange(node.address[1], first, then) for node, _ in nodes)
                if light == plain:
                    continue
                differences += 1
                outcomes[(summary(light), summary(plain))] += 1
                if differences <= args.show:
                    print(f"case {case} ({label}):\n  light      {summary(light)}\n  pynetdicom {summary(plain)}")
        finally:
            for node, ingest in nodes:
                node.stop(grace_s=1)
                ingest.close()
    print(f"{args.cases} cases, {differences} differences")
    for (light_words, plain_words), count in outcomes.most_common():
        print(f"  {count:4d}  light: {light_words[:100]}  |  pynetdicom: {plain_words[:100]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
