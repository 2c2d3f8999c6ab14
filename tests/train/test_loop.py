"""A 2-epoch CPU training on a tiny store runs end to end, is deterministic, and reloads exactly."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from train_fixtures import build_family, location_pixel
from willis.labels import LABELS, LOCATIONS
from willis.models.checkpoint import load_model
from willis.params import load
from willis.projections import read
from willis.models.infer import heat_maps_for, infer_arrays, logits_for
from willis.models.logits import LOGIT_COLUMNS
from willis.train.loop import train_family

ROOT = Path(__file__).resolve().parents[2]


def _params(family, **over):
    """The family's section of params.yaml, made small."""
    p = load(ROOT / "params.yaml")
    small = dict(epochs=2, batch_size=4, width=4, embed_dim=16, attn_dim=8, threads=1, device="cpu",
                 input_size=None)
    return dataclasses.replace(getattr(p.train, family), **{**small, **over})


def _train(tp, store, index, model_dir, report_dir):
    """The stage's call (stages/train.py) for family mr, seed 7, not smoke."""
    return train_family(tp, family="mr", store_path=store, index_dir=index, model_dir=model_dir,
                        report_dir=report_dir, seed=7, smoke=False)


@pytest.fixture(scope="module")
def fam(tmp_path_factory):
    return build_family(tmp_path_factory.mktemp("loop"), "mr", n=16, size=16, k=4, channels=2)


@pytest.mark.parametrize("model", ["mil", "mip_cnn"])
def test_two_epochs_end_to_end_and_reload(fam, tmp_path, model):
    params = _params("mr", model=model, aux_attention_weight=0.5)
    out, rep = tmp_path / "models" / "mr", tmp_path / "reports" / "mr"
    s = _train(params, fam["store"], fam["index"], out, rep)
    assert s["epochs_run"] == 2 and 1 <= s["best_epoch"] <= 2
    meta = json.loads((out / "meta.json").read_text())
    assert meta["modalities"] == ["MRA", "MRI T2", "MRI T1post"] and meta["instances"] == 4
    assert meta["arch"]["name"] == model and len(meta["prior"]) == len(LABELS)
    val = pd.read_parquet(out / "val_logits.parquet")
    assert list(val.columns) == ["SeriesInstanceUID", "Modality", *LABELS, *LOGIT_COLUMNS]
    assert set(val["SeriesInstanceUID"]) == set(fam["table"].query("split == 'val'")["SeriesInstanceUID"])
    metrics = json.loads((rep / "metrics.json").read_text())
    assert "score" in metrics["val"] and metrics["best_epoch"] == s["best_epoch"]
    assert (rep / "plots" / "metrics" / "train" / "loss.tsv").is_file()

    # the checkpoint alone reproduces the validation logits (batch size differs: BN is in eval mode)
    uids = val["SeriesInstanceUID"].tolist()
    df = logits_for(out, fam["store"], uids, batch_size=3, device="cpu")
    np.testing.assert_allclose(df[LOGIT_COLUMNS].to_numpy(), val[LOGIT_COLUMNS].to_numpy(), rtol=1e-5, atol=1e-5)
    again = logits_for(out, fam["store"], uids, batch_size=3, device="cpu")
    np.testing.assert_array_equal(df[LOGIT_COLUMNS].to_numpy(), again[LOGIT_COLUMNS].to_numpy())
    # one in-memory series (predict's path) gives the same logits
    m, meta = load_model(out)
    a = read(fam["store"], uids[0])
    z = infer_arrays(m, meta, a["mip"], a["instances"], val["Modality"].iloc[0])
    np.testing.assert_allclose(z, df[LOGIT_COLUMNS].to_numpy()[0], rtol=1e-5, atol=1e-5)


def test_deterministic_on_cpu(fam, tmp_path):
    params = _params("mr", model="mip_cnn")
    for run in ("a", "b"):
        _train(params, fam["store"], fam["index"], tmp_path / run, tmp_path / f"rep_{run}")
    sa = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    sb = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    va = pd.read_parquet(tmp_path / "a" / "val_logits.parquet")
    vb = pd.read_parquet(tmp_path / "b" / "val_logits.parquet")
    pd.testing.assert_frame_equal(va, vb)


def test_no_validation_series_is_an_error_naming_the_family(fam, tmp_path):
    table = fam["table"].assign(split="train")
    index = tmp_path / "index"
    index.mkdir()
    table.to_parquet(index / "series.parquet")
    fam["localizers"].to_parquet(index / "localizers.parquet")
    with pytest.raises(ValueError, match="mr: .* 0 validation"):
        _train(_params("mr", model="mip_cnn"), fam["store"], index, tmp_path / "m", tmp_path / "r")


def test_heat_maps_learn_where_the_blob_is(tmp_path):
    """A few epochs on a store whose positives carry a blob at their localizer: the heat loss falls,
    the labels are learnt, and the axial Present map's strongest cell is the blob's cell for most
    validation positives (chance: 1 in 16 cells)."""
    fam = build_family(tmp_path / "data", "mr", n=64, size=32, k=4, channels=1, amplitude=0.9, noise=0.1,
                       val_fraction=0.3)
    params = _params("mr", model="mip_cnn", epochs=10, patience=10, lr=3e-3, width=8, batch_size=8)
    s = _train(params, fam["store"], fam["index"], tmp_path / "m", tmp_path / "r")
    h = s["history"]
    assert h[-1]["heat_loss"] < 0.25 * h[0]["heat_loss"]
    assert s["val_score"] > 0.8
    val = fam["table"].query("split == 'val'")
    pos = [u for u in val["SeriesInstanceUID"] if u in fam["truth_instance"]]
    maps = heat_maps_for(tmp_path / "m", fam["store"], pos, dict(zip(val["SeriesInstanceUID"], val["Modality"])),
                         device="cpu")                                  # (n, 3, 4, 4)
    loc = fam["localizers"].set_index("SeriesInstanceUID")
    hits = 0
    for uid, m in zip(pos, maps):
        r, c = location_pixel(LOCATIONS.index(loc.loc[uid, "location"]), 32)
        peak = np.unravel_index(m[0].argmax(), m[0].shape)
        hits += peak == (r // 8, c // 8)
    assert hits >= 0.6 * len(pos), (hits, len(pos))
