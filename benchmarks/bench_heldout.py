"""The transfer check: score model bundles through ``predict`` on a held-out synthetic configuration.

The held-out set is made by a differently configured generator (``synthesize.profile: heldout``:
shifted spacing, field of view, contrast, noise, vessel-variant and modality mixes; another seed;
docs/synthetic.md). Nobody trains or selects on it: it exists to say how far the default models
carry to series they were not made from. Every series goes through the competition contract
``willis.predict.predict(series_path)`` (scan, decode check, projection, model, calibration), as
the hidden test set would, and the table is scored with the competition metric.

    python benchmarks/bench_heldout.py --models models                      # makes data/heldout if absent
    python benchmarks/bench_heldout.py --models models --models old=models_easy --json reports/heldout.json
    python benchmarks/bench_heldout.py --models models --uncapped           # the same series at scanner resolution

Prints, per bundle: the score with a 95% bootstrap interval, AUC Present, mean location AUC, the
same per modality, how many series got the prior (unreadable), and the median seconds per series.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from willis.index.csvs import read_train_csv  # noqa: E402
from willis.labels import LABELS  # noqa: E402
from willis.metrics import bootstrap_score, competition_score  # noqa: E402


# The caps the default profile's data are generated under (params.yaml ``synthesize.max_slices`` /
# ``max_matrix``) keep ``dvc repro`` within its 2-core budget by coarsening every series; a real
# scanner does not. ``uncapped`` lifts them, so the held-out set keeps each series' drawn pixel
# size and slice spacing (CTA 0.45-0.8 mm pixels, 0.6-2 mm slices: docs/synthetic.md): the same
# series, lesions and random draws as the capped set of that seed and size, at scanner resolution.
UNCAPPED = {"max_slices": 512, "max_matrix": 0}


def heldout_dir(uncapped: bool) -> Path:
    return ROOT / ("data/heldout_uncapped" if uncapped else "data/heldout")


def ensure_heldout(out: Path, n_series: int, seed: int, uncapped: bool = False) -> None:
    if (out / "train.csv").exists():
        if uncapped:
            manifest = out / "MANIFEST.json"
            if not manifest.exists():
                raise SystemExit(f"{out}: --uncapped, but it has no MANIFEST.json to say how it was generated; "
                                 "give another --heldout")
            made = json.loads(manifest.read_text()).get("params", {})
            if any(made.get(k) != v for k, v in UNCAPPED.items()):
                raise SystemExit(f"{out}: --uncapped, but this held-out set was generated with max_slices "
                                 f"{made.get('max_slices')}, max_matrix {made.get('max_matrix')}; give another --heldout")
        return
    params = ROOT / "params.yaml"
    if uncapped:
        out.mkdir(parents=True, exist_ok=True)
        p = yaml.safe_load(params.read_text())
        p["synthesize"].update(UNCAPPED)
        params = out.parent / f"{out.name}.params.yaml"
        params.write_text(yaml.safe_dump(p, sort_keys=False))
    cmd = [sys.executable, str(ROOT / "stages/synthesize.py"), "--params", str(params),
           "--profile", "heldout", "--seed", str(seed), "--n-series", str(n_series), "--out", str(out),
           "--data-root", str(out)]
    print("generating the held-out set:", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=ROOT)


def _fmt(v) -> str:
    return "  -  " if v is None else f"{v:.3f}"


def score_table(Y: np.ndarray, P: np.ndarray, modality: np.ndarray, n_boot: int, seed: int) -> dict:
    out = {"all": {**_headline(Y, P), **{k: bootstrap_score(Y, P, n_boot, seed)[k] for k in ("low", "high")}}}
    out.update(modality_scores(Y, P, modality))
    out["all"]["n"] = int(len(Y))
    return out


def modality_scores(Y: np.ndarray, P: np.ndarray, modality: np.ndarray) -> dict[str, dict]:
    """Headline numbers and count of each modality's series (score None where it has one class only)."""
    return {m: {**_headline(Y[sel], P[sel]), "n": int(sel.sum())} for m in sorted(set(modality)) for sel in [modality == m]}


