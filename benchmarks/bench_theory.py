"""Theorem 4.2 checked per unit on many random units: one Hessian-vector product for all
units at once (``coupled=False``) against one product per unit, side by side in one run.

Rates as a fraction of the machine's fp32 peak (``bnlib.peak``); headline: per-unit / batched.

    .venv/bin/python benchmarks/bench_theory.py
"""

from __future__ import annotations

import time

import torch

from bnlib import theory
from bnlib.peak import Peak, count_flops, headline
from bnlib.probes import capture


def timed(f, repeats: int):
    """Mean seconds of ``repeats`` calls after one warm-up call, and the last result."""
    f()
    t0 = time.perf_counter()
    for _ in range(repeats):
        result = f()
    return (time.perf_counter() - t0) / repeats, result


def main() -> None:
    peak = Peak.measure()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {peak}")
    gen = torch.Generator().manual_seed(0)
    cap = capture.random_capture(64, 300, gen, eps=1e-30)  # 300 units, batch m = 64
    args = (cap.y, cap.g, cap.grad_y, cap.gamma)
    kw = dict(hess_hat=cap.hess_hat, hess=cap.hess, eps=cap.eps, form="exact")
    t_one, one = timed(lambda: theory.thm_4_2(*args, **kw, coupled=False), 3)
    t_loop, loop = timed(lambda: theory.thm_4_2(*args, **kw, coupled=True), 1)
    diff = float((one.lhs - loop.lhs).abs().max())
    f_one = count_flops(lambda: theory.thm_4_2(*args, **kw, coupled=False))
    f_loop = count_flops(lambda: theory.thm_4_2(*args, **kw, coupled=True))
    print(f"thm_4_2, 300 units, m = 64: one HVP for all units {t_one * 1e3:.1f} ms, "
          f"one HVP per unit {t_loop * 1e3:.1f} ms")
    print(f"  one HVP for all units: {peak.rate(f_one, t_one)}; one per unit: {peak.rate(f_loop, t_loop)}")
    print(f"ratio per-unit / batched: {t_loop / t_one:.1f}x (max |difference| {diff:.1e})")
    print(headline(t_loop / t_one))


if __name__ == "__main__":
    main()
