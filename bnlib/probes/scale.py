"""Per-layer smoothness in units of the layer's own weight norm (Arora, Li & Lyu 2019).

If a weight layer feeds a BatchNorm layer (batch statistics), the loss does not change when that
layer's weights W are scaled by c > 0: the normaliser divides the scale out (the layer's bias is
a per-channel constant, removed by the mean subtraction). Differentiating L(cW) = L(W) gives
grad L(cW) = grad L(W) / c and a Hessian block scaled by 1/c^2, so a layer's raw gradient norm and
curvature say as much about how large W has grown as about the landscape. The products
``||W|| ||g||`` and ``||W||^2 beta`` are invariant to that scale and dimensionless.

``layer_scale`` measures, per weight layer i (``models.weight_layers`` order) on one batch:
``weight_norm`` ||W_i||, ``grad_norm`` ||g_i|| (g_i = dL/dW_i), ``cos`` = <W_i, g_i> / (||W_i|| ||g_i||)
(zero for a BN-fed layer: the gradient of a scale-invariant function is orthogonal to W), and
``beta``: the gradient change of layer i per distance it moved, when every weight layer j moves
along -g_j by ``rel_step`` x ||W_j|| (biases and BN parameters stay), ``||g_i(W - t D) - g_i|| /
(t ||W_i||)`` with D_j = ||W_j|| g_j / ||g_j||. It is the smoothness chapter's effective beta along
the gradient, split by layer, with steps that scale with each layer's weights, so that
``||W_i||^2 beta_i`` is exactly invariant: scaling a BN-fed W_j by c moves it to the same relative
point, scales g_j and so the change of g_j by 1/c, its distance by c, and leaves every other
layer's gradient as it was. It also scales every BN-fed layer by ``c`` at once
and checks the identity. BatchNorm divides by sqrt(var + eps), so with eps > 0 the invariance is
exact only if eps scales too: L(cW; eps) = L(W; eps / c^2) and c grad L(cW; eps) = grad L(W; eps / c^2).
``scaled_loss_err`` and ``scaled_grad_err`` (per layer, relative) measure that exact identity;
``fixed_eps_loss_err`` and ``fixed_eps_grad_err`` the same with eps left as it is, the network's
actual departure from invariance (large only for channels whose batch variance is near eps).

Probe contract (``functional``): parameters and buffers are cloned per evaluation, the model's
mode and RNG are restored, ``bn_mode`` is explicit.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad_and_value

from ..functional import Tensors, check_bn_mode, clone_state, loss_fn, probing
from ..models import weight_layers
from ..train import StepContext

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _names(model: nn.Module) -> list[str]:
    """The parameter name of each weight layer's weight, in forward order."""
    ids = {id(p): n for n, p in model.named_parameters()}
    return [ids[id(m.weight)] for m in weight_layers(model)]


def bn_fed(model: nn.Module) -> np.ndarray:
    """(L,) bool: weight layer i's output goes straight into a BatchNorm layer."""
    mods = [m for m in model.modules() if not isinstance(m, nn.Sequential)]
    after = {id(a): b for a, b in zip(mods, mods[1:])}
    return np.array([isinstance(after.get(id(m)), _BN) for m in weight_layers(model)])


def _norm(t: torch.Tensor) -> float:
    return float(t.detach().double().norm())


def layer_scale(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, loss: str = "ce",
                rel_step: float = 0.01, c: float = 2.0, bn_mode: str = "batch") -> dict[str, np.ndarray]:
    """Per weight layer: ``weight_norm``, ``grad_norm``, ``cos``, ``beta`` (see the module
    docstring), ``bn_fed``; and the scale check with every BN-fed layer scaled by ``c``:
    relative loss errors ``scaled_loss_err`` (eps scaled with it) and ``fixed_eps_loss_err``, and
    per layer ``scaled_grad_err`` and ``fixed_eps_grad_err`` (NaN where not BN-fed). The model,
    its buffers and the RNG are left as they were."""
    check_bn_mode(bn_mode)
    if not rel_step > 0 or not c > 0:
        raise ValueError(f"rel_step and c must be > 0; got {rel_step}, {c}")
    crit, names, fed = loss_fn(loss) if isinstance(loss, str) else loss, _names(model), bn_fed(model)
    with probing(model, bn_mode):
        params, buffers = clone_state(model)

        def f(p: Tensors, b: Tensors) -> torch.Tensor:
            return crit(functional_call(model, (p, b), (X,)), y)

        def at(p: Tensors) -> tuple[Tensors, torch.Tensor]:  # buffers cloned: BN updates its own copy
            return grad_and_value(f)(p, {k: v.clone() for k, v in buffers.items()})

        g, loss0 = at(params)
        w_norm = np.array([_norm(params[n]) for n in names])
        g_norm = np.array([_norm(g[n]) for n in names])
        cos = np.array([float((params[n] * g[n]).sum()) for n in names]) / np.maximum(w_norm * g_norm, 1e-300)
        moved, _ = at({**params, **{n: params[n] - rel_step * w_norm[i] / g_norm[i] * g[n]
                                    for i, n in enumerate(names)}})
        beta = np.array([_norm(moved[n] - g[n]) / (rel_step * w_norm[i]) for i, n in enumerate(names)])
        gc, loss_c = at({**params, **{n: c * params[n] for n, f in zip(names, fed) if f}})
        ge, loss_e = _at_eps(model, crit, X, y, params, buffers, 1 / c**2)

    def errors(g_ref: Tensors, loss_ref: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        grad = [_norm(c * gc[n] - g_ref[n]) / _norm(g_ref[n]) if fed[i] else np.nan for i, n in enumerate(names)]
        return np.array(abs(float(loss_c) - float(loss_ref)) / abs(float(loss_ref))), np.array(grad)

    (loss_err, grad_err), (loss_fixed, grad_fixed) = errors(ge, loss_e), errors(g, loss0)
    return {"weight_norm": w_norm, "grad_norm": g_norm, "cos": cos, "beta": beta, "bn_fed": fed,
            "scaled_loss_err": loss_err, "scaled_grad_err": grad_err,
            "fixed_eps_loss_err": loss_fixed, "fixed_eps_grad_err": grad_fixed}


def _at_eps(model: nn.Module, crit, X: torch.Tensor, y: torch.Tensor, params: Tensors, buffers: Tensors,
            factor: float) -> tuple[Tensors, torch.Tensor]:
    """Gradient and loss at ``params`` of a copy of ``model`` whose BatchNorm epsilons are
    multiplied by ``factor`` (the model itself is not touched)."""
    twin = copy.deepcopy(model)
    for m in twin.modules():
        if isinstance(m, _BN):
            m.eps = m.eps * factor

    def f(p: Tensors, b: Tensors) -> torch.Tensor:
        return crit(functional_call(twin, (p, b), (X,)), y)

    return grad_and_value(f)(params, {k: v.clone() for k, v in buffers.items()})


@dataclass(frozen=True)
class LayerScale:
    """``layer_scale`` as a probe spec (run by the store on checkpoints), on the step's batch."""

    rel_step: float = 0.01   # the step along -g_i, as a fraction of ||W_i||
    c: float = 2.0           # the scale of the identity's check
    bn_mode: str = "batch"   # BN normalises with the step batch's statistics, as in training

    def measure(self, ctx: StepContext) -> dict[str, np.ndarray]:
        return layer_scale(ctx.model, ctx.X, ctx.y, loss=ctx.loss, rel_step=self.rel_step, c=self.c,
                           bn_mode=self.bn_mode)
