"""Deflated Explicit VR Little Endian files, streamed: never the whole file inflated at once.

pydicom inflates a deflated file whole before parsing even its header (``zlib.decompress`` of the
rest of the file), so a 1.7 MB stream of zeros claiming a 30000^2 image costs 1.8 GB just to be
scanned. Here the stream is inflated in pieces of at most ``PIECE`` bytes:

* ``deflated_header(fp, tags)``: the dataset up to its Pixel Data element (inflated only as far as
  that element), plus a ``PixelStream`` positioned on the element's value;
* ``PixelStream.skip(n)`` / ``read(n)``: count or read the pixel bytes (the scan counts them to find
  a truncated stream; decoding reads one frame at a time);
* ``iter_deflated_frames(path, indices, tags)``: the frames ``indices`` (any order) of a native
  deflated file in ONE pass over the stream: frames are yielded as soon as they come in file order;
  a frame asked for before an earlier one is held until its turn (only the frames asked for).
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import read_dataset, read_preamble
from pydicom.uid import ExplicitVRLittleEndian

CHUNK = 1 << 16                # compressed bytes read from disk at a time
PIECE = 1 << 20                # inflated bytes produced at a time
HEADER_START = 1 << 20         # first guess of the inflated header size; grows x4
MAX_HEADER = 256 << 20         # a header (Enhanced per-frame groups) larger than this is refused
PIXEL_TAGS = {0x7FE00010: "Pixel Data", 0x7FE00008: "Float Pixel Data", 0x7FE00009: "Double Float Pixel Data"}
UNDEFINED_LENGTH = 0xFFFFFFFF
# the pixel module: what one frame needs to be decoded from its bytes alone
PIXEL_MODULE = ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "BitsStored", "HighBit",
                "PixelRepresentation", "PhotometricInterpretation", "PlanarConfiguration")


class DeflateError(ValueError):
    """The deflate stream or the header inside it is unreadable; the message says why."""


class PixelStream:
    """The inflated bytes after a point of a raw deflate stream, pulled piece by piece."""

    def __init__(self, fp, buffered: bytes = b""):
        self.fp, self.buffer = fp, bytearray(buffered)
        self.inflater = zlib.decompressobj(-zlib.MAX_WBITS)
        self.ended = False     # the deflate stream (or the file) ended

    def _pull(self, limit: int) -> bytes:
        """Up to ``limit`` newly inflated bytes; b'' once the stream or the file ends."""
        while not self.ended:
            data = self.inflater.unconsumed_tail or self.fp.read(CHUNK)
            if not data:
                self.ended = True
                return b""
            try:
                out = self.inflater.decompress(data, limit)
            except zlib.error as e:
                raise DeflateError(f"corrupt deflate stream: {e}") from e
            if self.inflater.eof:
                self.ended = True
            if out:
                return out
        return b""

    def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes, fewer only when the stream ends."""
        out = bytearray(self.buffer[:n])
        del self.buffer[:n]
        while len(out) < n:
            piece = self._pull(min(PIECE, n - len(out)))
            if not piece:
                break
            out += piece
        return bytes(out)

    def skip(self, n: int) -> int:
        """Inflate and drop ``n`` bytes (memory: one piece); returns how many there were."""
        done = min(n, len(self.buffer))
        del self.buffer[:done]
        while done < n:
            piece = self._pull(min(PIECE, n - done))
            if not piece:
                break
            done += len(piece)
        return done


def _at_pixels(tag, vr, length) -> bool:
    return int(tag) in PIXEL_TAGS


