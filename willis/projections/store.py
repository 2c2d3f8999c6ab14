"""The projection store: one Zarr v3 group per modality family. THE contract of stage ``project``.

Layout (``LAYOUT_VERSION = 2``)::

    <project.out>/<family>.zarr            Zarr v3 group, consolidated metadata in zarr.json
      mip         uint8   (N, 3, C, S, S)           chunks (1, 3, C, S, S)     coarse views axial, coronal, sagittal
      instances   uint8   (N, K, C, S, S)           chunks (1, K, C, S, S)     coarse axial thin slabs, superior -> inferior
      instance_z  float32 (N, K)                    one chunk                  z (mm, LPS) of each slab centre (NaN if incomplete)
      fine        uint8   (N, 3, K_f, C_f, F, F)    chunks (1, 3, K_f, C_f, F, F)  fine thin slabs: [view, slab, channel, row, col]

- Row ``i`` of every array is series ``attrs["series_uids"][i]``; ``attrs["complete"][i]`` is True
  only once all of its chunks were written whole. An incomplete row has no chunk files (reads as
  fill value 0) and ``read()`` refuses it, so a half-written series is never readable.
- Values are uint8; ``/ 255`` gives float32 in [0, 1]. Coarse channel names in ``attrs["channels"]``
  (CT: HU windows + bone-suppressed highlight; MR: percentile windows + highlight), fine channel
  names in ``attrs["fine_channels"]`` (CT ``vessel, highlight, thickness``; MR ``vessel, thickness,
  dark``); their definitions in ``attrs["channel_defs"]`` / ``attrs["fine_channel_defs"]``
  (``willis.projections.windows``).
- Coarse views: the head ROI at ``S x S`` isotropic pixels (``mm_per_px`` ~1.2-1.6). Fine views: a
  cube of ``F`` pixels of ``fine.mm_per_px`` (<= 0.5 mm) around the circle of Willis, cut along each
  patient axis into ``K_f`` contiguous slabs (``willis.projections.finebox``): ``fine[i, 0]`` axial
  slabs superior -> inferior, ``fine[i, 1]`` coronal slabs anterior -> posterior, ``fine[i, 2]``
  sagittal slabs patient right -> left. Every image follows the radiological display convention of
  ``willis.projections.views``: ``patient_to_view`` maps an LPS point to the coarse rows/cols/instance,
  ``patient_to_fine`` to ``(slab, row, col)`` of each fine view (``fine_to_patient`` inverts it).
- Every pixel is at its true patient position, gantry-tilted and oblique series included (each
  pixel of each frame is placed from its IPP/IOP/PixelSpacing; ``willis.projections.scatter``).
- Chunk keys use ``.`` separators and zstd: one file per series per array (about 3 files per
  series; DVC walks every directory and hashes every file, see ../shared/DVC.md).
- ``attrs``: ``layout_version, family, channels, channel_defs, views, size, instances,
  instance_order ("superior_to_inferior"), fine_channels, fine_channel_defs, fine_size (F),
  fine_slabs (K_f), fine_slab_order {view: order}, series_uids, complete, failed {uid: reason},
  series {uid: {...}}, params`` (the ``project`` params that shape the store; not workers,
  executor or paths, so the bytes do not depend on them). ``series[uid]`` holds
  ``modality, plane, oblique, source, n_frames, skipped_frames [reasons], spacing_mm (x, y, z
  native), grid, roi_mm [[x0,x1],[y0,y1],[z0,z1]] (LPS), roi_flag (head | full_fov), centre_mm,
  mm_per_px, size, instance_mode, instance_ranges_mm (K, 2) [z_top, z_bottom] (contiguous slabs;
  in topk mode the chosen z-bins), channels, windows`` (lo/hi/gamma/source of each channel used),
  ``percentiles`` (MR: the exact percentiles the windows came from, and the sample size), and
  ``fine``: ``{box_mm [[x0,x1],[y0,y1],[z0,z1]] (LPS cube), centre_mm, mm_per_px, size (F), slabs
  (K_f), slab_mm, slab_ranges_mm {axial: (K_f, 2) [z_top, z_bottom], coronal: [y_anterior,
  y_posterior], sagittal: [x_right, x_left]}, flag, locate {...}, windows [...], frames}``.
  ``fine.flag`` says how the box was placed: ``vessels`` (vessel evidence around the circle of
  Willis), ``prior`` (too little vessel evidence: the head-geometry prior), ``fov`` (no head found:
  the field-of-view centre); ``fine.locate`` holds the evidence behind it (``willis.projections.locate``).

Writers: the parent calls ``create_store`` once, each worker ``open_store(path, "r+")`` once and
``write_projection`` for its own rows only (whole chunks, never shared), then the parent calls
``finalize_store`` once (instance_z, attrs, consolidation) and ``validate_store``.
Readers: ``read(store, uid)`` (one series, float32), ``load_family(store, uids, fine=True)`` (bulk uint8).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from willis.projections.finebox import FINE_SLAB_ORDER
from willis.projections.views import VIEWS

log = logging.getLogger(__name__)

LAYOUT_VERSION = 2
CHUNK_KEY_ENCODING = {"name": "default", "separator": "."}
ZSTD_LEVEL = 3
ARRAYS = ("mip", "instances", "instance_z", "fine")
CHUNKED = ("mip", "instances", "fine")  # one chunk per series


class StoreError(ValueError):
    """A projection store that breaks the layout contract; the message names the store and the problem."""


@dataclasses.dataclass
class Projection:
    """One series' projections, as a worker hands them to ``write_projection``."""

    uid: str
    mip: np.ndarray          # uint8 (3, C, S, S): axial, coronal, sagittal
    instances: np.ndarray    # uint8 (K, C, S, S): axial slabs, superior -> inferior
    instance_z: np.ndarray   # float32 (K,): slab centre z (mm, LPS)
    attrs: dict[str, Any]    # per-series attributes (see module docstring)
    fine: np.ndarray | None = None  # uint8 (3, K_f, C_f, F, F): fine slabs per view (None: fixtures of the coarse arrays only)


