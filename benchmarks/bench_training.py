"""Training several seeds of the quick profile's small VGG (VGG-11 at 1/8 width + BN, batch 128,
SGD): the book's way (one network at a time, one thread) against the local pool that a sweep now
uses (``bnlib.runs.train_in_processes``: one-thread worker processes), and other ways to use the
machine, side by side in one run.

Variants, each training ``--seeds`` networks (seeds 0, 1, ...) for ``--steps`` steps on random
CIFAR-shaped batches (timing does not depend on the pixel values), in 3 rounds whose order
rotates, median images/s (all seeds together) and fraction of the machine's fp32 peak
(``bnlib.peak``, at the process's threads; FLOPs of a training step by ``FlopCounterMode``):

* one at a time, 1 thread: each network in turn in this process (what the book did; the baseline);
* one at a time, 2 threads; channels_last (1 thread, model and inputs in channels-last layout);
* vmap over seeds: one batched step for all seeds (``bnlib.batched.StackedSGD``, 2 threads);
* 2 processes x 1 thread: the pool (``bnlib.batched.single_threaded_pool``, started once: its
  start-up is timed apart), each worker training its seeds one at a time; NCHW and channels-last.

Then: each variant's largest parameter difference from the baseline after ``--check-steps``
steps (the pool's must be 0: bit for bit), and why channels_last differs (float32 against
float64, and the max-pool windows whose argmax flips). Headline: the pool's images/s over the
baseline's.

    .venv/bin/python benchmarks/bench_training.py [--seeds 4] [--steps 6]
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import torch
from torch import nn

from bnlib.batched import StackedSGD, map_in_processes, single_threaded_pool, torch_threads
from bnlib.models import vgg
from bnlib.peak import Peak, count_flops, headline

BATCH, LR = 128, 0.05
BASELINE, POOL = "one at a time, 1 thread (book)", "2 processes x 1 thread (pool)"


def batches(seeds: int, steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per step, a (seeds, BATCH, 3, 32, 32) input and (seeds, BATCH) labels."""
    gen = torch.Generator().manual_seed(0)
    return [(torch.randn(seeds, BATCH, 3, 32, 32, generator=gen),
             torch.randint(0, 10, (seeds, BATCH), generator=gen)) for _ in range(steps)]


def networks(seeds: int, dtype: torch.dtype = torch.float32) -> list[nn.Module]:
    return [vgg(11, width=0.125, norm="bn", seed=s).train().to(dtype) for s in range(seeds)]


def one_at_a_time(models: list[nn.Module], data, channels_last: bool = False) -> list[nn.Module]:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for i, model in enumerate(models):
        model.to(memory_format=fmt)
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        for X, y in data:
            opt.zero_grad(set_to_none=True)
            X = X[i].to(next(model.parameters()).dtype).contiguous(memory_format=fmt)
            nn.functional.cross_entropy(model(X), y[i]).backward()
            opt.step()
    return models


def stacked(models: list[nn.Module], data) -> StackedSGD:
    trainer = StackedSGD(models, lr=LR)
    for X, y in data:
        trainer.step(X, y)
    return trainer


def train_seed(job: tuple[int, list], channels_last: bool = False) -> dict[str, torch.Tensor]:
    """Network ``seed`` trained on its own batches, ``job = (seed, [(X, y), ...])``; its final
    parameters."""
    seed, own = job
    model = vgg(11, width=0.125, norm="bn", seed=seed).train()
    one_at_a_time([model], [(X[None], y[None]) for X, y in own], channels_last)
    return {k: v.detach().contiguous() for k, v in model.named_parameters()}


def jobs(seeds: int, data) -> list[tuple[int, list]]:
    return [(s, [(X[s], y[s]) for X, y in data]) for s in range(seeds)]


def two_processes(seeds: int, data, pool, channels_last: bool = False) -> list[dict[str, torch.Tensor]]:
    """Every seed trained in the 1-thread worker processes of ``pool``."""
    return map_in_processes(partial(train_seed, channels_last=channels_last), jobs(seeds, data), pool=pool)


