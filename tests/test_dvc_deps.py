"""dvc.yaml's code deps cover what each stage really runs, so an edit reruns every stage that uses it.

A stage's code is its ``stages/<name>.py`` plus the import closure of that script over willis/
(by ``ast``, lazy imports inside functions included; parent packages' ``__init__.py`` too), see
tests/import_graph.py. Every file of it must be a dep (a dep may be a folder), and every code dep
must hold at least one file of it (no dep that the stage does not run: it would rerun for nothing).
"""

import itertools
import re
from pathlib import Path

import pytest
import yaml

from import_graph import ROOT, closure

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())


def _resolve(text: str, item) -> str:
    """``${item}``, ``${item.key}`` (foreach / matrix) and ``${a.b}`` (params.yaml) substituted, as DVC does."""
    def value(m):
        key = m.group(1)
        if key == "item":
            return str(item)
        if key.startswith("item."):
            return str(item[key[len("item."):]])
        v = PARAMS
        for part in key.split("."):
            v = v[part]
        return str(v)
    return re.sub(r"\$\{([^}]+)\}", value, text)


def _param_list(ref) -> list:
    """A ``foreach`` / ``matrix`` axis: a literal list or ``${key}`` naming a list in params.yaml."""
    return PARAMS[re.fullmatch(r"\$\{(\w+)\}", ref).group(1)] if isinstance(ref, str) else list(ref)


def _expanded(st: dict, item) -> dict:
    return {k: _resolve(str(v), item) if k == "cmd" else [_resolve(str(d), item) for d in v] if k == "deps" else v
            for k, v in st.items()}


def _stages():
    """(stage name, stage dict with ${...} resolved); a foreach stage once per item, a matrix stage
    once per combination (DVC's names: ``train@ct-0``)."""
    for name, st in DVC["stages"].items():
        if "foreach" in st:
            for item in _param_list(st["foreach"]):
                yield f"{name}@{item}", _expanded(st["do"], item)
        elif "matrix" in st:
            axes = {k: _param_list(v) for k, v in st["matrix"].items()}
            for combo in itertools.product(*axes.values()):
                item = dict(zip(axes, combo))
                yield f"{name}@{'-'.join(map(str, combo))}", _expanded({k: v for k, v in st.items() if k != "matrix"}, item)
        else:
            yield name, {**st, "cmd": _resolve(st["cmd"], None), "deps": [_resolve(str(d), None) for d in st["deps"]]}


STAGES = dict(_stages())


def _script(stage: dict) -> Path:
    m = re.search(r"python (stages/\w+\.py)", stage["cmd"])
    assert m, f"cmd {stage['cmd']!r} does not run a stages/*.py script"
    return ROOT / m.group(1)


def _code(stage: dict) -> set[str]:
    script = _script(stage)
    return {script.relative_to(ROOT).as_posix()} | {f.relative_to(ROOT).as_posix() for f in closure(script)}


def _covers(dep: str, path: str) -> bool:
    dep = dep.rstrip("/")
    return path == dep or path.startswith(dep + "/")


@pytest.mark.parametrize("name", sorted(STAGES))
def test_deps_cover_the_import_closure(name):
    stage = STAGES[name]
    missing = sorted(f for f in _code(stage) if not any(_covers(d, f) for d in stage["deps"]))
    assert not missing, f"{name}: runs these files but dvc.yaml does not list them (or a folder of them): {missing}"


@pytest.mark.parametrize("name", sorted(STAGES))
def test_no_code_dep_the_stage_does_not_run(name):
    stage = STAGES[name]
    code = _code(stage)
    unused = [d for d in stage["deps"] if d.startswith(("willis", "stages/")) and not any(_covers(d, f) for f in code)]
    assert not unused, f"{name}: code deps it never imports (an edit there reruns it for nothing): {unused}"


@pytest.mark.parametrize("name", ["calibrate@ct", "evaluate"])
def test_scoring_does_not_run_training_code(name):
    """An edit to willis/train/ retrains; it must not also re-evaluate through a code dep."""
    assert not [f for f in _code(STAGES[name]) if f.startswith("willis/train/")]
