"""The floors of willis/ (which package may import which), no import circles, and every artifact
read through its contract module. By ``ast`` over the source (tests/import_graph.py): nothing runs.

The table below is mirrored in docs/ARCHITECTURE.md ("Floors"); a test checks they agree.
"""

import ast
import re
from pathlib import Path

import pytest

from import_graph import ROOT, cycles, graph, package_graph

# floor -> packages on it (a willis/<name>.py module counts as a package of its own)
FLOORS = (
    ("labels", "params", "metrics", "plots", "dicom"),                           # 0: ground
    ("splits", "index", "decode_check", "synth", "projections", "models"),      # 1
    ("train", "calibration", "evaluate"),                                        # 2
    ("predict",),                                                                # 3 (stages/ above all)
)
# package -> the packages it may import: only ones on a lower floor, or earlier on its own floor
ALLOWED = {
    "labels": set(),
    "params": {"labels"},
    "metrics": {"labels"},
    "plots": {"metrics"},
    "dicom": {"labels"},
    "splits": {"labels"},
    "index": {"labels", "dicom", "splits"},
    "decode_check": {"labels", "dicom", "index"},
    "synth": {"labels", "params", "dicom"},
    "projections": {"labels", "params", "dicom", "index", "decode_check"},
    "models": {"labels", "params", "projections"},
    "train": {"labels", "params", "metrics", "splits", "index", "projections", "models"},
    "calibration": {"labels", "params", "metrics", "plots", "models"},
    "evaluate": {"labels", "params", "metrics", "plots", "index", "decode_check", "projections", "models",
                 "calibration"},
    "predict": {"labels", "params", "dicom", "index", "decode_check", "projections", "models", "calibration"},
}


def _floor(package: str) -> int:
    return next(i for i, names in enumerate(FLOORS) if package in names)


def test_the_table_itself_only_points_down():
    assert set(ALLOWED) == {p for names in FLOORS for p in names}
    order = [p for names in FLOORS for p in names]
    for pkg, deps in ALLOWED.items():
        for dep in deps:
            assert order.index(dep) < order.index(pkg), f"{pkg} may import {dep}, which is not below it"
            assert _floor(dep) <= _floor(pkg)


def test_every_package_is_on_a_floor():
    packages = {p for p in package_graph(graph()) if p}
    assert packages == set(ALLOWED), f"packages without a floor: {packages - set(ALLOWED)}"


def test_no_import_runs_up_a_floor():
    upward = {pkg: sorted(deps - ALLOWED[pkg]) for pkg, deps in package_graph(graph()).items()
              if pkg and deps - ALLOWED[pkg]}
    assert not upward, f"imports not allowed by the floors (package -> packages): {upward}"


def test_no_import_circle():
    g = graph()
    assert cycles(g) == [], "module import circles"
    assert cycles({p: frozenset(d) for p, d in package_graph(g).items()}) == [], "package import circles"


def test_architecture_md_mirrors_the_table():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    rows = re.findall(r"^\| (\d) \| `([a-z_]+)` \| ([^|]*) \|", text, flags=re.M)
    documented = {pkg: (int(floor), set(re.findall(r"`([a-z_]+)`", deps))) for floor, pkg, deps in rows}
    assert documented == {p: (_floor(p), ALLOWED[p]) for p in ALLOWED}


# ------------------------------------------------------------------ artifacts read through their contract

# raw reader call -> the modules allowed to make it, each with what it reads there
READERS = {
    "read_parquet": {
        "willis/index/tables.py": "series/files/localizers.parquet (read_index)",
        "willis/models/logits.py": "val_logits.parquet (read_logits)",
    },
    "read_csv": {
        "willis/index/csvs.py": "train.csv, train_localizers.csv (read as text, validated: read_train_csv)",
    },
    "json.load": {
        "willis/decode_check.py": "reports/decode_check.json (read_decode_report)",
        "willis/calibration.py": "calibration.json (Calibration.load)",
        "willis/models/checkpoint.py": "meta.json (load_meta)",
        "willis/projections/workdir.py": "the project stage's own resumable journal",
        "willis/projections/store.py": "attrs normalised in memory (json round trip), no file",
        "willis/synth/dataset.py": "its own MANIFEST.json",
        "willis/evaluate/run.py": "dvclive's summary file, not a pipeline artifact",
    },
    "zarr.open": {"willis/projections/store.py": "the projection stores (open_store, read, load_family)"},
    "torch.load": {
        "willis/models/checkpoint.py": "model.pt (load_model)",
        "willis/models/backbone.py": "a timm backbone's local weights file, not a pipeline artifact",
    },
    "yaml.load": {"willis/params/schema.py": "params.yaml (willis.params.load)"},
}


def _calls(tree: ast.AST):
    """Names of the raw readers called in ``tree`` (``pd.read_parquet`` -> 'read_parquet', ...)."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
        if name in ("read_parquet", "read_csv"):
            yield name
        elif owner == "json" and name in ("load", "loads"):
            yield "json.load"
        elif owner == "zarr" and name.startswith("open"):
            yield "zarr.open"
        elif owner == "torch" and name == "load":
            yield "torch.load"
        elif owner == "yaml" and "load" in name:
            yield "yaml.load"


def _sources():
    for f in sorted([*(ROOT / "willis").rglob("*.py"), *(ROOT / "stages").glob("*.py")]):
        yield f.relative_to(ROOT).as_posix(), ast.parse(f.read_text(), str(f))


def test_every_artifact_is_read_through_its_contract_module():
    bad = sorted({(rel, call) for rel, tree in _sources() for call in _calls(tree) if rel not in READERS[call]})
    assert not bad, f"raw reads outside the artifact's contract module (use read_index, read_decode_report, " \
                    f"read_logits, load_meta, Calibration.load, open_store/read): {bad}"


def test_the_contract_modules_listed_still_read():
    used = {(rel, call) for rel, tree in _sources() for call in _calls(tree)}
    stale = sorted((rel, call) for call, mods in READERS.items() for rel in mods if (rel, call) not in used)
    assert not stale, f"allow-list entries no longer needed: {stale}"


def _strings(tree: ast.AST):
    """String constants and f-string parts, docstrings left out."""
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
            and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            yield node.value


def test_store_paths_come_from_family_path():
    bad = [rel for rel, tree in _sources() if rel != "willis/projections/store.py"
           and any(s.endswith(".zarr") or s.startswith(".zarr") for s in _strings(tree))]
    assert not bad, f"a <family>.zarr path built by hand (use willis.projections.store.family_path): {bad}"


@pytest.mark.parametrize("stage", sorted(p.name for p in (ROOT / "stages").glob("*.py")))
def test_stages_take_artifact_paths_only_from_the_command_line(stage):
    tree = ast.parse((ROOT / "stages" / stage).read_text())
    paths = [s for s in _strings(tree) if re.match(r"(data|models|reports)/", s)]
    assert not paths, f"stages/{stage}: artifact paths hard-coded (pass them in the dvc.yaml cmd): {paths}"
