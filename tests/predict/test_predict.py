"""willis.predict: the inference contract (shape, order, range, gating), bad series -> prior with a
status, CT/MR routing, a read-only folder, and instances identical to the project stage's store."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pydicom.dataset import Dataset

from willis import predict as P
from willis.predict.cli import main
from willis.calibration import Calibration
from willis.labels import CSV_COLUMNS, LABELS, LOCATIONS, PRESENT_INDEX, modality_vocab
from willis.models.checkpoint import arch_from_params, build_model, load_model, save_model
from willis.params.project import ProjectParams
from willis.params.train import TrainParams
from willis.synth.dicom_writer import geometry_for, sample_world, write_series
from willis.models.infer import infer_arrays

REPO = Path(__file__).resolve().parents[2]
# Tiny projections so a series projects in well under a second on a busy core.
PROJECT = ProjectParams(size=32, instances=4, grid=64, slab_bins=8, workers=1, montage_series=0)
PRIORS = {"ct": np.linspace(0.02, 0.55, len(LABELS)), "mr": np.linspace(0.50, 0.03, len(LABELS))}
UID = {"ct": "1.2.826.0.1.3680043.10.1.1", "mr": "1.2.826.0.1.3680043.10.1.2",
       "ct_bad1": "1.2.826.0.1.3680043.10.1.3", "ct_trunc": "1.2.826.0.1.3680043.10.1.4",
       "empty": "1.2.826.0.1.3680043.10.1.5", "nondicom": "1.2.826.0.1.3680043.10.1.6"}
N_SLICES = 20


# ------------------------------------------------------------------ tiny data, written with the real writers
def _head(modality: str):
    """A head phantom in LPS mm: skull shell (CT only), brain, a bright vessel loop (torus)."""
    def fn(x, y, z):
        r = np.sqrt(x**2 + y**2 + z**2)
        ring = np.sqrt((np.sqrt(x**2 + y**2) - 20.0) ** 2 + (z - 5.0) ** 2)
        if modality == "CT":
            v = np.where(r < 70, 35.0, -1000.0)
            v = np.where((r > 64) & (r < 70), 1000.0, v)   # bone
            return np.where(ring < 3.0, 350.0, v)           # contrast-filled artery
        v = np.where(r < 70, 200.0, 0.0)
        return np.where(ring < 3.0, 900.0, v)               # TOF-bright artery
    return fn


def write_phantom(folder: Path, uid: str, modality: str, **kw) -> list:
    g = geometry_for("axial", (0, 0, 0), fov_mm=180, n_slices=N_SLICES, matrix=40, slice_spacing=7.0)
    return write_series(sample_world(_head(modality), g), g, folder, modality=modality, series_uid=uid,
                        study_uid=uid + ".9", patient_id="P" + uid[-1],
                        intercept=-1024.0 if modality == "CT" else 0.0, signed=modality == "CT", **kw)


def make_bundle(out: Path, project: ProjectParams = PROJECT, gate: bool = True, alpha: float = 1.0) -> Path:
    """models/{ct,mr}: untrained tiny MIL models saved by the real checkpoint writer + calibration.json
    by the real Calibration writer; meta["project"] is the projection the model 'was trained on'."""
    from willis.projections.windows import channel_names

    tp = TrainParams(model="mil", input_size=64, width=4, embed_dim=8, attn_dim=4, modality_dim=2, dropout=0.0)
    for i, fam in enumerate(("ct", "mr")):
        channels = channel_names(fam, project.vesselness)
        arch = arch_from_params(tp, len(channels), len(modality_vocab(fam)))
        torch.manual_seed(i)
        model = build_model(arch)
        meta = {"family": fam, "arch": arch, "labels": list(LABELS), "modalities": modality_vocab(fam),
                "channels": channels, "size": project.size, "instances": project.instances,
                "params": dataclasses.asdict(tp), "data_hash": "test", "project": dataclasses.asdict(project),
                "prior": dict(zip(LABELS, map(float, PRIORS[fam])))}
        save_model(out / fam, model, meta)
        Calibration(family=fam, temperature=np.full(len(LABELS), 0.5), threshold=np.full(len(LABELS), 0.5),
                    alpha=alpha, gate=gate).save(out / fam / "calibration.json")
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """<tmp>/series/<uid>/: good CT and MR, one-slice-truncated CT, all-truncated CT, empty, non-DICOM."""
    root = tmp_path_factory.mktemp("rsna")
    series = root / "series"
    write_phantom(series / UID["ct"], UID["ct"], "CT")
    write_phantom(series / UID["mr"], UID["mr"], "MR", extra_tags={"SeriesDescription": "AX T2 FSE"})
    recs = write_phantom(series / UID["ct_bad1"], UID["ct_bad1"], "CT")
    _truncate(Path(recs[5].path))                          # one slice of 20: pixel data cut short
    for r in write_phantom(series / UID["ct_trunc"], UID["ct_trunc"], "CT"):
        _truncate(Path(r.path))                            # every slice cut: headers fine, pixels not
    (series / UID["empty"]).mkdir()
    (series / UID["nondicom"]).mkdir()
    for name in ("a.dcm", "b.dcm", "notes.txt"):
        (series / UID["nondicom"] / name).write_text("this is not DICOM\n" * 20)
    return root


def _truncate(path: Path, keep: float = 0.6) -> None:
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(int(size * keep))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("bundle") / "models")


def _predict(data: Path, key: str, bundle: Path) -> pd.DataFrame:
    return P.predict(str(data / "series" / UID[key]), models_dir=bundle, device="cpu")


# ------------------------------------------------------------------ MR sub-modality heuristic (pure)
def _ds(**tags) -> Dataset:
    ds = Dataset()
    for k, v in tags.items():
        setattr(ds, k, v)
    return ds


@pytest.mark.parametrize("tags, expected", [
    ({"SeriesDescription": "3D TOF COW"}, "MRA"),
    ({"ProtocolName": "MRA head"}, "MRA"),
    ({"SeriesDescription": "AX T2 FSE"}, "MRI T2"),
    ({"SeriesDescription": "T1 MPRAGE POST GAD"}, "MRI T1post"),
    ({"SeriesDescription": "T1 +C"}, "MRI T1post"),
    ({"AngioFlag": "Y", "EchoTime": "3.4"}, "MRA"),
    ({"EchoTime": "102", "RepetitionTime": "4000"}, "MRI T2"),
    ({"EchoTime": "3.1", "ContrastBolusAgent": "Gadovist"}, "MRI T1post"),
    ({"EchoTime": "3.1", "RepetitionTime": "25"}, "MRA"),
    ({}, "MRA"),
    ({"SeriesDescription": "AX FLAIR"}, "MRI T2"),
    # the label set has no pre-contrast T1: a T1-weighted series is MRI T1post, POST or not
    ({"SeriesDescription": "t1_fl2d_sag"}, "MRI T1post"),
    ({"ProtocolName": "SAG MPRAGE"}, "MRI T1post"),
    # AngioFlag N: the scanner says it is no angiogram; a long TE still makes it T2
    ({"AngioFlag": "N", "EchoTime": "2.46"}, "MRI T1post"),
    ({"AngioFlag": "N"}, "MRI T1post"),
    ({"AngioFlag": "N", "EchoTime": "95"}, "MRI T2"),
    ({"AngioFlag": "N", "SeriesDescription": "TOF 3D multi-slab"}, "MRA"),
])
def test_mr_submodality_rules(tags, expected):
    modality, why = P.mr_submodality(_ds(**tags))
    assert modality == expected
    assert why  # always says which rule decided


def test_real_sagittal_t1_is_predicted_as_t1post_not_mra(bundle):
    """A real Siemens sagittal T1 (``t1_fl2d_sag``, AngioFlag N, TE 2.46 ms; ../shared's fixture):
    ``predict`` reads its header and routes it as MRI T1post, the label set's T1-weighted class (the
    old rules fell through to the MRA default), and scores it (status ok, 14 probabilities)."""
    from oracles import real_fixture

    folder = real_fixture("mr-sagittal-t1-hfs")
    df = P.predict(str(folder), models_dir=bundle, device="cpu")
    assert df.attrs["family"] == "mr" and df.attrs["status"] == "ok", df.attrs
    assert df.attrs["modality"] == "MRI T1post", df.attrs
    values = df.to_numpy()
    assert values.shape == (1, len(LABELS)) and np.isfinite(values).all() and ((values >= 0) & (values <= 1)).all()


def test_mr_submodality_enhanced_echo_time():
    """Enhanced MR keeps EchoTime in SharedFunctionalGroupsSequence > MREchoSequence."""
    echo = _ds(EffectiveEchoTime=95.0)
    shared = Dataset()
    shared.MREchoSequence = [echo]
    ds = Dataset()
    ds.SharedFunctionalGroupsSequence = [shared]
    assert P.mr_submodality(ds)[0] == "MRI T2"


def test_models_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv(P.ENV_MODELS, raising=False)
    assert P.resolve_models_dir() == P.DEFAULT_MODELS
    monkeypatch.setenv(P.ENV_MODELS, str(tmp_path / "env"))
    assert P.resolve_models_dir() == (tmp_path / "env").resolve()
    assert P.resolve_models_dir(tmp_path / "arg") == (tmp_path / "arg").resolve()  # the argument wins


def test_missing_bundle_raises_bundle_error(tmp_path):
    with pytest.raises(P.BundleError, match="no model bundle"):
        P.load_bundle(tmp_path / "nothing", device="cpu")


# ------------------------------------------------------------------ the contract
@pytest.mark.parametrize("key", ["ct", "mr"])
def test_output_contract(data, bundle, key):
    df = _predict(data, key, bundle)
    assert df.shape == (1, 14)
    assert list(df.columns) == list(LABELS) == list(CSV_COLUMNS[4:])  # verbatim, train.csv order
    p = df.to_numpy()
    assert np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
    assert df.attrs["status"] == "ok" and df.attrs["reasons"] == []
    assert df.attrs["uid"] == UID[key]
    assert set(df.attrs["seconds"]) >= {"scan", "check", "project", "model", "total"}


@pytest.mark.parametrize("key", ["ct", "mr"])
def test_gating_keeps_locations_below_present(data, bundle, key):
    """alpha = 1 (>= 1 is what guarantees it): p_loc * p_present <= p_present."""
    p = _predict(data, key, bundle).to_numpy()[0]
    assert np.all(p[:PRESENT_INDEX] <= p[PRESENT_INDEX] + 1e-12)


def test_gating_off_can_exceed_present(data, tmp_path):
    """The same models without gating: locations are plain sigmoids, not bounded by Present.
    (Proves the previous test checks gating, not a property of these untrained models.)"""
    ungated = make_bundle(tmp_path / "models", gate=False)
    gated = make_bundle(tmp_path / "models_gated", gate=True, alpha=1.0)
    pu = _predict(data, "ct", ungated).to_numpy()[0]
    pg = _predict(data, "ct", gated).to_numpy()[0]
    np.testing.assert_allclose(pg[:PRESENT_INDEX], pu[:PRESENT_INDEX] * pu[PRESENT_INDEX], rtol=1e-9)
    assert pg[PRESENT_INDEX] == pytest.approx(pu[PRESENT_INDEX])


@pytest.mark.parametrize("key, family, modality", [("ct", "ct", "CTA"), ("mr", "mr", "MRI T2")])
def test_routes_to_the_family_model(data, bundle, monkeypatch, key, family, modality):
    """The family comes from the DICOM Modality tag; the probabilities are that family's model
    through that family's calibration (recomputed here independently of predict)."""
    import willis.models.infer as infer

    seen = []
    real = infer.infer_arrays
    monkeypatch.setattr(infer, "infer_arrays", lambda m, meta, *a, **k: seen.append((meta["family"], a[-1])) or real(m, meta, *a, **k))
    df = _predict(data, key, bundle)
    assert seen == [(family, modality)]
    assert (df.attrs["family"], df.attrs["modality"]) == (family, modality)

    model, meta = load_model(bundle / family, "cpu")
    prep = P.prepare(data / "series" / UID[key], lambda f: PROJECT)
    logits = real(model, meta, prep.projection.mip, prep.projection.instances, modality)
    expected = Calibration.load(bundle / family / "calibration.json").apply(logits[None])[0]
    np.testing.assert_allclose(df.to_numpy()[0], expected, rtol=1e-6)


