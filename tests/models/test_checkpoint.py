"""Models: attention is a distribution, MIL is order-free, checkpoints round-trip exactly."""

import json

import pytest
import torch

from willis.labels import LABELS, modality_vocab
from willis.models.checkpoint import arch_from_params, build_model, load_model, save_model
from willis.models.mil import AttentionMIL
from willis.models.mip_cnn import MipCNN
from willis.params.train import TrainParams

B, K, C, S = 3, 5, 2, 32  # tiny shapes; input_size=None: no resize


def _inputs(seed=0, k=K):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(B, 3, C, S, S, generator=g), torch.rand(B, k, C, S, S, generator=g),
            torch.tensor([0, 1, 2]))


@pytest.mark.parametrize("include_mips", [True, False])
def test_attention_sums_to_one(include_mips):
    torch.manual_seed(0)
    model = AttentionMIL(C, n_modalities=3, width=4, embed_dim=8, include_mips=include_mips).eval()
    out = model(*_inputs())
    assert out["logits"].shape == (B, len(LABELS))
    assert out["attention"].shape == (B, K)
    assert (out["attention"] >= 0).all()
    torch.testing.assert_close(out["attention"].sum(1), torch.ones(B))


@pytest.mark.parametrize("heatmap", [False, True])
def test_mil_invariant_to_instance_order(heatmap):
    torch.manual_seed(0)
    model = AttentionMIL(C, n_modalities=3, width=4, embed_dim=8, heatmap=heatmap).eval()
    mip, inst, mod = _inputs()
    perm = torch.tensor([3, 0, 4, 1, 2])
    a, b = model(mip, inst, mod), model(mip, inst[:, perm], mod)
    torch.testing.assert_close(a["logits"], b["logits"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a["attention"][:, perm], b["attention"], rtol=1e-5, atol=1e-6)
    if heatmap:  # one map per slab and view, at stride 8, following the slabs' order
        assert a["heat_instances"].shape == (B, K, len(LABELS), S // 8, S // 8)
        assert a["heat_views"].shape == (B, 3, len(LABELS), S // 8, S // 8)
        torch.testing.assert_close(a["heat_instances"][:, perm], b["heat_instances"])
    # but not invariant to the content: changing one instance changes the output
    inst2 = inst.clone()
    inst2[:, 0] = 1.0
    assert not torch.allclose(model(mip, inst2, mod)["logits"], a["logits"])


def test_modality_is_an_input():
    torch.manual_seed(0)
    model = AttentionMIL(C, n_modalities=3, width=4, embed_dim=8).eval()
    mip, inst, _ = _inputs()
    a = model(mip, inst, torch.tensor([0, 0, 0]))["logits"]
    b = model(mip, inst, torch.tensor([2, 2, 2]))["logits"]
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("heatmap", [False, True])
def test_mip_cnn_reads_only_the_mips(heatmap):
    torch.manual_seed(0)
    model = MipCNN(C, n_modalities=1, width=4, embed_dim=8, heatmap=heatmap).eval()
    mip, inst, _ = _inputs()
    mod = torch.zeros(B, dtype=torch.long)
    full = model(mip, inst, mod)
    none = model(mip, inst[:, :0], mod)  # instances may be a (B, 0, ...) placeholder
    torch.testing.assert_close(full["logits"], none["logits"])
    torch.testing.assert_close(full["attention"], torch.full((B, K), 1 / K))


@pytest.mark.parametrize("kind", ["mil", "mip_cnn"])
def test_checkpoint_round_trip(tmp_path, kind):
    p = TrainParams(model=kind, width=4, embed_dim=8)
    arch = arch_from_params(p, in_channels=C, n_modalities=3)
    torch.manual_seed(0)
    model = build_model(arch).eval()
    meta = {"family": "mr", "arch": arch, "labels": list(LABELS), "modalities": modality_vocab("mr"),
            "channels": ["a", "b"], "size": S, "instances": K, "params": {}, "data_hash": "x",
            "prior": {n: 0.1 for n in LABELS}}
    save_model(tmp_path, model, meta)
    state = torch.load(tmp_path / "model.pt", weights_only=True)  # plain tensors, no pickled code
    assert set(state) == set(model.state_dict())
    loaded, meta2 = load_model(tmp_path, "cpu")
    assert not loaded.training
    assert meta2["arch"] == json.loads(json.dumps(arch))
    x = _inputs()
    torch.testing.assert_close(loaded(*x)["logits"], model(*x)["logits"], rtol=0, atol=0)


def test_meta_label_order_is_checked(tmp_path):
    p = TrainParams(model="mil", input_size=64, width=4, embed_dim=8)
    arch = arch_from_params(p, in_channels=C, n_modalities=1)
    meta = {"family": "ct", "arch": arch, "labels": list(reversed(LABELS)), "modalities": ["CTA"],
            "channels": ["a", "b"], "size": S, "instances": K, "params": {}, "data_hash": "x", "prior": {}}
    with pytest.raises(ValueError, match="label order"):
        save_model(tmp_path, build_model(arch), meta)


def test_resize_is_area_mean_and_never_upsamples():
    from willis.models.backbone import resize

    x = torch.rand(2, 3, 16, 16)
    ref = x.numpy().reshape(2, 3, 8, 2, 8, 2).mean(axis=(3, 5))  # 2 x 2 block means
    torch.testing.assert_close(resize(x, 8), torch.from_numpy(ref))
    assert resize(x, 32) is x and resize(x, None) is x
