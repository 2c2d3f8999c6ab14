"""``predict(series_path)``: the competition's inference contract, on the pipeline's own code path.

One series folder in (read-only ``*.dcm`` files named by SOPInstanceUID; the folder's name is the
SeriesInstanceUID), one row out: the 14 label columns of ``willis.labels.LABELS``, verbatim and in
``train.csv`` order, as calibrated and Present-gated probabilities.

The path is exactly the pipeline's, no second implementation:

    willis.index.scan_series            header scan, largest consistent group   (stage ``index``)
    willis.decode_check.check_series    test decode, ok / partial / excluded    (stage ``decode_check``)
    willis.projections.project_series   streaming reorient + project            (stage ``project``)
    willis.models.infer.infer_arrays    the family's model -> 14 logits         (stages ``train``, ``evaluate``)
    willis.calibration.Calibration      temperature + bias, sigmoid, Present-gating    (stage ``calibrate``)

Projection uses the ``project`` params stored in the checkpoint's ``meta.json`` (what the model was
trained on), never today's ``params.yaml``.

The model bundle is a directory ``<models>/{ct,mr}/`` holding ``calibration.json`` and the fold
models ``folds/<k>/{model.pt, meta.json}`` (what the ``train`` and ``calibrate`` stages write; K
folds are served as the mean of their raw logits, then calibrated). It is chosen by the
``models_dir=`` argument, else the ``WILLIS_MODELS`` environment variable, else the repo's
``models/``; both families are loaded once per process and reused (``load_bundle`` caches).

The family comes from the DICOM ``Modality`` tag (CT -> ``ct``, MR -> ``mr``), never a file name.
The MR model also takes the CSV sub-modality (MRA / MRI T2 / MRI T1post), which the test data does
not carry: ``mr_submodality`` guesses it from headers (see there; MRA is the default).

A bad series never raises: unreadable, truncated, empty, non-DICOM, hostile (headers claiming more
pixels than the memory ceilings of ``willis.dicom.limits.DEFAULT_LIMITS`` allow are set aside by the
scan before anything is decoded or inflated) or excluded by the decode check, it gets the training prior (positive rate per label, from ``meta.json``), a logged warning and
``status == "prior"`` with the reasons. A missing or broken model bundle is a deployment error and
raises ``BundleError`` at load time. Nothing is ever written into the series folder.

Modules: ``bundle`` (model bundle loading and cache), ``submodality`` (the MR guess), ``cli``
(``python -m willis.predict``); this one holds ``predict`` and ``prepare`` (scan -> check -> project).

CLI (one JSON line per series; ``--csv`` writes SeriesInstanceUID + the 14 columns)::

    python -m willis.predict data/synthetic/series/1.2.3 data/synthetic/series/4.5.6 --models models/
    python -m willis.predict data/synthetic/series/* --csv submission.csv
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from willis.labels import DICOM_MODALITY_FAMILY, LABELS
from willis.predict.bundle import (  # noqa: F401  (re-exported: the public API lives here)
    DEFAULT_MODELS,
    ENV_MODELS,
    Bundle,
    BundleError,
    FamilyModel,
    load_bundle,
    resolve_models_dir,
)
from willis.predict.submodality import MR_DEFAULT, MR_TAGS, TE_T2_MIN_MS, mr_submodality  # noqa: F401

LOG = logging.getLogger(__name__)

STATUS_OK, STATUS_PARTIAL, STATUS_PRIOR = "ok", "partial", "prior"


class SeriesError(RuntimeError):
    """A series that cannot be predicted; predict() turns it into the prior + a status."""


@dataclass
class Prepared:
    """What the pipeline's code made of one series folder, before the model."""

    uid: str
    family: str | None = None
    modality: str | None = None             # CSV vocabulary: CTA / MRA / MRI T2 / MRI T1post
    status: str = STATUS_OK
    reasons: list[str] = field(default_factory=list)
    projection: object | None = None         # willis.projections.Projection (uint8 arrays)
    seconds: dict[str, float] = field(default_factory=dict)


def _header(root: Path, files: pd.DataFrame):
    """Header of the first kept frame's file (pixels not read, a deflated file streamed), for the MR sub-modality."""
    from willis.dicom.header import read_header

    first = files[files["keep"]].sort_values("order")["path"].iloc[0]
    return read_header(root / first, tags=MR_TAGS)


def _dicom_modality(record: dict, files: pd.DataFrame) -> str:
    """The series' DICOM Modality; when no frame is usable (record empty), the most common value among
    the files whose header was read (a truncated CT is still CT: its prior is the CT prior)."""
    value = str(record.get("dicom_modality") or "")
    if not value and "modality" in files and files["modality"].notna().any():
        seen = files["modality"].dropna().astype(str)
        seen = seen[seen != ""]
        value = seen.mode().iloc[0] if len(seen) else ""
    return value


def _folder(series_path: str | Path) -> Path:
    """Absolute, normalised (``.``, ``..``, trailing ``/``), symlinks kept: its name is the series UID."""
    return Path(os.path.abspath(series_path))


