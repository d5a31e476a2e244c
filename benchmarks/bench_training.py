"""Training several seeds of the quick profile's small VGG (VGG-11 at 1/8 width + BN, batch
128, SGD): ways to use the machine better than one network at a time, side by side in one run.

Variants, each training ``--seeds`` networks (seeds 0, 1, ...) for ``--steps`` steps on random
CIFAR-shaped batches (timing does not depend on the pixel values), interleaved over 3 rounds,
median images/s (all seeds together) and fraction of the machine's fp32 peak (``bnlib.peak``,
FLOPs of a training step by ``FlopCounterMode``):

* one at a time: each network in turn, the process's threads (the baseline);
* channels_last: the same, model and inputs in channels-last memory layout;
* vmap over seeds: ``torch.func.stack_module_state`` + ``vmap`` of ``functional_call``, one
  batched step for all seeds (``bnlib.batched.StackedSGD``; convolutions become grouped ones);
* 2 processes x 1 thread: two worker processes (``bnlib.batched.map_in_processes``, a pool
  started once, untimed), each training its seeds one at a time with one thread (NCHW, and
  channels-last); the batches are sent to the workers inside the timing.

Determinism: after ``--check-steps`` steps from the same initial weights and batches, the
largest parameter difference of each variant from one-at-a-time training, next to the
difference that merely training at 1 thread instead of 2 makes (rounding, amplified by training).
Headline: the best variant's images/s over one-at-a-time.

    .venv/bin/python benchmarks/bench_training.py [--seeds 4] [--steps 6]
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import torch
from torch import nn

from bnlib.batched import StackedSGD, map_in_processes, single_threaded_pool
from bnlib.models import vgg
from bnlib.peak import Peak, count_flops, headline

BATCH, LR = 128, 0.05


def batches(seeds: int, steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per step, a (seeds, BATCH, 3, 32, 32) input and (seeds, BATCH) labels."""
    gen = torch.Generator().manual_seed(0)
    return [(torch.randn(seeds, BATCH, 3, 32, 32, generator=gen),
             torch.randint(0, 10, (seeds, BATCH), generator=gen)) for _ in range(steps)]


def networks(seeds: int) -> list[nn.Module]:
    return [vgg(11, width=0.125, norm="bn", seed=s).train() for s in range(seeds)]


def one_at_a_time(models: list[nn.Module], data, channels_last: bool = False) -> None:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    for i, model in enumerate(models):
        model.to(memory_format=fmt)
        opt = torch.optim.SGD(model.parameters(), lr=LR)
        for X, y in data:
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(X[i].contiguous(memory_format=fmt)), y[i]).backward()
            opt.step()


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
    """Every seed trained in the two 1-thread worker processes of ``pool``."""
    return map_in_processes(partial(train_seed, channels_last=channels_last), jobs(seeds, data),
                            pool=pool)


def max_difference(a: list[nn.Module], b: dict[str, torch.Tensor]) -> float:
    """Largest |difference| between the parameters of ``a`` and the stacked parameters ``b``."""
    return max(float((p - b[k][i]).abs().max()) for i, m in enumerate(a)
               for k, p in m.named_parameters())


def stack(results: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([r[k] for r in results]) for k in results[0]}


def determinism(seeds: int, steps: int, pool) -> None:
    data = batches(seeds, steps)
    ref = networks(seeds)
    one_at_a_time(ref, data)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    single = stack([train_seed(j) for j in jobs(seeds, data)])
    torch.set_num_threads(threads)
    rows = {"1 thread instead of 2 (rounding)": single,
            "channels_last": stack([train_seed(j, True) for j in jobs(seeds, data)]),
            "vmap over seeds": stacked(networks(seeds), data).params,
            "2 processes x 1 thread": stack(two_processes(seeds, data, pool)),
            "2 processes x 1 thread, again": stack(two_processes(seeds, data, pool))}
    print(f"after {steps} steps, max |parameter - one-at-a-time's| (largest parameter "
          f"{max(float(p.abs().max()) for m in ref for p in m.parameters()):.2f}):")
    for k, params in rows.items():
        print(f"  {k:<34s} {max_difference(ref, params):.1e}")
    again = max(float((a - b).abs().max()) for a, b in zip(rows["2 processes x 1 thread"].values(),
                                                            rows["2 processes x 1 thread, again"].values()))
    print(f"  the same setting twice: max difference {again:.1e}")


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
          f"{args.seeds} seeds x {args.steps} steps per variant, 3 interleaved rounds")
    data = batches(args.seeds, args.steps)
    pool = single_threaded_pool(2)  # started (and warmed up) once: its start-up is not timed
    two_processes(2, data[:1], pool)
    variants = {"one at a time": lambda: one_at_a_time(networks(args.seeds), data),
                "channels_last": lambda: one_at_a_time(networks(args.seeds), data, channels_last=True),
                "vmap over seeds": lambda: stacked(networks(args.seeds), data),
                "2 processes x 1 thread": lambda: two_processes(args.seeds, data, pool),
                "2 processes x 1 thread, CL": lambda: two_processes(args.seeds, data, pool, True)}
    times = {k: [] for k in variants}
    images = args.seeds * args.steps * BATCH
    for _ in range(3):
        for k, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    base = statistics.median(times["one at a time"])
    for k, ts in times.items():
        t = statistics.median(ts)
        print(f"  {k:<27s} {images / t:7.1f} images/s  {base / t:5.2f}x  "
              f"{peak.rate(step_flops * args.seeds * args.steps, t)}")
    determinism(2, args.check_steps, pool)
    pool.shutdown()
    best = max(base / statistics.median(ts) for ts in times.values())
    print(headline(best))


if __name__ == "__main__":
    main()
