"""Curvature probes: Hessian-vector products, exact Hessians of parameter blocks, top-k
eigenvalues by Lanczos, and the pseudo-condition number of Reyes & Levy.

Reyes & Levy (Sec. 4.3) forms the exact Hessian of the cross-entropy with respect to
the last-layer weights W2 of a 784-100-10 MLP and compares kappa' = lambda_1 / lambda_10; we
also follow the whole-network Hessian, whose top eigenvalues we get from Hessian-vector
products alone.

* ``hvp`` and ``hessian`` are forward-over-reverse, ``jvp(grad(f))`` in ``torch.func``, on a
  flat parameter vector; several vectors are batched with ``vmap`` (an exact Hessian is the HVP
  of the identity). Restricting ``names`` to a block makes every HVP cheap when the block sits
  late in the network: the primal pass before it is not batched, so it is computed once.
* Lanczos needs one product at a time, where ``jvp(grad(f))`` would redo the forward and
  backward pass every time. ``hvp_operator`` builds the gradient's graph once with plain
  ``torch.autograd`` (``create_graph``) and differentiates it again per product: ``H v =
  (v^T H)^T`` since H is symmetric, reverse-over-reverse as in PyHessian. That is 1.5-2.9x
  fewer FLOPs than ``jvp(grad(f))`` on the models the book probes (``FlopCounterMode``);
  ``torch.func``'s ``vjp(grad(f))`` on the same graph measured within a few percent of it.
  ``benchmarks/bench_hessian.py`` times every mode on every such model side by side, against
  PyHessian's own ``hessian_vector_product``, in shuffled rounds: level with it on LeNet and the
  VGG, 0.92-0.99x on the two MLPs and the DLN, where the one copy that assembles the flat vector
  Lanczos works on is a few percent of a 2-9 ms product.
* ``lanczos`` keeps every Lanczos vector and, after each three-term step, reorthogonalises
  against all of them, a second time only when the first pass removed much of the vector
  ("twice is enough", Parlett, *The Symmetric Eigenvalue Problem*, Sec. 6.9). That avoids the
  spurious copies of converged Ritz values that plain Lanczos produces in finite precision
  (Paige 1976). It stops when every wanted Ritz pair has residual ``beta_m |s_mi| <= tol *
  |theta_i|``; for a symmetric operator that bounds the eigenvalue error by the same amount
  (Parlett, Thm 11.4.1), so ``tol`` is a relative accuracy guarantee up to HVP round-off.

Probe contract (``functional.py``): parameters and buffers are cloned, the model's mode and RNG
are restored, and ``bn_mode`` is explicit. In ``"batch"`` mode BatchNorm layers get ``None`` for
their running statistics, so they normalise with the batch and update nothing: an in-place
update of a captured buffer is not allowed inside ``torch.func`` transforms.

Probe specs for the run store (``runs.Runs.probe``), each measured on a checkpoint's model:
``LastLayerHessian`` (every eigenvalue of the W2 block), ``HessianTopK`` (Lanczos on the whole
Hessian) and ``Accuracies`` (Reyes & Levy's training and validation accuracy; the validation set
is carved from the training images that follow the trajectory's own, and standardised with
the trajectory's statistics). The Hessians are taken on the first ``size`` training images,
one fixed batch for every step and every network.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy.linalg
import torch
from torch import nn
from torch.func import functional_call, grad, jvp, vmap

from .. import data
from ..functional import Tensors, clone_state, loss_fn, probing
from ..models import weight_layers
from ..train import StepContext, evaluate

MAX_DENSE_PARAMS = 20_000  # a dense Hessian above this size costs > 3 GB in float64
_BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


@dataclass(frozen=True)
class Eigen:
    """Top-k eigenvalues found by Lanczos, largest first, with their residual bounds."""

    eigenvalues: np.ndarray  # (k,) descending
    residuals: np.ndarray  # (k,) beta_m |s_mi|: |theta_i - lambda| <= residual for some lambda
    num_matvecs: int  # Hessian-vector products used
    converged: bool  # every residual <= tol * |theta_i|
    vectors: np.ndarray | None = None  # (k, n) unit Ritz vectors, if asked for
    weights: np.ndarray | None = None  # (k,) squared first components: Gauss quadrature weights


def _probe_buffers(model: nn.Module, buffers: Tensors, bn_mode: str) -> dict:
    """In batch mode, hide BN running statistics (``None``) so nothing is updated in place."""
    if bn_mode != "batch":
        return buffers
    hidden = {f"{name}.{s}" if name else s for name, m in model.named_modules()
              if isinstance(m, _BN_TYPES) for s in _BN_STATS}
    return {k: (None if k in hidden else v) for k, v in buffers.items()}


class FlatLoss:
    """``theta -> loss`` for the flat vector of the ``names`` block (see ``_flat_loss``), which
    can also take the blocks as separate tensors (``of_blocks``)."""

    def __init__(self, of_blocks: Callable[[Sequence[torch.Tensor]], torch.Tensor], shapes: list[torch.Size]):
        self.of_blocks, self.shapes = of_blocks, shapes
        self.sizes = [s.numel() for s in shapes]

    def split(self, t: torch.Tensor) -> list[torch.Tensor]:
        """The blocks of the flat vector ``t``, as views shaped like the parameters."""
        return [p.view(s) for p, s in zip(t.split(self.sizes), self.shapes, strict=True)]

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        # each block copied out of t: a view at an arbitrary offset is misaligned for oneDNN and
        # BLAS, which made every product 5-12% slower than PyHessian's (benchmarks/bench_hessian.py)
        return self.of_blocks([b.clone() for b in self.split(t)])


def _flat_loss(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, bn_mode: str, loss: str,
               names: Sequence[str] | None) -> tuple[FlatLoss, torch.Tensor]:
    """``theta -> loss`` for the flat vector of the ``names`` block, and its current value.

    ``theta`` concatenates the named parameters (default: all, in ``named_parameters`` order),
    each flattened row-major. Call inside ``probing(model, bn_mode)``.
    """
    params, buffers = clone_state(model)
    names = list(params) if names is None else list(names)
    unknown = [n for n in names if n not in params]
    if unknown or not names:
        raise ValueError(f"Unknown parameter name(s) {unknown} (or none given); the model has: "
                         f"{', '.join(params)}")
    theta = torch.cat([params[n].reshape(-1) for n in names])  # (P,)
    crit, bufs = loss_fn(loss), _probe_buffers(model, buffers, bn_mode)

    def of_blocks(blocks: Sequence[torch.Tensor]) -> torch.Tensor:
        # non-BN buffers are cloned per call so a norm that updates them in place stays legal
        b = {k: (v.clone() if v is not None and bn_mode == "batch" else v)
             for k, v in bufs.items()}
        return crit(functional_call(model, ({**params, **dict(zip(names, blocks, strict=True))}, b), (X,)), y)

    return FlatLoss(of_blocks, [params[n].shape for n in names]), theta


def _hvp_fn(f: Callable, theta: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    g = grad(f)
    return lambda v: jvp(g, (theta,), (v,))[1]  # forward-over-reverse: d/de grad f(theta + e v)


def hvp(model: nn.Module, X: torch.Tensor, y: torch.Tensor, V: torch.Tensor, *, bn_mode: str,
        loss: str = "ce", names: Sequence[str] | None = None,
        chunk_size: int | None = None) -> torch.Tensor:
    """Hessian-vector product(s) ``H v`` of the loss at (X, y) for the ``names`` block.

    ``V`` is (P,) or (k, P) in the flat order of ``names``; a batch of vectors goes through
    ``vmap`` (``chunk_size`` vectors at a time to bound memory).
    """
    with probing(model, bn_mode):
        f, theta = _flat_loss(model, X, y, bn_mode=bn_mode, loss=loss, names=names)
        if V.shape[-1] != theta.numel() or V.dim() not in (1, 2):
            raise ValueError(f"V must have shape ({theta.numel()},) or (k, {theta.numel()}); "
                             f"got {tuple(V.shape)}")
        one = _hvp_fn(f, theta)
        V = V.to(theta.dtype)
        return one(V) if V.dim() == 1 else vmap(one, chunk_size=chunk_size)(V)


def hessian(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, bn_mode: str,
            loss: str = "ce", names: Sequence[str] | None = None,
            chunk_size: int = 128) -> torch.Tensor:
    """The exact (P, P) Hessian of the loss for the ``names`` block (default: all parameters).

    Built as ``vmap`` of HVPs over the identity, ``chunk_size`` columns at a time.
    """
    with probing(model, bn_mode):
        f, theta = _flat_loss(model, X, y, bn_mode=bn_mode, loss=loss, names=names)
        P = theta.numel()
        if P > MAX_DENSE_PARAMS:
            raise ValueError(f"A dense Hessian of {P} parameters is too large (limit "
                             f"{MAX_DENSE_PARAMS}); pass names=[...] for a block, or use "
                             "hessian_topk for the top eigenvalues")
        eye = torch.eye(P, dtype=theta.dtype, device=theta.device)  # (P, P)
        return vmap(_hvp_fn(f, theta), chunk_size=chunk_size)(eye)  # (P, P), row i = H e_i


def layer_name(model: nn.Module, i: int = -1) -> str:
    """Parameter name of the weight of conv/linear layer ``i`` (0-based; -1: the last, Reyes &
    Levy's W2; 0: the first, their W1)."""
    layer = weight_layers(model)[i]
    return next(f"{name}.weight" for name, m in model.named_modules() if m is layer)


def last_layer_name(model: nn.Module) -> str:
    """Parameter name of the last conv/linear layer's weight (Reyes & Levy's W2)."""
    return layer_name(model, -1)


def last_layer_hessian(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, bn_mode: str,
                       loss: str = "ce") -> torch.Tensor:
    """Exact Hessian w.r.t. the last layer's weight, flattened row-major: (out*in, out*in)."""
    return hessian(model, X, y, bn_mode=bn_mode, loss=loss, names=[last_layer_name(model)])


def last_layer_input(model: nn.Module, X: torch.Tensor, *, bn_mode: str) -> torch.Tensor:
    """The (N, in) input of the last conv/linear layer at X: the h in H_W2 = E[A (x) h h^T]."""
    with probing(model, bn_mode), torch.no_grad():
        params, buffers = clone_state(model)
        seen: list[torch.Tensor] = []
        hook = weight_layers(model)[-1].register_forward_pre_hook(
            lambda _m, args: seen.append(args[0].detach().clone()))
        try:
            functional_call(model, (params, _probe_buffers(model, buffers, bn_mode)), (X,))
        finally:
            hook.remove()
    return seen[0]


def _reorthogonalise(w: torch.Tensor, Q: torch.Tensor, passes: int = 1) -> None:
    """Remove from ``w``, in place, its components along the orthonormal rows of ``Q`` by
    classical Gram-Schmidt: ``passes`` passes, or two when the first shrank ``w`` below 1/sqrt(2)
    of its norm (Kahan's "twice is enough" test, Parlett Sec. 6.9)."""
    for i in range(2):
        before = w.norm()
        w -= Q.T @ (Q @ w)
        if i + 1 >= passes and w.norm() >= before / 2**0.5:
            return


def lanczos(matvec: Callable[[torch.Tensor], torch.Tensor], n: int, *, k: int,
            tol: float = 1e-3, max_iter: int = 200, seed: int = 0,
            dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu",
            vectors: bool = False) -> Eigen:
    """The k largest (algebraic) eigenvalues of a symmetric n x n operator.

    Lanczos with full reorthogonalisation (see the module docstring); the basis is kept in
    ``dtype``. Starts from a seeded Gaussian vector; ``max_iter`` caps the matvecs.
    ``vectors``: also return the Ritz vectors (the basis times the tridiagonal's eigenvectors).
    """
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n={n}]; got {k}")
    if tol <= 0:
        raise ValueError(f"tol must be > 0; got {tol}")
    gen = torch.Generator(device=device).manual_seed(seed)
    m_max = min(max_iter, n)
    # (m, n) Lanczos basis: rows are written before they are read, so nothing is zero-filled
    # (zeroing 200 rows cost more than a third of the HVPs' time on the 79,510-parameter MLP)
    Q = torch.empty(m_max, n, dtype=dtype, device=device)
    alpha, beta = np.zeros(m_max), np.zeros(m_max)
    q = torch.randn(n, generator=gen, dtype=dtype, device=device)
    Q[0] = q / q.norm()
    theta, res, m = np.zeros(0), np.zeros(0), 0
    for j in range(m_max):
        w = matvec(Q[j]).to(dtype)  # (n,)
        alpha[j] = float(Q[j] @ w)
        w = w - alpha[j] * Q[j] - (beta[j - 1] * Q[j - 1] if j else 0)  # the three-term step
        _reorthogonalise(w, Q[: j + 1])
        beta[j] = float(w.norm())
        m = j + 1
        theta, S = scipy.linalg.eigh_tridiagonal(alpha[:m], beta[: m - 1])
        theta, S = theta[::-1], S[:, ::-1]  # descending
        res = beta[j] * np.abs(S[-1])  # residual norm of each Ritz pair
        if (m >= k and np.all(res[:k] <= tol * np.abs(theta[:k]))) or m == m_max:
            break
        if beta[j] <= 1e-12 * max(np.abs(theta[0]), 1e-300):  # invariant subspace: restart
            beta[j] = 0.0
            w = torch.randn(n, generator=gen, dtype=dtype, device=device)
            _reorthogonalise(w, Q[: j + 1], passes=2)
        Q[j + 1] = w / w.norm()
    kk = min(k, m)
    ok = bool(m >= k and np.all(res[:k] <= tol * np.abs(theta[:k])))
    vecs = (torch.from_numpy(S[:, :kk].copy()).to(Q).T @ Q[:m]).cpu().numpy() if vectors else None
    return Eigen(eigenvalues=theta[:kk].copy(), residuals=res[:kk].copy(), num_matvecs=m,
                 converged=ok or m == n, vectors=vecs, weights=(S[0, :kk] ** 2).copy())