def test_folder_name_does_not_choose_the_family(data, bundle, tmp_path):
    """An MR series in a folder whose name says CT still goes to the MR model."""
    import shutil

    odd = tmp_path / "CT_head_1.2.3"
    shutil.copytree(data / "series" / UID["mr"], odd)
    assert P.predict(str(odd), models_dir=bundle, device="cpu").attrs["family"] == "mr"


# ------------------------------------------------------------------ bad series: the prior, a status, no exception
@pytest.mark.parametrize("key, family", [("ct_trunc", "ct"), ("empty", None), ("nondicom", None)])
def test_bad_series_get_the_prior(data, bundle, caplog, key, family):
    with caplog.at_level("WARNING", logger="willis.predict"):
        df = _predict(data, key, bundle)
    assert df.attrs["status"] == "prior"
    assert df.attrs["family"] == family
    assert df.attrs["reasons"], "a prior must say why"
    expected = PRIORS[family] if family else (PRIORS["ct"] + PRIORS["mr"]) / 2  # unknown family: mean prior
    np.testing.assert_allclose(df.to_numpy()[0], expected)
    assert list(df.columns) == list(LABELS)
    assert any(UID[key] in r.getMessage() and "prior" in r.getMessage() for r in caplog.records)


def test_missing_folder_gets_the_prior(bundle, tmp_path):
    df = P.predict(str(tmp_path / "1.2.3.404"), models_dir=bundle, device="cpu")
    assert df.attrs["status"] == "prior" and "not a directory" in df.attrs["reasons"][-1]


