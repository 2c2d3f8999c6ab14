"""params.yaml goes through one typed door: unknown or ill-typed keys fail with the key's name."""

import dataclasses
import typing
from pathlib import Path

import pytest
import yaml

from willis.params import Params, ParamsError, load
from willis.params.train import FAMILY_DEFAULTS, TrainParams, TrainSection, family_defaults

ROOT = Path(__file__).resolve().parents[2]


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
        (("folds",), [1, 2], "folds: must list the fold ids 0..K-1"),
        (("folds",), [], "folds: must list the fold ids 0..K-1"),
        (("folds",), 5, "folds: expected"),
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


def _set_keys(cls, mapping: dict, prefix: str = ""):
    """(dotted key, dataclass field, value in params.yaml) for every key params.yaml sets, recursing
    into sections (a field whose type is itself a params dataclass)."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name not in mapping:
            continue
        if dataclasses.is_dataclass(hints[f.name]):
            yield from _set_keys(hints[f.name], mapping[f.name], f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", f, mapping[f.name]


def test_dataclass_defaults_are_the_params_yaml_values():
    """params.yaml is the one source of defaults: code that builds a section without the file
    (tests, benchmarks, predict's older checkpoints) gets exactly the pipeline's values."""
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    keys = list(_set_keys(Params, data))
    assert len(keys) > 100  # every section was walked (train.ct and train.mr alone set 90)
    def default(key, f):   # train.<family>.<knob>: the family's own (family_defaults)
        parts = key.split(".")
        return getattr(family_defaults(parts[1]), parts[2]) if parts[0] == "train" and len(parts) == 3 else f.default
    wrong = {key: (default(key, f), value) for key, f, value in keys
             if f.default is not dataclasses.MISSING
             and default(key, f) != (tuple(value) if isinstance(value, list) else value)}
    assert not wrong, f"dataclass default != params.yaml (key: (default, yaml)): {wrong}"
    no_default = [key for key, f, _ in keys if f.default is dataclasses.MISSING
                  and f.default_factory is dataclasses.MISSING]
    assert no_default == ["smoke", "seed", "families"]  # the run's own choices: params.yaml only


def test_family_defaults_are_the_sections_defaults():
    """TrainSection() (code without the file) gets each family's own values, and only known knobs differ."""
    section = TrainSection()
    for family in ("ct", "mr"):
        assert getattr(section, family) == family_defaults(family)
    assert section.ct.crop_rotate_deg == 180.0 and section.mr.crop_rotate_deg == TrainParams().crop_rotate_deg == 8.0
    names = {f.name for f in dataclasses.fields(TrainParams)}
    assert all(set(over) <= names for over in FAMILY_DEFAULTS.values())


def test_crop_rotation_range_is_checked(tmp_path):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["train"]["mr"]["crop_rotate_deg"] = 270.0
    with pytest.raises(ParamsError, match=r"train\.mr\.crop_rotate_deg: must be in \[0, 180\]"):
        load(_write(tmp_path, data))


@pytest.mark.parametrize("family", ["ct", "mr"])
def test_every_train_knob_is_in_params_yaml(family):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert list(data["train"][family]) == [f.name for f in dataclasses.fields(TrainParams)]


def test_index_read_limits_defaults_are_the_readers():
    """params/index.py repeats the reader's memory ceilings as numbers (params may not import dicom)."""
    from willis.dicom.limits import DEFAULT_LIMITS
    from willis.params.index import IndexParams

    p = IndexParams()
    assert (p.max_frame_bytes, p.max_pixel_bytes, p.max_frames) == (
        DEFAULT_LIMITS.max_frame_bytes, DEFAULT_LIMITS.max_pixel_bytes, DEFAULT_LIMITS.max_frames)


@pytest.mark.parametrize("groups, why", [
    ([["MRA"], ["MRI T2"]], r"\['MRI T1post'\] in no group"),
    ([["MRA", "MRI T2"], ["MRI T2", "MRI T1post"]], "a sub-modality is in two groups"),
    ([["MRA"], ["MRI T2", "MRI T1post", "CTA"]], r"\['CTA'\] are not sub-modalities of mr"),
    ([["MRA"], [], ["MRI T2", "MRI T1post"]], "a group may not be empty"),
])
def test_train_groups_must_partition_the_family(tmp_path, groups, why):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["train"]["mr"]["groups"] = groups
    with pytest.raises(ParamsError, match=r"train\.mr\.groups: " + why):
        load(_write(tmp_path, data))


def test_train_groups_are_a_fine_cnn_option(tmp_path):
    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    data["train"]["mr"].update(groups=[["MRA"], ["MRI T2", "MRI T1post"]], model="mip_cnn")
    with pytest.raises(ParamsError, match=r"train\.mr\.groups: one network per group is a fine_cnn option"):
        load(_write(tmp_path, data))
    data["train"]["mr"]["model"] = "fine_cnn"
    assert load(_write(tmp_path, data)).train.mr.groups == (("MRA",), ("MRI T2", "MRI T1post"))
