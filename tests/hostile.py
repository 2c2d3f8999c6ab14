"""Hostile DICOM generated in code (never committed binaries), and a child-process peak-memory probe.

Bombs: headers whose claims the stored bytes cannot (or only absurdly) back:

* ``deflated_bomb``: a deflated file claiming ``side``^2 16-bit pixels whose stream really inflates
  to that many zeros (30000^2 = 1.8 GB from ~1.7 MB): built from one compressed block of zeros
  repeated (each block is flushed, so the copies are independent), so writing it costs milliseconds;
* ``rle_bomb``: an RLE Lossless file claiming ``side``^2 16-bit pixels in one 140-byte fragment;
* ``frames_bomb``: NumberOfFrames ``n`` (2e9) over 512 bytes of native (or one RLE fragment of) pixels.

``measure(code)`` runs ``code`` in a fresh Python child (the worktree on ``PYTHONPATH``), watches
its resident memory from /proc and kills it above ``KILL_MB`` (a regression must not swap a shared
machine), and returns its own peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``), wall time and stdout.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, RLELossless, generate_uid

REPO = Path(__file__).resolve().parents[1]
KILL_MB = 3000


def base_dataset(series_uid: str, rows: int, cols: int, *, modality: str = "CT", frames: int | None = None,
                 z: float = 0.0, instance: int = 1, sop: str | None = None) -> Dataset:
    """A minimal single-frame CT/MR header with real geometry (no pixel data)."""
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2" if modality == "CT" else "1.2.840.10008.5.1.4.1.1.4"
    ds.SOPInstanceUID = sop or generate_uid(prefix="1.2.826.0.1.3680043.8.498.", entropy_srcs=[series_uid, str(z)])
    ds.SeriesInstanceUID = series_uid
    ds.StudyInstanceUID = series_uid + ".1"
    ds.PatientID = "HOSTILE"
    ds.Modality = modality
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [0.0, 0.0, z]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
    ds.PixelSpacing = [0.5, 0.5]
    ds.SliceThickness = 1.0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, 0
    if frames is not None:
        ds.NumberOfFrames = frames
    return ds


def _meta(ds: Dataset, ts) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ts
    return meta


def _zeros_deflate(n: int, block: int = 16 << 20) -> bytes:
    """A raw deflate stream piece (not final) inflating to ``n`` zero bytes."""
    out = bytearray()
    whole, rest = divmod(n, block)
    if whole:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        piece = c.compress(bytes(block)) + c.flush(zlib.Z_FULL_FLUSH)   # byte-aligned, no back-references
        out += piece * whole
    if rest:
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        out += c.compress(bytes(rest)) + c.flush(zlib.Z_FULL_FLUSH)
    return bytes(out)


def write_deflated(path: Path, ds: Dataset, pixel_bytes: int, *, stream_bytes: int | None = None) -> Path:
    """``ds`` + a native Pixel Data element of ``pixel_bytes`` zeros, as Deflated Explicit VR LE.

    ``stream_bytes``: how many pixel bytes the stream really holds (default: all); fewer makes a
    deflated file that claims more than it inflates to.
    """
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    head = body.getvalue() + b"\xe0\x7f\x10\x00OW\x00\x00" + int(pixel_bytes).to_bytes(4, "little")
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    stream += _zeros_deflate(pixel_bytes if stream_bytes is None else stream_bytes)
    stream += zlib.compressobj(9, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)   # the final (empty) block
    out = io.BytesIO()
    out.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(out, _meta(ds, DeflatedExplicitVRLittleEndian), enforce_standard=True)
    path.write_bytes(out.getvalue() + stream)
    return path


def deflated_bomb(path: Path, series_uid: str, side: int = 30000) -> Path:
    """Deflated, ``side``^2 x 16 bit claimed, and the stream really holds that many zeros (~1.7 MB file)."""
    return write_deflated(path, base_dataset(series_uid, side, side, z=-1.0), side * side * 2)


def _save(path: Path, ds: Dataset, ts, pixel_data: bytes) -> Path:
    ds.file_meta = _meta(ds, ts)
    ds.PixelData = pixel_data
    if ts != ExplicitVRLittleEndian:
        ds["PixelData"].is_undefined_length = True
    ds.save_as(path, enforce_file_format=True)
    return path


def rle_fragment(n_bytes: int = 140) -> bytes:
    """An RLE frame of 2 segments (16-bit: high, low byte planes) padded to ``n_bytes``: replicate runs of 0."""
    header = np.zeros(16, "<u4")
    header[0], header[1], header[2] = 2, 64, 64 + (n_bytes - 64) // 2
    runs = bytes([0x81, 0]) * ((n_bytes - 64) // 4)   # -127 + 1 -> 128 copies of 0
    return (header.tobytes() + runs + runs)[:n_bytes].ljust(n_bytes, b"\x00")


def rle_bomb(path: Path, series_uid: str, side: int = 30000, fragment: int = 140) -> Path:
    return _save(path, base_dataset(series_uid, side, side, z=-1.0), RLELossless, encapsulate([rle_fragment(fragment)]))


def frames_bomb(path: Path, series_uid: str, frames: int = 2_000_000_000, rle: bool = False) -> Path:
    """NumberOfFrames ``frames`` of 16 x 16 pixels over 512 native bytes (``rle``: one RLE fragment)."""
    ds = base_dataset(series_uid, 16, 16, frames=frames, z=-1.0)
    if rle:
        return _save(path, ds, RLELossless, encapsulate([rle_fragment(140)]))
    return _save(path, ds, ExplicitVRLittleEndian, bytes(512))


def good_slices(folder: Path, series_uid: str, n: int = 4, side: int = 32, modality: str = "CT",
                values: np.ndarray | None = None, **tags) -> list[Path]:
    """``n`` plain explicit-VR slices (1 mm apart) beside the hostile file: what must survive it."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for k in range(n):
        ds = base_dataset(series_uid, side, side, modality=modality, z=float(k), instance=k + 1)
        for key, value in tags.items():
            setattr(ds, key, value)
        arr = values[k] if values is not None else rng.integers(-1000, 1500, (side, side))
        dtype = np.int16 if int(ds.PixelRepresentation) == 1 else np.uint16
        paths.append(_save(folder / f"slice{k:02d}.dcm", ds, ExplicitVRLittleEndian, arr.astype(dtype).tobytes()))
    return paths


def measure(code: str, timeout: float = 120.0) -> dict:
    """Run ``code`` in a fresh Python; returns {"peak_mb", "seconds", "stdout", "killed"}.

    ``code`` may print anything; the probe appends the child's own peak RSS. The child is killed when
    its RSS passes KILL_MB (then ``killed`` is True and ``peak_mb`` is what was last seen).
    """
    probe = ("\nimport resource, json, sys\n"
             "print('@@PEAK@@' + json.dumps(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code + probe], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=str(REPO))
    seen, killed = 0.0, False
    while proc.poll() is None:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
            seen = max(seen, rss / 1024)
        except (OSError, StopIteration, ValueError):
            pass
        if seen > KILL_MB or time.perf_counter() - t0 > timeout:
            proc.kill()
            killed = True
            break
        time.sleep(0.02)
    out, err = proc.communicate()
    seconds = time.perf_counter() - t0
    peak = next((json.loads(line[8:]) for line in out.splitlines() if line.startswith("@@PEAK@@")), seen)
    if proc.returncode not in (0, None) and not killed:
        raise RuntimeError(f"child failed ({proc.returncode}): {err[-3000:]}")
    return {"peak_mb": float(peak), "seconds": seconds, "stdout": out, "stderr": err, "killed": killed}