def prepare(series_path: str | Path, project_params_for, prep: Prepared | None = None) -> Prepared:
    """Scan, check and project one folder with the pipeline's functions; raise SeriesError if unusable.

    ``project_params_for(family)`` returns the ProjectParams to project with (the model's own, from
    meta.json). The folder's parent is the ``root`` the index functions take paths relative to; the
    functions only read (nothing is written into the folder). ``prep`` (optional) is filled in place,
    so a caller still sees the family and reasons found before a SeriesError.
    """
    from willis.decode_check import check_series
    from willis.index.scan import scan_series
    from willis.projections.streaming import project_series

    folder = _folder(series_path)
    prep = prep if prep is not None else Prepared(uid=folder.name)
    if not folder.is_dir():
        raise SeriesError(f"{folder}: not a directory")
    root = folder.parent

    t = time.perf_counter()
    try:
        record, files = scan_series(folder, root)   # never raises on a bad file; this is for the folder itself
    except Exception as e:  # noqa: BLE001 - an unreadable folder makes the series unusable
        raise SeriesError(f"{folder}: header scan failed: {type(e).__name__}: {e}") from e
    prep.seconds["scan"] = time.perf_counter() - t

    dicom_modality = _dicom_modality(record, files)
    prep.family = DICOM_MODALITY_FAMILY.get(dicom_modality)  # known even if excluded: picks the prior

    t = time.perf_counter()
    check = check_series(record, files, root)      # the decode_check stage's verdict, same code
    prep.seconds["check"] = time.perf_counter() - t
    prep.reasons += list(check.get("reasons", []))
    if check["status"] == "excluded":
        raise SeriesError(f"{folder}: excluded by the decode check ({len(files)} file rows)")
    prep.status = STATUS_PARTIAL if check["status"] == "partial" else STATUS_OK

    if prep.family is None:
        raise SeriesError(f"{folder}: DICOM Modality {dicom_modality!r} is neither CT nor MR")
    if prep.family == "ct":
        prep.modality, why = "CTA", "DICOM Modality CT"
    else:
        try:
            prep.modality, why = mr_submodality(_header(root, files))
        except Exception as e:  # noqa: BLE001 - the guess is optional; the series is still usable
            prep.modality, why = MR_DEFAULT, f"header unreadable for the guess ({type(e).__name__}); default"
    LOG.debug("%s: family %s, sub-modality %s (%s)", prep.uid, prep.family, prep.modality, why)

    t = time.perf_counter()
    row = {**record, "Modality": prep.modality, "family": prep.family}
    try:
        prep.projection = project_series(row, files, root, project_params_for(prep.family), prep.family)
    except SeriesError:
        raise
    except Exception as e:  # noqa: BLE001 - a decode/projection failure of this series only
        raise SeriesError(f"{folder}: projection failed: {e}") from e
    prep.seconds["project"] = time.perf_counter() - t
    skipped = list(prep.projection.attrs.get("skipped_frames") or [])
    if skipped:  # frames that failed to decode during the pass: projected without them
        prep.status = STATUS_PARTIAL
        prep.reasons += [f"skipped during projection: {s}" for s in skipped]
    return prep


def _frame(probs: np.ndarray, prep: Prepared, seconds: float) -> pd.DataFrame:
    """One-row DataFrame, the 14 LABELS columns; provenance in ``.attrs``."""
    df = pd.DataFrame([np.asarray(probs, dtype=np.float64)], columns=list(LABELS))
    df.attrs.update(uid=prep.uid, status=prep.status, reasons=list(prep.reasons), family=prep.family,
                    modality=prep.modality, seconds={**prep.seconds, "total": seconds})
    return df


def predict(series_path: str, *, models_dir: str | Path | None = None, device: str = "auto") -> pd.DataFrame:
    """Calibrated, gated probabilities for one series folder: a one-row DataFrame of the 14 LABELS.

    ``df.attrs``: ``uid`` (folder name), ``status`` (ok | partial | prior), ``reasons`` (list of str),
    ``family``, ``modality`` (as given to the model), ``seconds`` (scan, check, project, model, total).
    Never raises for a bad series (status ``prior``, the family's training prior, a warning logged);
    raises BundleError only when the model bundle itself is unusable.
    """
    t0 = time.perf_counter()
    bundle = load_bundle(models_dir, device)

    def project_params_for(family: str):
        if family not in bundle.families:
            raise SeriesError(f"no {family} model in the bundle {bundle.path}")
        return bundle.families[family].project_params

    prep = Prepared(uid=_folder(series_path).name)
    try:
        prepare(series_path, project_params_for, prep)
        fm = bundle.families[prep.family]
        from willis.models.infer import infer_arrays, reads_fine

        if reads_fine(fm.meta):   # fine_cnn: the channels of the fine slabs
            from willis.projections.windows import fine_channel_names
            channels = fine_channel_names(prep.family)
        else:
            channels = list(prep.projection.attrs.get("channels", fm.meta["channels"]))
        if channels != list(fm.meta["channels"]):
            raise SeriesError(f"{series_path}: projected channels {channels} differ from the {prep.family} "
                              f"model's {fm.meta['channels']} (bundle and code out of step)")
        t = time.perf_counter()
        logits = np.asarray(infer_arrays(fm.model, fm.meta, prep.projection.mip, prep.projection.instances,
                                         prep.modality, fine=prep.projection.fine), dtype=np.float64).reshape(1, len(LABELS))
        probs = np.asarray(fm.calibration.apply(logits), dtype=np.float64)[0]  # (1, 14) -> (14,)
        prep.seconds["model"] = time.perf_counter() - t
        if not np.all(np.isfinite(probs)):
            raise SeriesError(f"{series_path}: model gave non-finite probabilities")
    except Exception as e:  # noqa: BLE001 - the contract: a bad series gets the prior, never an exception
        reason = str(e) if isinstance(e, SeriesError) else f"{series_path}: {type(e).__name__}: {e}"
        LOG.warning("%s: returning the training prior: %s", prep.uid, reason)
        prep.status = STATUS_PRIOR
        prep.reasons.append(reason)
        probs = bundle.prior(prep.family)
    return _frame(probs, prep, time.perf_counter() - t0)
