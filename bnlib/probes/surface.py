"""Loss surfaces along filter-normalised random directions (Li et al. 2018, Sec. 4).

A surface is the loss at ``theta + a * d1 (+ b * d2)`` for every point of a grid of
coefficients, with ``theta`` the trained parameters and ``d1, d2`` random directions built by
``directions.random_direction``. The same engine gives 1D interpolation between two parameter
sets (Goodfellow et al. 2015; Li et al. Sec. 3), 1D slices, 2D surfaces and a sharpness number.

Speed (``benchmarks/bench_surface.py``): the reference code (tomgoldstein/loss-landscape:
plot_surface.py ``crunch``) moves the weights in place and streams a DataLoader with
per-image transforms for every grid point. Here the data subset stays on the device as
tensors in channels-last layout, and the first layer, being linear in its weights, is evaluated
once per surface at the centre and along each direction and combined per point. With running
BN statistics a Sequential of known layers runs as an evaluation-only rewrite (``fused``): each
BN folded into the layer before it, per point, max-pools before ReLUs, the first BN folded into
the basis when no direction moves it, and a basis that a 2x2 max-pool follows kept as the
pool's four phases: 2.2x faster on LeNet and 1.4-1.5x on VGG-11/8 than the plain path
(``benchmarks/bench_surface.py``, two quiet runs).
Otherwise (batch statistics, other layers) every point is evaluated with ``functional_call``
on cloned tensors, and ``points_per_call`` points can share one ``torch.func.vmap``-ed call
(on this project's CPU one point per call was fastest, so that is the default). The model is
never mutated.

BN: ``bn_mode="running"`` (eval mode, Li et al.'s choice) uses the model's running statistics;
``"batch"`` normalises every chunk of ``batch_size`` samples with its own statistics. In
``"batch"`` mode every grid point gets its own clone of the buffers, so the in-place
running-statistics update that makes ``vmap`` over train-mode BN fail (pytorch/pytorch:
docs/source/func.batch_norm.md) lands in a batched tensor and is legal.

Resuming: with ``path=...`` the partial grid (values and a ``done`` mask) is written
atomically (temp file + ``os.replace``) after every group of points, and a later call with
the same inputs continues from it. Groups are fixed slices of the flattened grid, so a
resumed surface evaluates exactly the same groups as an uninterrupted one.

Probe specs (``Plane``, ``Slices``, ``Interpolation``, ``Sharpness``): frozen dataclasses whose
fields are their parameters, run by the run store on a trajectory's checkpoints (usually the
last one) via ``measure(ctx)``, on the trajectory's first ``size`` training images.
"""

from __future__ import annotations

import copy
import hashlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap

from ..functional import check_bn_mode, clone_state, probing
from ..models import ModelSpec, build
from ..train import StepContext, make_optimizer
from . import fused
from .directions import Tensors, random_direction
from .landscape import line_search

BASIS_BYTES = 2**30  # memory allowed for the cached first-layer outputs (reuse_first_layer)
# fewest grid points that share each chunk of data on the fused path (and so the resume step).
# 1, 4 and 16 ran within 5% of each other once bench_surface shuffled its order (the 10-40% for
# 16 seen before was the slot after the reference loop); same surface bit for bit. So the small
# group, which loses less to a kill. benchmarks/bench_surface.py --groups re-measures it.
FUSED_GROUP = 4


@dataclass(frozen=True)
class Surface:
    """Loss and accuracy on a grid: ``loss[i]`` (1D) or ``loss[i, j]`` (2D, at xs[i], ys[j])."""

    xs: np.ndarray           # (nx,) coefficients along the first direction
    ys: np.ndarray | None    # (ny,) along the second direction; None for a 1D slice
    loss: np.ndarray         # (nx,) or (nx, ny) mean cross-entropy over the data subset
    acc: np.ndarray          # same shape, accuracy in [0, 1]


