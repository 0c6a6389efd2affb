"""G.711 mu-law and A-law expansion to 16-bit linear PCM, as numpy lookup tables.

PS3.3 C.10.9.1.5 defines the MB and AB Waveform Sample Interpretations as 8-bit ITU-T G.711 mu-law and A-law
codes. G.711 itself decodes mu-law to 14-bit and A-law to 13-bit linear values; like most implementations
(the reference C code by Sun Microsystems that Python's former ``audioop.ulaw2lin`` / ``alaw2lin`` used with
width 2, SoX, ffmpeg) we return them left-justified in 16 bits, i.e. multiplied by 4 (mu-law) or 8 (A-law).
Examples: mu-law code 0x00 -> -32124 (= -8031 x 4), 0x80 -> +32124, 0xFF and 0x7F -> 0;
A-law code 0xD5 -> +8, 0x55 -> -8, 0xAA -> +32256, 0x2A -> -32256.
Channel Sensitivity then applies to these 16-bit values.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

_SIGN_BIT = 0x80
_QUANT_MASK = 0x0F
_SEG_MASK = 0x70
_SEG_SHIFT = 4
_MULAW_BIAS = 0x84


def _mulaw_table() -> npt.NDArray[np.int16]:
    # G.711 mu-law: codes are sent bit-inverted; magnitude = ((mantissa << 3) + bias) << exponent - bias.
    u = (~np.arange(256, dtype=np.int32)) & 0xFF
    t = ((u & _QUANT_MASK) << 3) + _MULAW_BIAS
    t = t << ((u & _SEG_MASK) >> _SEG_SHIFT)
    out = np.where(u & _SIGN_BIT, _MULAW_BIAS - t, t - _MULAW_BIAS)
    table = out.astype(np.int16)
    table.setflags(write=False)
    return table


def _alaw_table() -> npt.NDArray[np.int16]:
    # G.711 A-law: even bits are inverted (XOR 0x55); segment 0 is linear, others double per segment.
    a = np.arange(256, dtype=np.int32) ^ 0x55
    t = (a & _QUANT_MASK) << 4
    seg = (a & _SEG_MASK) >> _SEG_SHIFT
    t = np.where(seg == 0, t + 8, (t + 0x108) << np.maximum(seg - 1, 0))
    out = np.where(a & _SIGN_BIT, t, -t)
    table = out.astype(np.int16)
    table.setflags(write=False)
    return table


#: 256-entry read-only tables: code -> 16-bit linear value.
MULAW_TO_LINEAR16: npt.NDArray[np.int16] = _mulaw_table()
ALAW_TO_LINEAR16: npt.NDArray[np.int16] = _alaw_table()


def expand_mulaw(codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.int16]:
    """Expand G.711 mu-law codes to 16-bit linear values (see the module docstring for the scaling)."""
    return MULAW_TO_LINEAR16[codes]


def expand_alaw(codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.int16]:
    """Expand G.711 A-law codes to 16-bit linear values (see the module docstring for the scaling)."""
    return ALAW_TO_LINEAR16[codes]
