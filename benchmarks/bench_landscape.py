"""Cost of one line-search probe (all multipliers) relative to one training step.

Side by side, in one run on one machine: a plain SGD step; the straightforward probe, a
Python loop that moves the model's weights in place for every multiplier (saving and
restoring weights and BN buffers); the functional probe looped over multipliers
(``vectorize=False``); and the functional probe with ``torch.func.vmap`` over the
multipliers (``vectorize=True``). Models: VGG-11 at 1/4 width with BN on a CIFAR-sized batch
of 128 (twice the quick profile's width), and the 25-layer deep linear network with BN on 1000
points (full batch). Inputs are random: the cost does not depend on the pixel values. Each row's
rate as a fraction of the machine's fp32 peak (``bnlib.peak``); headline: in-place loop over
the book's probe on the VGG (``landscape.vmap_pays``: the functional loop on a CPU).

    .venv/bin/python benchmarks/bench_landscape.py [--repeats 3] [--multipliers 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch import nn

from bnlib import models
from bnlib.functional import loss_fn
from bnlib.peak import Peak, count_flops, headline
from bnlib.probes import landscape


def timed(fn, repeats: int) -> float:
    """Median wall time (s) of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def train_step(model: nn.Module, X, y, loss, lr: float) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    opt.zero_grad()
    loss(model(X), y).backward()
    opt.step()


def inplace_probe(model: nn.Module, X, y, loss, lr: float, mults) -> dict:
    """The straightforward probe: step the weights in place, recompute, put everything back."""
    model.train()
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    params = list(model.parameters())
    model.zero_grad()
    loss(model(X), y).backward()
    g = [p.grad.detach().clone() for p in params]
    losses, diffs = [], []
    for s in mults:
        with torch.no_grad():
            for p, gp in zip(params, g):
                p.sub_(s * lr * gp)
        model.zero_grad()
        li = loss(model(X), y)
        li.backward()
        losses.append(li.item())
        diffs.append(torch.sqrt(sum((p.grad - gp).pow(2).sum() for p, gp in zip(params, g))).item())
        model.load_state_dict(saved)  # weights and BN running statistics back
    model.zero_grad(set_to_none=True)
    return {"loss": np.array(losses), "grad_diff": np.array(diffs)}


def bench(name: str, model: nn.Module, X, y, loss_name: str, lr: float, mults, repeats: int,
          peak: Peak) -> float:
    """Prints the table; returns the in-place loop's time over the book's probe's (vmap where
    ``landscape.vmap_pays``, else the functional loop)."""
    loss = loss_fn(loss_name)
    step = timed(lambda: train_step(model, X, y, loss, lr), repeats)
    naive = timed(lambda: inplace_probe(model, X, y, loss, lr, mults), repeats)
    kw = dict(loss=loss_name, lr=lr, multipliers=mults)
    loop = timed(lambda: landscape.line_search(model, X, y, vectorize=False, **kw), repeats)
    vmap = timed(lambda: landscape.line_search(model, X, y, vectorize=True, **kw), repeats)
    # Same numbers from both probes (float32; loose tolerance for summation order).
    a, b = inplace_probe(model, X, y, loss, lr, mults), landscape.line_search(model, X, y, **kw)
    agree = np.allclose(a["loss"], b["loss"], rtol=1e-4) and np.allclose(
        a["grad_diff"], b["grad_diff"], rtol=1e-2, atol=1e-6)
    print(f"\n{name}: {len(mults)} multipliers, batch {len(X)}, probes agree: {agree}")
    flops = {"training step": count_flops(lambda: train_step(model, X, y, loss, lr)),
             "in-place loop (straightforward)": count_flops(lambda: inplace_probe(model, X, y, loss, lr, mults)),
             "functional loop": count_flops(lambda: landscape.line_search(model, X, y, vectorize=False, **kw)),
             "functional vmap (batched)": count_flops(
                 lambda: landscape.line_search(model, X, y, vectorize=True, **kw))}
    for (label, f), t in zip(flops.items(), (step, naive, loop, vmap), strict=True):
        print(f"  {label:<34}{t * 1e3:10.1f} ms {t / step:6.2f} x step  {peak.rate(f, t)}")
    pays = landscape.vmap_pays(model, X)
    print(f"  ratio in-place loop / vmap: {naive / vmap:.2f}   functional loop / vmap: "
          f"{loop / vmap:.2f}   the book's probe here: {'vmap' if pays else 'functional loop'}")
    return naive / (vmap if pays else loop)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--multipliers", type=int, default=8, help="grid size S")
    ap.add_argument("--threads", type=int, default=None,
                    help="intra-op CPU threads (default: torch's; 1 is steadier when shared)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    peak = Peak.measure()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU"
          + (" + CUDA present (timings are CPU)" if torch.cuda.is_available() else "") + f"; {peak}")
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    vgg = models.vgg(11, width=0.25, norm="bn")
    X, y = torch.randn(128, 3, 32, 32, generator=g), torch.randint(0, 10, (128,), generator=g)
    ratio = bench("VGG-11 (width 1/4, BN)", vgg, X, y, "ce", 0.1,
                  np.geomspace(0.5, 4, args.multipliers), args.repeats, peak)
    dln = models.deep_linear(depth=25, width=10, norm="bn")
    X = torch.randn(1000, 10, generator=g)
    y = X @ torch.randn(10, 10, generator=g).T
    bench("DLN (25 x 10, BN)", dln, X, y, "mse_sum", 1e-6,
          np.geomspace(0.01, 30, args.multipliers), args.repeats, peak)
    print("headline: in-place loop / the book's line probe (vmap only where it pays) on the VGG")
    print(headline(ratio))


if __name__ == "__main__":
    main()