def test_one_truncated_slice_is_partial_not_prior(data, bundle):
    """19 of 20 slices decode: a real prediction, flagged partial, with the file named."""
    df = _predict(data, "ct_bad1", bundle)
    assert df.attrs["status"] == "partial"
    assert df.attrs["family"] == "ct"
    assert not np.allclose(df.to_numpy()[0], PRIORS["ct"])
    assert any(".dcm" in r for r in df.attrs["reasons"])


def test_model_failure_gets_the_prior(data, bundle, monkeypatch):
    import willis.models.infer as infer

    def boom(*a, **k):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(infer, "infer_arrays", boom)
    df = _predict(data, "ct", bundle)
    assert df.attrs["status"] == "prior" and "simulated" in df.attrs["reasons"][-1]
    np.testing.assert_allclose(df.to_numpy()[0], PRIORS["ct"])


def _snapshot(folder: Path) -> dict:
    """Every entry under ``folder`` (itself included): mtime (a directory's changes when an entry is
    created or removed), size and content hash of files."""
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size,
                                         hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None)
            for p in [folder, *sorted(folder.rglob("*"))]}


def test_read_only_folder_is_left_untouched(data, bundle, tmp_path):
    """chmod -w (root ignores it, so the byte-level snapshot is the real check): nothing written."""
    import shutil

    folder = tmp_path / "ro" / UID["ct"]
    shutil.copytree(data / "series" / UID["ct"], folder)
    before = _snapshot(folder.parent)
    modes = {p: p.stat().st_mode for p in [folder, *folder.iterdir()]}
    for p in folder.iterdir():
        p.chmod(0o444)
    folder.chmod(0o555)
    try:
        df = P.predict(str(folder), models_dir=bundle, device="cpu")
    finally:
        for p, m in modes.items():
            p.chmod(m)
    assert df.attrs["status"] == "ok"
    assert _snapshot(folder.parent) == before


