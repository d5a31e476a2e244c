"""The loss landscape along a line through the weights (Santurkar et al. 2018, Sec. 3.2).

At parameters theta with gradient g of the current batch and learning rate lr, the probe
evaluates the loss and its gradient at ``theta - s * lr * d`` for a grid of multipliers s,
where the direction d is g itself (Figs. 4, 10, 11 of the paper) or a given direction (a random
one from ``random_direction``). From these it reports the three quantities of Fig. 4:

* the loss range along the line (how Lipschitz the loss is),
* "gradient predictiveness": the range of ``||grad(theta - s lr d) - grad(theta)||``,
* "effective beta-smoothness": ``max_s ||grad(theta - s lr d) - grad(theta)|| / distance``.

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

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from ..functional import Tensors, check_bn_mode, clone_state, loss_fn, probing
from ..train import Probe, StepContext

DIRECTION_KINDS = ("unit", "filter")


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
    out.update(multipliers=mults,loss0=float(loss0), grad_norm0=float(g_norm),
               loss_min=float(out["loss"].min()), loss_max=float(out["loss"].max()),
               grad_diff_min=float(out["grad_diff"].min()),
               grad_diff_max=float(out["grad_diff"].max()),
               beta_eff=float((out["grad_diff"] / out["distance"]).max()),
               lipschitz=max(float(out["grad_norm"].max()), float(g_norm)))
    return out


def random_direction(model: nn.Module, *, generator: torch.Generator, kind: str = "unit",
                     ignore_bias_bn: bool = True) -> Tensors:
    """A random Gaussian direction in parameter space, one tensor per parameter.

    ``"unit"``: scaled to unit l2 norm over all parameters. ``"filter"``: filter-normalised
    (Li et al. 2018): each filter (slice along dim 0 of a weight with >= 2 dims) is rescaled
    to the norm of the matching filter of the model; 1-d parameters (biases, BN gamma/beta)
    get zero if ``ignore_bias_bn``, else a copy of the parameter (Li et al.'s code). Draws
    happen on the generator's device, then move to each parameter's device.
    """
    if kind not in DIRECTION_KINDS:
        raise ValueError(f"Unknown direction kind {kind!r}; known: {', '.join(DIRECTION_KINDS)}")
    params = {k: v.detach() for k, v in model.named_parameters()}
    d = {k: torch.randn(p.shape, generator=generator, device=generator.device,
                        dtype=p.dtype).to(p.device) for k, p in params.items()}
    if kind == "unit":
        n = _norm(d)
        return {k: v / n for k, v in d.items()}
    for k, p in params.items():
        if p.dim() <= 1:
            d[k] = torch.zeros_like(p) if ignore_bias_bn else p.clone()
        else:
            rows_d = d[k].flatten(1).norm(dim=1)  # (filters,)
            rows_p = p.flatten(1).norm(dim=1)     # (filters,)
            d[k] = d[k] * (rows_p / rows_d.clamp_min(1e-12)).view(-1, *[1] * (p.dim() - 1))
    return d


def as_probe(name: str, every: int, *, lr: float | None, multipliers: Sequence[float],
             bn_mode: str = "batch", direction: str = "gradient", seed: int = 0,
             match_grad_norm: bool = True, ignore_bias_bn: bool = True,
             vectorize: bool | None = None, chunk_size: int | None = None) -> Probe:
    """A ``train.Probe`` running ``line_search`` on the step's batch every ``every`` steps.

    ``lr=None`` uses the run's learning rate. ``direction`` is ``"gradient"`` or a
    ``random_direction`` kind (``"unit"``, ``"filter"``), drawn afresh at each probed step
    from a generator seeded by (``seed``, step), and by default rescaled to the gradient's
    norm so that distances match those along the gradient.
    """
    if direction != "gradient" and direction not in DIRECTION_KINDS:
        raise ValueError(f"Unknown direction {direction!r}; known: gradient, "
                         f"{', '.join(DIRECTION_KINDS)}")

    def fn(ctx: StepContext) -> dict:
        d = None
        if direction != "gradient":
            state = np.random.SeedSequence([seed, ctx.step]).generate_state(1)[0]
            gen = torch.Generator().manual_seed(int(state))
            d = random_direction(ctx.model, generator=gen, kind=direction,
                                 ignore_bias_bn=ignore_bias_bn)
        return line_search(ctx.model, ctx.X, ctx.y, loss=ctx.loss,
                           lr=ctx.cfg.lr if lr is None else lr, multipliers=multipliers,
                           bn_mode=bn_mode, direction=d, match_grad_norm=match_grad_norm,
                           vectorize=vectorize, chunk_size=chunk_size)

    return Probe(name, fn, every)
