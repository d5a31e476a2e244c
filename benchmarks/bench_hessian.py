"""Time to the top-10 Hessian eigenvalues of the 784-100-10 MNIST MLP (79,510 parameters).

bnlib's Lanczos (``probes.curvature.hessian_topk``) against power iteration with deflation,
the method of PyHessian (Yao et al. 2020), run through the ``pyhessian`` package itself
(``pip install --no-deps pyhessian``). Same trained model, same fixed batch, same process.

"Accurate" means every one of the 10 eigenvalues within 1e-3 relative of a reference computed
by Lanczos to 1e-9. Lanczos stops on its residual bound, which guarantees that accuracy.
PyHessian stops when two consecutive Rayleigh quotients differ by less than its ``tol``,
which does not; so we run it with tol = 1e-3, 1e-4, ... (maxIter 1000, so the tolerance and
not the cap stops it) and time the first setting whose result is accurate (every setting
tried is printed). Both sides use reverse-over-reverse HVPs on a retained graph, so the
seconds ratio should follow the HVP ratio on a quiet machine. HVPs are counted by wrapping
PyHessian's ``hessian_vector_product``.

    .venv/bin/python benchmarks/bench_hessian.py [--batch 2000] [--steps 300]
"""

from __future__ import annotations

import argparse
import copy
import importlib
import os
import time
import warnings

import numpy as np
import torch
from torch import nn

from bnlib.models import mlp
from bnlib.probes.curvature import hessian_topk

K, ACC = 10, 1e-3  # eigenvalues wanted, relative accuracy wanted


def trained_mlp(steps: int, seed: int = 0) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The MLP after ``steps`` Adam steps (lr 1e-3, batch 128) on MNIST, and the train set."""
    root = os.environ.get("BNLIB_DATA", "../shared/data")
    d = np.load(os.path.join(root, "mnist.npz"))
    X = torch.tensor(d["x_train"][:20000], dtype=torch.float32).flatten(1) / 255  # (N, 784)
    X = (X - X.mean()) / X.std()
    y = torch.tensor(d["y_train"][:20000])
    torch.manual_seed(seed)
    model = mlp(norm="none", seed=seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        idx = torch.randint(0, X.shape[0], (128,))
        opt.zero_grad()
        nn.functional.cross_entropy(model(X[idx]), y[idx]).backward()
        opt.step()
    return model, X, y


def rel_err(found, ref) -> float:
    found = np.sort(np.asarray(found))[::-1]
    return float(np.max(np.abs(found - ref) / np.abs(ref)))


def run_pyhessian(model, X, y, tol: float) -> tuple[list[float], float, int]:
    ph = importlib.import_module("pyhessian.hessian")  # the module; the package exports a class

    calls = [0]
    hvp = ph.hessian_vector_product

    def counted(*a, **kw):
        calls[0] += 1
        return hvp(*a, **kw)

    ph.hessian_vector_product = counted
    try:
        m = copy.deepcopy(model)  # PyHessian sets eval mode and writes .grad
        t0 = time.perf_counter()
        with warnings.catch_warnings():  # its backward(create_graph=True) warns of a ref cycle
            warnings.filterwarnings("ignore", message="Using backward\\(\\) with create_graph")
            H = ph.hessian(m, nn.CrossEntropyLoss(), data=(X, y), cuda=False)
        eig, _ = H.eigenvalues(maxIter=1000, tol=tol, top_n=K)
        return eig, time.perf_counter() - t0, calls[0]
    finally:
        ph.hessian_vector_product = hvp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=2000, help="evaluation batch size (images)")
    ap.add_argument("--steps", type=int, default=300, help="Adam steps before measuring")
    args = ap.parse_args()
    model, X, y = trained_mlp(args.steps)
    Xb, yb = X[-args.batch:], y[-args.batch:]  # fixed batch, not among the first steps' draws
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; MLP 784-100-10, "
          f"{sum(p.numel() for p in model.parameters())} parameters, batch {args.batch}")

    ref = hessian_topk(model, Xb, yb, k=K, bn_mode="running", tol=1e-9, max_iter=400)
    print(f"reference (Lanczos, tol 1e-9, {ref.num_matvecs} HVPs): "
          + " ".join(f"{v:.5g}" for v in ref.eigenvalues))

    t0 = time.perf_counter()
    lz = hessian_topk(model, Xb, yb, k=K, bn_mode="running", tol=ACC, seed=1)
    t_lz = time.perf_counter() - t0
    e_lz = rel_err(lz.eigenvalues, ref.eigenvalues)
    print(f"bnlib Lanczos     tol {ACC:g}: {t_lz:7.2f} s, {lz.num_matvecs:4d} HVPs, "
          f"max rel err {e_lz:.1e}")

    t_ph = n_ph = None
    for tol in (1e-3, 1e-4, 1e-5, 1e-6):
        eig, t, n = run_pyhessian(model, Xb, yb, tol)
        err = rel_err(eig, ref.eigenvalues)
        print(f"PyHessian power   tol {tol:g}: {t:7.2f} s, {n:4d} HVPs, max rel err {err:.1e}"
              + ("  <- first accurate" if err <= ACC else ""))
        if err <= ACC:
            t_ph, n_ph = t, n
            break
    if t_ph is None:
        print("PyHessian did not reach the accuracy at any tolerance tried")
        return
    print(f"ratio (PyHessian / Lanczos): {t_ph / t_lz:.1f}x seconds, "
          f"{n_ph / lz.num_matvecs:.1f}x HVPs; "
          f"per HVP {1e3 * t_ph / n_ph:.1f} ms vs {1e3 * t_lz / lz.num_matvecs:.1f} ms")


if __name__ == "__main__":
    main()
