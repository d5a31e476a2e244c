"""Cost of one all-layer ICS measurement (Definition 2.1) relative to one training step.

Side by side, same machine, one run: a plain SGD training step; ``probes.ics`` batched
(``method="vmap"``, one vmap over layers); ``probes.ics`` as a loop that shares the updated
prefix (``method="loop"``); and the explicit per-layer loop (deep-copy model and optimiser,
take the step, then for each layer copy the stepped layers before it into a fresh copy and
backprop). Models: the quick-profile VGG (VGG-11 at 1/4 width with BN, batch 128,
CIFAR-shaped random tensors: timing does not depend on the pixel values) and the 25-layer
deep linear network with BN, full batch of 1000.

Each row's rate as a fraction of the machine's fp32 peak (``bnlib.peak``); headline: the
explicit loop over the book's probe (``method="auto"``: the prefix loop on the CPU) on the VGG.

Run: ``.venv/bin/python benchmarks/bench_ics.py [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import copy

import numpy as np
import torch
from torch import nn

from bnlib.functional import loss_fn
from bnlib.models import deep_linear, vgg, weight_layers
from bnlib.peak import Peak, count_flops, headline, median_seconds
from bnlib.probes.ics import auto_method, ics, layer_of_params


def train_step(model: nn.Module, opt: torch.optim.Optimizer, X, y, loss: str) -> None:
    model.train()
    opt.zero_grad()
    loss_fn(loss)(model(X), y).backward()
    opt.step()


def explicit_ics(model: nn.Module, opt: torch.optim.Optimizer, X, y, loss: str) -> list[float]:
    """The naive reference: one deep copy and one backward pass per layer."""
    crit, owner = loss_fn(loss), layer_of_params(model)

    def weight_grads(m: nn.Module) -> list[torch.Tensor]:
        m.train()
        m.zero_grad()
        crit(m(X), y).backward()
        return [w.weight.grad for w in weight_layers(m)]

    G = weight_grads(copy.deepcopy(model))
    stepped, stepped_opt = copy.deepcopy((model, opt))
    train_step(stepped, stepped_opt, X, y, loss)
    new = dict(stepped.named_parameters())
    l2 = []
    for i in range(1, len(G) + 1):
        m = copy.deepcopy(model)
        with torch.no_grad():
            for n, p in m.named_parameters():
                if owner[n] < i:
                    p.copy_(new[n])
        l2.append((G[i - 1] - weight_grads(m)[i - 1]).norm().item())
    return l2


def bench(name: str, model: nn.Module, X, y, loss: str, lr: float, repeats: int, peak: Peak) -> float:
    """Prints the table; returns the explicit loop's time over the book's probe's
    (``method="auto"``: the prefix loop on the CPU where it applies, else vmap)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    k = len(weight_layers(model))
    trainee, trainee_opt = copy.deepcopy((model, opt))  # steps on a twin: the model stays put
    step = median_seconds(lambda: train_step(trainee, trainee_opt, X, y, loss), repeats)
    calls = {
        "batched (vmap)": lambda: ics(model, X, y, optimizer=opt, loss=loss, bn_mode="batch", method="vmap"),
        "prefix loop": lambda: ics(model, X, y, optimizer=opt, loss=loss, bn_mode="batch", method="loop"),
        "explicit copy loop": lambda: explicit_ics(model, opt, X, y, loss),
    }
    rows = {label: median_seconds(fn, repeats) for label, fn in calls.items()}
    flops = {label: count_flops(fn) for label, fn in calls.items()}
    step_flops = count_flops(lambda: train_step(trainee, trainee_opt, X, y, loss))
    print(f"\n{name}: {k} layers, batch {X.shape[0]}, {torch.get_num_threads()} threads, "
          f"median of {repeats}")
    print(f"  {'training step':<20s} {step * 1e3:9.1f} ms   1.00 x step  {peak.rate(step_flops, step)}")
    for label, t in rows.items():
        print(f"  {label:<20s} {t * 1e3:9.1f} ms  {t / step:5.2f} x step  {peak.rate(flops[label], t)}")
    ref = np.array(explicit_ics(model, opt, X, y, loss))
    got = ics(model, X, y, optimizer=opt, loss=loss, bn_mode="batch")["l2"]
    print(f"  max |l2 probe - l2 explicit| / max l2 = {np.abs(got - ref).max() / ref.max():.1e}")
    explicit, book = rows["explicit copy loop"], {"vmap": "batched (vmap)", "loop": "prefix loop"}[
        auto_method(model, X)]
    print(f"  explicit loop / batched (vmap) = {explicit / rows['batched (vmap)']:.2f}   "
          f"explicit loop / prefix loop = {explicit / rows['prefix loop']:.2f}   "
          f"the book's probe here (method auto): {book}")
    return explicit / rows[book]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    peak = Peak.measure()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {peak}")
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    X = torch.randn(128, 3, 32, 32, generator=g)  # CIFAR-shaped batch (N, C, H, W)
    y = torch.randint(0, 10, (128,), generator=g)
    ratio = bench("VGG-11 width 1/4, BN", vgg(11, width=0.25, norm="bn"), X, y, "ce", 0.1,
                  args.repeats, peak)
    X = torch.randn(1000, 10, generator=g)  # DLN: x ~ N(0, I), targets A x
    y = X @ torch.randn(10, 10, generator=g).T
    bench("DLN 25 x (10x10), BN, full batch", deep_linear(depth=25, width=10, norm="bn"), X, y,
          "mse_sum", 1e-6, args.repeats, peak)
    print("headline: explicit copy loop / the book's ICS probe (method auto) on the VGG")
    print(headline(ratio))


if __name__ == "__main__":
    main()