@dataclasses.dataclass(frozen=True)
class FineLayout:
    """Shape of the ``fine`` array: channel names and definitions, F pixels per side, K_f slabs per axis."""

    channels: tuple[str, ...]
    channel_defs: dict
    size: int
    slabs: int

    @classmethod
    def for_family(cls, family: str, params: Mapping[str, Any]) -> "FineLayout":
        """From the ``project`` params mapping (missing keys: the ProjectParams defaults)."""
        from willis.params.project import ProjectParams
        from willis.projections.finebox import fine_dims
        from willis.projections.windows import fine_channel_defs, fine_channel_names

        d = ProjectParams()
        get = lambda k: params.get(k, getattr(d, k))  # noqa: E731
        f, k = fine_dims(get("fine_mm_per_px"), get("fine_box_mm"), get("fine_slab_mm"))
        return cls(tuple(fine_channel_names(family)), fine_channel_defs(family), f, k)


@dataclasses.dataclass
class FamilyArrays:
    """Bulk read of a family store (``load_family``); row i of every array is ``uids[i]``."""

    uids: list[str]
    mip: np.ndarray          # uint8 (n, 3, C, S, S)
    instances: np.ndarray    # uint8 (n, K, C, S, S)
    instance_z: np.ndarray   # float32 (n, K)
    series: list[dict]       # per-series attrs, same order
    channels: list[str]
    views: list[str]
    fine: np.ndarray | None = None     # uint8 (n, 3, K_f, C_f, F, F) when asked for (``load_family(fine=True)``)
    fine_channels: list[str] | None = None


def family_path(out: str | Path, family: str) -> Path:
    return Path(out) / f"{family}.zarr"