# ------------------------------------------------------------------ bundle loading
def test_bundle_is_loaded_once(bundle, monkeypatch):
    import willis.models.checkpoint as ckpt

    P.load_bundle(bundle, "cpu")
    monkeypatch.setattr(ckpt, "load_model", lambda *a, **k: pytest.fail("reloaded"))
    assert P.load_bundle(bundle, "cpu") is P.load_bundle(str(bundle) + "/", "cpu")


def test_env_var_selects_the_bundle(data, bundle, monkeypatch):
    monkeypatch.setenv(P.ENV_MODELS, str(bundle))
    df = P.predict(str(data / "series" / UID["ct"]), device="cpu")
    assert df.attrs["status"] == "ok"


def test_incomplete_bundle_names_the_file(tmp_path):
    models = make_bundle(tmp_path / "models")
    (models / "mr" / "calibration.json").unlink()
    with pytest.raises(P.BundleError, match="calibration.json"):
        P.load_bundle(models, "cpu")


# ------------------------------------------------------------------ CLI
def test_cli_json_lines_and_csv(data, bundle, tmp_path, capsys):
    dirs = [str(data / "series" / UID[k]) for k in ("ct", "mr", "empty")]
    out = tmp_path / "submission.csv"
    assert main([*dirs, "--models", str(bundle), "--device", "cpu", "--csv", str(out)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert [x["uid"] for x in lines] == [UID["ct"], UID["mr"], UID["empty"]]
    assert [x["status"] for x in lines] == ["ok", "ok", "prior"]
    assert all(list(x["probabilities"]) == list(LABELS) and x["seconds"] >= 0 for x in lines)
    table = pd.read_csv(out, dtype={"SeriesInstanceUID": str})
    assert list(table.columns) == ["SeriesInstanceUID", *LABELS]
    np.testing.assert_allclose(table.iloc[0, 1:].to_numpy(float), list(lines[0]["probabilities"].values()))


def test_cli_runs_as_module(data, bundle):
    """`python -m willis.predict` is the documented entry point."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    res = subprocess.run([sys.executable, "-m", "willis.predict", str(data / "series" / UID["mr"]),
                          "--models", str(bundle), "--device", "cpu"], capture_output=True, text=True, env=env,
                         timeout=120, cwd=REPO)
    assert res.returncode == 0, res.stderr
    (line,) = [json.loads(x) for x in res.stdout.splitlines()]
    assert line["uid"] == UID["mr"] and line["family"] == "mr" and line["status"] == "ok"


# ------------------------------------------------------------------ one code path with the pipeline
def test_instances_equal_the_project_stage_output(data, tmp_path):
    """index -> decode_check -> project, run by the stages' own library entry points on the tiny
    dataset, write a store; predict's path (bundle params from meta.json -> prepare) must give the
    very same uint8 MIPs and instances for the same series."""
    from willis.decode_check import run_decode_check
    from willis.index import build_index
    from willis.projections import read
    from willis.projections.executor import run_project

    root = data
    csv = pd.DataFrame([{"SeriesInstanceUID": UID[k], "PatientAge": 60, "PatientSex": "Female",
                         "Modality": m, **{lab: 0 for lab in LABELS}} for k, m in (("ct", "CTA"), ("mr", "MRI T2"))])
    csv[list(CSV_COLUMNS)].to_csv(tmp_path / "train.csv", index=False)
    # the stage reads <root>/train.csv: give it a root of its own that links to the same folders
    stage_root = tmp_path / "root"
    (stage_root / "series").mkdir(parents=True)
    for k in ("ct", "mr"):
        (stage_root / "series" / UID[k]).symlink_to(root / "series" / UID[k], target_is_directory=True)
    (stage_root / "train.csv").write_bytes((tmp_path / "train.csv").read_bytes())
    index = tmp_path / "index"
    build_index(stage_root, index, workers=1, val_fraction=0.0, test_fraction=0.0,
                smoke_sizes={"train": 0, "val": 0, "test": 0}, seed=0)
    report = tmp_path / "decode_check.json"
    run_decode_check(index, stage_root, report, tmp_path / "dc_metrics.json", workers=1, max_excluded_fraction=1.0)
    params = dataclasses.replace(PROJECT, out=str(tmp_path / "projections"), work=str(tmp_path / "work"))
    run_project(params, index_dir=index, decode_report=report, root=stage_root, families=("ct", "mr"), smoke=False,
                report_path=tmp_path / "project.json", montage_dir=None, code_root=REPO)

    bundle = P.load_bundle(make_bundle(tmp_path / "models", project=params), "cpu")
    for fam in ("ct", "mr"):
        stored = read(tmp_path / "projections" / f"{fam}.zarr", UID[fam])   # float32 = uint8 / 255
        prep = P.prepare(root / "series" / UID[fam], lambda f: bundle.families[f].project_params)
        assert prep.family == fam
        np.testing.assert_array_equal(prep.projection.instances.astype(np.float32) / 255.0, stored["instances"])
        np.testing.assert_array_equal(prep.projection.mip.astype(np.float32) / 255.0, stored["mip"])
        np.testing.assert_allclose(prep.projection.instance_z, stored["instance_z"])
        assert prep.projection.instances.any(), "an all-zero projection would make this test vacuous"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none here)")
def test_cuda_matches_cpu(data, bundle):
    """--device auto picks CUDA when present; bf16 autocast there, fp32 on CPU: same answer to ~1e-2."""
    gpu = P.predict(str(data / "series" / UID["ct"]), models_dir=bundle, device="auto")
    cpu = P.predict(str(data / "series" / UID["ct"]), models_dir=bundle, device="cpu")
    assert P.load_bundle(bundle, "auto").device == "cuda"
    assert gpu.attrs["status"] == "ok"
    np.testing.assert_allclose(gpu.to_numpy(), cpu.to_numpy(), atol=2e-2)


def test_kaggle_wrapper_is_import_safe_and_wraps_predict(data, bundle, tmp_path, monkeypatch):
    """kaggle/submission.py: importing starts nothing; its predict returns the 14 columns (pandas,
    no ID column) and empties the gateway's shared dir, as the competition's demo does."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("submission", REPO / "kaggle" / "submission.py")
    sub = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sub)                      # would fail if it imported kaggle_evaluation
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "leftover").write_text("x")
    monkeypatch.setattr(sub, "SHARED_DIR", str(shared))
    monkeypatch.setenv(P.ENV_MODELS, str(bundle))
    df = sub.predict(str(data / "series" / UID["mr"]))
    assert list(df.columns) == list(LABELS) and len(df) == 1
    assert not shared.exists()


