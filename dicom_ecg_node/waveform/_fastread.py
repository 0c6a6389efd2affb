"""A small, strict reader of the DICOM byte stream for the elements the waveform decoder reads.

pydicom builds a :class:`~pydicom.dataset.Dataset` for every sequence item and a Python object for every element;
for a 12-lead ECG (two multiplex groups of 12 Channel Definition items with nested code sequences, dozens of
annotation items) that costs several times more than decoding the samples. This reader walks the bytes with
``struct.unpack_from``, keeps only the elements listed in :data:`KEEP` (raw value bytes, VR) and the items of
the sequences the decoder reads, and jumps over everything else by its length without creating objects. A
defined-length Channel Definition Sequence is kept as its bytes (:class:`LazyItems`) and read on first use: the
decoder's channel cache usually needs only the bytes. Items refer to their enclosing item's character set, not
to the item itself, so a read object has no reference cycle.

It handles the encodings of PS3.5 7.1 (explicit VR: 2- or 4-byte length by VR, PS3.5 7.1.2; implicit VR:
4-byte length, VR from the data dictionary, PS3.5 7.1.3), item and delimiter encoding (PS3.5 7.5: defined and
undefined lengths), the transfer syntaxes Implicit VR Little Endian, Explicit VR Little Endian, Deflated
Explicit VR Little Endian (PS3.5 A.5) and Explicit VR Big Endian (PS3.5 A.3), and a Part 10 file meta group
(PS3.10 7.1, always Explicit VR Little Endian).

Whatever it does not handle exactly as pydicom would (no preamble, another transfer syntax, an undefined-length
value that is not a sequence, an explicit VR it does not know, a VR switch that pydicom would detect and follow,
a value running past its container, a kept sequence sent with another VR...) raises :class:`Unsupported`, and the
caller decodes with pydicom instead, so results never depend on which reader ran. Values are converted the way
pydicom converts them: the decoder's raw readers (see :mod:`dicom_ecg_node.waveform._access`) for plain ASCII
text and numbers, and pydicom's own converter (with the item's Specific Character Set, inherited from the
enclosing dataset as pydicom does) for everything else.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import MutableSequence
from typing import Any

from pydicom import config as pydicom_config
from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import DicomDictionary, dictionary_VR
from pydicom.dataelem import RawDataElement, convert_raw_data_element, empty_value_for_VR
from pydicom.tag import BaseTag

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
DEFLATED_EXPLICIT_VR_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"

#: Sequences whose items the decoder reads (PS3.3 C.10.9, C.10.10, Table 8.8-1).
KEEP_SEQUENCES: frozenset[int] = frozenset({
    0x54000100,  # Waveform Sequence
    0x0040B020,  # Waveform Annotation Sequence
    0x003A0200,  # Channel Definition Sequence
    0x003A0208,  # Channel Source Sequence
    0x003A0211,  # Channel Sensitivity Units Sequence
    0x0040A043,  # Concept Name Code Sequence
    0x0040A168,  # Concept Code Sequence
    0x004008EA,  # Measurement Units Code Sequence
})

#: Other elements the decoder reads, at any level.
KEEP_VALUES: frozenset[int] = frozenset({
    0x00080005,  # Specific Character Set (needed to decode text, PS3.5 6.1.2.5)
    0x00080016, 0x00080018, 0x0020000D, 0x0020000E,  # SOP Class/Instance, Study, Series Instance UID
    0x00080060, 0x00080070, 0x00081090, 0x00181000,  # Modality, Manufacturer, Model Name, Device Serial Number
    0x0008002A, 0x00080022, 0x00080032, 0x00080023, 0x00080033, 0x00080020, 0x00080030,  # acquisition time
    0x00080201,  # Timezone Offset From UTC
    0x00100010, 0x00100020, 0x00100030, 0x00100040,  # Patient's Name, ID, Birth Date, Sex
    # identity the ingest service catalogs (PS3.3 C.7.1.1, C.7.2.1, C.7.3.1, C.7.6.1)
    0x00100021, 0x00080050, 0x00200010, 0x00081030, 0x00080090,  # Issuer of PID, Accession, Study ID/Descr., Ref.
    0x00200011, 0x0008103E, 0x00080021, 0x00080031, 0x00200013,  # Series Number/Descr./Date/Time, Instance Number
    0x00200200, 0x0018106A, 0x00181061, 0x00181800, 0x00181801, 0x00181802,  # Synchronization module
    # multiplex group (PS3.3 C.10.9.1)
    0x00181068, 0x003A0020, 0x003A0005, 0x003A0010, 0x003A001A, 0x54001004, 0x54001006, 0x5400100A, 0x54001010,
    # channel definition (PS3.3 C.10.9.1.4)
    0x003A0203, 0x003A0210, 0x003A0212, 0x003A0213, 0x003A0214, 0x003A0215, 0x003A021A, 0x003A0220,
    0x003A0221, 0x003A0222,
    0x00080100, 0x00080119, 0x00080120, 0x00080102, 0x00080104,  # Code Sequence Macro
    # annotation items (PS3.3 C.10.10)
    0x0040A0B0, 0x0040A180, 0x00700006, 0x0040A30A, 0x0040A132, 0x0040A138, 0x0040A13A, 0x0040A130,
})

# tag -> True for a kept sequence, False for a kept value: one lookup per element.
_KEEP: dict[int, bool] = {**dict.fromkeys(KEEP_VALUES, False), **dict.fromkeys(KEEP_SEQUENCES, True)}
_KEEP_NOTHING: dict[int, bool] = {}
#: Kept sequences whose items are read on first use when the value has a defined length: the decoder's channel
#: cache (:class:`~dicom_ecg_node.waveform.decode.ChannelCache`) usually needs only their bytes, since a cart
#: sends the same channel definitions and the same annotation codes, byte for byte, with every ECG.
LAZY_SEQUENCES: frozenset[int] = frozenset({
    0x003A0200,  # Channel Definition Sequence
    0x0040A043,  # Concept Name Code Sequence
    0x0040A168,  # Concept Code Sequence
    0x004008EA,  # Measurement Units Code Sequence
})
#: Past every tag: no stop.
_NO_STOP = 0xFFFFFFFF


class _KeepAll:
    """Keep every element but ``skip``: a sequence (the dictionary's VR is SQ) with its items, else a value.

    An element whose VR the dictionary does not know (private) is kept as a value; sent as a sequence, it makes the
    read :class:`Unsupported` (the caller reads with pydicom). One instance per read: it caches its look-ups.
    """

    __slots__ = ("_known",)

    def __init__(self, skip: frozenset[int]) -> None:
        self._known: dict[int, bool | None] = dict.fromkeys(skip)

    def get(self, tag: int) -> bool | None:
        if tag in self._known:
            return self._known[tag]
        entry = DicomDictionary.get(tag)  # the plain dict behind dictionary_VR, without its Tag() conversion
        known = self._known[tag] = (entry[0] if entry is not None else _implicit_vr(tag)) == "SQ"
        return known


Keep = dict[int, bool] | _KeepAll

#: Waveform Data and Waveform Padding Value: 'OB or OW' in the dictionary; values kept as the file's bytes.
OB_OW_TAGS: frozenset[int] = frozenset({0x5400100A, 0x54001010})
#: Waveform Data (5400,1010): kept by the decoder's read as a read-only ``memoryview`` of the file's bytes.
_WAVEFORM_DATA = 0x54001010

# PS3.5 Table 7.1-1: explicit VRs with two reserved bytes and a 32-bit length; every other VR has a 16-bit one.
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})
_SHORT_VRS = frozenset({b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT",
                        b"PN", b"SH", b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US"})
_VR_NAMES = {vr: vr.decode("ascii") for vr in _LONG_VRS | _SHORT_VRS}

_ITEM = 0xFFFEE000  # PS3.5 7.5: Item
_ITEM_END = 0xFFFEE00D  # Item Delimitation Item
_SEQ_END = 0xFFFEE0DD  # Sequence Delimitation Item
_UNDEFINED = 0xFFFFFFFF

_LE_EXPLICIT = struct.Struct("<HH2sH")
_BE_EXPLICIT = struct.Struct(">HH2sH")
_LE_IMPLICIT = struct.Struct("<HHL")
_BE_IMPLICIT = struct.Struct(">HHL")
_LE_U32 = struct.Struct("<L")
_BE_U32 = struct.Struct(">L")
_LE_U16 = struct.Struct("<H")


class Unsupported(Exception):
    """The fast reader met something it does not reproduce exactly; the caller decodes with pydicom instead."""


Element = tuple[str, Any]  # (VR, raw value bytes (a memoryview for Waveform Data), list of FastItem, or LazyItems)


class _Charset:
    """Where an item's text encoding comes from: its own Specific Character Set, else its enclosing dataset's.

    Items hold this instead of a reference to their enclosing item, so that an item tree has no reference cycle
    and is freed as soon as it is dropped (a cycle-free tree leaves nothing to the garbage collector, which
    otherwise ran about once per stored object). ``own`` is set once the item's elements are read; the encoding
    it names is converted once (the decoder asks for it for every code sequence and text value it reads).
    """

    __slots__ = ("converted", "implicit", "little", "own", "up")

    def __init__(self, up: _Charset | str | MutableSequence[str], implicit: bool, little: bool) -> None:
        self.up = up
        self.implicit = implicit
        self.little = little
        self.own: Element | None = None
        self.converted: str | MutableSequence[str] | None = None  # ``own`` as an encoding, once asked for

    def encoding(self) -> str | MutableSequence[str]:
        """The encoding pydicom's reader would use (own or inherited, PS3.5 6.1.2.5)."""
        holder: _Charset | str | MutableSequence[str] = self
        while isinstance(holder, _Charset):
            if holder.own is not None:
                if holder.converted is None:
                    raw = _raw_element(0x00080005, holder.own, holder.implicit, holder.little)
                    encoding = convert_encodings(convert_raw_data_element(raw).value)
                    if not encoding:
                        raise Unsupported("empty Specific Character Set")
                    holder.converted = encoding
                return holder.converted
            holder = holder.up
        return holder


def _raw_element(tag: int, element: Element, implicit: bool, little: bool) -> RawDataElement:
    vr, value = element
    length = len(value)
    if not length:  # what pydicom's reader stores for an empty value
        value = empty_value_for_VR(None if implicit else vr, raw=True)
    return RawDataElement(BaseTag(tag), None if implicit else vr, length, value, 0, implicit, little)


class FastItem:
    """The kept elements of one dataset or sequence item, read by :func:`read_file`.

    ``elements`` maps a tag to ``(VR, value)``: the raw value bytes, or a list of :class:`FastItem` for a kept
    sequence. In implicit VR the VR is the data dictionary's. ``count`` is the number of elements the item holds
    (kept or not), as ``len()`` of a pydicom dataset would say.
    """

    __slots__ = ("charset", "count", "elements", "implicit", "little", "media_storage_sop_instance_uid", "source",
                 "transfer_syntax_uid")

    def __init__(self, elements: dict[int, Element], count: int, implicit: bool, little: bool,
                 parent: Parent) -> None:
        self.elements = elements
        self.count = count
        self.implicit = implicit
        self.little = little
        # The enclosing item's character set source, or the encoding pydicom would give a top-level item.
        self.charset = _Charset(parent.charset if type(parent) is FastItem else parent, implicit, little)
        #: Of the root item of a file: file meta Transfer Syntax UID and Media Storage SOP Instance UID.
        self.transfer_syntax_uid: str | None = None
        self.media_storage_sop_instance_uid: str | None = None
        #: Of an item from ``decode.read_object``: the file's bytes (pydicom reads them when this reader cannot).
        self.source: bytes = b""

    def __len__(self) -> int:
        return self.count

    def __contains__(self, tag: object) -> bool:
        return tag in self.elements

    def encoding(self) -> str | MutableSequence[str]:
        """Character set encoding of text values, as pydicom's reader sets it (own or inherited, PS3.5 6.1.2.5)."""
        return self.charset.encoding()

    def _raw(self, tag: int, element: Element) -> RawDataElement:
        return _raw_element(tag, element, self.implicit, self.little)

    def convert(self, tag: int) -> Any:
        """The value pydicom would give element ``tag`` (which must be present and not a kept sequence)."""
        element = self.elements[tag]
        if isinstance(element[1], list | LazyItems):
            raise Unsupported("sequence read as a value")
        if tag in OB_OW_TAGS and (self.implicit or element[0] in ("OB", "OW")):
            return element[1] or None  # OB/OW values are the file's bytes; empty is None
        return convert_raw_data_element(self._raw(tag, element), encoding=self.encoding()).value

    def get(self, keyword_tag: int) -> Any:
        """Like ``Dataset.get``: the converted value of ``keyword_tag``, ``None`` when absent."""
        if keyword_tag not in self.elements:
            return None
        return self.convert(keyword_tag)


def _implicit_vr(tag: int) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return "UN"


Parent = FastItem | _Charset | str | MutableSequence[str]


class LazyItems:
    """The items of a defined-length sequence value, read from its bytes on first use by :meth:`items`.

    ``raw`` is the value (the items' encoding, PS3.5 7.5.1); two sequences with equal ``raw``, ``implicit``,
    ``little`` and character set read to equal items. Reading may raise :class:`Unsupported`, as it would have
    while the enclosing object was read.
    """

    __slots__ = ("_items", "charset", "implicit", "little", "raw")

    def __init__(self, raw: bytes, implicit: bool, little: bool, charset: _Charset) -> None:
        self.raw = raw
        self.implicit = implicit
        self.little = little
        self.charset = charset
        self._items: list[FastItem] | None = None

    @property
    def read(self) -> bool:
        """Whether :meth:`items` has read the items."""
        return self._items is not None

    def items(self) -> list[FastItem]:
        """The items (read once)."""
        if self._items is None:
            items: list[FastItem] = []
            size = len(self.raw)
            if _read_sequence(self.raw, 0, size, size, self.implicit, self.little, self.charset, items) != size:
                raise Unsupported("sequence items overrun the sequence")
            self._items = items
        return self._items

_ITEM_END_BYTES = (b"\xff\xfe\xe0\x0d", b"\xfe\xff\x0d\xe0")  # (FFFE,E00D) big, little endian


def _read_dataset(buf: bytes, pos: int, end: int, implicit: bool, little: bool, item: FastItem | None,
                  top: bool, keep: Keep = _KEEP, stop: int = _NO_STOP) -> int:
    """Read one dataset into ``item`` (``None``: skip it) and return the position after it.

    ``end`` is the item's end, or ``-1``: the end of ``buf`` at top level, else its Item Delimitation Item
    (PS3.5 7.5.2). ``keep`` says which elements to keep; reading ends before the first tag above ``stop``.
    """
    limit = len(buf) if end < 0 else end
    keep_get = keep.get if item is not None else _KEEP_NOTHING.get
    elements: dict[int, Element] = item.elements if item is not None else {}
    count = 0
    if little:
        explicit_header, implicit_header, u32 = _LE_EXPLICIT, _LE_IMPLICIT, _LE_U32
    else:
        explicit_header, implicit_header, u32 = _BE_EXPLICIT, _BE_IMPLICIT, _BE_U32
    if top and implicit and pos + 6 <= limit:
        # pydicom switches to explicit VR when the first element looks explicit; leave such files to it.
        b4, b5 = buf[pos + 4], buf[pos + 5]
        if 0x40 < b4 < 0x5B and 0x40 < b5 < 0x5B:
            raise Unsupported("explicit VR found in an implicit VR dataset")
    vr: bytes = b""
    while pos < limit:
        if pos + 8 > limit:
            if top:
                break  # pydicom stops quietly on fewer than 8 trailing bytes
            raise Unsupported(f"element header truncated at offset {pos}")
        start = pos
        if implicit:
            group, elem, length = implicit_header.unpack_from(buf, pos)
            pos += 8
        else:
            group, elem, vr, length = explicit_header.unpack_from(buf, pos)
            if vr in _SHORT_VRS:
                pos += 8
            elif vr in _LONG_VRS:
                if pos + 12 > limit:
                    raise Unsupported(f"element header truncated at offset {pos}")
                length = u32.unpack_from(buf, pos + 8)[0]
                pos += 12
            elif group != 0xFFFE:
                raise Unsupported(f"unknown VR {vr!r} at offset {pos}")
        if group == 0xFFFE:
            # PS3.5 7.5: item and delimiter tags carry no VR; only an Item Delimitation Item of length 0 belongs.
            if (group << 16 | elem) == _ITEM_END and end < 0 and not top and u32.unpack_from(buf, start + 4)[0] == 0:
                return _finish(item, count, start + 8)
            raise Unsupported(f"unexpected ({group:04X},{elem:04X}) at offset {start}")
        tag = group << 16 | elem
        if tag > stop:
            return _finish(item, count, start)
        count += 1
        kept = keep_get(tag)  # None: skip, True: a kept sequence, False: a kept value
        if length == _UNDEFINED:
            vr_name = _implicit_vr(tag) if implicit else _VR_NAMES[vr]
            if vr_name != "SQ":
                raise Unsupported(f"undefined length for a {vr_name} element ({group:04X},{elem:04X})")
            if kept is False:
                raise Unsupported(f"({group:04X},{elem:04X}) is a value sent as a sequence")
            children: list[FastItem] = []
            pos = _read_sequence(buf, pos, length, limit, implicit, little, item if kept else None, children, keep)
            if kept:
                elements[tag] = ("SQ", children)
            continue
        value_end = pos + length
        if value_end > limit:
            raise Unsupported(f"({group:04X},{elem:04X}) length {length} runs past its container")
        if kept is not None:
            # Implicit VR: the dictionary's VR (PS3.5 7.1.3); Waveform Data's 'OB or OW' is OW in little endian.
            vr_name = ("OW" if tag in OB_OW_TAGS else _implicit_vr(tag)) if implicit else _VR_NAMES[vr]
            if kept:
                if vr_name != "SQ":
                    raise Unsupported(f"({group:04X},{elem:04X}) is a sequence sent as {vr_name}")
                if tag in LAZY_SEQUENCES and keep is _KEEP and item is not None:
                    elements[tag] = ("SQ", LazyItems(buf[pos:value_end], implicit, little, item.charset))
                else:
                    children = []
                    if _read_sequence(buf, pos, length, limit, implicit, little, item, children, keep) != value_end:
                        raise Unsupported(f"({group:04X},{elem:04X}) items overrun the sequence")
                    elements[tag] = ("SQ", children)
            elif vr_name == "SQ":
                raise Unsupported(f"({group:04X},{elem:04X}) is a value sent as a sequence")
            elif tag == _WAVEFORM_DATA and keep is _KEEP:
                # The samples (most of an ECG's bytes) are only read where they lie: a view, not a copy.
                elements[tag] = (vr_name, memoryview(buf)[pos:value_end])
            else:
                elements[tag] = (vr_name, buf[pos:value_end])
        # Anything else, a defined-length sequence included, is skipped by its length (PS3.5 7.5.1).
        pos = value_end
    if end < 0 and not top:
        raise Unsupported("undefined-length item without Item Delimitation Item")
    return _finish(item, count, pos)


def _finish(item: FastItem | None, count: int, pos: int) -> int:
    if item is not None:
        item.count = count
        item.charset.own = item.elements.get(0x00080005)
    return pos


def _read_sequence(buf: bytes, pos: int, length: int, limit: int, implicit: bool, little: bool,
                   parent: Parent | None, items: list[FastItem], keep: Keep = _KEEP) -> int:
    """Read the items of a sequence value starting at ``pos`` into ``items`` (PS3.5 7.5.1, 7.5.2).

    ``parent`` None skips them. Returns the position after the sequence.
    """
    if length == 0:
        return pos
    undefined = length == _UNDEFINED
    end = limit if undefined else pos + length
    if end > limit:
        raise Unsupported(f"sequence length {length} runs past its container")
    header = _LE_IMPLICIT if little else _BE_IMPLICIT
    item_end_bytes = _ITEM_END_BYTES[little]
    while undefined or pos < end:
        if pos + 8 > end:
            raise Unsupported(f"item header truncated at offset {pos}")
        group, elem, item_length = header.unpack_from(buf, pos)
        tag = group << 16 | elem
        pos += 8
        if tag == _SEQ_END:
            if not undefined:
                raise Unsupported("Sequence Delimitation Item in a defined-length sequence")
            return pos
        if tag != _ITEM:
            raise Unsupported(f"({group:04X},{elem:04X}) where an item was expected at offset {pos - 8}")
        # pydicom switches an explicit VR item to implicit VR when its first element looks implicit.
        if not implicit and item_length != 0 and pos + 6 <= len(buf):
            b4, b5 = buf[pos + 4], buf[pos + 5]
            if not (0x40 < b4 < 0x5B and 0x40 < b5 < 0x5B) and buf[pos:pos + 4] != item_end_bytes:
                raise Unsupported("implicit VR item in an explicit VR sequence")
        item = None if parent is None else FastItem({}, 0, implicit, little, parent)
        if item_length == _UNDEFINED:
            pos = _read_dataset(buf, pos, -1, implicit, little, item, False, keep)
        else:
            item_end = pos + item_length
            if item_end > end:
                raise Unsupported(f"item length {item_length} runs past its sequence")
            if _read_dataset(buf, pos, item_end, implicit, little, item, False, keep) != item_end:
                raise Unsupported("item contents overrun the item")
            pos = item_end
        if item is not None:
            items.append(item)
    return pos


def read_file(data: bytes, *, header_until: int | None = None, prefix: bool = False,
              skip: frozenset[int] = frozenset()) -> FastItem:
    """Read a DICOM Part 10 file (preamble, ``DICM``, file meta group, dataset).

    By default the elements the decoder reads are kept (:data:`KEEP_VALUES`, :data:`KEEP_SEQUENCES`). With
    ``header_until`` every element up to that tag but those in ``skip`` is kept, sequences with all their items,
    and reading stops before the first top-level element above it (the samples are never walked). ``prefix``:
    ``data`` is only the start of the file, so running out of it before that element is :class:`Unsupported`.

    Raises
    ------
    Unsupported
        Anything pydicom should read instead (see the module docstring).
    """
    if pydicom_config.data_element_callback is not None:
        raise Unsupported("a pydicom data element callback is configured")
    # PS3.10 7.1: 128-byte preamble, "DICM", then the File Meta Information in Explicit VR Little Endian.
    if len(data) < 132 or data[128:132] != b"DICM":
        raise Unsupported("no preamble and DICM prefix")
    pos = 132
    transfer_syntax: RawDataElement | None = None
    media_instance: bytes | None = None
    size = len(data)
    while pos + 8 <= size and _LE_U16.unpack_from(data, pos)[0] == 0x0002:
        _, elem, vr, length = _LE_EXPLICIT.unpack_from(data, pos)
        if vr in _SHORT_VRS:
            pos += 8
        elif vr in _LONG_VRS and pos + 12 <= size:
            length = _LE_U32.unpack_from(data, pos + 8)[0]
            pos += 12
        else:
            raise Unsupported("file meta element with an unknown VR")
        if length == _UNDEFINED or pos + length > size:
            raise Unsupported("file meta element runs past the end")
        if elem == 0x0003:
            media_instance = data[pos:pos + length]
        elif elem == 0x0010:
            transfer_syntax = RawDataElement(BaseTag(0x00020010), _VR_NAMES[vr], length, data[pos:pos + length],
                                             0, False, True)
        pos += length
    if transfer_syntax is None or transfer_syntax.VR != "UI":
        raise Unsupported("no Transfer Syntax UID")
    ts_value = transfer_syntax.value
    if ts_value.isascii() and b"\\" not in ts_value:  # pydicom's convert_UI, then UID's strip, without a UID
        uid = ts_value.decode("ascii").rstrip("\0 ").strip()
    else:
        uid = str(convert_raw_data_element(transfer_syntax).value)
    if uid == EXPLICIT_VR_LE:
        implicit, little = False, True
    elif uid == IMPLICIT_VR_LE:
        implicit, little = True, True
    elif uid == EXPLICIT_VR_BE:
        implicit, little = False, False
    elif uid == DEFLATED_EXPLICIT_VR_LE:
        implicit, little = False, True
        try:
            data = zlib.decompress(data[pos:], -zlib.MAX_WBITS)  # PS3.5 A.5: raw deflate, no zlib header
        except zlib.error as exc:
            raise Unsupported(f"deflated data: {exc}") from exc
        pos = 0
    else:
        raise Unsupported(f"transfer syntax {uid}")
    item = FastItem({}, 0, implicit, little, default_encoding)
    if header_until is None:
        _read_dataset(data, pos, -1, implicit, little, item, True)
    else:
        end = _read_dataset(data, pos, -1, implicit, little, item, True, _KeepAll(skip), header_until)
        # Stopped by a tag above the limit: that element's 8-byte header was there (see _read_dataset).
        if prefix and end + 8 > len(data):
            raise Unsupported("the header continues past the bytes given")
    item.transfer_syntax_uid = uid
    if media_instance is not None:
        item.media_storage_sop_instance_uid = media_instance.decode("ascii", "replace").rstrip("\0 ")
    return item


def read_sequence_value(value: bytes, implicit: bool, little: bool,
                        parent_encoding: str | MutableSequence[str]) -> list[FastItem]:
    """Items of a defined-length sequence value still held as bytes by a pydicom dataset.

    ``parent_encoding`` is the encoding pydicom would pass down (the enclosing dataset's character set).

    Raises
    ------
    Unsupported
        Anything pydicom should read instead.
    """
    if pydicom_config.data_element_callback is not None:
        raise Unsupported("a pydicom data element callback is configured")
    items: list[FastItem] = []
    _read_sequence(value, 0, len(value), len(value), implicit, little, parent_encoding, items)
    return items
