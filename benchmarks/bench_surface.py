"""Grid points per second: bnlib's surface engine against the reference per-point loop.

The reference (tomgoldstein/loss-landscape, plot_surface.py ``crunch`` + evaluation.py
``eval_loss`` + dataloader.py) is reimplemented faithfully: for every grid point it assigns
``p.data = w + a * dx + b * dy`` to the model's parameters, puts the model in eval mode and
streams the data subset through a ``DataLoader`` (``SubsetRandomSampler``, batch 128, two
workers as its ``--threads 2`` default) whose dataset converts each uint8 image to a PIL image
and applies ``ToTensor`` and ``Normalize`` one image at a time (torchvision's transforms,
written out here because torchvision is not a dependency), then writes the partial grid.
bnlib holds the same subset as one standardised tensor and evaluates ``--points-per-call``
grid points per vmapped ``functional_call``. Same model, directions, subset and grid; the two
surfaces are compared, then the timings, points per second and the ratio are printed.

If the ``loss-landscapes`` package is installed (``pip install --no-deps loss-landscapes``),
its ``random_plane`` (filter normalisation) runs on the same model and subset too; its
directions are its own, so only its time is comparable.

    .venv/bin/python benchmarks/bench_surface.py [--model lenet|vgg] [--grid 5] [--n 1000]
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import tempfile
import time

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset, SubsetRandomSampler

from bnlib.models import lenet, vgg
from bnlib.probes.directions import random_direction
from bnlib.probes.surface import surface_2d

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
    """Wall and CPU time of ``loss_landscapes.random_plane`` on the same model and data,
    or why it did not run."""
    try:
        import loss_landscapes
        import loss_landscapes.metrics
    except ImportError as e:
        return None, f"not installed ({e})"
    metric = loss_landscapes.metrics.Loss(nn.CrossEntropyLoss(), X, y)
    m = copy.deepcopy(model).eval()
    try:
        grid, wall, cpu = timed(lambda: loss_landscapes.random_plane(
            m, metric, distance=2.0, steps=steps, normalization="filter", deepcopy_model=True))
    except Exception as e:  # an incompatible version of the package is a result to report
        return None, f"failed: {type(e).__name__}: {e}"
    return (wall, cpu), f"grid {np.shape(grid)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=["lenet", "vgg"], default="lenet")
    ap.add_argument("--bn", choices=["bn", "none"], default="bn", help="norm kind of the model")
    ap.add_argument("--width", type=float, default=0.25, help="VGG-16 width multiplier")
    ap.add_argument("--grid", type=int, default=5, help="points per axis on [-1, 1]")
    ap.add_argument("--n", type=int, default=1000, help="training images in the subset")
    ap.add_argument("--points-per-call", type=int, default=1, help="bnlib: points per vmap call")
    ap.add_argument("--batch-size", type=int, default=250, help="bnlib: images per forward pass")
    ap.add_argument("--sweep", type=int, nargs="*", default=[4, 16],
                    help="bnlib again with these points per call (vmap), for comparison")
    ap.add_argument("--workers", type=int, default=2, help="reference DataLoader workers")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for both (0: torch's default; see the module doc)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    root = os.environ.get("BNLIB_DATA", "../shared/data")
    with np.load(os.path.join(root, "cifar10-mini.npz")) as f:
        images, labels = f["x_train"][: args.n], f["y_train"][: args.n]
    X = ((torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255            # (N, 3, 32, 32)
          - torch.tensor(MEAN, dtype=torch.float32)[:, None, None])
         / torch.tensor(STD, dtype=torch.float32)[:, None, None])
    y = torch.from_numpy(labels)

    model = (lenet(norm=args.bn, seed=0) if args.model == "lenet"
             else vgg(16, width=args.width, norm=args.bn, seed=0))
    # a few Adam steps, so biases and BN statistics are those of a (briefly) trained net; with
    # zero biases loss-landscapes' filter normalisation divides by zero
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for idx in torch.randperm(args.n, generator=torch.Generator().manual_seed(0)).split(128)[:10]:
        opt.zero_grad()
        nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
        opt.step()
    model.eval()
    params = {k: v.detach() for k, v in model.named_parameters()}
    d1, d2 = (random_direction(params, seed=s) for s in (1, 2))
    xs = np.linspace(-1, 1, args.grid)
    n_points = len(xs) ** 2
    print(f"model {args.model} ({args.bn}), {sum(p.numel() for p in params.values())} params, "
          f"{args.n} images, grid {args.grid}x{args.grid}, torch threads {torch.get_num_threads()}")

    ours, w_ours, c_ours = timed(lambda: surface_2d(
        model, X, y, directions=(d1, d2), xs=xs, ys=xs, bn_mode="running",
        batch_size=args.batch_size, points_per_call=args.points_per_call))

    loader = DataLoader(PerImageCIFAR(images, labels), batch_size=128,
                        sampler=SubsetRandomSampler(torch.arange(args.n)), shuffle=False,
                        num_workers=args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        ref, w_ref, c_ref = timed(lambda: reference_surface(
            model, list(d1.values()), list(d2.values()), xs, xs, loader,
            os.path.join(tmp, "surface.npy")))

    err = np.abs(ours.loss - ref).max() / np.abs(ref).max()
    print(f"max relative difference of the two surfaces: {err:.2e}")
    print("                 wall s   points/s     CPU s (self + workers)")
    print(f"reference loop : {w_ref:7.2f}  {n_points / w_ref:9.2f}  {c_ref:9.2f}")
    print(f"bnlib engine   : {w_ours:7.2f}  {n_points / w_ours:9.2f}  {c_ours:9.2f}")
    print(f"ratio          : {w_ref / w_ours:7.2f}x wall, {c_ref / c_ours:.2f}x CPU")
    for ppc in args.sweep:  # does evaluating several grid points per vmapped call pay here?
        _, w, c = timed(lambda ppc=ppc: surface_2d(
            model, X, y, directions=(d1, d2), xs=xs, ys=xs, bn_mode="running",
            batch_size=args.batch_size, points_per_call=ppc))
        print(f"bnlib, {ppc:2d} pts/call: {w:7.2f}  {n_points / w:9.2f}  {c:9.2f}")
    t_ll, note = run_loss_landscapes(model, X, y, args.grid)
    if t_ll is None:
        print(f"loss-landscapes random_plane: {note}")
    else:
        print(f"loss-landscapes: {t_ll[0]:7.2f}  {n_points / t_ll[0]:9.2f}  {t_ll[1]:9.2f}  "
              f"(random_plane, {note}; {t_ll[0] / w_ours:.2f}x wall, {t_ll[1] / c_ours:.2f}x CPU "
              "of bnlib)")


if __name__ == "__main__":
    main()
