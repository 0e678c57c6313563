"""Label Studio's brush RLE: the run-length code its BrushLabels regions carry as ``value.rle``.

The code (thi.ng's rle-pack, as Label Studio's editor writes it) packs a flat byte array
MSB first: a 32-bit count of bytes, the word size minus one (5 bits), four run-length
widths minus one (4 bits each), then chunks. A chunk is a flag bit, 2 bits choosing one
of the four widths, the run length minus one in that many bits, and then one word
repeated (flag 1) or that many literal words (flag 0). The array is the mask as RGBA,
row-major, every channel 255 inside the region and 0 outside; the alpha channel decides.

Here the encoder writes only repeated runs (a mask is long runs), and the decoder reads
both kinds. label-studio-sdk has the same pair (``label_studio_sdk.converter.brush``) but
pulls pandas, nltk and more into the API's install; the tests check these against it.
"""
from __future__ import annotations

import numpy as np

from gdc.errors import InputError

_WORD_BITS = 8
_RUN_WIDTHS = (3, 4, 8, 16)  # bits of a run length minus one, as Label Studio's editor chooses them
_LONGEST_RUN = 1 << _RUN_WIDTHS[-1]
_CHANNELS = 4  # RGBA


def _pack(values: np.ndarray, widths: np.ndarray) -> list[int]:
    """Fields of ``widths`` bits holding ``values``, concatenated MSB first and padded to whole bytes."""
    starts = np.cumsum(widths) - widths
    field = np.repeat(np.arange(values.size), widths)
    shift = widths[field] - 1 - (np.arange(field.size) - starts[field])
    bits = (values[field] >> shift) & 1
    return np.packbits(bits.astype(np.uint8)).tolist()


def encode_mask(mask: np.ndarray) -> list[int]:
    """An (H, W) boolean mask as Label Studio's brush RLE (a list of byte values)."""
    flat = np.repeat(np.asarray(mask, bool).ravel(), _CHANNELS)
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate([[0], edges])
    lengths = np.diff(np.concatenate([starts, [flat.size]]))
    # Runs longer than the widest field are split into full pieces and a rest.
    pieces = -(-lengths // _LONGEST_RUN)
    run_values = np.repeat(flat[starts], pieces)
    piece_lengths = np.full(pieces.sum(), _LONGEST_RUN)
    piece_lengths[np.cumsum(pieces) - 1] = lengths - (pieces - 1) * _LONGEST_RUN

    counts = piece_lengths - 1
    width_index = np.searchsorted(1 << np.asarray(_RUN_WIDTHS), counts, side="right")
    run_fields = np.stack(
        [
            np.ones_like(counts),  # repeated-run flag
            width_index,
            counts,
            np.where(run_values, 255, 0),
        ],
        axis=1,
    ).ravel()
    run_widths = np.stack(
        [
            np.full_like(counts, 1),
            np.full_like(counts, 2),
            np.asarray(_RUN_WIDTHS)[width_index],
            np.full_like(counts, _WORD_BITS),
        ],
        axis=1,
    ).ravel()
    header = np.array([flat.size, _WORD_BITS - 1, *(width - 1 for width in _RUN_WIDTHS)])
    header_widths = np.array([32, 5, 4, 4, 4, 4])
    return _pack(np.concatenate([header, run_fields]), np.concatenate([header_widths, run_widths]))


class _Bits:
    """Reads unsigned fields MSB first from a byte string."""

    def __init__(self, data: bytes) -> None:
        self.bits = np.unpackbits(np.frombuffer(data, np.uint8))
        self.at = 0

    def read_many(self, count: int, width: int) -> np.ndarray:
        end = self.at + count * width
        if end > self.bits.size:
            raise InputError("brush RLE ends in the middle of a run")
        fields = self.bits[self.at : end].reshape(count, width)
        self.at = end
        return fields @ (1 << np.arange(width - 1, -1, -1))

    def read(self, width: int) -> int:
        return int(self.read_many(1, width)[0])


def decode_mask(rle: list[int], width: int, height: int) -> np.ndarray:
    """Label Studio's brush RLE as an (H, W) boolean mask (alpha above zero)."""
    try:
        bits = _Bits(bytes(rle))
    except (TypeError, ValueError):
        raise InputError("brush RLE must be a list of byte values 0..255") from None
    size = bits.read(32)
    if size != width * height * _CHANNELS:
        raise InputError(
            f"brush RLE holds {size} bytes but a {width}x{height} RGBA mask has {width * height * _CHANNELS}"
        )
    word_bits = bits.read(5) + 1
    run_widths = [bits.read(4) + 1 for _ in range(4)]
    out = np.zeros(size, np.uint8)
    done = 0
    while done < size:
        repeated = bits.read(1)
        length = bits.read(run_widths[bits.read(2)]) + 1
        end = min(done + length, size)
        if repeated:
            out[done:end] = bits.read(word_bits)
        else:
            out[done:end] = bits.read_many(length, word_bits)[: end - done]
        done = end
    return out.reshape(height, width, _CHANNELS)[..., 3] > 0