def create_store(
    path: str | Path,
    family: str,
    uids: Sequence[str],
    channels: Sequence[str],
    size: int,
    instances: int,
    params: Mapping[str, Any],
    channel_defs: Mapping[str, Any] | None = None,
    fine: FineLayout | None = None,
) -> zarr.Group:
    """Create an empty store for ``uids`` (no chunk written yet, every row incomplete).

    ``fine`` defaults to ``FineLayout.for_family(family, params)``: callers passing the project
    params need not build it."""
    n, c, s, k = len(uids), len(channels), int(size), int(instances)
    fine = fine or FineLayout.for_family(family, params)
    cf, f, kf = len(fine.channels), int(fine.size), int(fine.slabs)
    if len(set(uids)) != n:
        raise StoreError(f"{path}: duplicate SeriesInstanceUIDs in the row order")
    g = zarr.open_group(str(path), mode="w", zarr_format=3)
    common = dict(compressors=ZstdCodec(level=ZSTD_LEVEL), chunk_key_encoding=CHUNK_KEY_ENCODING)
    g.create_array("mip", shape=(n, 3, c, s, s), chunks=(1, 3, c, s, s), dtype="uint8", fill_value=0, **common)
    g.create_array("instances", shape=(n, k, c, s, s), chunks=(1, k, c, s, s), dtype="uint8", fill_value=0, **common)
    g.create_array("instance_z", shape=(n, k), chunks=(max(n, 1), k), dtype="float32", fill_value=np.nan, **common)
    g.create_array("fine", shape=(n, 3, kf, cf, f, f), chunks=(1, 3, kf, cf, f, f), dtype="uint8", fill_value=0, **common)
    g.attrs.update(
        {
            "layout_version": LAYOUT_VERSION,
            "family": family,
            "channels": list(channels),
            "channel_defs": dict(channel_defs or {}),
            "views": list(VIEWS),
            "size": s,
            "instances": k,
            "instance_order": "superior_to_inferior",
            "fine_channels": list(fine.channels),
            "fine_channel_defs": dict(fine.channel_defs),
            "fine_size": f,
            "fine_slabs": kf,
            "fine_slab_order": dict(FINE_SLAB_ORDER),
            "series_uids": list(uids),
            "complete": [False] * n,
            "failed": {},
            "series": {},
            "params": _jsonable(params),
        }
    )
    return g


def open_store(path: str | Path, mode: str = "r") -> zarr.Group:
    """Open a store once (per process); ``mode="r+"`` for workers writing their own rows."""
    try:
        return zarr.open_group(str(path), mode=mode, zarr_format=3)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError) as e:
        raise StoreError(f"{path}: no projection store here") from e


def write_projection(group: zarr.Group, row: int, proj: Projection) -> None:
    """Write one series' chunks whole (``mip[row]``, ``instances[row]``, ``fine[row]``); attrs are the parent's job."""
    mip, inst, fine = group["mip"], group["instances"], group["fine"]
    if proj.mip.shape != mip.shape[1:] or proj.mip.dtype != np.uint8:
        raise StoreError(f"series {proj.uid}: mip {proj.mip.shape} {proj.mip.dtype}, store wants {mip.shape[1:]} uint8")
    if proj.instances.shape != inst.shape[1:] or proj.instances.dtype != np.uint8:
        raise StoreError(
            f"series {proj.uid}: instances {proj.instances.shape} {proj.instances.dtype}, store wants {inst.shape[1:]} uint8"
        )
    if proj.fine is not None and (proj.fine.shape != fine.shape[1:] or proj.fine.dtype != np.uint8):
        raise StoreError(f"series {proj.uid}: fine {proj.fine.shape} {proj.fine.dtype}, store wants {fine.shape[1:]} uint8")
    mip[row] = proj.mip          # (3, C, S, S): exactly one chunk
    inst[row] = proj.instances   # (K, C, S, S): exactly one chunk
    if proj.fine is not None:    # None: a fixture of the coarse arrays; the fine row keeps its fill value 0
        fine[row] = proj.fine    # (3, K_f, C_f, F, F): exactly one chunk


