"""End to end: the real `dvc repro` of this repository, on a tiny synthetic dataset, in a fresh copy.

What a user relies on and no unit test shows: every stage runs in DAG order from a clean checkout,
the artifacts pass their validators, a second `dvc repro` is a no-op, a second, independent run of
the same commit writes byte-identical outputs for every stage (so a fresh clone pointed at that
run's cache restores every stage and runs none), two queued experiments run in parallel
(`dvc queue start -j 2`, one of them with 2 cross-validation folds), and a change to an `evaluate`
knob makes only `evaluate` stale.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from willis.calibration import Calibration
from willis.labels import LABELS
from willis.projections.store import validate_store

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


N_SERIES = 48  # ~20 CT, ~28 MR: every stage, seconds not minutes


def _run(args, cwd, check=True, timeout=900):
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", DVC_NO_ANALYTICS="1")
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
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
    params["synthesize"].update(n_series=N_SERIES, max_matrix=64, max_slices=32)
    # the fine box at 1 mm (F = 64, K_f = 4) and small crops: the default model (fine_cnn) trains in seconds
    params["project"].update(size=32, instances=4, fine_mm_per_px=1.0, fine_box_mm=64.0, fine_slab_mm=16.0)
    for fam in ("ct", "mr"):
        params["train"][fam].update(epochs=2, smoke_epochs=1, input_size=32, crop_size=32, crops_per_series=2,
                                    width=8)
    params["evaluate"].update(bootstrap=50, worst_k=2)
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
        meta = json.loads((repo / "models" / fam / "folds" / "0" / "meta.json").read_text())
        assert tuple(meta["labels"]) == LABELS
        cal = Calibration.load(repo / "models" / fam / "calibration.json")
        assert cal is not None
    metrics = json.loads((repo / "reports" / "metrics.json").read_text())
    for key in ("score", "auc_present", "auc_locations_mean"):
        assert key in metrics
    assert metrics["score"] is None or 0.0 <= metrics["score"] <= 1.0
    decode = json.loads((repo / "reports" / "decode_check.json").read_text())
    assert sum(decode["totals"]["status"].values()) >= N_SERIES - 1  # every CSV row or folder is accounted for
    assert (repo / "reports" / "summary.md").read_text().strip()


def test_second_repro_is_a_noop(repo):
    proc = _run(["dvc", "repro"], repo)
    assert "Data and pipelines are up to date" in proc.stdout, proc.stdout


def _lock_outs(lock: dict) -> dict:
    """stage -> {output path: md5} from a parsed dvc.lock."""
    return {name: {o["path"]: o["md5"] for o in st.get("outs", [])} for name, st in lock["stages"].items()}


@pytest.fixture(scope="module")
def second_run(repo, tmp_path_factory) -> Path:
    """The same commit run again from scratch in a separate clone with its own DVC cache: what a
    second machine of the same kind, or CI, does. Commits the first run (dvc.lock) in ``repo``."""
    other = tmp_path_factory.mktemp("second") / "repo"
    _run(["git", "clone", "-q", str(repo), str(other)], repo.parent)
    _run(["dvc", "repro"], other)
    _run(["git", "add", "-A"], repo)
    _run(["git", "commit", "-qm", "first run"], repo)
    return other


def test_every_stage_writes_identical_bytes_on_an_independent_rerun(repo, second_run):
    """No output carries wall time, host names or absolute paths: dvc.lock holds the md5 of every
    output of every stage (metrics, plots and reports included), and the two runs agree on all."""
    first = _lock_outs(yaml.safe_load((repo / "dvc.lock").read_text()))
    second = _lock_outs(yaml.safe_load((second_run / "dvc.lock").read_text()))
    assert set(first) == set(second) and len(first) == 9, sorted(first)
    differ = {name: sorted(p for p in first[name] if first[name][p] != second[name].get(p)) for name in first}
    assert not any(differ.values()), f"outputs that differ between two identical runs: {differ}"
    assert (repo / "dvc.lock").read_text() == (second_run / "dvc.lock").read_text()


def test_fresh_clone_with_a_populated_cache_runs_no_stage(repo, second_run, tmp_path):
    """A fresh `git clone` pointed at a cache that another run filled (`dvc cache dir --local`):
    `dvc repro` restores every stage from that cache and runs none."""
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    assert not (clone / "reports" / "summary.md").exists()  # no output travels in git
    _run(["dvc", "cache", "dir", "--local", str(second_run / ".dvc" / "cache")], clone)
    out = _run(["dvc", "repro"], clone)
    log = out.stdout + out.stderr
    assert "Running stage" not in log, log
    stages = set(_lock_outs(yaml.safe_load((repo / "dvc.lock").read_text())))
    restored = {line.split("'")[1] for line in log.splitlines() if "is cached - skipping run" in line}
    assert restored == stages, log
    assert "up to date" in _run(["dvc", "status"], clone).stdout
    assert (clone / "reports" / "summary.md").read_bytes() == (repo / "reports" / "summary.md").read_bytes()


def _exp_columns(repo: Path, *flags: str) -> list[str]:
    header = _run(["dvc", "exp", "show", "--md", "--no-pager", *flags], repo).stdout.splitlines()[0]
    return [c.strip() for c in header.strip().strip("|").split("|")]


def test_two_queued_smoke_experiments_run_in_parallel(repo, second_run):
    """`dvc exp run --queue` twice, `dvc queue start -j 2`: both finish (in temporary copies that
    hold only git-tracked files and DVC outputs: the embedded dataset comes from the cache), and
    `dvc exp show` lists both with their metrics; one runs 2 cross-validation folds."""
    exps = {"q-smoke": ["-S", "smoke=true"], "q-smoke-2folds": ["-S", "smoke=true", "-S", "folds=[0,1]"]}
    for name, overrides in exps.items():
        _run(["dvc", "exp", "run", "--queue", "-n", name, *overrides], repo)
    _run(["dvc", "queue", "start", "-j", "2"], repo)
    deadline = time.monotonic() + 900
    while True:
        status = _run(["dvc", "queue", "status"], repo).stdout
        if not any(s in status for s in ("Queued", "Running")) or time.monotonic() > deadline:
            break
        time.sleep(3)
    for name in exps:
        assert re.search(rf"{name}\s+\S+\s+(\S+\s+)?Success", status), status
    shown = json.loads(_run(["dvc", "exp", "show", "--json"], repo).stdout)
    runs = {e["name"]: e["data"] for base in shown for ex in (base.get("experiments") or [])
            for e in ex["revs"]}
    for name in exps:
        metrics = runs[name]["metrics"]["reports/metrics.json"]["data"]
        assert 0.0 <= (metrics["score"] if metrics["score"] is not None else 0.0) <= 1.0
        assert runs[name]["params"]["params.yaml"]["data"]["smoke"] is True
    assert runs["q-smoke-2folds"]["params"]["params.yaml"]["data"]["folds"] == [0, 1]
    # the table a person reads: the metric columns come first, score first among them
    cols = _exp_columns(repo, "--only-changed", "--drop", "^(data|models|reports|stages|willis)(/|$)")
    assert len(cols) <= 40, cols
    first_metric = next(c for c in cols if c not in ("Experiment", "Created", "State", "Executor"))
    assert first_metric == "score", cols


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