def _first_layer(model: nn.Module) -> int | None:
    """Index of a Sequential's first conv/linear layer if only stateless reshapes precede it."""
    if not isinstance(model, nn.Sequential):
        return None
    for i, m in enumerate(model):
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            return i
        if not isinstance(m, (nn.Flatten, nn.Identity)):
            return None
    return None


def _stack_points(center: Tensors, directions: Sequence[Tensors], coef: torch.Tensor,
                  names: Sequence[str]) -> Tensors:
    """Parameters of G grid points, ``center + sum_k coef[:, k + 1] * directions[k]``."""
    out = {}
    for name in names:
        c = center[name]
        p = c.unsqueeze(0).expand(len(coef), *c.shape).clone()          # (G, *shape)
        for k, d in enumerate(directions):
            p += coef[:, k + 1].view(-1, *([1] * c.dim())) * d[name].unsqueeze(0)
        out[name] = p
    return out


def _fast_layout(x: torch.Tensor) -> torch.Tensor:
    """Channels-last for image batches: oneDNN's conv and max-pool run several times faster
    on it on CPU (measured in ``benchmarks/bench_surface.py``); values are unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def _first_layer_basis(model: nn.Module, first: int, center: Tensors,
                       directions: Sequence[Tensors], X: torch.Tensor) -> list[torch.Tensor]:
    """The first layer's output at the centre and along each direction: 1 + K of (n, ...).

    The layer is linear in its (weight, bias), so its output at any grid point is the
    combination ``basis[0] + sum_k a_k basis[k + 1]``: computed once per surface, not per point.
    A channels-last input makes the conv 1.4-2.2x faster than converting its output (measured).
    """
    lead = model[: first + 1]
    names = [k for k in center if k.startswith(f"{first}.")]
    X = _fast_layout(X)
    return [_fast_layout(functional_call(lead, {k: t[k] for k in names}, (X,)))
            for t in (center, *directions)]


def _input(model: nn.Module, first: int | None, pooled: fused.Affine | None, center: Tensors,
           directions: Sequence[Tensors], X: torch.Tensor) -> torch.Tensor | list:
    """What the forward functions take for the chunk ``X``: the data in the fast layout, or its
    first-layer basis (with ``pooled``, the plan's first step, as the four phases of the
    max-pool after the layer, each a list of 1 + K)."""
    if first is None:
        return _fast_layout(X)
    if pooled is not None:
        return fused.phases(pooled.layer, pooled.name, (center, *directions), model[:first](X))
    return _first_layer_basis(model, first, center, directions, X)


def _fold_first_bn(plan: fused.Plan | None, basis: bool, center: Tensors, buffers: Tensors,
                   directions: Sequence[Tensors]) -> tuple[fused.Plan | None, tuple]:
    """The plan and the parameters (centre, directions) the first-layer basis is computed from:
    when the first layer's BN is the same at every point, it is folded into the basis once per
    surface and leaves the plan."""
    head = plan.steps[0] if plan is not None and basis else None
    if head is None or head.bn is None or head.layer.bias is None or head.moves_bn(directions):
        return plan, (center, directions)
    folded = head.folded(center, buffers, directions)
    return fused.Plan([head.without_bn(), *plan.steps[1:]]), (folded[0], folded[1:])


def _plain_forward(body: nn.Module, params: Tensors, buffers: Tensors, coef: torch.Tensor, *,
                   bn_mode: str, basis: bool) -> Callable:
    """``input -> logits (G, n, classes)`` of the G stacked parameter sets by ``functional_call``
    on the model as it is; with ``basis`` an input is a first-layer basis to combine with
    ``coef`` (G, 1 + K), otherwise the data itself."""
    G = len(coef)
    # batch mode updates running statistics in place: give every point its own copy
    buffers = {k: v.unsqueeze(0).expand(G, *v.shape).clone() for k, v in buffers.items()}
    batched = bn_mode == "batch"
    if G == 1:  # no vmap: plain functional_call is faster for a single point
        params = {k: v[0] for k, v in params.items()}
        buffers = {k: v[0] for k, v in buffers.items()}
        call = lambda p, b, x: functional_call(body, (p, b), (x,)).unsqueeze(0)  # noqa: E731
    else:
        call = vmap(lambda p, b, x: functional_call(body, (p, b), (x,)),
                    in_dims=(0, 0 if batched else None, 0 if basis else None))
        buffers = buffers if batched else {k: v[0] for k, v in buffers.items()}

    def forward(inp):
        if not basis:
            x = inp
        elif G == 1:  # elementwise, so the channels-last layout survives
            x = inp[0].clone()
            for k in range(1, len(inp)):
                x.add_(inp[k], alpha=float(coef[0, k]))
        else:
            x = torch.tensordot(coef.to(inp[0].dtype), torch.stack(inp), dims=1)  # (G, n, ...)
        return call(params, buffers, x)
    return forward


def _fused_forward(plan: fused.Plan, params: Tensors, buffers: Tensors, coef: torch.Tensor, *,
                   basis: bool, pooled: bool) -> Callable:
    """``input -> logits (G, n, classes)`` by the rewritten model ``plan`` (running BN folded
    into the layers), its weights computed once per point; inputs as ``_input`` makes them.
    With ``basis`` the plan's first step (the first layer) is the combination of the basis, and
    with ``pooled`` the max-pool after it the maximum of the combined phases.
    The G points run one after another on each chunk, while it is in cache."""
    points = [{k: v[g] for k, v in params.items()} for g in range(len(coef))]
    head, body = plan.steps[0], fused.Plan(plan.steps[1 + pooled:]) if basis else plan
    weights = [body.weights(p, buffers) for p in points]

    def first(inp, p, c):  # the body's input at the point with parameters p, coefficients c
        if not basis:
            return inp
        if not pooled:
            return head.combine(p, buffers, inp, c)
        out = head.combine(p, buffers, inp[0], c)
        for phase in inp[1:]:
            torch.maximum(out, head.combine(p, buffers, phase, c), out=out)
        return out

    def forward(inp):
        return torch.stack([body.forward(w, first(inp, p, c)) for p, c, w in zip(points, coef, weights)])
    return forward


def _scores(forward: Callable, chunks: Sequence[tuple], G: int,
            device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy and accuracy of each of G points over the chunks, shape (G,)."""
    n = sum(len(yc) for _, yc in chunks)
    loss_sum = torch.zeros(G, dtype=torch.float64, device=device)
    correct = torch.zeros(G, dtype=torch.float64, device=device)
    for inp, yc in chunks:
        out = forward(inp)                                               # (G, n, classes)
        yy = yc.expand(G, -1)                                            # (G, n)
        ce = nn.functional.cross_entropy(out.flatten(0, 1), yy.flatten(), reduction="none")
        loss_sum += ce.view(G, -1).double().sum(1)
        correct += (out.argmax(-1) == yy).double().sum(1)
    return loss_sum / n, correct / n


