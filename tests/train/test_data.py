"""Training data: labels joined to the store, localizer -> instance targets, bad series reported."""

import numpy as np
import pandas as pd
import pytest
import torch

from train_fixtures import build_family
from willis.labels import LABELS
from willis.train.data import load_family_data
from willis.train.loader import BatchSource, batches


@pytest.fixture(scope="module")
def fam(tmp_path_factory):
    return build_family(tmp_path_factory.mktemp("data"), "mr", n=16, size=16, k=4, channels=1)


def test_labels_modality_and_attention_targets(fam):
    d = load_family_data("mr", fam["store"], fam["index"])
    assert d.uids == fam["uids"] and not d.skipped
    t = fam["table"].set_index("SeriesInstanceUID").loc[d.uids]
    np.testing.assert_array_equal(d.y, t[list(LABELS)].to_numpy(dtype=np.float32))
    assert [d.vocab[i] for i in d.modality_id] == t["Modality"].tolist()
    # every localizer maps (via patient_to_view) to the slab that holds the blob
    for uid, k in fam["truth_instance"].items():
        i = d.uids.index(uid)
        assert d.attn_mask[i] and d.attn_target[i].argmax() == k and d.attn_target[i].sum() == 1
    neg = [i for i, u in enumerate(d.uids) if u not in fam["truth_instance"]]
    assert not d.attn_mask[neg].any()


def test_unusable_series_are_reported_not_dropped(fam, tmp_path):
    table = fam["table"].copy()
    extra = table.iloc[[0]].assign(SeriesInstanceUID="9.9.9")           # excluded upstream
    nolab = table.iloc[[1]].assign(SeriesInstanceUID=fam["uids"][1])
    table = pd.concat([table, extra], ignore_index=True)
    table.loc[table["SeriesInstanceUID"] == nolab["SeriesInstanceUID"].iloc[0], LABELS[0]] = -1
    index = tmp_path / "index"
    index.mkdir()
    table.to_parquet(index / "series.parquet")
    fam["localizers"].to_parquet(index / "localizers.parquet")
    d = load_family_data("mr", fam["store"], index)
    assert "not in the projection store" in d.skipped["9.9.9"]
    assert "no labels" in d.skipped[fam["uids"][1]]
    assert len(d.uids) == len(fam["uids"]) - 1


def test_smoke_subset_and_zarr_rows_equal_ram_rows(fam):
    d = load_family_data("mr", fam["store"], fam["index"], smoke=True)
    assert set(d.uids) == set(fam["table"].loc[fam["table"]["smoke"], "SeriesInstanceUID"])
    streamed = load_family_data("mr", fam["store"], fam["index"], smoke=True, ram_limit_gb=0.0)
    assert streamed.mip is None  # over the RAM limit: rows come from Zarr per batch
    idx = np.array([3, 0, 2])
    for a, b in zip(BatchSource(d).rows(idx), BatchSource(streamed).rows(idx)):
        np.testing.assert_array_equal(a, b)
    got = list(batches(BatchSource(streamed), idx, 2, torch.device("cpu")))
    assert [len(b["idx"]) for b in got] == [2, 1]
    np.testing.assert_allclose(got[0]["mip"].numpy(), d.mip[idx[:2]] / 255.0, rtol=1e-6)
    assert got[0]["instances"].dtype == torch.float32
    no_inst = BatchSource(d, need_instances=False).rows(idx)[1]
    assert no_inst.shape == (3, 0) + d.mip.shape[2:]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the GPU-resident loader)")
def test_gpu_resident_batches_equal_host_batches(fam):
    d = load_family_data("mr", fam["store"], fam["index"])
    dev = torch.device("cuda")
    resident = BatchSource(d, device=dev)
    assert resident.resident is not None
    idx = np.array([3, 0, 2])
    for a, b in zip(batches(resident, idx, 2, dev), batches(BatchSource(d), idx, 2, dev)):
        torch.testing.assert_close(a["mip"], b["mip"])
        torch.testing.assert_close(a["instances"], b["instances"])


def test_cpu_device_never_goes_resident(fam):
    d = load_family_data("mr", fam["store"], fam["index"])
    assert BatchSource(d, device=torch.device("cpu")).resident is None