def hvp_operator(f: FlatLoss, theta: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``v -> H v`` at ``theta`` for the loss ``f``: the gradient's graph is built once
    (``create_graph``) on the parameter blocks as separate tensors, as PyHessian does, and kept;
    each product is one more backward pass through it, and one copy into the flat vector. (On
    ``theta`` itself, every product also went back through each block's split, view and clone,
    a few percent on the 25-layer DLN's many small blocks; the products are bit-identical.)"""
    blocks = [b.clone().requires_grad_() for b in f.split(theta.detach())]
    with torch.enable_grad():
        gs = torch.autograd.grad(f.of_blocks(blocks), blocks, create_graph=True)

    def product(v: torch.Tensor) -> torch.Tensor:
        hs = torch.autograd.grad(gs, blocks, f.split(v.to(theta.dtype)), retain_graph=True)
        return torch.cat([h.reshape(-1) for h in hs])
    return product


def hessian_topk(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, k: int = 10,
                 bn_mode: str, loss: str = "ce", names: Sequence[str] | None = None,
                 tol: float = 1e-3, max_iter: int = 200, seed: int = 0, vectors: bool = False) -> Eigen:
    """Top-k Hessian eigenvalues of the loss at (X, y) by Lanczos on HVPs (float64 basis)."""
    with probing(model, bn_mode):
        f, theta = _flat_loss(model, X, y, bn_mode=bn_mode, loss=loss, names=names)
        return lanczos(hvp_operator(f, theta), theta.numel(), k=k, tol=tol,
                       max_iter=max_iter, seed=seed, device=theta.device, vectors=vectors)


def pseudo_condition(eigenvalues: np.ndarray | torch.Tensor, *, k: int = 10) -> float:
    """Reyes & Levy's kappa' = lambda_1 / lambda_k of the eigenvalues sorted descending."""
    lam = np.sort(np.asarray(eigenvalues, dtype=np.float64))[::-1]
    if lam.size < k:
        raise ValueError(f"pseudo_condition needs at least k={k} eigenvalues; got {lam.size}")
    return float(lam[0] / lam[k - 1])


def block_frobenius(matvec: Callable[[torch.Tensor], torch.Tensor], sizes: tuple[int, int], *,
                    probes: int, seed: int = 0) -> np.ndarray:
    """(2, 2) Hutchinson estimates of the squared Frobenius norms ||H_ab||_F^2 of the blocks
    of a symmetric operator on two blocks of ``sizes``: for Rademacher vectors v supported on
    block b, E ||(H v)_a||^2 = ||H_ab||_F^2; ``probes`` vectors per block."""
    gen, n, out = torch.Generator().manual_seed(seed), sum(sizes), np.zeros((2, 2))
    cuts = (0, sizes[0], n)
    for b in range(2):
        for _ in range(probes):
            v = torch.zeros(n, dtype=torch.float64)
            v[cuts[b]:cuts[b + 1]] = torch.randint(0, 2, (sizes[b],), generator=gen).double() * 2 - 1
            w = matvec(v).double()
            for a in range(2):
                out[a, b] += float(w[cuts[a]:cuts[a + 1]].pow(2).sum()) / probes
    return out


def near_zero_share(e: Eigen, band: float) -> float:
    """Share of the spectrum within ``band`` x the largest Ritz value of zero, by stochastic
    Lanczos quadrature: the weights of the Ritz values of an m-step ``lanczos`` run (k = m)
    from a random start approximate the spectral measure (Ubaru, Chen and Saad 2017)."""
    return float(np.sum(e.weights[np.abs(e.eigenvalues) <= band * e.eigenvalues[0]]))


# ---------------------------------------------------------------- probe specs for the run store

@dataclass(frozen=True)
class LastLayerHessian:
    """Every eigenvalue of the exact Hessian w.r.t. the last layer's weight (Reyes & Levy's W2),
    descending, on the first ``size`` training images; plus the scale of that layer's input
    (mean of h^2) and its number of constant coordinates (silent ReLUs, constant after BN)."""

    size: int = 1000              # the fixed Hessian batch: the first ``size`` training images
    bn_mode: str = "batch"        # BN statistics inside the Hessian

    def measure(self, ctx: StepContext) -> dict[str, np.ndarray]:
        X, y = ctx.data.X_train[:self.size], ctx.data.y_train[:self.size]
        H = last_layer_hessian(ctx.model, X, y, bn_mode=self.bn_mode, loss=ctx.cfg.loss)  # (P2, P2)
        h = last_layer_input(ctx.model, X, bn_mode=self.bn_mode)  # (N, in)
        return {"eigenvalues": torch.linalg.eigvalsh(H.double()).flip(0).cpu().numpy(),
                "feat_sq": np.array(float(h.pow(2).mean())),
                "const_units": np.array(int((h.amax(0) == h.amin(0)).sum()))}


@dataclass(frozen=True)
class HessianTopK:
    """The ``k`` largest eigenvalues of the Hessian of all parameters by Lanczos
    (``hessian_topk``) on the first ``size`` training images; NaN where fewer were found."""

    size: int = 1000
    k: int = 10
    bn_mode: str = "batch"
    tol: float = 1e-3             # relative accuracy certified by the residual bound
    max_iter: int = 200
    seed: int = 0                 # Lanczos start vector

    def measure(self, ctx: StepContext) -> dict[str, np.ndarray]:
        X, y = ctx.data.X_train[:self.size], ctx.data.y_train[:self.size]
        e = hessian_topk(ctx.model, X, y, k=self.k, bn_mode=self.bn_mode, loss=ctx.cfg.loss,
                         tol=self.tol, max_iter=self.max_iter, seed=self.seed)
        top = np.full(self.k, np.nan)
        top[:len(e.eigenvalues)] = e.eigenvalues
        return {"eigenvalues": top, "num_matvecs": np.array(e.num_matvecs),
                "converged": np.array(e.converged)}


@dataclass(frozen=True)
class HessianBlocks:
    """Reyes & Levy's block picture of the Hessian, on the first ``size`` training images:
    the squared Frobenius norms of the blocks of the [W1, W2] Hessian (``block_frobenius``),
    the top eigenvalue of the W1 block (Lanczos), and the ``k`` largest eigenvalues of the
    whole Hessian (all parameters) with the share of each one's unit eigenvector on W2."""

    size: int = 1000
    k: int = 21
    bn_mode: str = "batch"
    tol: float = 1e-2             # relative accuracy of every Lanczos eigenvalue
    probes: int = 10              # Hutchinson vectors per block
    max_iter: int = 300
    seed: int = 0

    def measure(self, ctx: StepContext) -> dict[str, np.ndarray]:
        X, y = ctx.data.X_train[:self.size], ctx.data.y_train[:self.size]
        model, names = ctx.model, [layer_name(ctx.model, 0), layer_name(ctx.model, -1)]
        sizes = tuple(dict(model.named_parameters())[n].numel() for n in names)
        with probing(model, self.bn_mode):
            f, theta = _flat_loss(model, X, y, bn_mode=self.bn_mode, loss=ctx.cfg.loss, names=names)
            mv = hvp_operator(f, theta)
            fro = block_frobenius(mv, sizes, probes=self.probes, seed=self.seed)
            pad = torch.zeros(sizes[1], dtype=torch.float64)
            w1 = lanczos(lambda v: mv(torch.cat([v, pad]))[:sizes[0]], sizes[0], k=1, tol=self.tol,
                         max_iter=self.max_iter, seed=self.seed)
        full = hessian_topk(model, X, y, k=self.k, bn_mode=self.bn_mode, loss=ctx.cfg.loss, tol=self.tol,
                            max_iter=self.max_iter, seed=self.seed, vectors=True)
        start = 0
        for n, p in model.named_parameters():  # W2's slice of the flat parameter vector
            if n == names[1]:
                break
            start += p.numel()
        top = np.full(self.k, np.nan)
        top[:len(full.eigenvalues)] = full.eigenvalues
        share = np.full(self.k, np.nan)
        share[:len(full.eigenvalues)] = np.sum(full.vectors[:, start:start + sizes[1]] ** 2, 1)
        return {"frobenius_sq": fro, "w1_lam1": np.array(w1.eigenvalues[0]), "full_top": top,
                "w2_share": share, "num_matvecs": np.array(w1.num_matvecs + full.num_matvecs + 2 * self.probes)}


@dataclass(frozen=True)
class NearZeroShare:
    """The share of the whole Hessian's spectrum within ``band`` x lambda_1 of zero
    (``near_zero_share``, one ``steps``-step Lanczos run) on the first ``size`` training images."""

    size: int = 1000
    steps: int = 80
    band: float = 0.01
    bn_mode: str = "batch"
    seed: int = 0

    def measure(self, ctx: StepContext) -> dict[str, np.ndarray]:
        X, y = ctx.data.X_train[:self.size], ctx.data.y_train[:self.size]
        e = hessian_topk(ctx.model, X, y, k=self.steps, bn_mode=self.bn_mode, loss=ctx.cfg.loss,
                         tol=1e-12, max_iter=self.steps, seed=self.seed)
        return {"share": np.array(near_zero_share(e, self.band)), "lam1": np.array(e.eigenvalues[0]),
                "params": np.array(sum(p.numel() for p in ctx.model.parameters()))}


@lru_cache(maxsize=4)
def _held_out(name: str, n: int, start: int, size: int, device: str,
              dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    full = data.load(name, device=device, train_size=start + size, dtype=dtype)
    if start < n or len(full.X_train) < start + size:
        raise ValueError(f"The validation set (training images {start}..{start + size - 1} of "
                         f"{name}) must follow the trajectory's {n} training images and exist "
                         f"({name} has {len(full.X_train)}); lower val_size or train_size")
    A = full.X_train[:n]  # the trajectory's images, standardised with other statistics
    mean, std = A.mean(dim=(0, 2, 3), keepdim=True), A.std(dim=(0, 2, 3), keepdim=True)
    return (full.X_train[start:] - mean) / std, full.y_train[start:]


def held_out(d: data.Data, start: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Training images ``start .. start + size - 1`` of ``d``'s data set, which ``d`` does not
    hold, standardised as ``d`` is: with the statistics of ``d``'s own training images."""
    return _held_out(d.name, len(d.X_train), start, size, str(d.device), d.X_train.dtype)


@dataclass(frozen=True)
class Accuracies:
    """Loss and accuracy (BN with running statistics) on the first ``train_size`` training
    images, on the validation set (``val_size`` training images from ``val_start`` on) and on
    the test set."""

    val_start: int                # first validation image; after every trajectory's own
    val_size: int = 10_000
    train_size: int = 10_000      # training images evaluated (the first ones)

    def measure(self, ctx: StepContext) -> dict[str, np.ndarray]:
        d = ctx.data
        Xv, yv = held_out(d, self.val_start, self.val_size)
        out = {}
        for name, X, y in (("train", d.X_train[:self.train_size], d.y_train[:self.train_size]),
                           ("val", Xv, yv), ("test", d.X_test, d.y_test)):
            loss, acc = evaluate(ctx.model, X, y, loss=ctx.cfg.loss)
            out[f"{name}_loss"], out[f"{name}_acc"] = np.array(loss), np.array(acc)
        return out
