"""Internal covariate shift measured by gradients (Santurkar et al. 2018, Sec. 2.2, Def. 2.1).

At step t, on the step's batch (x_t, y_t), layer i's ICS compares two gradients w.r.t. its
weight W_i: ``G_i`` at theta_t, and ``G'_i`` after the layers before it (1..i-1) have taken
the update the optimiser applies at this step, layers i..k staying at theta_t. We report
``||G_i - G'_i||_2`` and ``cos(G_i, G'_i)`` for every layer.

How: one gradient at theta_t gives G (every layer's); a throwaway optimiser, built from a
deep copy of the real one's state over cloned parameters, turns it into theta_{t+1}, so any
``torch.optim`` optimiser (momentum, Adam, weight decay, a scheduler's current lr) gives the
update it would really apply. Layer i's G' needs a mixed parameter set (updated where the
parameter belongs to a layer before i). ``method="vmap"`` evaluates all those sets in one
``torch.func.vmap``; ``method="loop"`` runs one forward pass with the updated parameters and
then, per layer, only the layers from i on (the shared prefix saves about half the work).
BN buffers are cloned per evaluation, and every evaluation runs in its own
``functional.preserved_rng`` block, so G and every G' see the draws the real step will see.

``ICS`` is the probe spec the run store calls on a stored checkpoint (``runs.Runs.probe``) or
that ``train.fit`` calls attached (``train.Probe("ics", ICS().measure, every)``): same numbers.

Choices: "layer i" is the i-th conv/linear layer (``models.weight_layers``) and W_i its
weight; a parameter belongs to the last weight layer registered before it (a BN after
conv i-1 belongs to layer i-1, the bias of layer i to layer i), which is forward order for
the ``nn.Sequential`` models of this book. Differences are at the model's precision: in
float32 an ICS below about 1e-6 |G| is round-off (run in float64 to resolve less).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from ..functional import Tensors, clone_state, loss_fn, preserved_rng, probing
from ..models import weight_layers

if TYPE_CHECKING:
    from ..train import StepContext


def layer_of_params(model: nn.Module) -> dict[str, int]:
    """Parameter name -> the 1-based weight layer it belongs to (0: before the first)."""
    layer, owner = 0, {}
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            layer += 1
        for pname, _ in m.named_parameters(recurse=False):
            owner[f"{name}.{pname}" if name else pname] = layer
    return owner


def weight_names(model: nn.Module) -> list[str]:
    """Names of the weights W_1..W_k, in layer order."""
    ids = {id(m.weight): i for i, m in enumerate(weight_layers(model))}
    names = sorted((ids[id(p)], n) for n, p in model.named_parameters() if id(p) in ids)
    return [n for _, n in names]


def optimizer_update(model: nn.Module, optimizer: torch.optim.Optimizer, params: Tensors,
                     grads: Tensors) -> Tensors:
    """theta_{t+1}: ``params`` after the step ``optimizer`` would take with gradient ``grads``.

    Works on clones with a fresh optimiser of the same class loaded with a deep copy of the
    real one's state; the real optimiser, its state and the model are not touched.
    """
    name_of = {id(p): n for n, p in model.named_parameters()}
    new = {n: v.detach().clone() for n, v in params.items()}
    groups = []
    for g in optimizer.param_groups:
        missing = [p.shape for p in g["params"] if id(p) not in name_of]
        if missing:
            raise ValueError(f"The optimizer holds tensors that are not parameters of the model "
                             f"(shapes {missing}); build it over model.parameters().")
        groups.append({**g, "params": [new[name_of[id(p)]] for p in g["params"]]})
    shadow = type(optimizer)(groups, **optimizer.defaults)
    shadow.load_state_dict(copy.deepcopy(optimizer.state_dict()))  # deep: no shared buffers
    for n, v in new.items():
        v.grad = grads.get(n)
    with torch.no_grad():
        shadow.step()
    return {n: v.detach() for n, v in new.items()}


METHODS = ("auto", "vmap", "loop")
_GLOBAL_RNG_LAYERS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                      nn.FeatureAlphaDropout)


def ics(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, optimizer: torch.optim.Optimizer,
        loss: str | Callable = "ce", bn_mode: str = "batch", layers: Sequence[int] | None = None,
        method: str = "auto", chunk_size: int | None = None) -> dict[str, np.ndarray]:
    """ICS of Definition 2.1 at the current step, on the batch (X, y), for ``layers`` (1-based;
    default all). Returns arrays aligned with ``layer``: ``l2`` = ||G - G'||_2, ``cos`` =
    cos(G, G') (nan if a gradient is 0), ``g_norm`` = ||G||, ``g_prime_norm`` = ||G'||.

    ``method="vmap"``: all G' in one ``vmap`` over layers (``chunk_size`` lanes at a time).
    ``"loop"`` (``nn.Sequential`` only): one forward pass with the updated parameters gives
    every layer's input, then each G' needs only the layers from i on; on a CPU it is about 3
    times faster than vmap for the VGG and on a par for the DLN (benchmarks/bench_ics.py).
    ``"auto"`` takes vmap on CUDA (one kernel per layer for all lanes), else loop if it applies.
    Call it before the step's update: model, optimizer and RNG are left as they were.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    wnames = weight_names(model)
    layers = list(range(1, len(wnames) + 1)) if layers is None else [int(i) for i in layers]
    bad = [i for i in layers if not 1 <= i <= len(wnames)]
    if bad:
        raise ValueError(f"layers must be in 1..{len(wnames)} for this model; got {bad}")
    owner, crit = layer_of_params(model), loss_fn(loss) if isinstance(loss, str) else loss
    with probing(model, bn_mode):  # every evaluation below starts from the RNG state of now
        old, buffers = clone_state(model)
        trainable = {n for n, p in model.named_parameters() if p.requires_grad}

        def f(p: Tensors, fixed: Tensors, bufs: Tensors) -> torch.Tensor:
            return crit(functional_call(model, ({**fixed, **p}, bufs), (X,)), y)

        with preserved_rng(model):
            G = grad(f)({n: old[n] for n in trainable}, old, _clone(buffers))  # at theta_t
        new = optimizer_update(model, optimizer, old, G)
        moved = [owner[n] for n in old if not torch.equal(old[n], new[n])]
        lanes = [i for i in layers if moved and min(moved) < i]  # others: G' = G exactly
        Gp = {i: G[wnames[i - 1]] for i in layers if i not in lanes}
        method = auto_method(model, X) if method == "auto" else method
        if lanes and method == "vmap":
            with preserved_rng(model):
                Gp |= _lanes_vmap(f, lanes, wnames, owner, old, new, buffers, chunk_size)
        elif lanes:
            Gp |= _lanes_loop(model, crit, X, y, lanes, wnames, old, new, buffers)
    return _compare([G[wnames[i - 1]] for i in layers], [Gp[i] for i in layers], layers)


def auto_method(model: nn.Module, X: torch.Tensor) -> str:
    """What ``method="auto"`` runs: vmap on CUDA or where the loop does not apply, else loop."""
    return "vmap" if X.is_cuda or _loop_unsupported(model) else "loop"


def _loop_unsupported(model: nn.Module) -> str:
    """Why ``method="loop"`` cannot split ``model`` into prefix and suffix ("" if it can)."""
    children = {id(m) for m in model.children()}
    if not isinstance(model, nn.Sequential) or any(id(m) not in children
                                                   for m in weight_layers(model)):
        return "needs an nn.Sequential whose conv/linear layers are direct children"
    if any(isinstance(m, _GLOBAL_RNG_LAYERS) for m in model.modules()):
        return "cannot replay global-RNG layers (dropout) in a suffix"
    return ""


def _lanes_vmap(f: Callable, lanes: list[int], wnames: list[str], owner: dict[str, int],
                old: Tensors, new: Tensors, buffers: Tensors,
                chunk_size: int | None) -> dict[int, torch.Tensor]:
    """G'_i for every i in ``lanes`` from one vmap; lane i sees ``new`` for layers < i."""
    def at(n: str, i: int) -> torch.Tensor:
        return new[n] if owner[n] < i else old[n]

    lo, hi = min(lanes), max(lanes)
    ws = {wnames[i - 1]: torch.stack([at(wnames[i - 1], j) for j in lanes])
          for i in lanes}  # W_i in every lane: (lanes, *W_i.shape)
    varies = {n: lo <= owner[n] < hi for n in old}  # else the same in every lane
    rest = {n: torch.stack([at(n, j) for j in lanes]) if v else at(n, hi)
            for n, v in varies.items()}
    bufs = {n: torch.stack([b.clone() for _ in lanes]) for n, b in buffers.items()}
    dims = (0, {n: 0 if v else None for n, v in varies.items()}, 0)
    out = vmap(grad(f), in_dims=dims, randomness="same", chunk_size=chunk_size)(ws, rest, bufs)
    return {i: out[wnames[i - 1]][k] for k, i in enumerate(lanes)}


def _lanes_loop(model: nn.Module, crit: Callable, X: torch.Tensor, y: torch.Tensor,
                lanes: list[int], wnames: list[str], old: Tensors, new: Tensors,
                buffers: Tensors) -> dict[int, torch.Tensor]:
    """G'_i lane by lane on an ``nn.Sequential``: the updated prefix is computed once.

    Every pass runs in its own ``preserved_rng`` block, so lane i restarts each module's own
    generator and its suffix draws what a full pass would; layers drawing from the global RNG
    (dropout) would not, so they are refused.
    """
    why = _loop_unsupported(model)
    if why:
        raise ValueError(f"method='loop' {why}; use method='vmap'")
    children = list(model.named_children())
    index = {id(m): j for j, (_, m) in enumerate(children)}
    start = [index[id(m)] for m in weight_layers(model)]  # child index of layer i, 0-based

    def run(j: int, h: torch.Tensor, params: Tensors, bufs: Tensors) -> torch.Tensor:
        pre = f"{children[j][0]}."
        sub = ({k.removeprefix(pre): v for k, v in params.items() if k.startswith(pre)},
               {k.removeprefix(pre): v for k, v in bufs.items() if k.startswith(pre)})
        return functional_call(children[j][1], sub, (h,))

    inputs, bufs = [X], _clone(buffers)  # inputs[j]: input of child j, children < j updated
    with preserved_rng(model), torch.no_grad():
        for j in range(max(start[i - 1] for i in lanes)):
            inputs.append(run(j, inputs[j], new, bufs))

    def suffix(wi: torch.Tensor, w: str, c: int, bufs: Tensors) -> torch.Tensor:
        p, h = {**old, w: wi}, inputs[c]  # children >= c at theta_t, W_i = wi
        for j in range(c, len(children)):
            h = run(j, h, p, bufs)
        return crit(h, y)

    out = {}
    for i in lanes:
        with preserved_rng(model):
            out[i] = grad(suffix)(old[wnames[i - 1]], wnames[i - 1], start[i - 1], _clone(buffers))
    return out


def _clone(t: Tensors) -> Tensors:
    return {k: v.clone() for k, v in t.items()}


def _compare(G: list[torch.Tensor], Gp: list[torch.Tensor],
             layers: list[int]) -> dict[str, np.ndarray]:
    """l2 difference, cosine and norms of each (G_i, G'_i) pair, in float64."""
    rows = []
    for g, gp in zip(G, Gp, strict=True):
        u, v = g.detach().double().flatten(), gp.detach().double().flatten()
        rows.append([(u - v).norm().item(), (u @ v / (u.norm() * v.norm())).item(),
                     u.norm().item(), v.norm().item()])
    l2, cos, g_norm, g_prime_norm = np.array(rows, dtype=np.float64).reshape(-1, 4).T
    return {"layer": np.asarray(layers), "l2": l2, "cos": cos, "g_norm": g_norm,
            "g_prime_norm": g_prime_norm}


@dataclass(frozen=True)
class ICS:
    """Definition 2.1 at a step, as a probe spec: ``measure(ctx)`` runs ``ics`` on the step's own
    batch with the optimiser's real state at that step. The fields are its parameters (and go
    into the key of its cached results)."""

    bn_mode: str = "batch"              # BN normalises with the step batch's statistics, as in training
    layers: tuple[int, ...] | None = None  # 1-based weight layers; None = every layer
    method: str = "auto"                # "vmap", "loop" or "auto" (see ``ics``)
    chunk_size: int | None = None       # vmap lanes at a time (None = all)

    def measure(self, ctx: StepContext) -> dict[str, np.ndarray]:
        return ics(ctx.model, ctx.X, ctx.y, optimizer=ctx.optimizer, loss=ctx.loss, bn_mode=self.bn_mode,
                   layers=self.layers, method=self.method, chunk_size=self.chunk_size)