def finalize_store(
    path: str | Path,
    done: Mapping[str, tuple[Sequence[float], Mapping[str, Any]]],
    failed: Mapping[str, str],
) -> None:
    """Parent only, once, after all workers: instance_z, complete flags, per-series attrs, consolidation.

    ``done[uid] = (instance_z (K,), series_attrs)`` for every series written whole. Rows of other
    series lose any chunk a killed worker may have left, so they read as missing, never as data.
    """
    g = open_store(path, "r+")
    uids = list(g.attrs["series_uids"])
    k = int(g.attrs["instances"])
    z = np.full((len(uids), k), np.nan, dtype=np.float32)
    complete = [False] * len(uids)
    series: dict[str, Any] = {}
    for i, uid in enumerate(uids):
        if uid in done:
            z[i] = np.asarray(done[uid][0], dtype=np.float32)
            complete[i] = True
            series[uid] = _jsonable(done[uid][1])
    if len(uids):
        g["instance_z"][:] = z
    for i, uid in enumerate(uids):
        if not complete[i]:
            _delete_row(g, i)
    g.attrs.update({"complete": complete, "series": series, "failed": {u: str(r) for u, r in failed.items()}})
    with warnings.catch_warnings():  # "consolidated metadata is not in the v3 spec": known, we want it
        warnings.simplefilter("ignore", category=UserWarning)
        zarr.consolidate_metadata(str(path))


def _delete_row(g: zarr.Group, row: int) -> None:
    """Drop any chunk of ``row`` a killed worker may have left: with ``write_empty_chunks`` off (the
    Zarr default) writing the fill value deletes the chunk, so the row reads as missing, never as data."""
    for name in CHUNKED:
        arr = g[name]
        arr[row] = np.zeros(arr.shape[1:], dtype=arr.dtype)


def _row_of(g: zarr.Group, uid: str, path: str | Path) -> int:
    uids = g.attrs["series_uids"]
    try:
        i = uids.index(uid)
    except ValueError:
        raise StoreError(f"{path}: series {uid} is not in this store") from None
    if not g.attrs["complete"][i]:
        why = g.attrs.get("failed", {}).get(uid, "not written (run interrupted or still running)")
        raise StoreError(f"{path}: series {uid} is not complete: {why}")
    return i


def read(store_path: str | Path, uid: str) -> dict[str, np.ndarray]:
    """One series as float32 in [0, 1]: ``mip`` (3, C, S, S), ``instances`` (K, C, S, S), ``fine``
    (3, K_f, C_f, F, F); and ``instance_z`` (K,) mm. Geometry: ``open_store(path).attrs["series"][uid]``."""
    g = open_store(store_path)
    i = _row_of(g, uid, store_path)
    return {
        "mip": g["mip"][i].astype(np.float32) / 255.0,
        "instances": g["instances"][i].astype(np.float32) / 255.0,
        "instance_z": np.asarray(g["instance_z"][i], dtype=np.float32),
        "fine": g["fine"][i].astype(np.float32) / 255.0,
    }


