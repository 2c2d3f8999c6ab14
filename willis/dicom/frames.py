"""Decoding: the frames of one file (``read_frames``) and the kept frames of one series (``iter_frames``).

* ``iter_frames(files, root)``: the kept frames of one series, sorted by position, as float32
  (rows, cols), native-endian, in modality units (CT: HU via the frame's slope/intercept; MR: raw).

Decoding uses pydicom's pixel API (``pydicom.pixels.iter_pixels``), which tries every installed
plugin for the transfer syntax (pydicom's own, pylibjpeg, gdcm). A file that pydicom cannot decode
lazily from disk (e.g. deflated transfer syntax) is read whole once and decoded from the dataset.
Every failure raises ``DicomReadError`` naming the file, the frame and the reason.
"""

from __future__ import annotations

import logging
from itertools import groupby
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pydicom
from pydicom.pixels import iter_pixels
from pydicom.uid import DeflatedExplicitVRLittleEndian

from willis.dicom.header import DicomReadError

log = logging.getLogger(__name__)


def read_frames(path: str | Path, indices: list[int], rows: int, cols: int,
                transfer_syntax: str = "", check_shape: bool = True) -> Iterator[np.ndarray]:
    """Decode frames ``indices`` of one file, in that order, one at a time: (rows, cols) raw stored values.

    ``check_shape`` False accepts any decoded shape (e.g. a colour frame being test-decoded).
    The file is opened once; pydicom decodes frame by frame. If lazy decoding fails (e.g. a
    deflated transfer syntax, which needs the whole file inflated), the remaining frames are
    decoded from the fully read dataset. Raises DicomReadError naming the file, frame and reason.
    """
    done = 0
    first_error = "skipped lazy decode (deflated transfer syntax)"
    try:
        if transfer_syntax == DeflatedExplicitVRLittleEndian:
            raise _Deflated  # the lazy reader cannot inflate: go straight to the whole-file read
        for arr in iter_pixels(path, indices=indices):
            yield _check_shape(arr, path, indices[done], rows, cols) if check_shape else arr
            done += 1
        return
    except DicomReadError:
        raise
    except _Deflated:
        pass
    except Exception as first:  # any plugin error: fall back below, keep the first reason
        first_error = " ".join(f"{type(first).__name__}: {first}".split())  # one line: it goes into reports
    try:
        ds = pydicom.dcmread(path)
        for arr in iter_pixels(ds, indices=indices[done:]):
            yield _check_shape(arr, path, indices[done], rows, cols) if check_shape else arr
            done += 1
    except DicomReadError:
        raise
    except Exception as e:
        frame = indices[done] if done < len(indices) else None
        raise DicomReadError(path, f"decode failed: {first_error} (whole-file retry failed too: {type(e).__name__})",
                             frame) from e


class _Deflated(Exception):
    """Internal: the file needs the whole-file read."""


def _check_shape(arr: np.ndarray, path, frame: int, rows: int, cols: int) -> np.ndarray:
    if arr.shape != (rows, cols):
        raise DicomReadError(path, f"decoded shape {arr.shape}, expected ({rows}, {cols}) (colour or corrupt)", frame)
    return arr


def iter_frames(files: pd.DataFrame, root: str | Path,
                errors: list | None = None) -> Iterator[tuple[object, np.ndarray]]:
    """Yield ``(row, frame)`` for the kept frames of ONE series in position order (``order`` 0..n-1).

    ``files`` are that series' rows of ``files.parquet`` (or of ``scan_series``); ``row`` is a
    namedtuple of the row (``row.position``, ``row.ipp``, ...). ``frame`` is float32 (rows, cols),
    native-endian, in modality units: CT frames get ``value * slope + intercept`` (HU); other
    modalities stay raw. A multi-frame file is opened once per run of consecutive frames.

    ``errors``: None -> the first failure raises DicomReadError; a list -> each failure is
    appended as a DicomReadError (and logged) and the frames of that file are skipped.
    """
    kept = files[files["keep"]].sort_values("order")
    rows_iter = kept.itertuples(index=False)
    for path, run in groupby(rows_iter, key=lambda r: r.path):
        run = list(run)
        try:
            frames = read_frames(Path(root) / path, [int(r.frame) for r in run], int(run[0].rows), int(run[0].cols),
                                 run[0].transfer_syntax)
            for r, arr in zip(run, frames):
                out = arr.astype(np.float32)  # astype -> native byte order (big-endian files too)
                if r.modality == "CT":
                    out = out * np.float32(r.slope) + np.float32(r.intercept)
                yield r, out
        except DicomReadError as e:
            if errors is None:
                raise
            log.warning("skipping %s", e)
            errors.append(e)