def _fingerprint(*arrays: torch.Tensor | np.ndarray | str) -> str:
    """Hash of every input a grid depends on, so a resume never mixes two computations."""
    h = hashlib.blake2b(digest_size=16)
    for a in arrays:
        if isinstance(a, str):
            h.update(a.encode())
        else:
            t = torch.as_tensor(a).detach().cpu().contiguous()
            h.update(str((t.dtype, tuple(t.shape))).encode())
            h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _save(path: str, **arrays: np.ndarray) -> None:
    tmp = f"{path}.tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)  # atomic on POSIX: a reader sees the old or the new grid, never half


def _progress(path: str | None, key: str, P: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Loss, accuracy and the ``done`` mask of P points: empty, or read from ``path``."""
    if path is None or not os.path.exists(path):
        return np.full(P, np.nan), np.full(P, np.nan), np.zeros(P, dtype=bool)
    with np.load(path) as old:
        if str(old["key"]) != key:
            raise ValueError(f"{path} holds a grid computed from other inputs (model, directions, "
                             "data, grid or options); delete it or pass another path")
        return old["loss"].copy(), old["acc"].copy(), old["done"].copy()


def evaluate_grid(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *,
                  directions: Sequence[Tensors], coords: np.ndarray, center: Tensors | None = None,
                  bn_mode: str = "running", batch_size: int = 250, points_per_call: int = 1,
                  reuse_first_layer: bool = True, fuse: bool | None = None,
                  path: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Loss and accuracy at ``center + sum_k coords[p, k] * directions[k]`` for every row p.

    ``center`` (default: the model's parameters) may replace some or all of them; a direction
    may omit parameters (they do not move). ``points_per_call`` grid points are evaluated per
    group: one vmapped forward pass on the plain path (1 is fastest on CPU, measured; more pays
    where one point leaves the device idle), one after another on each chunk of data on the
    fused path (``fuse``: running BN and a Sequential ``fused.compile_plan`` knows; equal to the
    plain path to float32 rounding; by default only on the CPU, where it was measured, so a GPU
    keeps batching ``points_per_call`` points in one vmapped pass). ``reuse_first_layer`` keeps
    the first layer's outputs for the whole subset, (1 + K) of them, in memory (skipped beyond ``BASIS_BYTES``). With
    ``path``, progress is saved there, after every group (on the fused path at least
    ``FUSED_GROUP`` points), and resumed from it.
    Returns two float64 arrays of shape (P,).
    """
    check_bn_mode(bn_mode)
    coords = np.asarray(coords, dtype=np.float64)
    coords = coords[:, None] if coords.ndim == 1 else coords                  # (P, K)
    if coords.shape[1] != len(directions):
        raise ValueError(f"coords has {coords.shape[1]} columns but {len(directions)} directions "
                         "were given; pass one coefficient per direction")
    if points_per_call < 1 or batch_size < 1:
        raise ValueError(f"points_per_call and batch_size must be >= 1; got {points_per_call}, "
                         f"{batch_size}")
    params, buffers = clone_state(model)
    center = {k: v.detach().clone() for k, v in {**params, **(center or {})}.items()}
    unknown = sorted({k for d in directions for k in d if k not in center})
    if unknown:
        raise ValueError(f"direction has entries {unknown} that are not parameters of the model")
    dirs = [{k: d[k].detach().to(v) if k in d else torch.zeros_like(v) for k, v in center.items()}
            for d in directions]
    path = None if path is None else os.fspath(path)
    fuse = X.device.type == "cpu" if fuse is None else fuse
    key = "" if path is None else _fingerprint(
        *center.values(), *buffers.values(), *[t for d in dirs for t in d.values()], X, y,
        coords, f"{bn_mode}/{batch_size}/{points_per_call}/{reuse_first_layer}/{fuse}")
    loss, acc, done = _progress(path, key, len(coords))
    first = _first_layer(model) if reuse_first_layer else None
    if first is not None:
        with torch.no_grad():  # the size of the basis, from one image
            per_image = model[: first + 1](X[:1]).numel()  # stateless layers: no side effect
        if (1 + len(dirs)) * len(X) * per_image * X.element_size() > BASIS_BYTES:
            first = None
    body = model if first is None else model[first + 1:]
    basis = first is not None
    plan = fused.compile_plan(model, first or 0) if bn_mode == "running" and fuse else None
    plan, basis_at = _fold_first_bn(plan, basis, center, buffers, dirs)
    pooled = plan is not None and basis and plan.pools_first()
    names = [k for k, _ in body.named_parameters()]
    dtype = next(iter(center.values())).dtype
    chunks: list | None = None  # built on first use, so a finished grid costs nothing
    with torch.no_grad(), probing(model, bn_mode):
        group = points_per_call if plan is None else max(points_per_call, FUSED_GROUP)
        for start in range(0, len(coords), group):
            sl = slice(start, start + group)
            if done[sl].all():
                continue
            if chunks is None:
                chunks = [(_input(model, first, plan.steps[0] if pooled else None, *basis_at, Xc), yc)
                          for Xc, yc in zip(X.split(batch_size), y.split(batch_size))]
            c = torch.as_tensor(coords[sl], device=X.device, dtype=dtype)
            coef = torch.cat([torch.ones_like(c[:, :1]), c], dim=1)     # (G, 1 + K)
            points = _stack_points(center, dirs, coef, names)
            forward = (_plain_forward(body, points, buffers, coef, bn_mode=bn_mode, basis=basis)
                       if plan is None else _fused_forward(plan, points, buffers, coef, basis=basis, pooled=pooled))
            lo, ac = _scores(forward, chunks, len(coef), coef.device)
            loss[sl], acc[sl], done[sl] = lo.cpu().numpy(), ac.cpu().numpy(), True
            if path is not None:
                _save(path, loss=loss, acc=acc, done=done, key=np.array(key))
    return loss, acc


def surface_2d(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *,
               directions: tuple[Tensors, Tensors], xs: np.ndarray, ys: np.ndarray,
               **options) -> Surface:
    """The loss on the grid ``xs x ys`` of the plane spanned by two directions at the model.

    ``options`` go to ``evaluate_grid`` (``bn_mode``, ``batch_size``, ``points_per_call``,
    ``path``, ``center``).
    """
    xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
    a, b = np.meshgrid(xs, ys, indexing="ij")                       # (nx, ny) each
    coords = np.stack([a.ravel(), b.ravel()], axis=1)               # (nx * ny, 2)
    loss, acc = evaluate_grid(model, X, y, directions=directions, coords=coords, **options)
    return Surface(xs, ys, loss.reshape(a.shape), acc.reshape(a.shape))


def slice_1d(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, direction: Tensors,
             xs: np.ndarray, **options) -> Surface:
    """The loss along one direction, ``theta + x * direction`` for x in ``xs``."""
    xs = np.asarray(xs, dtype=np.float64)
    loss, acc = evaluate_grid(model, X, y, directions=[direction], coords=xs[:, None], **options)
    return Surface(xs, None, loss, acc)


def interpolate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, start: Tensors,
                end: Tensors, alphas: np.ndarray, **options) -> Surface:
    """Linear interpolation ``(1 - alpha) * start + alpha * end`` (Goodfellow et al. 2015).

    The buffers (BN running statistics) stay the model's at every alpha; with
    ``bn_mode="running"`` they belong to whichever parameters the model holds, so for an
    init-to-final path ``bn_mode="batch"`` is the fairer choice.
    """
    direction = {k: end[k].detach() - start[k].detach() for k in start}
    return slice_1d(model, X, y, direction=direction, xs=alphas, center=start, **options)