def load_family(store_path: str | Path, uids: Sequence[str] | None = None, threads: int = 4,
                fine: bool = False, fine_channels: Sequence[str] | None = None) -> FamilyArrays:
    """Bulk read for training: the uint8 arrays of ``uids`` (default: every complete series), in that order.

    ``fine=True`` also reads the fine slabs (``FamilyArrays.fine``, (n, 3, K_f, C_f, F, F): about
    ``3 * K_f * C_f * F**2`` bytes per series in RAM, ~11 MB at the defaults); off by default, so
    readers of the coarse arrays do not pay for them. ``fine_channels`` keeps only those channels
    (in that order; ``FamilyArrays.fine_channels`` says which), sliced run by run, so RAM holds
    only what is kept.

    Reads the rows in sorted order in contiguous runs of up to ``RUN`` chunks, decoding runs in
    ``threads`` threads (zstd releases the GIL), then puts them back in the requested order.
    """
    g = open_store(store_path)
    all_uids = list(g.attrs["series_uids"])
    complete = g.attrs["complete"]
    if uids is None:
        uids = [u for u, c in zip(all_uids, complete) if c]
    row_of = {u: i for i, u in enumerate(all_uids)}
    bad = [u for u in uids if u not in row_of or not complete[row_of[u]]]
    if bad:
        raise StoreError(f"{store_path}: {len(bad)} requested series missing or incomplete, e.g. {bad[0]}")
    rows = np.array([row_of[u] for u in uids], dtype=np.int64)
    order = np.argsort(rows, kind="stable")
    mip_a, inst_a = g["mip"], g["instances"]
    fine_a = g["fine"] if fine else None
    names = list(g.attrs["fine_channels"])
    keep = list(fine_channels) if fine_channels is not None else names
    unknown = [c for c in keep if c not in names]
    if unknown:
        raise StoreError(f"{store_path}: fine channels {unknown} not in the store's {names}")
    sel = [names.index(c) for c in keep]
    mip = np.empty((len(rows),) + mip_a.shape[1:], dtype=np.uint8)
    inst = np.empty((len(rows),) + inst_a.shape[1:], dtype=np.uint8)
    fine_out = None
    if fine_a is not None:
        v, k, _, f, _ = fine_a.shape[1:]
        fine_out = np.empty((len(rows), v, k, len(sel), f, f), dtype=np.uint8)
    runs = _contiguous_runs(rows[order])

    def fetch(run: tuple[int, int, int]) -> None:
        pos, lo, hi = run  # output positions order[pos:pos+hi-lo] hold store rows lo..hi-1
        dest = order[pos : pos + hi - lo]
        mip[dest] = mip_a[lo:hi]
        inst[dest] = inst_a[lo:hi]
        if fine_out is not None:
            block = fine_a[lo:hi]                                    # (run, 3, K_f, C_f, F, F)
            fine_out[dest] = block if sel == list(range(len(names))) else block[:, :, :, sel]

    with ThreadPoolExecutor(max_workers=max(1, threads)) as ex:
        list(ex.map(fetch, runs))
    z = np.asarray(g["instance_z"][:], dtype=np.float32)[rows] if len(rows) else np.zeros((0, inst_a.shape[1]), np.float32)
    series = [g.attrs["series"][u] for u in uids]
    return FamilyArrays(list(uids), mip, inst, z, series, list(g.attrs["channels"]), list(g.attrs["views"]),
                        fine_out, keep)


RUN = 64  # rows per read: large enough to amortise per-call overhead, small enough to spread over threads


def _contiguous_runs(sorted_rows: np.ndarray) -> list[tuple[int, int, int]]:
    """Split sorted store rows into (output position, lo, hi) runs of consecutive rows, at most RUN long."""
    runs, start = [], 0
    for j in range(1, len(sorted_rows) + 1):
        if j == len(sorted_rows) or sorted_rows[j] != sorted_rows[j - 1] + 1 or j - start == RUN:
            runs.append((start, int(sorted_rows[start]), int(sorted_rows[j - 1]) + 1))
            start = j
    return runs


