"""fine_cnn: coordinates by hand, left-right equivariance of the flip TTA, pooling, and crops whose
targets land on the planted sac under every augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from willis.labels import LABELS, PRESENT_INDEX, flip_permutation
from willis.models.fine import FineModel, mirror_series, pixel_coords, pool_3d, slab_coords, with_context
from willis.train.fine_crops import CropParams, make_batch

L_MCA = LABELS.index("Left Middle Cerebral Artery")


def test_coordinates_follow_the_store_conventions():
    # axial slab 0 of 4 is the most superior: z = 1 - 1/4; row 0 is the most anterior, col 0 the
    # patient's right (x ascending): pixel centres at -1 + (2i + 1) / F
    c = slab_coords(0, 4, 8)
    assert c.shape == (4, 3, 8, 8)
    assert torch.allclose(c[0, 2], torch.full((8, 8), 0.75))
    assert torch.allclose(c[3, 2], torch.full((8, 8), -0.75))
    assert torch.isclose(c[0, 1, 0, 5], torch.tensor(-0.875)) and torch.isclose(c[0, 0, 5, 0], torch.tensor(-0.875))
    assert torch.isclose(c[0, 0, 0, 7], torch.tensor(0.875))
    co = slab_coords(1, 4, 8)          # coronal: slab -> y ascending, rows -> z descending
    assert torch.isclose(co[0, 1, 3, 3], torch.tensor(-0.75)) and torch.isclose(co[0, 2, 0, 0], torch.tensor(0.875))
    sa = slab_coords(2, 4, 8)          # sagittal: slab -> x ascending, cols -> y ascending
    assert torch.isclose(sa[3, 0, 1, 1], torch.tensor(0.75)) and torch.isclose(sa[0, 1, 0, 7], torch.tensor(0.875))
    # a window reaching past the image continues the same linear coordinates
    w = pixel_coords(0, 4, 8, torch.tensor([1]), torch.arange(-2, 6.0).view(1, -1), torch.arange(4, 12.0).view(1, -1))
    assert torch.isclose(w[0, 1, 0, 0], torch.tensor(-1.0 + (2 * -2 + 1) / 8))
    assert torch.isclose(w[0, 0, 0, 7], torch.tensor(-1.0 + (2 * 11 + 1) / 8))


def test_mirror_is_an_involution_and_moves_sagittal_slabs():
    x = torch.rand(2, 3, 4, 2, 16, 16)
    assert torch.equal(mirror_series(mirror_series(x)), x)
    m = mirror_series(x)
    assert torch.equal(m[:, 2, 0], x[:, 2, 3]) and torch.equal(m[:, 0, 1, :, :, 0], x[:, 0, 1, :, :, -1])


def test_flip_tta_is_left_right_equivariant():
    """With TTA, the mirrored series' logits are the series' logits with Left/Right swapped: exactly
    what a patient mirror must do to the 14 labels (fails if the swap or the mirror is wrong)."""
    torch.manual_seed(0)
    model = FineModel(in_channels=2, n_modalities=2, n_slabs=4, size=32, width=8, stem=4, tta=True, context=1).eval()
    x = torch.rand(3, 3, 4, 2, 32, 32)
    ids = torch.tensor([0, 1, 0])
    with torch.no_grad():
        a = model(x, ids)["logits"]
        b = model(mirror_series(x), ids)["logits"]
        plain = model(x, ids, tta=False)["logits"]
    perm = torch.tensor(flip_permutation())
    assert torch.allclose(b, a[:, perm], atol=1e-5)
    assert not torch.allclose(plain, model(mirror_series(x), ids, tta=False)["logits"][:, perm], atol=1e-5)


def test_pool_3d_adds_the_three_views_at_one_3d_point():
    """Each cell of the (z, y, x) grid reads the axial slab holding its z, the coronal slab holding
    its y and the sagittal slab holding its x: a blob seen by all three at one point wins over a
    stronger spike seen by one view only (a vessel crossing a slab)."""
    maps = torch.full((1, 3, 2, 14, 4, 4), -5.0)           # K = 2 slabs, 4 cells per side: slab = cell // 2
    z, y, x = 1, 2, 3                                       # z counts from the top (rows of coronal/sagittal)
    maps[0, 0, z // 2, 3, y, x] = 3.0                       # axial: slab of z, (row y, col x)
    maps[0, 1, y // 2, 3, z, x] = 3.0                       # coronal: slab of y, (row z, col x)
    maps[0, 2, x // 2, 3, z, y] = 3.0                       # sagittal: slab of x, (row z, col y)
    maps[0, 0, 1, 5, 0, 0] = 6.0                            # label 5: one view only
    pooled = pool_3d(maps)
    assert torch.isclose(pooled[0, 3], torch.tensor(3.0))
    assert torch.isclose(pooled[0, 5], torch.tensor((6.0 - 5.0 - 5.0) / 3))
    assert torch.isclose(pooled[0, 0], torch.tensor(-5.0))
    assert torch.equal(FineModel.pool(maps), pooled)


def test_context_stacks_neighbouring_slabs_nearest_first():
    x = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 1, 2, 2)   # slab k holds the value k
    c = with_context(x, 1)                                        # (3, 3, 2, 2): [k, k-1, k+1]
    assert c.shape == (3, 3, 2, 2)
    assert c[1, :, 0, 0].tolist() == [1.0, 0.0, 2.0]
    assert c[0, :, 0, 0].tolist() == [0.0, 0.0, 1.0] and c[2, :, 0, 0].tolist() == [2.0, 1.0, 0.0]   # zeros past the box


def _disc_series(point_rc=(40.0, 52.0), slab=1, axis=0, f=96, k=3):
    """One series whose ``axis`` slab ``slab`` holds a bright disc (radius 5 px) at ``point_rc``."""
    fine = np.zeros((1, 3, k, 2, f, f), np.uint8)
    rr, cc = np.mgrid[0:f, 0:f]
    disc = (rr - point_rc[0]) ** 2 + (cc - point_rc[1]) ** 2 <= 25
    fine[0, axis, slab, :, disc] = 255
    pts = np.full((1, 2, 10), -1.0, np.float32)
    row = np.full(10, np.nan, np.float32)
    row[0] = L_MCA
    row[1 + 3 * axis: 4 + 3 * axis] = (slab, *point_rc)
    pts[0, 0] = row
    return fine, pts


@pytest.mark.parametrize("rotate_deg", [15.0, 180.0])   # 180: CT's crop_rotate_deg, any turn of the crop
def test_crop_targets_land_on_the_sac_and_coordinates_follow_it(rotate_deg):
    """Under rotation, zoom, shift and mirroring, the target peak sits on the disc's pixels, the
    x coordinate there is the disc's (negated when mirrored) and Left becomes Right when mirrored."""
    f, k = 96, 3
    fine, pts = _disc_series(f=f, k=k)
    p = CropParams(size=48, pos_frac=1.0, jitter=0.25, blur_p=0.0, noise=0.0, gain=0.0, gamma=0.0, context=1,
                   rotate_deg=rotate_deg)
    true_x = -1 + (2 * 52.0 + 1) / f
    seen_flip = seen_plain = 0
    for seed in range(12):
        rng = np.random.default_rng(seed)
        gen = torch.Generator().manual_seed(seed)
        b = None
        for _ in range(20):   # the axis is random: draw until the crop is on the disc's axis
            b = make_batch(fine, pts, np.ones(1, bool), np.zeros(1, np.int64), np.zeros(1, np.int64), p, rng, gen,
                           torch.device("cpu"))
            if b["plan"][0, 1] == 0:
                break
        assert b["plan"][0, 1] == 0 and b["plan"][0, 2] == 1
        t = b["target"][0]                                         # (14, 12, 12)
        present = t[PRESENT_INDEX]
        assert present.max() == 1.0
        r, c = divmod(int(present.argmax()), present.shape[1])
        cell = b["image"][0, 0, 4 * r:4 * r + 4, 4 * c:4 * c + 4]
        assert cell.max() > 0.9, f"seed {seed}: target cell ({r}, {c}) is not on the disc"
        assert b["image"].shape[1] == 6 and float(b["image"][0, 2:].max()) == 0.0   # neighbour slabs hold no disc
        x_here = float(b["coords"][0, 0, 4 * r:4 * r + 4, 4 * c:4 * c + 4].mean())
        flipped = bool(torch.isclose(t[L_MCA].max(), torch.tensor(0.0)))
        right = flip_permutation()[L_MCA]
        if flipped:
            seen_flip += 1
            assert t[right].max() == 1.0
            assert abs(x_here + true_x) < 0.1
        else:
            seen_plain += 1
            assert abs(x_here - true_x) < 0.1
    assert seen_flip and seen_plain


