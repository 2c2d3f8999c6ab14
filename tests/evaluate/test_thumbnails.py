"""Worst-series thumbnails: the model's heat map and the annotated aneurysms drawn over the MIPs."""

import numpy as np
import pandas as pd
import torch
from PIL import Image

from train_fixtures import build_family
from willis.evaluate.run import write_thumbnails
from willis.labels import LABELS, modality_vocab
from willis.models.checkpoint import arch_from_params, build_model, save_model
from willis.params.train import TrainParams
from willis.models.infer import heat_maps_for


def _save(tmp_path, heatmap: bool):
    p = TrainParams(model="mip_cnn", width=4, embed_dim=8, input_size=None, heatmap=heatmap)
    arch = arch_from_params(p, in_channels=1, n_modalities=3)
    torch.manual_seed(0)
    d = tmp_path / ("heat" if heatmap else "plain") / "mr"
    save_model(d, build_model(arch).eval(), {
        "family": "mr", "arch": arch, "labels": list(LABELS), "modalities": modality_vocab("mr"),
        "channels": ["c0"], "size": 32, "instances": 4, "params": {}, "data_hash": "x",
        "prior": {n: 0.1 for n in LABELS}})
    return d


def test_heat_maps_and_circles_in_the_thumbnails(tmp_path):
    fam = build_family(tmp_path, "mr", n=8, size=32, k=4, channels=1)
    pos = list(fam["truth_instance"])[:2]
    mods = dict(zip(fam["table"]["SeriesInstanceUID"], fam["table"]["Modality"]))
    assert heat_maps_for(_save(tmp_path, False), fam["store"], pos, mods) is None  # no heat head
    model_dir = _save(tmp_path, True)
    maps = heat_maps_for(model_dir, fam["store"], pos, mods)
    assert maps.shape == (2, 3, 4, 4) and (maps > 0).all() and (maps < 1).all()
    one = heat_maps_for(model_dir, fam["store"], pos[1:], mods)
    np.testing.assert_allclose(one[0], maps[1], rtol=1e-5, atol=1e-6)  # eval mode: batch-independent

    worst = pd.DataFrame({"SeriesInstanceUID": pos, "Modality": [mods[u] for u in pos], "family": "mr",
                          "truth": 1, "p_present": 0.1})
    plain = write_thumbnails(worst, fam["store"].parent, tmp_path / "plain_thumbs")
    drawn = write_thumbnails(worst, fam["store"].parent, tmp_path / "thumbs", models=model_dir.parent,
                             index_dir=fam["index"])
    assert len(drawn) == 2 and all(drawn)
    for a, b in zip(plain, drawn):
        rgb = np.asarray(Image.open(b).convert("RGB")).astype(int)
        gray = np.asarray(Image.open(a).convert("RGB")).astype(int)
        assert rgb.shape == gray.shape
        cyan = (rgb[..., 0] < 80) & (rgb[..., 1] > 180) & (rgb[..., 2] > 180)
        assert cyan.sum() > 20 and not ((gray[..., 0] < 80) & (gray[..., 1] > 180)).any()
