"""A 2-epoch CPU training on a tiny store runs end to end, is deterministic, and reloads exactly."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from train_fixtures import build_family
from willis.labels import LABELS
from willis.models.checkpoint import load_model
from willis.params import load
from willis.projections import read
from willis.train.infer import LOGIT_COLUMNS, infer_arrays, logits_for
from willis.train.loop import train_family

ROOT = Path(__file__).resolve().parents[1]


def _params(family, **over):
    p = load(ROOT / "params.yaml")
    tp = dataclasses.replace(getattr(p.train, family), epochs=2, batch_size=4, width=4, embed_dim=16,
                             attn_dim=8, threads=1, device="cpu", input_size=None, **over)
    return dataclasses.replace(p, smoke=False, seed=7, train=dataclasses.replace(p.train, **{family: tp}))


@pytest.fixture(scope="module")
def fam(tmp_path_factory):
    return build_family(tmp_path_factory.mktemp("loop"), "mr", n=16, size=16, k=4, channels=2)


@pytest.mark.parametrize("model", ["mil", "mip_cnn"])
def test_two_epochs_end_to_end_and_reload(fam, tmp_path, model):
    params = _params("mr", model=model, aux_attention_weight=0.5)
    out, rep = tmp_path / "models" / "mr", tmp_path / "reports" / "mr"
    s = train_family(params, "mr", fam["store"], fam["index"], out, rep)
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
    params = _params("mr")
    for run in ("a", "b"):
        train_family(params, "mr", fam["store"], fam["index"], tmp_path / run, tmp_path / f"rep_{run}")
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
        train_family(_params("mr"), "mr", fam["store"], index, tmp_path / "m", tmp_path / "r")
