"""Memory ceilings checked from a header's claims BEFORE any pixel data is inflated or decoded.

A header can claim anything (``Rows = 30000``, ``NumberOfFrames = 2000000000``); the bytes behind the
claim may be a 140-byte RLE fragment or a 1.7 MB deflate stream of zeros. Every file is checked
against ``ReadLimits`` (the ``index.max_*`` params; ``DEFAULT_LIMITS`` where no params are read,
e.g. ``predict``) and against what its stored pixel data can hold (``willis.dicom.header``):

* ``max_frame_bytes``: one decoded frame, rows x columns x samples x bytes per sample (a decoder
  allocates this much, and the float32 frame is up to 2x more);
* ``max_pixel_bytes``: all frames of one file (a deflated file is inflated whole to be decoded);
* ``max_frames``: frames of one file (one index row per frame is built for every frame).
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1 << 20
RLE_MAX_RATIO = 64      # RLE (PackBits): a 2-byte replicate run decodes to at most 128 bytes
DEFLATE_MAX_RATIO = 1032  # zlib's documented limit of a deflate stream: ~1032:1 (long runs of one byte)


@dataclass(frozen=True)
class ReadLimits:
    max_frame_bytes: int = 256 * MIB    # a 8192 x 8192 16-bit frame is 128 MiB; head images are <= 2048^2
    max_pixel_bytes: int = 1024 * MIB   # 2,000 frames of 512 x 512 x 16 bit fit (1000 MB)
    max_frames: int = 32768             # 4-D Enhanced MR: dynamics x slices, in the low thousands


DEFAULT_LIMITS = ReadLimits()


def frame_bytes(rows: int, cols: int, samples: int, bits: int) -> int:
    """Bytes of one decoded frame as stored (bits < 8: packed bits)."""
    n = rows * cols * samples
    return n * bits // 8 if bits >= 8 else (n * bits + 7) // 8


def claim_problem(rows: int, cols: int, frames: int, samples: int, bits: int, limits: ReadLimits) -> str:
    """'' when the header's claims fit ``limits``, else why not (a pixel problem: never decoded)."""
    if frames > limits.max_frames:
        return f"pixel data claims {frames} frames > index.max_frames = {limits.max_frames}"
    one = frame_bytes(rows, cols, samples, bits)
    if one > limits.max_frame_bytes:
        return (f"pixel data claims {rows}x{cols}x{samples} samples of {bits} bits = {one} bytes per frame "
                f"> index.max_frame_bytes = {limits.max_frame_bytes}")
    total = one * frames
    if total > limits.max_pixel_bytes:
        return (f"pixel data claims {frames} frame(s) of {one} bytes = {total} bytes "
                f"> index.max_pixel_bytes = {limits.max_pixel_bytes}")
    return ""
