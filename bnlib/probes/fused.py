"""An evaluation-only rewrite of a Sequential for running-statistics BatchNorm.

With running statistics (eval mode) a BatchNorm is a per-channel affine map,
``s * (z - mean) + beta`` with ``s = gamma / sqrt(var + eps)``, so it folds into the conv or
linear layer before it: ``W' = s * W`` and ``b' = s * (b - mean) + beta`` (Ioffe & Szegedy
2015, Sec. 3.1: the inference network is a linear transform per activation). The rewrite
(``compile_plan``) is a list of steps whose weights are computed per grid point from that
point's parameters and the model's buffers (``Plan.weights``), so a direction that moves
gamma or beta moves the folded weights too; the model itself is only read.

Two more exact rewrites: a max-pool after a ReLU runs first (``maxpool(relu(x)) ==
relu(maxpool(x))``, ReLU being monotone), so the ReLU touches a quarter of the values and
runs in place; and a 2x2 max-pool with stride 2 is ``torch.maximum`` of strided views (pairs
of rows, then pairs of columns), which on this project's CPU is 3-8x faster than
``max_pool2d`` in channels-last layout with few channels (measured). The max-pool and ReLU
rewrites are bit-exact; the folds change results by float rounding only.

For a first-layer basis (``surface.evaluate_grid``) the first step also gives its BN folded
into the basis's weights (``Affine.folded``) and the basis split into the four positions of
the max-pool window after it (``phases``), so the pool is an elementwise maximum as the basis
is combined. ``compile_plan`` returns None when a module is not one it knows; the caller then
evaluates the model as it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..functional import Tensors

_BN = (nn.BatchNorm1d, nn.BatchNorm2d)


def _bn_scale_shift(bn: nn.Module, name: str, params: Tensors,
                    buffers: Tensors) -> tuple[torch.Tensor, torch.Tensor]:
    """``(s, shift)`` with ``bn(z) == s * z + shift`` per channel, for running statistics."""
    mean, var = buffers[f"{name}.running_mean"], buffers[f"{name}.running_var"]
    s = torch.rsqrt(var + bn.eps)
    if bn.affine:
        s = s * params[f"{name}.weight"]
        return s, params[f"{name}.bias"] - mean * s
    return s, -mean * s


class Affine:
    """A conv or linear layer and the BatchNorm after it (either may be absent), as one map."""

    def __init__(self, layer: nn.Module | None, name: str | None, bn: nn.Module | None,
                 bn_name: str | None):
        self.layer, self.name, self.bn, self.bn_name = layer, name, bn, bn_name

    def scale_shift(self, params: Tensors, buffers: Tensors):
        """The BN's ``(s, shift)``, or None without one."""
        return None if self.bn is None else _bn_scale_shift(self.bn, self.bn_name, params, buffers)

    def weights(self, params: Tensors, buffers: Tensors) -> tuple:
        """(weight, bias) with the BN folded in; a lone BN gives its (s, shift)."""
        ss = self.scale_shift(params, buffers)
        if self.layer is None:
            return ss
        w, b = params[f"{self.name}.weight"], params.get(f"{self.name}.bias")
        if ss is None:
            return w, b
        s, shift = ss
        w = w * s.view(-1, *[1] * (w.dim() - 1))
        return w, shift if b is None else torch.addcmul(shift, b, s)

    def __call__(self, w: tuple, x: torch.Tensor) -> torch.Tensor:
        weight, bias = w
        if self.layer is None:  # a lone BN: per-channel s * x + shift
            shape = (-1,) + (1,) * (x.dim() - 2)
            return torch.addcmul(bias.view(shape), x, weight.view(shape))
        if isinstance(self.layer, nn.Linear):
            return F.linear(x, weight, bias)
        c = self.layer
        return F.conv2d(x, weight, bias, c.stride, c.padding, c.dilation, c.groups)

    def combine(self, params: Tensors, buffers: Tensors, basis: Sequence[torch.Tensor],
                coef: torch.Tensor) -> torch.Tensor:
        """This step's output at one grid point from the layer's outputs ``basis`` at the centre
        and along each direction (the layer is linear in its weight and bias): the BN applied to
        ``sum_k coef[k] basis[k]``, in 1 + K elementwise passes that keep the basis's layout."""
        ss = self.scale_shift(params, buffers)
        if ss is None:
            if len(basis) == 1:
                return basis[0].clone()
            x = torch.add(basis[0], basis[1], alpha=float(coef[1]))
            for k in range(2, len(basis)):
                x.add_(basis[k], alpha=float(coef[k]))
            return x
        # per-channel factors as one full sample: a (1, C) broadcast in a channels-last inner
        # loop is ~3x slower than the batch-only broadcast (measured, bench_surface.py)
        s, shift = (_one_sample(t, basis[0]) for t in ss)
        x = torch.addcmul(shift, basis[0], s)
        for k in range(1, len(basis)):
            x.addcmul_(basis[k], s * coef[k])
        return x

    def moves_bn(self, directions: Sequence[Tensors]) -> bool:
        """Whether a direction moves this step's BN parameters (gamma, beta)."""
        return self.bn is not None and self.bn.affine and any(
            bool(d[f"{self.bn_name}.{p}"].any()) for d in directions for p in ("weight", "bias"))

    def without_bn(self) -> Affine:
        return Affine(self.layer, self.name, None, None)

    def folded(self, params: Tensors, buffers: Tensors, directions: Sequence[Tensors]) -> list[Tensors]:
        """The layer's weight and bias at the centre ``params`` and along each direction with this
        step's BN folded in (its shift to the centre's bias only): the outputs they give combine
        into the BN's output, exact when no direction moves the BN, and their combination takes
        scalar multiples, 2.4x faster than per-channel ones (measured). Needs a bias."""
        s, shift = self.scale_shift(params, buffers)
        w, b = f"{self.name}.weight", f"{self.name}.bias"
        scale = s.view(-1, *[1] * (params[w].dim() - 1))
        return [{w: params[w] * scale, b: torch.addcmul(shift, params[b], s)},
                *({w: d[w] * scale, b: d[b] * s} for d in directions)]


