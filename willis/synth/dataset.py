"""The embedded default dataset: a synthetic RSNA-layout folder, deterministic for a seed.

    synthesize(params.synthesize, seed=params.seed, out_dir="data/synthetic", data_root=params.data.root)

writes ``train.csv`` (``willis.labels.CSV_COLUMNS``), ``train_localizers.csv``
(``willis.labels.LOCALIZER_COLUMNS``), ``series/<SeriesInstanceUID>/<SOPInstanceUID>.dcm`` and
``MANIFEST.json`` (seed, profile, lesion mode, params, counts, the deliberately broken series and
how they are broken, the drawn and effective spacing per modality, a content hash, and per series
its drawn and effective spacing, scanner draws, anatomical variants and aneurysms). When ``data_root`` is not ``out_dir`` (the pipeline points at real data), it
writes only a MANIFEST.json that says synthesis was skipped.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import shutil
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from willis.labels import CSV_COLUMNS, LOCALIZER_COLUMNS, LOCATIONS, PRESENT
from willis.params.synthesize import SynthesizeParams
from willis.synth.plan import SeriesPlan, plan_dataset
from willis.synth.profiles import profile as get_profile
from willis.synth.series import SeriesResult, make_series

log = logging.getLogger(__name__)

MANIFEST = "MANIFEST.json"
GENERATOR = "willis.synth/1"


def _csv_row(plan: SeriesPlan) -> list:
    labels = [int(loc in plan.locations) for loc in LOCATIONS] + [int(plan.positive)]
    return [plan.series_uid, plan.age, plan.sex, plan.modality, *labels]


def _write_csv(path: Path, header, rows) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def _prepare(out: Path) -> None:
    """Empty ``out`` of a previous synthetic dataset; refuse to touch a folder we did not write."""
    if not out.exists():
        out.mkdir(parents=True)
        return
    entries = list(out.iterdir())
    if not entries:
        return
    manifest = out / MANIFEST
    if not manifest.exists() or json.loads(manifest.read_text()).get("generator") != GENERATOR:
        raise FileExistsError(
            f"{out}: not empty and not a willis synthetic dataset (no {MANIFEST}); refusing to overwrite")
    for e in entries:
        shutil.rmtree(e) if e.is_dir() else e.unlink()


def _same_place(a: str | Path, b: str | Path) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _quantiles(values: list[float]) -> dict[str, float]:
    q = np.quantile(np.asarray(values, float), [0.0, 0.1, 0.5, 0.9, 1.0])
    return dict(zip(("min", "p10", "median", "p90", "max"), (round(float(v), 3) for v in q)))


def spacing_summary(results: list[SeriesResult]) -> dict:
    """Per modality: drawn and effective (after the caps) pixel and slice spacing, and voxels per series."""
    out = {}
    for modality in sorted({r.info["modality"] for r in results}):
        infos = [r.info for r in results if r.info["modality"] == modality]
        out[modality] = {
            "series": len(infos),
            "drawn_pixel_mm": _quantiles([i["drawn"]["pixel_mm"] for i in infos]),
            "effective_pixel_mm": _quantiles([i["effective"]["pixel_mm"] for i in infos]),
            "drawn_slice_mm": _quantiles([i["drawn"]["slice_mm"] for i in infos]),
            "effective_slice_mm": _quantiles([i["effective"]["slice_mm"] for i in infos]),
            "voxels": _quantiles([float(np.prod(i["effective"]["shape"])) for i in infos]),
        }
    return out


def synthesize(params: SynthesizeParams, seed: int, out_dir: str | Path, data_root: str | Path) -> dict:
    """Write the synthetic dataset (or the 'skipped' manifest); return the manifest dict."""
    out = Path(out_dir)
    if not _same_place(out, data_root):
        _prepare(out)
        manifest = {"generator": GENERATOR, "skipped": True, "seed": seed, "data_root": str(data_root),
                    "reason": f"data.root ({data_root}) is not synthesize.out ({out_dir}): using existing data"}
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        log.info("synthesis skipped: %s", manifest["reason"])
        return manifest
    _prepare(out)
    plans = plan_dataset(params.n_series, params.positive_rate, seed, params.broken_per_kind,
                         get_profile(params.profile))
    work = partial(make_series, seed=seed, series_root=out / "series", max_slices=params.max_slices,
                   max_matrix=params.max_matrix or None, lesion_mode=params.lesion)
    results: list[SeriesResult] = []
    bar = tqdm(total=len(plans), desc="synthesize", unit="series")
    if params.workers > 1:
        with ProcessPoolExecutor(params.workers) as pool:
            for r in pool.map(work, plans, chunksize=1):  # results come back in plan order
                results.append(r)
                bar.update()
    else:
        for p in plans:
            results.append(work(p))
            bar.update()
    bar.close()

    in_csv = [p for p in plans if p.broken != "not_in_csv"]
    _write_csv(out / "train.csv", CSV_COLUMNS, [_csv_row(p) for p in in_csv])
    missing = {p.series_uid for p in plans if p.broken == "missing_folder"}
    loc_rows = [[row[c] for c in LOCALIZER_COLUMNS] for r in results for row in r.localizers
                if r.series_uid not in missing]
    _write_csv(out / "train_localizers.csv", LOCALIZER_COLUMNS, loc_rows)

    h = hashlib.sha256()
    for name in ("train.csv", "train_localizers.csv"):
        h.update((out / name).read_bytes())
    for r in results:
        h.update(f"{r.series_uid}:{r.digest}".encode())
    location_counts = Counter(loc for p in in_csv for loc in p.locations)
    manifest = {
        "generator": GENERATOR,
        "skipped": False,
        "seed": seed,
        "profile": params.profile,
        "lesion": params.lesion,
        # not ``workers``: the bytes do not depend on it, so neither does the manifest
        "params": {k: v for k, v in dataclasses.asdict(params).items() if k != "workers"},
        "counts": {
            "csv_rows": len(in_csv),
            "series_folders": sum(1 for p in plans if p.broken != "missing_folder"),
            "files": sum(r.n_files for r in results),
            "slices": sum(r.n_slices for r in results),
            "positives": sum(p.positive for p in in_csv),
            "localizers": len(loc_rows),
            "modality": dict(Counter(p.modality for p in in_csv)),
            "plane": dict(Counter(p.plane for p in plans)),
            "encoding": dict(Counter(r.encoding for r in results if r.encoding)),
            "multiframe": sum(p.multiframe for p in plans),
            "locations": {loc: location_counts.get(loc, 0) for loc in LOCATIONS},
            PRESENT: sum(p.positive for p in in_csv),
        },
        "broken": [{"series_uid": r.series_uid, **r.broken} for r in results if r.broken],
        "problems": {r.series_uid: r.problems for r in results if r.problems},
        "spacing": spacing_summary(results),
        "content_sha256": h.hexdigest(),
        "series": {r.series_uid: r.info for r in results},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("synthesized %d series (%d files) in %s", len(plans), manifest["counts"]["files"], out)
    return manifest