def test_negative_crops_have_empty_targets():
    fine, pts = _disc_series()
    pts[:] = -1
    p = CropParams(size=48)
    b = make_batch(fine, pts, np.ones(1, bool), np.zeros(1, np.int64), np.zeros(4, np.int64), p,
                   np.random.default_rng(0), torch.Generator().manual_seed(0), torch.device("cpu"))
    assert b["image"].shape == (4, 2, 48, 48) and b["target"].shape == (4, 14, 12, 12)
    assert float(b["target"].max()) == 0.0


def test_routed_net_reads_each_image_with_its_groups_network():
    """``groups``: every image goes to the network of its sub-modality's group, in a batch of one
    series or of several mixed; a partition missing an id is refused."""
    from willis.models.fine import RoutedNet

    torch.manual_seed(0)
    model = FineModel(in_channels=2, n_modalities=3, n_slabs=3, size=32, width=4, stem=4, tta=False,
                      groups=[[0], [1, 2]]).eval()
    assert isinstance(model.net, RoutedNet) and len(model.net.members) == 2
    a, b = model.net.members
    for m in (a, b):   # distinct weights, so a wrong route shows
        for t in m.parameters():
            t.data.normal_(0, 0.2)
    x = torch.rand(5, 2, 32, 32)
    coords = torch.rand(5, 3, 32, 32)
    ids = torch.tensor([1, 0, 2, 0, 1])
    with torch.no_grad():
        mixed = model.net(x, coords, ids)
        want = torch.stack([(a if i == 0 else b)(x[j:j + 1], coords[j:j + 1], ids[j:j + 1])[0]
                            for j, i in enumerate(ids.tolist())])
        assert torch.allclose(mixed, want, atol=1e-5)
        assert torch.equal(model.net(x[:2], coords[:2], torch.tensor([2, 2])), b(x[:2], coords[:2], torch.tensor([2, 2])))
        assert not torch.allclose(a(x, coords, ids), b(x, coords, ids))
    with pytest.raises(ValueError, match="in no group"):
        FineModel(in_channels=2, n_modalities=3, n_slabs=3, size=32, groups=[[0], [1]])