def _parse(buf: bytes, tags) -> tuple[Dataset, int | None]:
    """The top-level dataset in ``buf``; the offset of its pixel element, None when ``buf`` ends first."""
    bio = io.BytesIO(buf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # a header cut at the buffer's end warns; we read more instead
        ds = read_dataset(bio, is_implicit_VR=False, is_little_endian=True, stop_when=_at_pixels, specific_tags=tags)
    pos = bio.tell()
    if pos + 4 <= len(buf):
        group, elem = struct.unpack("<HH", buf[pos:pos + 4])
        if (group << 16 | elem) in PIXEL_TAGS:
            return ds, pos
    return ds, None


def deflated_header(fp, tags) -> tuple[Dataset, int, int, PixelStream | None]:
    """Parse a deflated file (``fp`` at byte 0) up to its pixel element.

    Returns ``(ds, tag, length, stream)``: the dataset (``file_meta`` set), the pixel element's tag
    and value length (0, 0 and None when the file has no pixel element), and the stream positioned
    on the first byte of its value. Raises DeflateError when the stream or header is unreadable.
    """
    read_preamble(fp, False)
    from pydicom.filereader import _read_file_meta_info  # pydicom's own meta reader (group 0002)

    meta = _read_file_meta_info(fp)
    stream = PixelStream(fp)
    buf = b""
    want = HEADER_START
    while True:
        buf += stream.read(want - len(buf))
        try:
            ds, pos = _parse(buf, tags)
        except Exception as e:  # noqa: BLE001 - a header cut mid-element: read more, unless at the end
            if stream.ended:
                raise DeflateError(f"unreadable header inside the deflate stream: {type(e).__name__}: {e}") from e
            ds, pos = None, None
        if pos is not None and len(buf) >= pos + 12:
            break
        if stream.ended:
            if ds is None:
                raise DeflateError("the deflate stream ends inside the header")
            ds.file_meta = FileMetaDataset(meta)
            return ds, 0, 0, None
        if want >= MAX_HEADER:
            raise DeflateError(f"no Pixel Data within the first {MAX_HEADER} inflated bytes of the header")
        want *= 4
    ds.file_meta = FileMetaDataset(meta)
    group, elem = struct.unpack("<HH", buf[pos:pos + 4])
    (length,) = struct.unpack("<I", buf[pos + 8:pos + 12])   # explicit VR OB/OW: tag, VR, 2 reserved, length
    stream.buffer = bytearray(buf[pos + 12:]) + stream.buffer
    return ds, group << 16 | elem, length, stream


def _frame_array(ds: Dataset, data: bytes) -> np.ndarray:
    """One native little-endian frame's bytes -> its array, through pydicom's own native decoder."""
    one = Dataset()
    for kw in PIXEL_MODULE:
        if kw in ds:
            setattr(one, kw, ds[kw].value)
    one.NumberOfFrames = 1
    one.file_meta = FileMetaDataset()
    one.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    one.PixelData = data
    return one.pixel_array


def iter_deflated_frames(path: str | Path, indices: list[int]) -> Iterator[np.ndarray]:
    """Frames ``indices`` of a deflated native file, in that order, from one pass over the stream."""
    with open(path, "rb") as fp:
        ds, tag, length, stream = deflated_header(fp, None)   # None: every tag (the header is small)
        if stream is None or tag != 0x7FE00010 or length == UNDEFINED_LENGTH:
            raise DeflateError("no native Pixel Data element in the deflate stream")
        n = int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.get("BitsAllocated", 16) or 16)
        frame_nbytes = n * bits // 8 if bits >= 8 else (n * bits + 7) // 8
        wanted = set(indices)
        held: dict[int, np.ndarray] = {}
        nxt = 0
        for f in range(max(indices) + 1):
            if f not in wanted:
                if stream.skip(frame_nbytes) < frame_nbytes:
                    raise DeflateError(f"the deflate stream ends inside frame {f}")
                continue
            data = stream.read(frame_nbytes)
            if len(data) < frame_nbytes:
                raise DeflateError(f"the deflate stream ends inside frame {f}")
            held[f] = _frame_array(ds, data)
            while nxt < len(indices) and indices[nxt] in held:
                yield held.pop(indices[nxt])
                nxt += 1
