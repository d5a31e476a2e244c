"""Training throughput of the quick-profile VGG: bnlib's device-tensor data path against a
conventional torch.utils.data.DataLoader loop (per-image ToTensor + Normalize in __getitem__,
shuffling, workers), same model, optimiser, batch size and data, measured in one run; each
rate as a fraction of the machine's fp32 peak (``bnlib.peak``). Headline: bnlib / DataLoader.

    .venv/bin/python benchmarks/bench_throughput.py [--steps 40] [--workers 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from bnlib import data, models, train
from bnlib.peak import Peak, count_flops, headline


class CifarImages(Dataset):
    """The usual torchvision-style dataset: uint8 HWC images converted one at a time."""

    def __init__(self, x: np.ndarray, y: np.ndarray, mean: np.ndarray, std: np.ndarray):
        self.x, self.y = x, y
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        img = torch.from_numpy(self.x[i]).permute(2, 0, 1).float().div(255)  # ToTensor
        return (img - self.mean) / self.std, int(self.y[i])                 # Normalize


def step(model, opt, X, y):
    loss = torch.nn.functional.cross_entropy(model(X), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def time_bnlib(d: data.Data, steps: int, bs: int, warmup: int) -> float:
    torch.manual_seed(0)
    model = models.vgg(11, width=0.25, norm="bn").train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = train.Batches(len(d.X_train), bs, 0, d.device)  # the batches train.fit draws
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        idx = batches(i)
        step(model, opt, d.X_train[idx], d.y_train[idx])
    return steps * bs / (time.perf_counter() - t0)


def time_dataloader(ds: Dataset, steps: int, bs: int, warmup: int, workers: int) -> float:
    torch.manual_seed(0)
    model = models.vgg(11, width=0.25, norm="bn").train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loader = DataLoader(ds, batch_size=bs, shuffle=True, drop_last=True, num_workers=workers,
                        persistent_workers=workers > 0)
    it = iter(loader)
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        X, y = next(it)
        step(model, opt, X, y)
    return steps * bs / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=40, help="timed steps per method")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers (a common setting)")
    args = ap.parse_args()
    raw = np.load(data.data_root() / "cifar10.npz")
    x, y = raw["x_train"][:20_000], raw["y_train"][:20_000]
    mean, std = x.mean(axis=(0, 1, 2)) / 255, x.std(axis=(0, 1, 2)) / 255
    d = data.load("cifar10", train_size=20_000, test_size=10)
    peak = Peak.measure()
    model = models.vgg(11, width=0.25, norm="bn").train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    Xb, yb = d.X_train[:args.batch_size], d.y_train[:args.batch_size]
    per_image = count_flops(lambda: step(model, opt, Xb, yb)) / args.batch_size
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {peak}")
    print(f"VGG-11 x0.25 + BN, batch {args.batch_size}, {per_image * args.batch_size / 1e9:.2f} "
          f"GFLOP per step, {args.steps} timed steps each")
    ours = time_bnlib(d, args.steps, args.batch_size, args.warmup)
    print(f"bnlib device tensors       : {ours:8.1f} images/s  {peak.rate(per_image * ours, 1.0)}")
    theirs = time_dataloader(CifarImages(x, y, mean, std), args.steps, args.batch_size, args.warmup,
                             args.workers)
    print(f"DataLoader ({args.workers} workers)     : {theirs:8.1f} images/s  {peak.rate(per_image * theirs, 1.0)}")
    print(f"ratio bnlib / DataLoader   : {ours / theirs:.2f}x")
    print(headline(ours / theirs))


if __name__ == "__main__":
    main()
