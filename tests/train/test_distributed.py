"""DDP on CPU (gloo): 2 processes train a few steps on different shards and end with identical weights."""

import numpy as np
import torch
import torch.multiprocessing as mp

from train_fixtures import build_family
from willis.labels import LABELS
from willis.models.checkpoint import arch_from_params, build_model
from willis.params.train import TrainParams
from willis.train import distributed
from willis.train.augment import augment
from willis.train.data import load_family_data
from willis.train.loader import BatchSource, batches
from willis.train.losses import make_loss

WORLD = 2


def _worker(rank: int, tmp: str, store: str, index: str) -> None:
    torch.set_num_threads(1)
    info, device = distributed.setup(torch.device("cpu"), init_method=f"file://{tmp}/rendezvous",
                                     rank=rank, world=WORLD)
    torch.manual_seed(100 + rank)  # different initial weights per rank: DDP must broadcast rank 0's
    p = TrainParams(model="mil", width=4, embed_dim=8, attn_dim=4, batch_size=2, input_size=None)
    data = load_family_data("ct", store, index)
    model = build_model(arch_from_params(p, len(data.channels), len(data.vocab)))
    ddp = distributed.wrap(model, info, device)
    opt = torch.optim.AdamW(ddp.parameters(), lr=1e-2)
    loss_fn = make_loss(p, torch.ones(len(LABELS)), len(LABELS))
    order = distributed.shard(np.arange(len(data.uids)), info)
    np.save(f"{tmp}/order{rank}.npy", order)
    gen = torch.Generator().manual_seed(rank)  # different augmentation per rank
    for b in batches(BatchSource(data), order, p.batch_size, device):
        mip, inst, y, _ = augment(b["mip"], b["instances"], b["y"], p, gen)
        loss = loss_fn(ddp(mip, inst, b["modality_id"])["logits"], y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    distributed.sync_buffers(ddp, info)  # BN running stats: each rank's last forward saw its own shard
    torch.save(model.state_dict(), f"{tmp}/rank{rank}.pt")
    distributed.cleanup(info)


def test_two_ranks_end_with_identical_weights(tmp_path):
    fx = build_family(tmp_path / "data", "ct", n=9, size=16, k=3, channels=1)
    mp.spawn(_worker, args=(str(tmp_path), str(fx["store"]), str(fx["index"])), nprocs=WORLD, join=True)
    o0, o1 = np.load(tmp_path / "order0.npy"), np.load(tmp_path / "order1.npy")
    assert len(o0) == len(o1) == 5                       # 9 series: padded to 10, 5 steps' worth each
    assert set(o0) | set(o1) == set(range(9))            # together they cover the epoch
    s0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    s1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    fresh = build_model(arch_from_params(TrainParams(model="mil", width=4, embed_dim=8, attn_dim=4, input_size=None), 1, 1)).state_dict()
    moved = False
    for k in s0:
        torch.testing.assert_close(s0[k], s1[k], rtol=0, atol=0, msg=k)
        moved |= s0[k].shape == fresh[k].shape and not torch.equal(s0[k], fresh[k])
    assert moved  # they trained (not merely two untouched copies)


def test_shard_without_torchrun_is_identity():
    order = np.array([4, 2, 7])
    assert np.array_equal(distributed.shard(order, distributed.DistInfo()), order)
    info, dev = distributed.setup(torch.device("cpu"))
    assert not info.enabled and dev.type == "cpu"
