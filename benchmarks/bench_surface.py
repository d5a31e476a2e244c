"""Grid points per second: bnlib's surface engine against the reference per-point loop.

The reference (tomgoldstein/loss-landscape, plot_surface.py ``crunch`` + evaluation.py
``eval_loss`` + dataloader.py) is reimplemented faithfully: for every grid point it assigns
``p.data = w + a * dx + b * dy`` to the model's parameters, puts the model in eval mode and
streams the data subset through a ``DataLoader`` (``SubsetRandomSampler``, batch 128, two
workers as its ``--threads 2`` default) whose dataset converts each uint8 image to a PIL image
and applies ``ToTensor`` and ``Normalize`` one image at a time (torchvision's transforms,
written out here because torchvision is not a dependency), then writes the partial grid.
bnlib holds the same subset as one standardised tensor (``probes.surface.evaluate_grid``:
channels-last, the first layer's outputs reused, running BN folded into the
layers by ``probes.fused``); "engine, plain" is the same engine without the fold
(``fuse=False``: ``functional_call`` on the model as it is). loss-landscapes
(``pip install --no-deps loss-landscapes``, ``random_plane``, filter normalisation) runs on the
same model and subset; its directions are its own, so only its time is comparable. Models:
LeNet + BN and the book's VGG-11/8 + BN, briefly trained; 1 torch thread by default.

The methods run interleaved, ``ROUNDS`` rounds, each in a new seeded random order (in a fixed
order the method after the reference loop ran slower, whichever group size it was), medians;
each rate at the nominal FLOPs of one forward pass per grid point (``FlopCounterMode``) as a
fraction of the machine's fp32 peak (``bnlib.peak``). On the fused path ``FUSED_GROUP`` grid
points share each chunk of data while it is in cache; the engine also runs, in the same rounds,
with groups of 1 and 16 points instead (the measurement behind that constant), and
``torch.profiler`` splits its time by operator kind.
The engine's convolutions and matrix products alone bound what any engine that does one
forward pass per point could reach with these kernels ("a perfect engine").
Headline: the engine's smallest speed-up over a peer on either model.

    .venv/bin/python benchmarks/bench_surface.py [--grid 4] [--n 1000 500] [--groups 1 16] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import resource
import statistics
import tempfile
import time

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, SubsetRandomSampler

from bnlib.models import lenet, vgg
from bnlib.peak import Peak, count_flops, headline
from bnlib.probes import surface
from bnlib.probes.directions import random_direction
from bnlib.probes.surface import surface_2d

ROUNDS = 5
# the reference's CIFAR-10 normalisation constants (loss-landscape: dataloader.py)
MEAN = np.array([125.3, 123.0, 113.9]) / 255.0
STD = np.array([63.0, 62.1, 66.7]) / 255.0


class PerImageCIFAR(Dataset):
    """uint8 HWC images transformed one by one, as CIFAR10 + ToTensor + Normalize do."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images, self.labels = images, labels
        self.mean = torch.tensor(MEAN, dtype=torch.float32)[:, None, None]
        self.std = torch.tensor(STD, dtype=torch.float32)[:, None, None]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        img = Image.fromarray(self.images[i])                            # CIFAR10.__getitem__
        t = torch.from_numpy(np.array(img, np.uint8, copy=True))         # ToTensor
        t = t.view(img.size[1], img.size[0], 3).permute(2, 0, 1).contiguous().float().div(255)
        t = t.sub(self.mean).div(self.std)                               # Normalize
        return t, int(self.labels[i])


