"""Is the Zarr loader the bottleneck? Training steps/s with the real loader / steps/s from memory.

Three ways to feed the same training steps (augment + forward + backward + AdamW), side by side in
one run, each repeated and reported as the median:

- ``memory``: the batches already materialised as float tensors on the device (the ceiling);
- ``ram``: the default loader: ``load_family_data`` reads the store whole (uint8) into RAM, batches
  are gathered there and converted on the device; the one-time bulk read is amortised over one
  epoch of steps and reported separately;
- ``zarr``: the streaming loader (``ram_limit_gb=0``): rows decoded from Zarr per batch, one batch
  ahead in a thread.

    python benchmarks/bench_loader.py                          # synthetic store in a temp dir
    python benchmarks/bench_loader.py --store data/projections/mr.zarr --index data/index --family mr
    python benchmarks/bench_loader.py --device cuda --batch-size 32 --input-size 0   # full S

Goal on a GPU: ratio >= 0.9 for ``ram`` (and ideally ``zarr``).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the synthetic store builder lives with the tests

from willis.labels import LABELS  # noqa: E402
from willis.models.checkpoint import arch_from_params, build_model  # noqa: E402
from willis.models.infer import resolve_device  # noqa: E402
from willis.params.train import TrainParams  # noqa: E402
from willis.train.data import load_family_data  # noqa: E402
from willis.train.loader import BatchSource, batches  # noqa: E402
from willis.train.losses import make_loss  # noqa: E402
from willis.train.loop import batch_loss  # noqa: E402


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_steps(model, opt, loss_fn, p, batch_iter, device, gen) -> float:
    """Time one pass of training steps over ``batch_iter``; returns steps/s."""
    _sync(device)
    t = time.perf_counter()
    n = 0
    for b in batch_iter:
        loss, _ = batch_loss(model, b, p, loss_fn, gen)  # the training loop's own step loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += 1
    _sync(device)
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", help="a projection store (default: a synthetic one in a temp dir)")
    ap.add_argument("--index", help="the index folder with series.parquet and localizers.parquet")
    ap.add_argument("--family", default="mr")
    ap.add_argument("--n", type=int, default=96, help="synthetic series when no --store")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--instances", type=int, default=12)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=6, help="training steps per timed pass")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--model", default="mil", choices=["mil", "mip_cnn"],
                    help="mil reads the K instances too: the heavier case for the loader")
    ap.add_argument("--input-size", type=int, default=64, help="model input size; 0: the store's S")
    ap.add_argument("--device", default="auto", help="auto: CUDA when available")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    tmp = None
    if args.store is None:
        from train_fixtures import build_family

        tmp = tempfile.TemporaryDirectory()
        fx = build_family(Path(tmp.name), args.family, n=args.n, size=args.size, k=args.instances,
                          channels=4, val_fraction=0.0)
        store, index = fx["store"], fx["index"]
    else:
        store, index = Path(args.store), Path(args.index)

    t = time.perf_counter()
    ram = load_family_data(args.family, store, index, ram_limit_gb=1e9)
    bulk_s = time.perf_counter() - t
    stream = load_family_data(args.family, store, index, ram_limit_gb=0.0)
    p = TrainParams(model=args.model, width=args.width, input_size=args.input_size or None,
                    batch_size=args.batch_size)
    torch.manual_seed(0)
    model = build_model(arch_from_params(p, len(ram.channels), len(ram.vocab))).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = make_loss(p, torch.ones(len(LABELS)), len(LABELS)).to(device)
    gen = torch.Generator(device=device).manual_seed(0)
    n_rows = args.steps * args.batch_size
    idx = np.random.default_rng(0).choice(len(ram.uids), size=n_rows, replace=n_rows > len(ram.uids))
    mil = args.model == "mil"
    src_ram, src_zarr = BatchSource(ram, need_instances=mil), BatchSource(stream, need_instances=mil)
    src_gpu = BatchSource(ram, need_instances=mil, device=device)  # the default on a GPU: uint8 family resident there
    in_memory = list(batches(src_ram, idx, args.batch_size, device, prefetch=False))  # the same batches

    run_steps(model, opt, loss_fn, p, iter(in_memory), device, gen)  # warm-up (allocator, kernels)
    rates = {"memory": [], "ram": [], "zarr": [], "resident": []}
    for _ in range(args.repeats):  # interleaved, so drifting machine load hits all three alike
        rates["memory"].append(run_steps(model, opt, loss_fn, p, iter(in_memory), device, gen))
        rates["ram"].append(run_steps(model, opt, loss_fn, p, batches(src_ram, idx, args.batch_size, device),
                                      device, gen))
        rates["zarr"].append(run_steps(model, opt, loss_fn, p, batches(src_zarr, idx, args.batch_size, device),
                                       device, gen))
        if src_gpu.resident is not None:
            rates["resident"].append(run_steps(model, opt, loss_fn, p,
                                               batches(src_gpu, idx, args.batch_size, device), device, gen))
    med = {k: statistics.median(v) for k, v in rates.items() if v}
    steps_per_epoch = max(1, len(ram.uids) // args.batch_size)
    ram_amortised = steps_per_epoch / (steps_per_epoch / med["ram"] + bulk_s)
    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}), "
          f"{len(ram.uids)} series, batch {args.batch_size}, S={ram.size}, K={ram.instances}, "
          f"C={len(ram.channels)}, model {args.model} (heat maps {p.heatmap}), input_size={args.input_size}, "
          f"width={args.width}, {args.steps} steps x "
          f"{args.repeats} repeats")
    print(f"steps/s  memory {med['memory']:.3f}   ram {med['ram']:.3f}   zarr {med['zarr']:.3f}")
    print(f"bulk read into RAM: {bulk_s:.2f} s ({ram.nbytes() / 2**20:.0f} MiB uint8)")
    print(f"ratio ram / memory  = {med['ram'] / med['memory']:.3f}")
    print(f"ratio ram (bulk read amortised over one {steps_per_epoch}-step epoch) / memory = "
          f"{ram_amortised / med['memory']:.3f}")
    print(f"ratio zarr / memory = {med['zarr'] / med['memory']:.3f}")
    if "resident" in med:
        print(f"ratio gpu-resident (the default on a GPU) / memory = {med['resident'] / med['memory']:.3f}")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