def validate_store(store_path: str | Path) -> dict[str, int]:
    """Check the layout contract; raise StoreError listing every problem. Returns counts."""
    g = open_store(store_path)
    a = g.attrs
    problems: list[str] = []
    for key in ("layout_version", "family", "channels", "views", "size", "instances", "series_uids", "complete", "series",
                "params", "fine_channels", "fine_size", "fine_slabs", "fine_slab_order"):
        if key not in a:
            problems.append(f"attrs lacks {key!r}")
    if problems:
        raise StoreError(f"{store_path}: " + "; ".join(problems))
    if a["layout_version"] != LAYOUT_VERSION:
        problems.append(f"layout_version {a['layout_version']} != {LAYOUT_VERSION}")
    n, c, s, k = len(a["series_uids"]), len(a["channels"]), a["size"], a["instances"]
    cf, f, kf = len(a["fine_channels"]), a["fine_size"], a["fine_slabs"]
    want = {"mip": ((n, 3, c, s, s), (1, 3, c, s, s), "uint8"), "instances": ((n, k, c, s, s), (1, k, c, s, s), "uint8"),
            "instance_z": ((n, k), None, "float32"), "fine": ((n, 3, kf, cf, f, f), (1, 3, kf, cf, f, f), "uint8")}
    for name, (shape, chunks, dtype) in want.items():
        if name not in g:
            problems.append(f"array {name!r} missing")
            continue
        arr = g[name]
        if arr.shape != shape or str(arr.dtype) != dtype:
            problems.append(f"{name}: {arr.shape} {arr.dtype}, want {shape} {dtype}")
        if chunks is not None and arr.chunks != chunks:
            problems.append(f"{name}: chunks {arr.chunks}, want {chunks} (one chunk per series)")
    if list(a["views"]) != list(VIEWS):
        problems.append(f"views {a['views']} != {list(VIEWS)}")
    if len(a["complete"]) != n:
        problems.append(f"complete has {len(a['complete'])} flags for {n} series")
    done = [u for u, f in zip(a["series_uids"], a["complete"]) if f]
    missing_attrs = [u for u in done if u not in a["series"]]
    if missing_attrs:
        problems.append(f"{len(missing_attrs)} complete series lack attrs, e.g. {missing_attrs[0]}")
    if dict(a["fine_slab_order"]) != FINE_SLAB_ORDER:
        problems.append(f"fine_slab_order {a['fine_slab_order']} != {FINE_SLAB_ORDER}")
    for u in done:
        why = _fine_attrs_problem(a["series"].get(u, {}).get("fine"), f, kf)
        if u in a["series"] and why:
            problems.append(f"series {u}: attrs fine: {why}")
            break  # one example is enough; the rest are usually the same bug
    if not problems and n:
        z = np.asarray(g["instance_z"][:])
        flags = np.asarray(a["complete"], dtype=bool)
        if np.isnan(z[flags]).any():
            problems.append("instance_z has NaN for a complete series")
        if flags.any() and np.any(np.diff(z[flags], axis=1) > 0):
            problems.append("instance_z not superior -> inferior (descending) for some series")
    if problems:
        raise StoreError(f"{store_path}: " + "; ".join(problems))
    return {"series": n, "complete": len(done), "failed": len(a.get("failed", {}))}


FINE_ATTRS = ("box_mm", "centre_mm", "mm_per_px", "size", "slabs", "slab_mm", "slab_ranges_mm", "flag", "locate",
              "windows", "frames")
FINE_FLAGS = ("vessels", "prior", "fov")


def _fine_attrs_problem(fine: Any, size: int, slabs: int) -> str:
    """What is wrong with one series' ``attrs["fine"]`` ('' if nothing)."""
    if not isinstance(fine, Mapping):
        return "missing"
    lacking = [k for k in FINE_ATTRS if k not in fine]
    if lacking:
        return f"lacks {lacking}"
    if fine["size"] != size or fine["slabs"] != slabs:
        return f"size/slabs {fine['size']}/{fine['slabs']} != store {size}/{slabs}"
    if fine["flag"] not in FINE_FLAGS:
        return f"flag {fine['flag']!r} not in {FINE_FLAGS}"
    side = size * float(fine["mm_per_px"])
    if any(abs((hi - lo) - side) > 1e-3 for lo, hi in fine["box_mm"]):
        return f"box_mm {fine['box_mm']} is not a cube of side {side:g} mm"
    for view in VIEWS:
        r = np.asarray(fine["slab_ranges_mm"].get(view, []), dtype=float)
        if r.shape != (slabs, 2):
            return f"slab_ranges_mm[{view}] has shape {r.shape}, want ({slabs}, 2)"
        d = np.diff(r.ravel())   # [s0, e0, s1, e1, ...]: contiguous slabs, strictly monotonic in slab order
        if (view == "axial" and (d[::2] >= 0).any()) or (view != "axial" and (d[::2] <= 0).any()) \
                or np.abs(d[1::2]).max(initial=0) > 1e-3:
            return f"slab_ranges_mm[{view}] not in {FINE_SLAB_ORDER[view]} order"
    return ""


def _jsonable(obj: Any) -> Any:
    """Plain-JSON copy (tuples -> lists, numpy scalars -> Python) for Zarr attributes."""
    return json.loads(json.dumps(obj, default=_json_default))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if dataclasses.is_dataclass(o):
        return dataclasses.asdict(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")