def params(models: list[nn.Module]) -> list[dict[str, torch.Tensor]]:
    return [{k: p.detach() for k, p in m.named_parameters()} for m in models]


def max_difference(a: list[dict[str, torch.Tensor]], b: list[dict[str, torch.Tensor]]) -> float:
    return max(float((x[k].double() - y[k].double()).abs().max()) for x, y in zip(a, b, strict=True) for k in x)


def determinism(seeds: int, steps: int, pool) -> None:
    """Each variant's parameters after ``steps`` steps against the baseline's."""
    data = batches(seeds, steps)
    with torch_threads(1):
        ref = params(one_at_a_time(networks(seeds), data))
        cl = [train_seed(j, True) for j in jobs(seeds, data)]
    trainer = stacked(networks(seeds), data)
    rows = {"one at a time, 2 threads (rounding)": params(one_at_a_time(networks(seeds), data)),
            "channels_last, 1 thread": cl,
            "vmap over seeds": [{k: v[i].detach() for k, v in trainer.params.items()} for i in range(seeds)],
            POOL: two_processes(seeds, data, pool),
            f"{POOL}, again": two_processes(seeds, data, pool)}
    print(f"after {steps} steps, max |parameter - the baseline's| (largest parameter "
          f"{max(float(p.abs().max()) for r in ref for p in r.values()):.2f}):")
    for k, got in rows.items():
        same = all(torch.equal(x[n], y[n]) for x, y in zip(ref, got, strict=True) for n in x)
        print(f"  {k:<36s} {max_difference(ref, got):.1e}{'  (bit-identical)' if same else ''}")


def conv_error_and_flips(model: nn.Module, exact: nn.Module, X: torch.Tensor, y: torch.Tensor,
                         channels_last: bool) -> tuple[float, int, float]:
    """One float32 training step's forward and backward against float64's: the median relative
    error of the conv outputs, how many max-pool windows pick another argmax than float64's,
    and the relative error of the first conv's weight gradient."""
    runs = {"f32": (model, torch.float32, torch.channels_last if channels_last else torch.contiguous_format),
            "f64": (exact, torch.float64, torch.contiguous_format)}
    out: dict[str, list] = {name: [] for name in runs}
    for name, (m, dtype, fmt) in runs.items():
        m.to(memory_format=fmt)
        hooks = [mod.register_forward_hook(lambda mod, i, o, rec=out[name]: rec.append(
                     (mod, i[0].detach().double().contiguous(), o.detach().double())))
                 for mod in m.modules() if isinstance(mod, (nn.Conv2d, nn.MaxPool2d))]
        nn.functional.cross_entropy(m(X.to(dtype).contiguous(memory_format=fmt)), y).backward()
        for h in hooks:
            h.remove()
    errors, flips = [], 0
    for (mod, i32, o32), (_, i64, o64) in zip(out["f32"], out["f64"], strict=True):
        if isinstance(mod, nn.Conv2d):
            errors.append(float((o32 - o64).norm() / o64.norm()))
        else:
            picked = [nn.functional.max_pool2d(i, 2, return_indices=True)[1] for i in (i32, i64)]
            flips += int((picked[0] != picked[1]).sum())
    g32, g64 = (next(m.parameters()).grad.double() for m in (model, exact))
    return statistics.median(errors), flips, float((g32 - g64).norm() / g64.norm())