def sharpness(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, radius: float,
              num_directions: int = 8, seed: int = 0, norm: str = "filter",
              ignore_bias_bn: bool = True, **options) -> dict[str, float]:
    """Mean loss rise at distance ``radius`` along ``num_directions`` normalised random
    directions, both signs: ``mean_{k, +-} L(theta +- radius * d_k) - L(theta)``.

    A flat minimum has a small rise (Keskar et al. 2017; Li et al. 2018 Sec. 5). Direction k
    is drawn from ``seed + k``. Returns the centre loss, the mean rise and its standard
    deviation over the 2K points.
    """
    params, _ = clone_state(model)
    centre, _ = evaluate_grid(model, X, y, directions=[], coords=np.zeros((1, 0)), **options)
    rise = []
    for k in range(num_directions):
        d = random_direction(params, seed=seed + k, norm=norm, ignore_bias_bn=ignore_bias_bn)
        loss, _ = evaluate_grid(model, X, y, directions=[d], coords=[[radius], [-radius]],
                                **options)
        rise += list(loss - centre[0])
    return {"loss": float(centre[0]), "rise": float(np.mean(rise)), "rise_std": float(np.std(rise))}


# ---------------------------------------------------------------- probe specs (run store)

def _subset(ctx: StepContext, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``size`` training images of the trajectory: the data every surface is on."""
    return ctx.data.X_train[:size], ctx.data.y_train[:size]


def _directions(model: nn.Module, seeds: Sequence[int], norm: str,
                ignore_bias_bn: bool) -> list[Tensors]:
    params = {k: v.detach() for k, v in model.named_parameters()}
    return [random_direction(params, seed=s, norm=norm, ignore_bias_bn=ignore_bias_bn) for s in seeds]


def partial_path(probe: object, model: nn.Module) -> Path:
    """Where a 2D grid in progress is kept, so a killed run resumes it: beside the run store
    (``$BNLIB_RUNS``, else ``./_runs``, as ``runs.runs_root``), named by the probe and the weights."""
    root = Path(os.environ.get("BNLIB_RUNS") or "_runs")
    return root / "partial" / f"{type(probe).__name__}-{_fingerprint(*model.state_dict().values(), repr(probe))}.npz"


@dataclass(frozen=True)
class _Around:
    """Options every probe around the weights shares: the batch, the directions, BN mode."""

    size: int = 500                   # training images the loss is averaged over
    norm: str = "filter"              # direction normalisation (directions.NORMS)
    ignore_bias_bn: bool = True       # zero direction for biases and BN parameters
    bn_mode: str = "running"          # BN statistics (Li et al.: running)
    points_per_call: int = 1          # grid points per vmapped forward pass


@dataclass(frozen=True)
class Plane(_Around):
    """Li et al.'s 2D surface around the probed weights: the loss on the ``points`` x ``points``
    grid over [-span, span]^2 of the plane of two normalised random directions (seeds
    ``seeds``), on the first ``size`` training images. Resumable (``partial_path``).
    Returns ``grid`` (n,), ``loss`` and ``acc`` (n, n) and ``time_s`` (the grid's wall time)."""

    points: int = 21                  # grid points per axis (Li et al.: 51)
    span: float = 1.0                 # half-width of the grid, in direction units
    seeds: tuple = (1, 2)             # seeds of the two directions

    def measure(self, ctx: StepContext) -> dict[str, np.ndarray]:
        X, y = _subset(ctx, self.size)
        grid = np.linspace(-self.span, self.span, self.points)
        path = partial_path(self, ctx.model)
        path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        s = surface_2d(ctx.model, X, y, directions=tuple(_directions(ctx.model, self.seeds, self.norm,
                                                                     self.ignore_bias_bn)),
                       xs=grid, ys=grid, bn_mode=self.bn_mode, points_per_call=self.points_per_call, path=path)
        elapsed = time.perf_counter() - t0
        path.unlink(missing_ok=True)  # the store keeps the finished grid
        return {"grid": grid, "loss": s.loss, "acc": s.acc, "time_s": np.array(elapsed)}


@dataclass(frozen=True)
class Slices(_Around):
    """1D slices through the probed weights along each normalised random direction (seeds
    ``seeds``), ``points`` coefficients on [-span, span]: ``xs`` (n,), ``loss`` (D, n)."""

    points: int = 25
    span: float = 1.0
    seeds: tuple = (1, 2)

    def measure(self, ctx: StepContext) -> dict[str, np.ndarray]:
        X, y = _subset(ctx, self.size)
        xs = np.linspace(-self.span, self.span, self.points)
        loss = [slice_1d(ctx.model, X, y, direction=d, xs=xs, bn_mode=self.bn_mode,
                         points_per_call=self.points_per_call).loss
                for d in _directions(ctx.model, self.seeds, self.norm, self.ignore_bias_bn)]
        return {"xs": xs, "loss": np.stack(loss)}


@dataclass(frozen=True)
class Interpolation:
    """The loss on the line ``(1 - alpha) theta_0 + alpha theta`` from the initial weights
    ``theta_0 = models.build(init, init_seed)`` (the trajectory's own, given its model spec and
    seed) to the probed weights, ``points`` alphas on [lo, hi] (Goodfellow et al. 2015).
    Returns ``alphas``, ``loss`` and ``acc`` (n,)."""

    init: ModelSpec                   # the trajectory's model spec
    init_seed: int                    # the trajectory's seed
    size: int = 500
    points: int = 25
    lo: float = -0.5
    hi: float = 1.5
    bn_mode: str = "batch"            # running statistics belong to the trained weights only
    points_per_call: int = 1

    def measure(self, ctx: StepContext) -> dict[str, np.ndarray]:
        X, y = _subset(ctx, self.size)
        end = {k: v.detach() for k, v in ctx.model.named_parameters()}
        ref = next(iter(end.values()))
        start = {k: v.detach().to(ref) for k, v in build(self.init, self.init_seed).named_parameters()}
        s = interpolate(ctx.model, X, y, start=start, end=end, alphas=np.linspace(self.lo, self.hi, self.points),
                        bn_mode=self.bn_mode, points_per_call=self.points_per_call)
        return {"alphas": s.xs, "loss": s.loss, "acc": s.acc}


@dataclass(frozen=True)
class Sharpness(_Around):
    """``sharpness`` at the probed weights: the mean loss rise at distance ``radius`` along
    ``directions`` normalised random directions (seeds ``seed``, ``seed + 1``, ...), both signs.
    Returns ``loss`` (at the weights), ``rise`` and ``rise_std``."""

    radius: float = 0.25
    directions: int = 8
    seed: int = 10

    def measure(self, ctx: StepContext) -> dict[str, np.ndarray]:
        X, y = _subset(ctx, self.size)
        out = sharpness(ctx.model, X, y, radius=self.radius, num_directions=self.directions, seed=self.seed,
                        norm=self.norm, ignore_bias_bn=self.ignore_bias_bn, bn_mode=self.bn_mode,
                        points_per_call=self.points_per_call)
        return {k: np.array(v) for k, v in out.items()}


# ---------------------------------------------------------------- along the optimiser's own step

def optimizer_update(ctx: StepContext) -> Tensors:
    """The change of every parameter that the trajectory's optimiser makes at ``ctx`` (Adam: its
    direction and length from the stored moments), computed on a copy: ``ctx`` is left alone."""
    model = copy.deepcopy(ctx.model)
    opt = make_optimizer(model, ctx.cfg)
    opt.load_state_dict(copy.deepcopy(ctx.optimizer.state_dict()))  # load_state_dict would share the moments
    model.train()
    opt.zero_grad(set_to_none=True)
    ctx.loss(model(ctx.X), ctx.y).backward()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt.step()
    return {k: v.detach() - before[k] for k, v in model.named_parameters()}


@dataclass(frozen=True)
class UpdateLine:
    """The line search along the optimiser's actual update u (Adam: not the gradient), at
    ``theta + s u`` for s in ``multipliers`` (s = 1 is the step training took), on the step's
    batch with batch statistics; returns ``landscape.line_search``'s arrays (its ``distance`` is
    s ||u||) and ``update_norm``."""

    multipliers: tuple[float, ...]

    def measure(self, ctx: StepContext) -> dict:
        u = optimizer_update(ctx)
        out = line_search(ctx.model, ctx.X, ctx.y, loss=ctx.loss, lr=1.0, multipliers=self.multipliers,
                          direction={k: -v for k, v in u.items()}, match_grad_norm=False)
        return {**out, "update_norm": float(torch.sqrt(sum(v.pow(2).sum() for v in u.values())))}


def definite_shares(loss: np.ndarray) -> dict[str, float]:
    """Shares of the interior points of a 2D grid (equal spacing on both axes) whose Hessian by
    central finite differences is negative definite (``concave``: f_aa < 0 and det > 0) or
    positive definite (``convex``). The spacing scales f_aa and det alike: it drops out."""
    f = np.asarray(loss, dtype=float)
    faa = f[2:, 1:-1] - 2 * f[1:-1, 1:-1] + f[:-2, 1:-1]
    fbb = f[1:-1, 2:] - 2 * f[1:-1, 1:-1] + f[1:-1, :-2]
    fab = (f[2:, 2:] - f[2:, :-2] - f[:-2, 2:] + f[:-2, :-2]) / 4
    det = faa * fbb - fab ** 2
    return {"concave": float(np.mean((faa < 0) & (det > 0))), "convex": float(np.mean((faa > 0) & (det > 0)))}