def _headline(Y, P) -> dict:
    s = competition_score(Y, P)
    return {"score": s["score"], "auc_present": s["auc_present"], "auc_locations_mean": s["auc_locations_mean"]}


def run_bundle(models: Path, series: list[Path]) -> tuple[np.ndarray, list[str], list[float]]:
    from willis.predict import predict

    probs, status, seconds = [], [], []
    for i, folder in enumerate(series):
        t = time.perf_counter()
        df = predict(str(folder), models_dir=models, device="cpu")
        seconds.append(time.perf_counter() - t)
        probs.append(df[list(LABELS)].to_numpy(dtype=float)[0])
        status.append(df.attrs["status"])
        if (i + 1) % 25 == 0:
            print(f"  {models}: {i + 1}/{len(series)} series, median {np.median(seconds):.2f} s", flush=True)
    return np.stack(probs), status, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", action="append", required=True,
                    help="a model bundle dir (models/), or NAME=DIR; repeat to compare bundles")
    ap.add_argument("--heldout", type=Path, help="the held-out set (default data/heldout, or data/heldout_uncapped)")
    ap.add_argument("--uncapped", action="store_true",
                    help="generate the held-out set at each series' drawn resolution (no max_slices / max_matrix cap)")
    ap.add_argument("--n-series", type=int, default=200)
    ap.add_argument("--seed", type=int, default=777, help="generator seed of the held-out set (never the default's)")
    ap.add_argument("--limit", type=int, default=0, help="score only the first N series (0: all)")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--json", type=Path, help="also write the numbers here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    args.heldout = args.heldout or heldout_dir(args.uncapped)
    ensure_heldout(args.heldout, args.n_series, args.seed, args.uncapped)
    csv = read_train_csv(args.heldout / "train.csv")
    csv = csv[[(args.heldout / "series" / u).is_dir() for u in csv["SeriesInstanceUID"]]]
    if args.limit:
        csv = csv.iloc[: args.limit]
    series = [args.heldout / "series" / u for u in csv["SeriesInstanceUID"]]
    Y = csv[list(LABELS)].to_numpy(dtype=int)
    modality = csv["Modality"].to_numpy(dtype=str)
    print(f"held-out set {args.heldout}: {len(series)} series ({dict(zip(*np.unique(modality, return_counts=True)))}), "
          f"{int(Y[:, -1].sum())} positive", flush=True)

    results = {}
    for spec in args.models:
        name, _, path = spec.rpartition("=")
        name = name or spec
        P, status, seconds = run_bundle(Path(path), series)
        table = score_table(Y, P, modality, args.bootstrap, args.seed)
        table["prior_series"] = int(sum(s == "prior" for s in status))
        table["median_seconds_per_series"] = float(np.median(seconds))
        results[name] = table

    groups = ["all"] + sorted(set(modality))
    print(f"\n{'bundle':<16} {'group':<11} {'n':>4} {'score':>6} {'95% CI':>15} {'Present':>8} {'locations':>9}")
    for name, t in results.items():
        for g in groups:
            row = t[g]
            ci = f"{_fmt(row.get('low'))}-{_fmt(row.get('high'))}" if g == "all" else ""
            print(f"{name:<16} {g:<11} {row['n']:>4} {_fmt(row['score']):>6} {ci:>15} {_fmt(row['auc_present']):>8} "
                  f"{_fmt(row['auc_locations_mean']):>9}")
        print(f"{name:<16} prior (unreadable) series: {t['prior_series']}, median {t['median_seconds_per_series']:.2f} s/series")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"heldout": str(args.heldout), "seed": args.seed, "uncapped": args.uncapped,
                                         "bundles": results},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