def test_mr_submodality_odd_echo_times():
    """Several echoes: the first decides; an unreadable value falls through to the default."""
    from pydicom.multival import MultiValue
    from pydicom.valuerep import DSfloat

    ds = Dataset()
    ds.add_new("EchoTime", "DS", MultiValue(DSfloat, ["95", "12"]))
    assert P.mr_submodality(ds)[0] == "MRI T2"
    assert P.mr_submodality(_ds(EchoTime=""))[0] == "MRA"


def test_cli_broken_bundle_exits_2(data, tmp_path, caplog):
    assert main([str(data / "series" / UID["ct"]), "--models", str(tmp_path / "none"), "--device", "cpu"]) == 2
    assert "no model bundle" in caplog.text


def _rle_encoder_plugins() -> tuple:
    from pydicom.pixels import get_encoder
    from pydicom.uid import RLELossless

    return get_encoder(RLELossless).available_plugins


@pytest.mark.skipif("pylibjpeg" not in _rle_encoder_plugins(), reason="the synth writer's RLE encoder needs pylibjpeg-rle")
def test_enhanced_multiframe_twin_gives_the_same_answer(data, bundle, tmp_path):
    """The MR phantom as ONE Enhanced MR file (RLE-compressed, frames in random order) is the same
    series to predict: same family, same sub-modality (read from the Enhanced header), same output."""
    uid = "1.2.826.0.1.3680043.10.1.7"
    write_phantom(tmp_path / uid, uid, "MR", multiframe=True, encoding="rle", instance_numbers="random",
                  rng=np.random.default_rng(3), extra_tags={"SeriesDescription": "AX T2 FSE"})
    assert len(list((tmp_path / uid).iterdir())) == 1
    twin = P.predict(str(tmp_path / uid), models_dir=bundle, device="cpu")
    plain = _predict(data, "mr", bundle)
    assert (twin.attrs["status"], twin.attrs["family"], twin.attrs["modality"]) == ("ok", "mr", "MRI T2")
    np.testing.assert_allclose(twin.to_numpy(), plain.to_numpy(), rtol=1e-6)


def test_relative_and_dot_paths_keep_the_uid(data, bundle, monkeypatch):
    """`cd series/<uid> && predict .` : the UID is still the folder's name."""
    monkeypatch.chdir(data / "series" / UID["ct"])
    df = P.predict(".", models_dir=bundle, device="cpu")
    assert df.attrs["uid"] == UID["ct"] and df.attrs["status"] == "ok"
    monkeypatch.chdir(data)
    assert P.predict(f"series/{UID['mr']}/", models_dir=bundle, device="cpu").attrs["uid"] == UID["mr"]
