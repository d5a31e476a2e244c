"""The loss landscape along a line through the weights (Santurkar et al. 2018, Sec. 3.2).

At parameters theta with gradient g of the current batch and learning rate lr, the probe
evaluates the loss and its gradient at ``theta - s * lr * d`` for a grid of multipliers s,
where the direction d is g itself (Figs. 4, 10, 11 of the paper) or a random direction
(``directions.random_direction``). From these it reports the three quantities of Fig. 4:

* the loss range along the line (how Lipschitz the loss is),
* "gradient predictiveness": the range of ``||grad(theta - s lr d) - grad(theta)||``,
* "effective beta-smoothness": ``max_s ||grad(theta - s lr d) - grad(theta)|| / distance``.

``line_search`` is the measurement; ``LineSearch`` is its probe spec (a frozen dataclass whose
fields are the probe's parameters), run by the run store on a trajectory's checkpoints or
attached during training (``as_probe``), with the same numbers either way.

Evaluation uses the model's own batch statistics on the same batch (``bn_mode="batch"``), on
cloned parameters and buffers, so the model is left exactly as it was (see ``functional``).
The multipliers are evaluated together with ``torch.func.vmap`` where that pays (buffers
stacked along the multiplier axis, so the BN running-statistics update lands in a batched
clone), else one after another; a model that draws random numbers in its forward pass
(noise layers) needs ``vectorize=False``.
Norms are over all parameters concatenated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from ..functional import BN_MODES, Tensors, check_bn_mode, clone_state, loss_fn, probing
from ..models import weight_layers
from ..train import Probe, StepContext
from .directions import NORMS, random_direction

DIRECTIONS = ("gradient", *NORMS)  # along the gradient, or a random direction of that kind


def _norm(t: Tensors) -> torch.Tensor:
    return torch.sqrt(sum(v.pow(2).sum() for v in t.values()))


def _check_direction(direction: Tensors, params: Tensors) -> Tensors:
    if set(direction) != set(params):
        missing, extra = sorted(set(params) - set(direction)), sorted(set(direction) - set(params))
        raise ValueError(f"direction must have one tensor per parameter; missing {missing}, "
                         f"unexpected {extra}")
    for k, p in params.items():
        if direction[k].shape != p.shape:
            raise ValueError(f"direction[{k!r}] has shape {tuple(direction[k].shape)}; "
                             f"the parameter has shape {tuple(p.shape)}")
    return {k: direction[k].detach().to(p) for k, p in params.items()}


def vmap_pays(model: nn.Module, X: torch.Tensor) -> bool:
    """Whether vmapping over multipliers beats a loop. Under vmap a stack of conv weights
    becomes one grouped convolution, which CPU kernels run slower than separate convolutions
    (benchmarks/bench_landscape.py: VGG-11, vmap at 0.6-0.8x the loop's speed on 2 cores);
    for linear layers it pays (deep linear network: 1.3-4x). Off the CPU we assume it pays."""
    has_conv = any(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())
    return X.device.type != "cpu" or not has_conv


def line_search(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, loss: str | Callable,
                lr: float, multipliers: Sequence[float], bn_mode: str = "batch",
                direction: Tensors | None = None, match_grad_norm: bool = False,
                vectorize: bool | None = None, chunk_size: int | None = None) -> dict:
    """Loss and gradient at ``theta - s * lr * d`` for every s in ``multipliers``.

    ``d`` is the gradient g on (X, y), or ``direction`` (a dict like the parameters), rescaled
    to ``||g||`` if ``match_grad_norm``. Returns numpy arrays (length S) ``multipliers``,
    ``loss``, ``grad_diff``, ``grad_norm``, ``distance`` and floats ``loss0``, ``grad_norm0``,
    ``loss_min``, ``loss_max``, ``grad_diff_min``, ``grad_diff_max``, ``beta_eff`` (max of
    grad_diff / distance) and ``lipschitz`` (largest gradient norm seen on the line, theta
    included). ``vectorize=None`` picks vmap where it pays (see ``vmap_pays``);
    ``chunk_size`` bounds how many multipliers vmap evaluates at once (memory).
    """
    check_bn_mode(bn_mode)
    mults = np.asarray(multipliers, dtype=float)
    if mults.ndim != 1 or mults.size == 0 or not bool((mults > 0).all()):
        raise ValueError(f"multipliers must be a non-empty 1-d sequence of positive numbers; "
                         f"got {list(np.asarray(multipliers).ravel())}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0; got {lr}")
    loss = loss_fn(loss) if isinstance(loss, str) else loss
    vectorize = vmap_pays(model, X) if vectorize is None else vectorize

    with probing(model, bn_mode):
        params, buffers = clone_state(model)
        s = torch.as_tensor(mults, device=X.device,
                            dtype=next(iter(params.values())).dtype)  # (S,)

        def f(p: Tensors, b: Tensors) -> torch.Tensor:
            return loss(functional_call(model, (p, b), (X,)), y)

        g, loss0 = grad_and_value(f)(params, {k: v.clone() for k, v in buffers.items()})
        g_norm = _norm(g)
        d = g if direction is None else _check_direction(direction, params)
        if direction is not None and match_grad_norm:
            d = {k: v * (g_norm / _norm(d)) for k, v in d.items()}

        def at(step: torch.Tensor, b: Tensors) -> tuple[Tensors, torch.Tensor]:
            """Gradient and loss at theta - step * d, with its own copy of the buffers."""
            return grad_and_value(f)({k: params[k] - step * d[k] for k in params}, b)

        steps = s * lr  # (S,)
        if vectorize:
            stacked = {k: v.unsqueeze(0).repeat(len(s), *[1] * v.dim())  # (S, ...) own copies
                       for k, v in buffers.items()}
            G, L = vmap(at, chunk_size=chunk_size)(steps, stacked)  # G[k]: (S, ...); L: (S,)
        else:
            outs = [at(t, {k: v.clone() for k, v in buffers.items()}) for t in steps]
            G = {k: torch.stack([o[0][k] for o in outs]) for k in params}
            L = torch.stack([o[1] for o in outs])
        diff = torch.sqrt(sum((G[k] - g[k]).pow(2).flatten(1).sum(1) for k in params))  # (S,)
        grad_norm = torch.sqrt(sum(G[k].pow(2).flatten(1).sum(1) for k in params))      # (S,)
        distance = steps * _norm(d)                                                      # (S,)

    out = {k: v.detach().cpu().double().numpy() for k, v in dict(
        loss=L, grad_diff=diff, grad_norm=grad_norm, distance=distance).items()}
    out.update(multipliers=mults, loss0=float(loss0), grad_norm0=float(g_norm),
               loss_min=float(out["loss"].min()), loss_max=float(out["loss"].max()),
               grad_diff_min=float(out["grad_diff"].min()),
               grad_diff_max=float(out["grad_diff"].max()),
               beta_eff=float((out["grad_diff"] / out["distance"]).max()),
               lipschitz=max(float(out["grad_norm"].max()), float(g_norm)))
    return out


@dataclass(frozen=True)
class LineSearch:
    """The line-search probe as a spec: ``line_search`` on the step's batch, before its update.

    Its fields are its parameters (and its cache key in the run store). ``direction`` is
    ``"gradient"`` or a kind of ``directions.random_direction`` (``"unit"``: isotropic over all
    parameters; ``"filter"``: filter-normalised, Li et al.; ``"layer"``, ``"none"``), drawn
    afresh at each probed step from a seed made of (``seed``, step), and by default rescaled
    to the gradient's norm so that distances match those along the gradient. ``lr=None``
    takes the trajectory's learning rate. ``vectorize``/``chunk_size`` choose vmap or a loop
    (see ``line_search``): the same numbers up to float rounding.
    """

    multipliers: tuple[float, ...]          # s of theta - s * lr * d, positive
    direction: str = "gradient"             # "gradient" or one of directions.NORMS
    lr: float | None = None                 # step unit; None: the trajectory's lr
    bn_mode: str = "batch"                  # "batch" (train-mode BN, the paper's) or "running"
    match_grad_norm: bool = True            # random directions rescaled to ||g||
    ignore_bias_bn: bool = True             # per-tensor random kinds: 1-d parameters do not move
    seed: int = 0                           # random directions: drawn from (seed, step)
    vectorize: bool | None = None           # vmap over multipliers; None: where it pays
    chunk_size: int | None = None           # multipliers per vmap call (memory); None: all

    def __post_init__(self) -> None:
        mults = tuple(float(m) for m in np.asarray(self.multipliers, dtype=float).ravel())
        if not mults or not all(m > 0 for m in mults):
            raise ValueError(f"LineSearch.multipliers must be a non-empty sequence of positive numbers; "
                             f"got {list(np.asarray(self.multipliers).ravel())}")
        object.__setattr__(self, "multipliers", mults)
        if self.direction not in DIRECTIONS:
            raise ValueError(f"Unknown direction {self.direction!r}; known: {', '.join(DIRECTIONS)}")
        if self.bn_mode not in BN_MODES:
            raise ValueError(f"LineSearch.bn_mode must be one of {BN_MODES}; got {self.bn_mode!r}")
        if self.lr is not None and not self.lr > 0:
            raise ValueError(f"LineSearch.lr must be None (the trajectory's) or > 0; got {self.lr}")

    @classmethod
    def geometric(cls, low: float, high: float, num: int, **fields) -> LineSearch:
        """``num`` log-spaced multipliers from ``low`` to ``high`` (the paper's ranges:
        [1/2, 4] for the VGG, [1/100, 30] for the DLN)."""
        if not 0 < low < high or num < 2:
            raise ValueError(f"need 0 < low < high and num >= 2; got [{low}, {high}], num={num}")
        return cls(tuple(np.geomspace(low, high, num)), **fields)

    def measure(self, ctx: StepContext) -> dict:
        """The line search at ``ctx`` (see ``line_search`` for the returned arrays)."""
        d = None
        if self.direction != "gradient":
            state = np.random.SeedSequence([self.seed, ctx.step]).generate_state(1)[0]
            params = {k: v.detach() for k, v in ctx.model.named_parameters()}
            d = random_direction(params, seed=int(state), norm=self.direction,
                                 ignore_bias_bn=self.ignore_bias_bn)
        return line_search(ctx.model, ctx.X, ctx.y, loss=ctx.loss,
                           lr=ctx.cfg.lr if self.lr is None else self.lr, multipliers=self.multipliers,
                           bn_mode=self.bn_mode, direction=d, match_grad_norm=self.match_grad_norm,
                           vectorize=self.vectorize, chunk_size=self.chunk_size)


def as_probe(name: str, every: int, *, multipliers: Sequence[float], **fields) -> Probe:
    """A ``train.Probe`` running ``LineSearch(multipliers, **fields)`` every ``every`` steps
    while training (``train.fit(..., probes=[...])``); the run store runs the same spec on
    checkpoints instead."""
    return Probe(name, LineSearch(tuple(multipliers), **fields).measure, every)


QUANTITIES = {  # Fig. 4's three quantities, one value per probed step of a LineSearch result
    "loss_range": ("loss range along the line", lambda p: p["loss_max"] - p["loss_min"]),
    "grad_diff": ("largest gradient change", lambda p: p["grad_diff_max"]),
    "beta_eff": ("effective beta-smoothness", lambda p: p["beta_eff"]),
}


def restrict(p: dict, keep: np.ndarray) -> dict:
    """A stored line-search result (arrays over probed steps) with its summaries recomputed over
    the multipliers where ``keep`` (bool, (S,)) holds: the same line, a shorter segment of it."""
    keep = np.asarray(keep, bool)
    out = {**p, **{k: np.asarray(p[k])[:, keep] for k in ("multipliers", "loss", "grad_diff", "grad_norm",
                                                         "distance")}}
    out.update(loss_min=out["loss"].min(1), loss_max=out["loss"].max(1), grad_diff_min=out["grad_diff"].min(1),
               grad_diff_max=out["grad_diff"].max(1), beta_eff=(out["grad_diff"] / out["distance"]).max(1))
    return out


def activation_grads(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, loss: str | Callable,
                     bn_mode: str = "batch") -> dict[str, np.ndarray]:
    """Per weight layer i (1-based order of ``models.weight_layers``), on the batch (X, y):
    ``act`` = ||dL/dy_i||, y_i the layer's output (the input of its normaliser, the site of
    Santurkar et al.'s Thm 4.1), and ``weight`` = ||dL/dW_i||; Frobenius norms over the batch,
    in float64. The model, its buffers and the RNG are left as they were."""
    crit = loss_fn(loss) if isinstance(loss, str) else loss
    layers = weight_layers(model)
    with probing(model, bn_mode):
        params, buffers = clone_state(model)
        names = {id(p): n for n, p in model.named_parameters()}
        wnames = [names[id(m.weight)] for m in layers]
        p = {k: v.requires_grad_() for k, v in params.items()}
        outs: list[torch.Tensor] = []
        hooks = [m.register_forward_hook(lambda _m, _i, o: outs.append(o)) for m in layers]
        try:
            value = crit(functional_call(model, (p, buffers), (X,)), y)
        finally:
            for h in hooks:
                h.remove()
        grads = torch.autograd.grad(value, [*outs, *(p[n] for n in wnames)])
    norm = lambda gs: np.array([g.detach().double().norm().item() for g in gs])  # noqa: E731
    return {"act": norm(grads[:len(layers)]), "weight": norm(grads[len(layers):])}


@dataclass(frozen=True)
class ActivationGrads:
    """``activation_grads`` as a probe spec (run by the store on checkpoints), on the step's batch."""

    bn_mode: str = "batch"  # BN normalises with the step batch's statistics, as in training

    def measure(self, ctx: StepContext) -> dict[str, np.ndarray]:
        return activation_grads(ctx.model, ctx.X, ctx.y, loss=ctx.loss, bn_mode=self.bn_mode)


def factors(a: dict, b: dict) -> dict[str, np.ndarray]:
    """Each of ``QUANTITIES`` of result ``a`` divided by the same of result ``b``, at the probed
    steps both have: ``{"step": (K,), name: (K,)}`` (e.g. standard / BN: > 1 where BN is smoother)."""
    steps = np.intersect1d(a["step"], b["step"])
    ia, ib = np.isin(a["step"], steps), np.isin(b["step"], steps)
    with np.errstate(divide="ignore", invalid="ignore"):
        return {"step": steps, **{k: f(a)[ia] / f(b)[ib] for k, (_, f) in QUANTITIES.items()}}