def reference_surface(model: nn.Module, dx: list, dy: list, xs: np.ndarray, ys: np.ndarray,
                      loader: DataLoader, out_file: str) -> np.ndarray:
    """The reference's ``crunch`` loop (one MPI rank), weights moved in place per point."""
    net = copy.deepcopy(model)
    w = [p.data for p in net.parameters()]                               # get_weights
    losses = -np.ones((len(xs), len(ys)))
    criterion = nn.CrossEntropyLoss()
    for ind, (a, b) in enumerate((a, b) for a in xs for b in ys):
        for p, w0, d0, d1 in zip(net.parameters(), w, dx, dy):           # set_weights
            p.data = w0 + torch.Tensor(d0 * a + d1 * b).type(type(w0))
        net.eval()                                                       # eval_loss
        total_loss, total = 0.0, 0
        with torch.no_grad():
            for inputs, targets in loader:
                outputs = net(inputs)
                total_loss += criterion(outputs, targets).item() * inputs.size(0)
                total += inputs.size(0)
        losses.ravel()[ind] = total_loss / total
        np.save(out_file, losses)                                        # f[loss_key][:] = losses
    return losses


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (the DataLoader workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def timed(fn):
    """``fn()``, its wall-clock seconds and its CPU seconds."""
    w0, c0 = time.perf_counter(), cpu_seconds()
    out = fn()
    return out, time.perf_counter() - w0, cpu_seconds() - c0


def run_loss_landscapes(model: nn.Module, X: torch.Tensor, y: torch.Tensor, steps: int):
    """``loss_landscapes.random_plane`` on the same model and data: its grid, or None and why
    it did not run."""
    try:
        import loss_landscapes
        import loss_landscapes.metrics
    except ImportError as e:
        return None, f"not installed ({e})"
    metric = loss_landscapes.metrics.Loss(nn.CrossEntropyLoss(), X, y)
    m = copy.deepcopy(model).eval()
    try:
        grid = loss_landscapes.random_plane(m, metric, distance=2.0, steps=steps,
                                            normalization="filter", deepcopy_model=True)
    except Exception as e:  # an incompatible version of the package is a result to report
        return None, f"failed: {type(e).__name__}: {e}"
    return grid, f"grid {np.shape(grid)}"


def trained_model(kind: str, X: torch.Tensor, y: torch.Tensor) -> nn.Module:
    """LeNet or VGG-11/8 with BN after 10 Adam steps, so biases and BN statistics are those of a
    (briefly) trained net (with zero biases loss-landscapes' filter normalisation divides by 0)."""
    model = lenet(norm="bn", seed=0) if kind == "lenet" else vgg(11, width=0.125, norm="bn", seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for idx in torch.randperm(len(X), generator=torch.Generator().manual_seed(0)).split(128)[:10]:
        opt.zero_grad()
        nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
        opt.step()
    return model.eval()


KINDS = {"convolution": ("conv",), "matrix product": ("addmm", "linear", "mm"),
         "max-pool": ("max_pool", "maximum"), "batch norm": ("batch_norm",),
         "elementwise": ("add", "mul", "clamp", "relu"), "copies": ("copy_", "cat", "clone", "stack")}


def op_shares(fn) -> dict[str, float]:
    """Self CPU seconds of one call of ``fn`` by kind of operator (torch.profiler): the first
    of ``KINDS`` whose names an operator's name contains, else "other"."""
    with torch.profiler.profile() as prof:
        fn()
    out = dict.fromkeys([*KINDS, "other"], 0.0)
    for ev in prof.key_averages():
        kind = next((k for k, keys in KINDS.items() if any(w in ev.key for w in keys)), "other")
        out[kind] += ev.self_cpu_time_total / 1e6
    return out


def bench_model(kind: str, n: int, images, labels, args, peak: Peak) -> tuple[float, float]:
    """Prints one model's table; returns (reference / engine, loss-landscapes / engine)."""
    images, labels = images[:n], labels[:n]
    X = ((torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255            # (N, 3, 32, 32)
          - torch.tensor(MEAN, dtype=torch.float32)[:, None, None])
         / torch.tensor(STD, dtype=torch.float32)[:, None, None])
    y = torch.from_numpy(labels).long()
    model = trained_model(kind, X, y)
    params = {k: v.detach() for k, v in model.named_parameters()}
    d1, d2 = (random_direction(params, seed=s) for s in (1, 2))
    xs = np.linspace(-1, 1, args.grid)
    n_points, flops = len(xs) ** 2, count_flops(lambda: model(X))  # a full forward per point
    print(f"\n{kind} + BN: {sum(p.numel() for p in params.values())} params, {n} images, grid "
          f"{args.grid}x{args.grid}, {flops / 1e9:.3f} GFLOP per point (one forward pass), "
          f"{ROUNDS} interleaved rounds in shuffled order, medians")

    def engine(fuse: bool = True, group: int = surface.FUSED_GROUP):
        default, surface.FUSED_GROUP = surface.FUSED_GROUP, group
        try:
            return surface_2d(model, X, y, directions=(d1, d2), xs=xs, ys=xs, bn_mode="running",
                              batch_size=args.batch_size, fuse=fuse)
        finally:
            surface.FUSED_GROUP = default

    loader = DataLoader(PerImageCIFAR(images, labels), batch_size=128,
                        sampler=SubsetRandomSampler(torch.arange(n)), shuffle=False,
                        num_workers=args.workers)
    tmp = tempfile.mkdtemp()
    methods = {"reference loop": lambda: reference_surface(
                   model, list(d1.values()), list(d2.values()), xs, xs, loader, os.path.join(tmp, "s.npy")),
               "bnlib engine": engine,
               "engine, plain": lambda: engine(fuse=False),
               "loss-landscapes": lambda: run_loss_landscapes(model, X, y, args.grid),
               **{f"engine, groups of {g}": (lambda g=g: engine(group=g)) for g in args.groups}}
    runs = {k: [] for k in methods}
    for r in range(ROUNDS):
        order = list(methods)
        random.Random(r).shuffle(order)
        for k in order:
            runs[k].append(timed(methods[k]))
    if runs["loss-landscapes"][0][0][0] is None:
        print(f"loss-landscapes random_plane: {runs['loss-landscapes'][0][0][1]}")
        del runs["loss-landscapes"]
    ref, ours, plain = (runs[k][0][0] for k in ("reference loop", "bnlib engine", "engine, plain"))
    print(f"max relative difference from the reference loop's surface: engine "
          f"{np.abs(ours.loss - ref).max() / np.abs(ref).max():.2e}, plain path "
          f"{np.abs(plain.loss - ref).max() / np.abs(ref).max():.2e}")
    print("                      wall s   points/s   CPU s (self + workers)")
    med = {}
    for k, rs in runs.items():
        w, c = statistics.median(r[1] for r in rs), statistics.median(r[2] for r in rs)
        med[k] = w
        print(f"{k:<20s}: {w:7.2f}  {n_points / w:9.2f}  {c:9.2f}   {peak.rate(flops * n_points, w)}")
    shares = op_shares(engine)
    print(f"  where the engine's time goes (groups of {surface.FUSED_GROUP}; self CPU s): "
          + ", ".join(f"{k} {v:.2f}" for k, v in shares.items()))
    r_ref = med["reference loop"] / med["bnlib engine"]
    r_ll = med.get("loss-landscapes", float("nan")) / med["bnlib engine"]
    print(f"engine: {r_ref:.2f}x faster than the reference loop (goal 5x), {r_ll:.2f}x faster than "
          f"loss-landscapes (goal 3x), {med['engine, plain'] / med['bnlib engine']:.2f}x faster than "
          "its plain path (functional_call, BN as it is)")
    floor = shares["convolution"] + shares["matrix product"]
    first = count_flops(lambda: model[:1](X))  # the first layer: once per direction and the centre
    print(f"a perfect engine (nothing but the engine's convolutions and matrix products, at the speed "
          f"they run here, {peak.rate(n_points * (flops - first) + (1 + 2) * first, floor)}): {floor:.2f} s, "
          f"{med.get('loss-landscapes', float('nan')) / floor:.2f}x loss-landscapes")
    return r_ref, r_ll


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grid", type=int, default=4, help="points per axis on [-1, 1]")
    ap.add_argument("--n", type=int, nargs=2, default=[1000, 500],
                    help="training images in the subset: LeNet, VGG-11/8")
    ap.add_argument("--batch-size", type=int, default=250, help="bnlib: images per forward pass")
    ap.add_argument("--groups", type=int, nargs="*", default=[1, 16],
                    help="the engine again with these grid points per chunk of data (FUSED_GROUP)")
    ap.add_argument("--workers", type=int, default=2, help="reference DataLoader workers")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for all (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    root = os.environ.get("BNLIB_DATA", "../shared/data")
    with np.load(os.path.join(root, "cifar10-mini.npz")) as f:
        images, labels = f["x_train"][: max(args.n)], f["y_train"][: max(args.n)]
    peak = Peak.measure()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {peak}")
    ratios = [bench_model(kind, n, images, labels, args, peak) for kind, n in zip(("lenet", "vgg"), args.n)]
    worst = min(r for pair in ratios for r in pair if r == r)
    print("headline: the engine's smallest speed-up over a peer (reference loop or loss-landscapes), "
          "over both models")
    print(headline(worst))


if __name__ == "__main__":
    main()
