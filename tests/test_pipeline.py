"""End to end: the real `dvc repro` of this repository, on a tiny synthetic dataset, in a fresh copy.

What a user relies on and no unit test shows: every stage runs in DAG order from a clean checkout,
the artifacts pass their validators, a second `dvc repro` is a no-op, and a change to an `evaluate`
knob makes only `evaluate` stale.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from willis.calibration import Calibration
from willis.labels import LABELS
from willis.projections.store import validate_store

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(args, cwd, check=True):
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", DVC_NO_ANALYTICS="1")
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def _tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.split("\n")
    return [f for f in out if f and (ROOT / f).is_file() and not f.startswith(("reports/", "dvc.lock"))]


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("pipeline") / "repo"
    for rel in _tracked_files():
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dst / rel)
    params = yaml.safe_load((dst / "params.yaml").read_text())
    params["synthesize"]["n_series"] = 48        # ~20 CT, ~28 MR: every stage, seconds not minutes
    params["project"]["size"] = 64
    params["project"]["instances"] = 6
    for fam in ("ct", "mr"):
        params["train"][fam]["epochs"] = 2
        params["train"][fam]["input_size"] = 32
    params["evaluate"]["bootstrap"] = 50
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(["git", "init", "-q"], dst)
    _run(["git", "config", "user.email", "test@willis.invalid"], dst)
    _run(["git", "config", "user.name", "willis test"], dst)
    _run(["git", "add", "-A"], dst)
    _run(["git", "commit", "-qm", "fresh copy"], dst)  # dvclive and `dvc exp` need a commit
    proc = _run(["dvc", "repro"], dst)
    (dst / "first_repro.log").write_text(proc.stdout + proc.stderr)
    return dst


def test_repro_builds_every_artifact(repo):
    for fam in ("ct", "mr"):
        report = validate_store(repo / "data" / "projections" / f"{fam}.zarr")
        assert report["complete"] > 0
        meta = json.loads((repo / "models" / fam / "meta.json").read_text())
        assert tuple(meta["labels"]) == LABELS
        cal = Calibration.load(repo / "models" / fam / "calibration.json")
        assert cal is not None
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    for key in ("score", "auc_present", "auc_locations_mean"):
        assert key in metrics
    assert metrics["score"] is None or 0.0 <= metrics["score"] <= 1.0
    decode = json.loads((repo / "reports" / "decode_check.json").read_text())
    assert sum(decode["totals"]["status"].values()) >= 47  # every CSV row or folder is accounted for
    assert (repo / "reports" / "summary.md").read_text().strip()


def test_second_repro_is_a_noop(repo):
    proc = _run(["dvc", "repro"], repo)
    assert "Data and pipelines are up to date" in proc.stdout, proc.stdout


def test_evaluate_knob_reruns_only_evaluate(repo):
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["evaluate"]["worst_k"] = params["evaluate"]["worst_k"] + 1
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = json.loads(_run(["dvc", "status", "--json"], repo).stdout)
    assert set(status) == {"evaluate"}, status


# What each planted breakage must look like in reports/decode_check.json.
EXPECTED = {
    "missing_folder": ("excluded", "no folder"),
    "mixed_shapes": ("partial", "set aside"),
    "no_pixel_data": ("partial", "no Pixel Data"),
    "truncated_file": ("partial", "truncated"),
    "stray_file": ("partial", "not a DICOM file"),
}


def test_every_planted_breakage_is_reported_and_good_series_are_ok(repo):
    manifest = json.loads((repo / "data" / "synthetic" / "MANIFEST.json").read_text())
    report = json.loads((repo / "reports" / "decode_check.json").read_text())
    broken = {b["series_uid"]: b["kind"] for b in manifest["broken"]}
    assert set(broken.values()) >= set(EXPECTED) | {"not_in_csv"}
    for uid, kind in broken.items():
        if kind == "not_in_csv":
            assert uid in report["orphans"]
            continue
        status, reason = EXPECTED[kind]
        entry = report["series"][uid]
        assert entry["status"] == status, (kind, entry)
        assert any(reason in r for r in entry["reasons"]), (kind, entry["reasons"])
    good = {u: v["status"] for u, v in report["series"].items() if u not in broken}
    assert set(good.values()) == {"ok"}, {u: s for u, s in good.items() if s != "ok"}
