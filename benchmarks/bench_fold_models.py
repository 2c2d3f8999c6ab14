"""Compare trained fold models side by side: the validation split, the test split and the held-out profile.

A model change (a training knob, an augmentation) moves a 45-series validation score by about
+-0.05 between runs, so one split cannot tell a gain from luck. This scores each fold model
directory (``models/<family>/folds/<k>``, or a copy of one) on three sets at once, from
projection stores (no re-projection per model, ~0.6 s a series on 2 cores):

* ``val`` and ``test``: the index's splits of the default store (``data/projections``);
* ``heldout``: every series of the held-out generator profile (``bench_heldout.py``'s set, never
  trained or selected on), projected once into its own store under ``--work`` with the pipeline's
  own index / decode_check / project stages and this checkout's ``params.yaml``.

Scores are the competition's weighted score of the **uncalibrated** sigmoid outputs (calibration is
fitted per bundle; ``bench_heldout.py`` scores whole calibrated bundles through ``predict``). With
several models, ``mean`` is their logits averaged (an ensemble). Logits are cached under
``--work``/``logits``, keyed by the model file's md5, the set and the store's path (never next to the model: a file
in ``models/`` would make ``dvc status`` see the training output changed), so a model retrained
in place is scored afresh.

A second table gives each model's score per modality (CTA; MRA, MRI T2, MRI T1post), and
``--set NAME=INDEX:PROJECTIONS[:SPLIT]`` adds further sets (another generator run's index and
store, made by the pipeline's own stages) to every table.

A third table splits ``Aneurysm Present`` by sac size: each model's AUC of the positives whose
largest sac is < 4, 4-6 or >= 6 mm across (the generator's ``MANIFEST.json`` records every sac's
diameter; real data has none, and the table is skipped) against all negatives of the sets, the
default profile's validation + test pooled and the held-out profile apart.

    python benchmarks/bench_fold_models.py --family ct --models default=models/ct/folds/0 --models ins=/tmp/ins/ct
    python benchmarks/bench_fold_models.py --family mr --models default=models/mr/folds/0 --set wide=/tmp/wd/index:/tmp/wd/projections:val
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from scipy.special import expit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_heldout import ensure_heldout, heldout_dir, modality_scores  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402
from willis.index.tables import read_index  # noqa: E402
from willis.labels import LABELS, PRESENT_INDEX  # noqa: E402
from willis.metrics import competition_score  # noqa: E402
from willis.models.infer import logits_for  # noqa: E402
from willis.models.logits import LOGIT_COLUMNS  # noqa: E402
from willis.projections.store import family_path, open_store  # noqa: E402


def build_heldout_store(heldout: Path, work: Path) -> tuple[Path, Path]:
    """(index dir, projections dir) of the held-out set, made once by the pipeline's own stages."""
    index, projections = work / "index", work / "projections"
    if (work / "project.json").exists():
        return index, projections
    work.mkdir(parents=True, exist_ok=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["project"]["out"] = str(projections)
    params["project"]["work"] = str(work / "project-work")
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    py, prm = sys.executable, str(work / "params.yaml")
    for cmd in (
        [py, "stages/index.py", "--params", prm, "--root", str(heldout), "--out", str(index)],
        [py, "stages/decode_check.py", "--params", prm, "--index", str(index), "--root", str(heldout),
         "--report", str(work / "decode_check.json"), "--metrics", str(work / "decode_check_metrics.json")],
        [py, "stages/project.py", "--params", prm, "--index", str(index), "--decode-report",
         str(work / "decode_check.json"), "--root", str(heldout), "--report", str(work / "project.json"),
         "--montage-dir", str(work / "montages")],
    ):
        print("building the held-out store:", " ".join(cmd[1:3]), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return index, projections


def scored_series(index: Path, store: Path, family: str, split: str | None):
    """(uids, truth (n, 14), modality (n,)) of the family's labelled series in ``store``, of ``split`` (None: all)."""
    t = read_index(index, "series")
    t = t[(t["family"] == family) & t["in_csv"].astype(bool) & (t["Modality"] != "")]
    if split is not None:
        t = t[t["split"] == split]
    have = set(open_store(store).attrs["series"])
    t = t[t["SeriesInstanceUID"].isin(have)]
    return list(t["SeriesInstanceUID"]), t[list(LABELS)].to_numpy(dtype=float), t["Modality"].to_numpy(dtype=str)


def extra_set(spec: str) -> tuple[str, Path, Path, str | None]:
    """``NAME=INDEX:PROJECTIONS[:SPLIT]`` (``--set``) -> (name, index dir, projections dir, split or None: all)."""
    name, _, where = spec.partition("=")
    parts = where.split(":")
    if not name or len(parts) not in (2, 3):
        raise SystemExit(f"--set {spec!r}: expected NAME=INDEX_DIR:PROJECTIONS_DIR[:SPLIT]")
    split = parts[2] if len(parts) == 3 and parts[2] not in ("", "all") else None
    return name, Path(parts[0]), Path(parts[1]), split


def scores_by_modality(y: np.ndarray, z: np.ndarray, modality: np.ndarray) -> dict[str, float]:
    """Weighted score of each modality's series (truth ``y`` and logits ``z``: (n, 14)) that has both classes."""
    return {m: h["score"] for m, h in modality_scores(y, expit(z), modality).items() if h["score"] is not None}


def modality_table(rows: dict[str, dict[str, dict[str, float]]]) -> None:
    """Print each model's score per modality; ``rows``: set -> model -> modality -> score."""
    print("\nweighted score by modality (uncalibrated; a modality needs positives and negatives in the set)")
    for set_name, by_model in rows.items():
        mods = sorted({m for r in by_model.values() for m in r})
        print(f"{set_name:<16}" + "".join(f"{m:>14}" for m in mods))
        for name, r in by_model.items():
            print(f"  {name:<14}" + "".join(f"{r.get(m, float('nan')):>14.3f}" for m in mods))


SIZE_BINS = ((0.0, 4.0), (4.0, 6.0), (6.0, np.inf))   # largest sac diameter, mm


@functools.cache
def _manifest_series(root: Path) -> dict | None:
    """The generator's per-series records (MANIFEST.json ``series``), read once per dataset; None without one."""
    manifest = root / "MANIFEST.json"
    return json.loads(manifest.read_text()).get("series", {}) if manifest.exists() else None


@functools.cache
def _md5(path: Path) -> str:
    """A model file's md5, read once per run (the logit cache key)."""
    return hashlib.md5(path.read_bytes()).hexdigest()


def sac_sizes(root: Path, uids: list[str]) -> np.ndarray | None:
    """(n,) diameter of each series' largest sac, mm (0: none), from the generator's MANIFEST.json; None without one."""
    series = _manifest_series(root)
    if series is None or not all(u in series for u in uids):
        return None
    return np.array([max((a["diameter_mm"] for a in series[u]["aneurysms"]), default=0.0) for u in uids])


def size_table(rows: dict[str, tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]]) -> None:
    """Print AUC Present per sac-size bin; ``rows``: group -> (Present truth, sizes, model -> Present logit)."""
    print("\nAneurysm Present AUC by the largest sac's diameter (its positives against every negative)")
    for group, (y, size, z) in rows.items():
        bins = [(lo, hi, (y == 0) | ((size >= lo) & (size < hi))) for lo, hi in SIZE_BINS]
        head = "".join(f"{f'{lo:g}-{hi:g} mm' if np.isfinite(hi) else f'>= {lo:g} mm':>12} (n+ {int(y[k].sum()):>2})"
                       for lo, hi, k in bins)
        print(f"{group:<22}{head}")
        for name, zi in z.items():
            cells = "".join(f"{roc_auc_score(y[k], zi[k]) if 0 < y[k].sum() < k.sum() else float('nan'):>20.3f}"
                            for _, _, k in bins)
            print(f"  {name:<20}{cells}")


def logits(model: Path, store: Path, uids: list[str], name: str, cache_dir: Path) -> np.ndarray:
    digest = _md5(model / "model.pt")
    where = hashlib.md5(str(store.resolve().parent).encode()).hexdigest()[:8]   # the same split, another store
    cache = cache_dir / f"{digest}_{name}_{where}.npy"
    cache_dir.mkdir(parents=True, exist_ok=True)
    if cache.exists():
        z = np.load(cache)
        if len(z) == len(uids):
            return z
    z = logits_for(model, store, uids, device="cpu")[list(LOGIT_COLUMNS)].to_numpy(dtype=np.float32)
    np.save(cache, z)
    return z


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", required=True, choices=["ct", "mr"])
    ap.add_argument("--models", action="append", required=True, help="NAME=DIR of a fold model; repeat to compare")
    ap.add_argument("--index", type=Path, default=ROOT / "data/index")
    ap.add_argument("--projections", type=Path, default=ROOT / "data/projections")
    ap.add_argument("--heldout", type=Path, help="the held-out set (default data/heldout, or data/heldout_uncapped)")
    ap.add_argument("--uncapped", action="store_true",
                    help="the held-out set at each series' drawn resolution (bench_heldout.py --uncapped)")
    ap.add_argument("--work", type=Path, help="held-out index, store and logit cache (default <heldout>_store)")
    ap.add_argument("--n-series", type=int, default=200)
    ap.add_argument("--seed", type=int, default=777, help="generator seed of the held-out set (never the default's)")
    ap.add_argument("--data", type=Path, default=ROOT / "data/synthetic", help="the default profile's dataset (its MANIFEST.json)")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=INDEX:PROJECTIONS[:SPLIT]",
                    help="a further set to score, e.g. another generator run's val split; repeat for more")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    args.heldout = args.heldout or heldout_dir(args.uncapped)
    args.work = args.work or args.heldout.with_name(args.heldout.name + "_store")
    ensure_heldout(args.heldout, args.n_series, args.seed, args.uncapped)
    h_index, h_proj = build_heldout_store(args.heldout, args.work)
    sets = {"val": (args.index, family_path(args.projections, args.family), "val", args.data),
            "test": (args.index, family_path(args.projections, args.family), "test", args.data),
            "heldout": (h_index, family_path(h_proj, args.family), None, args.heldout)}
    for name, index, projections, split in map(extra_set, args.set):
        sets[name] = (index, family_path(projections, args.family), split, None)   # no MANIFEST: no size table
    models = [(spec.rpartition("=")[0] or spec, Path(spec.rpartition("=")[2])) for spec in args.models]
    rows = {name: {} for name, _ in models}
    if len(models) > 1:
        rows["mean"] = {}
    by_size: dict[str, list] = {}
    by_modality: dict[str, dict[str, dict[str, float]]] = {}
    for set_name, (index, store, split, data) in sets.items():
        uids, y, modality = scored_series(index, store, args.family, split)
        z = [logits(path, store, uids, set_name, args.work / "logits") for _, path in models]
        named = [*zip((n for n, _ in models), z), *([("mean", np.mean(z, axis=0))] if len(models) > 1 else [])]
        by_modality[set_name] = {name: scores_by_modality(y, zi, modality) for name, zi in named}
        size = None if data is None else sac_sizes(data, uids)
        if size is not None:
            group = "held-out profile" if set_name == "heldout" else "default: val + test"
            by_size.setdefault(group, []).append((y[:, PRESENT_INDEX], size, [zi[:, PRESENT_INDEX] for zi in z]))
        for (name, _), zi in zip(models, z):
            rows[name][set_name] = (competition_score(y, expit(zi)), len(uids))
        if len(models) > 1:
            rows["mean"][set_name] = (competition_score(y, expit(np.mean(z, axis=0))), len(uids))
    print(f"\n{args.family}: weighted score (AUC Present / mean location AUC), uncalibrated")
    print(f"{'model':<16}" + "".join(f"{s + ' (' + str(rows[models[0][0]][s][1]) + ')':>26}" for s in sets)
          + f"{'mean of sets':>14}")
    for name, r in rows.items():
        cells = [f"{r[s][0]['score']:.3f} ({r[s][0]['auc_present']:.3f}/{r[s][0]['auc_locations_mean']:.3f})"
                 for s in sets]
        print(f"{name:<16}" + "".join(f"{c:>26}" for c in cells) + f"{np.mean([r[s][0]['score'] for s in sets]):>14.3f}")
    modality_table(by_modality)
    if by_size:
        size_table({group: (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                            {name: np.concatenate([p[2][i] for p in parts]) for i, (name, _) in enumerate(models)})
                    for group, parts in by_size.items()})
    else:
        print("\n(no generator MANIFEST.json with sac diameters: no table by sac size)")


if __name__ == "__main__":
    main()