def test_grouped_fine_model_checkpoint_round_trip(tmp_path):
    """Groups named in params become modality ids in meta.json's arch; a saved grouped model
    reloads to the same logits (both networks kept)."""
    from willis.models.checkpoint import arch_from_params, build_model, load_model, save_model
    from willis.params.train import TrainParams

    p = TrainParams(model="fine_cnn", width=4, stem=4, groups=(("MRA",), ("MRI T2", "MRI T1post")))
    arch = arch_from_params(p, 2, 3, (3, 32), ["MRA", "MRI T2", "MRI T1post"])
    assert arch["kwargs"]["groups"] == [[0], [1, 2]]
    assert "groups" not in arch_from_params(TrainParams(model="fine_cnn"), 2, 3, (3, 32))["kwargs"]  # one network: as before
    torch.manual_seed(1)
    model = build_model(arch).eval()
    meta = {"family": "mr", "arch": arch, "labels": list(LABELS), "modalities": ["MRA", "MRI T2", "MRI T1post"],
            "channels": ["a", "b"], "size": 32, "instances": 3, "params": {}, "data_hash": "x", "prior": {}}
    save_model(tmp_path, model, meta)
    loaded, _ = load_model(tmp_path)
    fine = torch.rand(3, 3, 3, 2, 32, 32)
    ids = torch.tensor([0, 1, 2])
    with torch.no_grad():
        assert torch.equal(model(fine, ids)["logits"], loaded.eval()(fine, ids)["logits"])
