"""Make one synthetic series: anatomy -> coverage -> lesions -> render -> scanner -> DICOM files -> localizers.

``make_series(plan, seed, series_root)`` is what a worker process runs; ``render_series`` is its
first half (the volume before it is written), which the tests use. It only reads the plan and its
own random streams (``plan.rng_for(seed, profile, stream, index)``), so a series comes out
byte-identical whatever the number of workers or the order in which they run. Streams: anatomy
(tree, variants, confounders), aneurysm (sites, sizes, sac contrast, localizer clicks: only the
aneurysm's voxels depend on it), noise (tissue contrast, scanner, file order).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom

from willis.synth import acquire, head, lesion, scanner
from willis.synth.anatomy import Anatomy, sample_anatomy
from willis.synth.confounders import sample_confounders
from willis.synth.contrast import sample_contrast
from willis.synth.dicom_writer import SliceRecord, uid_from, write_series
from willis.synth.geometry import Geometry, geometry_for
from willis.synth.plan import (ANATOMY_STREAM, ANEURYSM_STREAM, JPEG2000_MAX_SLICES, NOISE_STREAM, SeriesPlan,
                               rng_for)
from willis.synth.profiles import profile as get_profile

log = logging.getLogger(__name__)

SAFETY_MM = 8.0         # coverage beyond the labelled arteries: an aneurysm sac is always inside
NECK_EXTENSION_MM = 130.0  # head-and-neck scans reach this much further below the skull base
NORMAL_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}  # patient axis along the slice normal
SERIES_DESCRIPTION = {"CTA": "CTA HEAD", "MRA": "TOF 3D MRA", "MRI T2": "T2 AX", "MRI T1post": "T1 POST GAD"}


@dataclass
class SeriesResult:
    index: int
    series_uid: str
    localizers: list[dict] = field(default_factory=list)   # train_localizers.csv rows
    n_files: int = 0
    n_slices: int = 0
    broken: dict | None = None                              # {"kind", "detail", "files"} or None
    problems: list[str] = field(default_factory=list)       # e.g. an aneurysm outside the field of view
    digest: str = ""                                        # sha256 over the folder's files
    encoding: str = ""                                      # transfer syntax actually written
    info: dict = field(default_factory=dict)                # MANIFEST.json "series" entry (see ``_info``)


def acquisition_geometry(plan: SeriesPlan, anatomy: Anatomy, max_slices: int, max_matrix: int | None = None) -> Geometry:
    """A geometry whose coverage holds every labelled artery with ``SAFETY_MM`` to spare (label-blind).

    The drawn pixel size and slice spacing are kept unless a cap says otherwise: ``max_slices``
    thickens the slices over the same coverage, ``max_matrix`` (the longer in-plane side) coarsens the
    pixels over the same field of view. The field of view is the drawn one, widened if the arteries
    need more; rows / cols = ``plan.aspect``; sides are even.
    """
    pts = np.concatenate([v.points for v in anatomy.vessels if v.location is not None])  # (m, 3)
    lo, hi = pts.min(0) - SAFETY_MM, pts.max(0) + SAFETY_MM
    axis = NORMAL_AXIS[plan.plane]
    lo[axis] -= plan.margins_mm[0]
    hi[axis] += plan.margins_mm[1]
    if plan.head_and_neck:
        lo[2] -= NECK_EXTENSION_MM
    extent = hi[axis] - lo[axis]
    spacing = max(plan.slice_spacing, extent / (max_slices - 1))  # cap the slice count, keep the coverage
    n_slices = int(np.ceil(extent / spacing - 1e-6)) + 1                # (rounding must not add a slice)
    in_plane = [a for a in range(3) if a != axis]
    need = float(np.max(hi[in_plane] - lo[in_plane]))
    fov = max(plan.fov_mm, need / plan.aspect)                     # the shorter side still covers ``need``
    pixel = plan.pixel_mm if not max_matrix else max(plan.pixel_mm, fov / max_matrix)
    cols = _even(fov / pixel)
    if max_matrix:
        cols = min(cols, max_matrix // 2 * 2)
    rows = min(_even(fov * plan.aspect / pixel), cols)
    center = (lo + hi) / 2
    return geometry_for(plan.plane, center, (rows * pixel, cols * pixel), n_slices, (rows, cols), spacing)


def _even(x: float) -> int:
    """The smallest even integer >= ``x`` (to within rounding), at least 2."""
    n = int(np.ceil(x - 1e-6))
    return max(2, n + n % 2)


def localizer_voxel(center: np.ndarray, geom: Geometry) -> tuple[np.ndarray, bool]:
    """The voxel (k, i, j) nearest to a sac centre, and whether the centre is inside the volume."""
    kij = np.round(geom.patient_to_voxel(center))
    inside = bool(np.all(kij >= 0) and np.all(kij <= np.asarray(geom.shape) - 1))
    return np.clip(kij, 0, np.asarray(geom.shape) - 1).astype(int), inside


def _digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.iterdir()):
        h.update(f.name.encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def _break(plan: SeriesPlan, folder: Path, records: list[SliceRecord], geom: Geometry,
           rng: np.random.Generator) -> dict:
    """Apply the plan's deliberate breakage to the written folder; describe it for MANIFEST.json."""
    kind = plan.broken
    victim = Path(records[int(rng.integers(len(records)))].path)
    if kind == "truncated_file":
        data = victim.read_bytes()
        victim.write_bytes(data[: len(data) * 6 // 10])
        return {"kind": kind, "detail": "file cut to 60% of its bytes", "files": [victim.name]}
    if kind == "no_pixel_data":
        ds = pydicom.dcmread(victim)
        del ds.PixelData
        ds.save_as(victim, enforce_file_format=True)
        return {"kind": kind, "detail": "PixelData element removed", "files": [victim.name]}
    if kind == "stray_file":
        stray = folder / f"{uid_from(plan.series_uid, 'stray')}.dcm"
        stray.write_text("exported by a PACS viewer; this is not a DICOM file\n")
        return {"kind": kind, "detail": "non-DICOM file with a .dcm name", "files": [stray.name]}
    if kind == "mixed_shapes":
        # a few slices of another matrix plus one orthogonal scout (localizer) image, same series UID
        rows, cols = geom.shape[1:]
        other = dataclasses.replace(geom, shape=(4, rows * 3 // 4, cols * 3 // 4),
                                    pixel_spacing=(geom.pixel_spacing[0] * 4 / 3, geom.pixel_spacing[1] * 4 / 3))
        scout_plane = "coronal" if plan.plane != "coronal" else "sagittal"
        scout = geometry_for(scout_plane, geom.voxel_to_patient(*(np.asarray(geom.shape) - 1) / 2), 300, 1, 128, 1.0)
        kw = dict(modality=plan.dicom_modality, series_uid=plan.series_uid, study_uid=plan.study_uid,
                  patient_id=plan.patient_id, signed=plan.signed, slope=plan.slope, intercept=plan.intercept)
        extra = write_series(np.zeros(other.shape, np.float32), other, folder, uid_salt="mixed", **kw)
        extra += write_series(np.zeros(scout.shape, np.float32), scout, folder, uid_salt="scout",
                              extra_tags={"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]}, **kw)
        return {"kind": kind, "detail": f"4 slices of {other.shape[1]}x{other.shape[2]} and a {scout_plane} scout",
                "files": sorted(Path(r.path).name for r in extra)}
    raise ValueError(f"series {plan.series_uid}: unknown breakage {kind!r}")


def make_series(plan: SeriesPlan, seed: int, series_root: str | Path, max_slices: int = 400,
                max_matrix: int | None = None, lesion_mode: str = "realistic") -> SeriesResult:
    """Render and write series ``plan`` under ``series_root/<SeriesInstanceUID>/``; return its localizers."""
    try:
        return _make_series(plan, seed, series_root, max_slices, max_matrix, lesion_mode)
    except Exception as e:  # a generator bug: say which series, keep the cause
        raise RuntimeError(f"synthetic series #{plan.index} ({plan.series_uid}, {plan.modality}, "
                           f"{plan.plane}, {plan.encoding}): {type(e).__name__}: {e}") from e


def _info(plan: SeriesPlan, geom: Geometry, scan: scanner.Scanner, anatomy: Anatomy, confounders,
          aneurysms: list[lesion.Aneurysm]) -> dict:
    """What MANIFEST.json records per series: drawn and effective spacing, scanner, variants, sacs."""
    return {
        "modality": plan.modality, "plane": plan.plane,
        "drawn": {"pixel_mm": plan.pixel_mm, "slice_mm": plan.slice_spacing, "fov_mm": plan.fov_mm},
        "effective": {"pixel_mm": round(float(geom.pixel_spacing[1]), 4), "slice_mm": round(geom.slice_spacing, 4),
                      "shape": list(geom.shape), "sub_slices": acquire.sub_slices(geom)},
        "scanner": {"blur_mm": round(scan.blur_mm, 3), "noise": round(scan.noise, 4)},
        "anatomy": {**{k: v for k, v in anatomy.variants.items() if v}, "tortuosity_mm": round(anatomy.tortuosity_mm, 2),
                    "infundibula": confounders.infundibula, "calcifications": confounders.calcifications},
        "aneurysms": [{"location": a.location, "site": a.site, "diameter_mm": round(2 * a.radius, 2),
                       "over_reference": round(a.value_factor, 3), "slow_flow_core": a.core_radius > 0}
                      for a in aneurysms],
    }


@dataclass
class Rendered:
    """One series' volume before it is written, with everything that made it (tests read these)."""

    volume: np.ndarray                  # (n_slices, rows, cols) float32, modality units
    geom: Geometry
    anatomy: Anatomy
    confounders: object                 # willis.synth.confounders.Confounders
    aneurysms: list                     # [willis.synth.lesion.Aneurysm]
    values: dict[str, float]            # tissue -> intensity (sacs: aneurysm{i}, aneurysm{i}_core)
    scanner: scanner.Scanner
    noise_rng: np.random.Generator      # the nuisance stream, positioned for the file writer
    aneurysm_rng: np.random.Generator   # the aneurysm stream, positioned for the localizer clicks


def render_series(plan: SeriesPlan, seed: int, max_slices: int = 400, max_matrix: int | None = None,
                  lesion_mode: str = "realistic", finish: bool = True) -> Rendered:
    """Anatomy, coverage, lesions, the rendered volume and (``finish``) the scanner's blur, bias and noise."""
    profile = get_profile(plan.profile)
    anat_rng = rng_for(seed, profile, ANATOMY_STREAM, plan.index)
    aneurysm_rng = rng_for(seed, profile, ANEURYSM_STREAM, plan.index)
    noise_rng = rng_for(seed, profile, NOISE_STREAM, plan.index)
    anatomy = sample_anatomy(anat_rng, plan.center_offset, profile)
    confounders = sample_confounders(anatomy, anat_rng, profile)
    geom = acquisition_geometry(plan, anatomy, max_slices, max_matrix)
    aneurysms = [lesion.place_aneurysm(anatomy, loc, aneurysm_rng, lesion_mode) for loc in plan.locations]
    # nuisance draws first, in a fixed order: a positive and its negative twin consume the same stream
    values = sample_contrast(plan.modality, noise_rng, profile)
    scan = scanner.sample_scanner(plan.modality, noise_rng, profile)
    values.update(lesion.sac_values(aneurysms, plan.modality, values, lesion_mode))
    foreground = (head.fine_background(anatomy) + head.arteries(anatomy) + confounders.primitives
                  + lesion.primitives(aneurysms, plan.modality))
    vol = acquire.render(geom, head.background(anatomy), foreground, values)   # (n_slices, rows, cols)
    if finish:
        scanner.finish(vol, geom, plan.modality, scan, noise_rng)
    return Rendered(vol, geom, anatomy, confounders, aneurysms, values, scan, noise_rng, aneurysm_rng)


def _make_series(plan: SeriesPlan, seed: int, series_root: str | Path, max_slices: int,
                 max_matrix: int | None, lesion_mode: str) -> SeriesResult:
    result = SeriesResult(plan.index, plan.series_uid)
    r = render_series(plan, seed, max_slices, max_matrix, lesion_mode)
    vol, geom, aneurysms, noise_rng, aneurysm_rng = r.volume, r.geom, r.aneurysms, r.noise_rng, r.aneurysm_rng
    result.n_slices = geom.shape[0]
    result.info = _info(plan, geom, r.scanner, r.anatomy, r.confounders, aneurysms)
    voxels = []
    for a in aneurysms:
        kij, inside = localizer_voxel(a.center, geom)
        if not inside:
            result.problems.append(f"aneurysm at {a.location} outside the field of view; no localizer row")
        voxels.append((kij, inside))

    if plan.broken == "missing_folder":   # the CSV row exists, the folder does not
        result.broken = {"kind": plan.broken, "detail": "train.csv row without a series folder", "files": []}
        return result
    folder = Path(series_root) / plan.series_uid
    encoding = "rle" if plan.encoding == "jpeg2000" and geom.shape[0] > JPEG2000_MAX_SLICES else plan.encoding
    result.encoding = encoding
    records = write_series(
        vol, geom, folder, modality=plan.dicom_modality, series_uid=plan.series_uid, study_uid=plan.study_uid,
        patient_id=plan.patient_id, encoding=encoding, signed=plan.signed, slope=plan.slope,
        intercept=plan.intercept, multiframe=plan.multiframe, shuffle_files=plan.shuffle_files,
        instance_numbers=plan.instance_numbers, rng=noise_rng,
        extra_tags={"PatientAge": f"{plan.age:03d}Y", "PatientSex": plan.sex[0],
                    "SeriesDescription": SERIES_DESCRIPTION[plan.modality]},
    )
    for a, ((k, i, j), inside) in zip(aneurysms, voxels):
        if not inside:
            continue
        rec = records[k]
        # sub-pixel jitter like a human click; rounding still lands on the sac-centre voxel
        x, y = (float(np.round(v + aneurysm_rng.uniform(-0.3, 0.3), 2)) for v in (j, i))
        coords = {"x": x, "y": y} if not plan.multiframe else {"x": x, "y": y, "f": rec.frame}
        result.localizers.append({"SeriesInstanceUID": plan.series_uid, "SOPInstanceUID": rec.sop_uid,
                                  "coordinates": str(coords), "location": a.location})
    if plan.broken == "not_in_csv":
        result.broken = {"kind": plan.broken, "detail": "series folder without a train.csv row", "files": []}
    elif plan.broken is not None:
        result.broken = _break(plan, folder, records, geom, noise_rng)
    result.n_files = sum(1 for _ in folder.iterdir())
    result.digest = _digest(folder)
    return result
