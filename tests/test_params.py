"""params.yaml goes through one typed door: unknown or ill-typed keys fail with the key's name."""

from pathlib import Path

import pytest
import yaml

from willis.params import ParamsError, load

ROOT = Path(__file__).resolve().parents[1]


def _write(tmp_path, data):
    p = tmp_path / "params.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_repo_params_load():
    p = load(ROOT / "params.yaml")
    assert p.families == ("ct", "mr")
    assert p.smoke is False
    # frozen: nothing deep in the code can change a knob behind the params file's back
    with pytest.raises(AttributeError):
        p.seed = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    "path, value, message",
    [
        (("train", "ct", "lr"), "fast", "train.ct.lr: expected float, got str"),
        (("project", "size"), 12.5, "project.size: expected int, got float"),
        (("smoke",), "yes", "smoke: expected bool"),
        (("calibrate", "gate"), 1, "calibrate.gate: expected bool"),
        (("train", "mr", "model"), "resnet", "train.mr.model: expected one of"),
        (("train", "ct", "input_size"), "big", "train.ct.input_size: expected int or null, got str"),
        (("train", "mr", "heatmap"), "yes", "train.mr.heatmap: expected bool"),
        (("families",), ["ct", "pet"], "families: unknown family 'pet'"),
    ],
)
def test_ill_typed_key_names_the_key(tmp_path, path, value, message):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    node = data
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    with pytest.raises(ParamsError, match=message.replace("(", r"\(")):
        load(_write(tmp_path, data))


def test_unknown_key_is_named(tmp_path):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["project"]["sizee"] = 3
    with pytest.raises(ParamsError, match=r"unknown key\(s\) project\.sizee"):
        load(_write(tmp_path, data))


def test_missing_section_is_named(tmp_path):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    del data["evaluate"]
    with pytest.raises(ParamsError, match="evaluate: missing"):
        load(_write(tmp_path, data))