def channels_last_explained(steps: int) -> None:
    """Why channels_last training differs from NCHW: float32 against float64, step by step."""
    data = batches(1, steps)
    with torch_threads(1):
        per_step = {}
        for dtype in (torch.float32, torch.float64):
            for cl in (False, True):
                per_step[dtype, cl] = [params(one_at_a_time(networks(1, dtype), data[:k], cl))
                                       for k in range(1, steps + 1)]
        X, y = data[0][0][0], data[0][1][0]
        found = {cl: conv_error_and_flips(networks(1)[0], networks(1, torch.float64)[0], X, y, cl)
                 for cl in (False, True)}
    print("channels_last vs NCHW, 1 thread, max |parameter difference| after each step:")
    for dtype in (torch.float32, torch.float64):
        diffs = [max_difference(a, b) for a, b in zip(per_step[dtype, False], per_step[dtype, True], strict=True)]
        print(f"  {str(dtype).removeprefix('torch.'):<8s} " + "  ".join(f"{d:.1e}" for d in diffs))
    print("step 1 against float64 (NCHW / channels_last): median conv output relative error "
          f"{found[False][0]:.1e} / {found[True][0]:.1e}; max-pool windows whose argmax flips "
          f"{found[False][1]} / {found[True][1]}; first conv's weight gradient relative error "
          f"{found[False][2]:.1e} / {found[True][2]:.1e}")
    print("  so: float64 agrees to rounding, and float32 channels_last convolutions round ~"
          f"{found[True][0] / found[False][0]:.0f}x more; where a max-pool window's two largest values lie "
          "within that rounding the argmax flips, the gradient goes to another pixel, and training "
          "amplifies that difference step by step")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=4, help="networks trained (even)")
    ap.add_argument("--steps", type=int, default=6, help="timed steps per network and round")
    ap.add_argument("--check-steps", type=int, default=3)
    args = ap.parse_args()
    peak = Peak.measure()
    step_flops = count_flops(lambda: nn.functional.cross_entropy(
        networks(1)[0](torch.randn(BATCH, 3, 32, 32)), torch.zeros(BATCH, dtype=torch.long)).backward())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {peak}")
    print(f"VGG-11/8 + BN, batch {BATCH}, {step_flops / 1e9:.2f} GFLOP per training step; "
          f"{args.seeds} seeds x {args.steps} steps per variant, 3 rounds in rotating order")
    data = batches(args.seeds, args.steps)
    t0 = time.perf_counter()
    pool = single_threaded_pool(2)
    two_processes(2, data[:1], pool)  # the workers start (spawn, import torch) on first use
    startup = time.perf_counter() - t0
    variants = {BASELINE: lambda: one_at_a_time(networks(args.seeds), data),
                "one at a time, 2 threads": lambda: one_at_a_time(networks(args.seeds), data),
                "channels_last, 1 thread": lambda: one_at_a_time(networks(args.seeds), data, True),
                "vmap over seeds, 2 threads": lambda: stacked(networks(args.seeds), data),
                POOL: lambda: two_processes(args.seeds, data, pool),
                f"{POOL}, CL": lambda: two_processes(args.seeds, data, pool, True)}
    one_thread = {BASELINE, "channels_last, 1 thread"}
    times: dict[str, list[float]] = {k: [] for k in variants}
    names = list(variants)
    for r in range(3):
        for k in names[r:] + names[:r]:
            with torch_threads(1 if k in one_thread else torch.get_num_threads()):
                t0 = time.perf_counter()
                variants[k]()
                times[k].append(time.perf_counter() - t0)
    images = args.seeds * args.steps * BATCH
    base = statistics.median(times[BASELINE])
    for k, ts in times.items():
        t = statistics.median(ts)
        print(f"  {k:<36s} {images / t:7.1f} images/s  {base / t:5.2f}x  "
              f"{peak.rate(step_flops * args.seeds * args.steps, t)}")
    pool_s = statistics.median(times[POOL])
    saved = (base - pool_s) / images
    repaid = f"repaid after ~{startup / saved / BATCH:.0f} training steps" if saved > 0 else "not repaid here"
    print(f"the pool's start-up (2 spawned workers importing torch, once per process): {startup:.1f} s, {repaid}")
    determinism(2, args.check_steps, pool)
    pool.shutdown()
    channels_last_explained(args.check_steps)
    print(headline(base / pool_s))


if __name__ == "__main__":
    main()