def _one_sample(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The per-channel values ``t`` (C,) spread over one sample of ``like`` (N, C, ...), in
    ``like``'s memory layout."""
    out = torch.empty_like(like[:1])
    out.copy_(t.view((-1,) + (1,) * (like.dim() - 2)))
    return out


class MaxPool:
    """``nn.MaxPool2d``; the 2x2, stride-2 case by ``torch.maximum`` of strided views."""

    def __init__(self, pool: nn.MaxPool2d):
        self.pool = pool
        self.quad = (_pair(pool.kernel_size) == (2, 2) and _pair(pool.stride) == (2, 2)
                     and _pair(pool.padding) == (0, 0) and _pair(pool.dilation) == (1, 1)
                     and not pool.ceil_mode and not pool.return_indices)

    def weights(self, params: Tensors, buffers: Tensors) -> tuple:
        return ()

    def __call__(self, w: tuple, x: torch.Tensor) -> torch.Tensor:
        if not self.quad:
            p = self.pool
            return F.max_pool2d(x, p.kernel_size, p.stride, p.padding, p.dilation, p.ceil_mode)
        n, c, h, v = x.shape
        if h % 2 == 0 and v % 2 == 0 and x.is_contiguous(memory_format=torch.channels_last):
            # pairs of rows first (contiguous runs of v * c values), then pairs of columns
            rows = x.permute(0, 2, 3, 1)                                 # (n, h, v, c), a view
            half = torch.maximum(rows[:, 0::2], rows[:, 1::2]).view(n, h // 2, v // 2, 2 * c)
            return torch.maximum(half[..., :c], half[..., c:]).permute(0, 3, 1, 2)
        h, v = h // 2 * 2, v // 2 * 2                                    # floor, as max_pool2d
        top = torch.maximum(x[..., 0:h:2, 0:v:2], x[..., 0:h:2, 1:v:2])
        return torch.maximum(top, torch.maximum(x[..., 1:h:2, 0:v:2], x[..., 1:h:2, 1:v:2]), out=top)


class ReLU:
    """``relu``, in place where the input is a tensor this plan made."""

    def __init__(self, inplace: bool):
        self.inplace = inplace

    def weights(self, params: Tensors, buffers: Tensors) -> tuple:
        return ()

    def __call__(self, w: tuple, x: torch.Tensor) -> torch.Tensor:
        return x.relu_() if self.inplace else x.relu()


class Flatten:
    def __init__(self, flatten: nn.Flatten):
        self.start, self.end = flatten.start_dim, flatten.end_dim

    def weights(self, params: Tensors, buffers: Tensors) -> tuple:
        return ()

    def __call__(self, w: tuple, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(self.start, self.end)


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _known_bn(m: nn.Module) -> bool:
    return isinstance(m, _BN) and m.track_running_stats and m.running_var is not None


def _known_conv(m: nn.Module) -> bool:
    return isinstance(m, nn.Conv2d) and m.padding_mode == "zeros"


class Plan:
    """The rewritten model: ``steps`` applied in order, each with its per-point weights."""

    def __init__(self, steps: list):
        self.steps = steps

    def weights(self, params: Tensors, buffers: Tensors) -> list[tuple]:
        """Every step's weights at the grid point whose parameters are ``params``."""
        return [step.weights(params, buffers) for step in self.steps]

    def forward(self, weights: list[tuple], x: torch.Tensor) -> torch.Tensor:
        for step, w in zip(self.steps, weights):
            x = step(w, x)
        return x

    def pools_first(self) -> bool:
        """Whether the first step is a stride-1 conv and a 2x2, stride-2 max-pool follows it: its
        outputs (a first-layer basis) can then be computed as ``phases`` and pooled as they are
        combined."""
        head = self.steps[0] if self.steps else None
        return (len(self.steps) > 1 and isinstance(self.steps[1], MaxPool) and self.steps[1].quad
                and isinstance(head, Affine) and isinstance(head.layer, nn.Conv2d)
                and _pair(head.layer.stride) == (1, 1) and _pair(head.layer.dilation) == (1, 1)
                and not isinstance(head.layer.padding, str))


def phases(conv: nn.Conv2d, name: str, params: Sequence[Tensors], X: torch.Tensor) -> list[list[torch.Tensor]]:
    """The conv's output (a stride-1 conv named ``name``) with each parameter set of ``params``,
    at the four positions (i, j) of a 2x2, stride-2 max-pool window: ``out[..., i::2, j::2]``
    cropped to the pool's size, each a stride-2 conv of the shifted input, in channels-last
    layout. The pool is their elementwise maximum, which is vectorised where a pool over a
    channels-last tensor with few channels is not (1.6x faster on LeNet's basis, measured)."""
    ph, pw = _pair(conv.padding)
    X = F.pad(X, (pw, pw, ph, ph)) if ph or pw else X
    X = X.contiguous(memory_format=torch.channels_last)
    kh, kw = _pair(conv.kernel_size)
    h, v = (X.shape[-2] - kh + 1) // 2, (X.shape[-1] - kw + 1) // 2
    return [[F.conv2d(X[..., i:, j:], t[f"{name}.weight"], t.get(f"{name}.bias"), stride=2, groups=conv.groups)
             [..., :h, :v].contiguous(memory_format=torch.channels_last) for t in params]
            for i in (0, 1) for j in (0, 1)]


def compile_plan(model: nn.Module, start: int = 0) -> Plan | None:
    """The evaluation-only rewrite of ``model[start:]`` for running-statistics BN, or None if
    the model is not a Sequential of Conv2d, Linear, BatchNorm1d/2d, ReLU, MaxPool2d, Flatten
    and Identity."""
    if not isinstance(model, nn.Sequential):
        return None
    mods = [(n, m) for n, m in list(model.named_children())[start:] if not isinstance(m, nn.Identity)]
    steps: list = []
    made = False  # has a step produced a fresh tensor (so a ReLU may work in place)?
    i = 0
    while i < len(mods):
        name, m = mods[i]
        after = mods[i + 1][1] if i + 1 < len(mods) else None
        if isinstance(m, nn.Linear) or _known_conv(m):
            bn = after if after is not None and _known_bn(after) else None
            steps.append(Affine(m, name, bn, mods[i + 1][0] if bn is not None else None))
            i += 2 if bn is not None else 1
        elif _known_bn(m):
            steps.append(Affine(None, None, m, name))
            i += 1
        elif isinstance(m, nn.ReLU):
            if isinstance(after, nn.MaxPool2d):  # pool first: exact, ReLU is monotone
                steps += [MaxPool(after), ReLU(True)]
                i += 2
            else:
                steps.append(ReLU(made))
                i += 1
        elif isinstance(m, nn.MaxPool2d):
            steps.append(MaxPool(m))
            i += 1
        elif isinstance(m, nn.Flatten):
            steps.append(Flatten(m))
            i += 1
            continue  # a view: whether the tensor is fresh does not change
        else:
            return None
        made = True
    return Plan(steps)
