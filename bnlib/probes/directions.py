"""Random directions in parameter space: the one source of them in bnlib.

Two uses. Li et al. (2018, Sec. 4) plot loss surfaces along random directions normalised per
filter: a raw Gaussian direction ``d`` has the same size in every layer, while the weights do
not, and BN makes a network invariant to the scale of a filter's weights; so they rescale every
*filter* of ``d`` to the norm of the matching filter of the weights:
``d_i <- d_i / ||d_i|| * ||w_i||``. A filter is a slice along dim 0 (an output channel of a
conv weight, a row of a linear weight). Other normalisations: ``"layer"`` (the whole tensor at
once) and ``"none"`` (the raw Gaussian). Santurkar et al. (2018, Sec. 3.2) probe the loss along
random directions of the whole parameter vector: ``"unit"``, the isotropic Gaussian over *every*
parameter scaled to unit l2 norm over all of them (the line-search probe then rescales it).

For the per-tensor normalisations (``"filter"``, ``"layer"``, ``"none"``), parameters with at
most one dimension (biases, BN's gamma and beta) get a zero direction by default, Li et al.'s
``--xignore biasbn``; the reference code recognises them by ``dim() <= 1`` and so do we
(tomgoldstein/loss-landscape: net_plotter.py, ``normalize_directions_for_weights``). With
``ignore_bias_bn=False`` their direction is a copy of the parameter itself, as in that code
(a per-entry filter norm would only fix the sign). ``"unit"`` is isotropic by definition: it
moves every parameter and ``ignore_bias_bn`` does not apply.
"""

from __future__ import annotations

import torch

Tensors = dict[str, torch.Tensor]
NORMS = ("filter", "layer", "none", "unit")


def normalize_direction(direction: Tensors, params: Tensors, *, norm: str = "filter",
                        ignore_bias_bn: bool = True) -> Tensors:
    """A new direction: ``direction`` rescaled to the norms of ``params`` (see module doc)."""
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}; got {norm!r}")
    if norm == "unit":
        total = torch.sqrt(sum(direction[k].detach().pow(2).sum() for k in params))
        return {k: direction[k].detach() / total for k in params}
    out = {}
    for name, w in params.items():
        d = direction[name].detach()
        if w.dim() <= 1:
            out[name] = torch.zeros_like(w) if ignore_bias_bn else w.detach().clone()
        elif norm == "filter":
            d2, w2 = d.flatten(1), w.detach().flatten(1)  # (filters, fan_in)
            scale = w2.norm(dim=1) / d2.norm(dim=1).clamp_min(torch.finfo(d.dtype).tiny)
            out[name] = (d2 * scale[:, None]).reshape(d.shape)
        elif norm == "layer":
            out[name] = d * (w.detach().norm() / d.norm().clamp_min(torch.finfo(d.dtype).tiny))
        else:
            out[name] = d.clone()
    return out


def random_direction(params: Tensors, *, seed: int, norm: str = "filter",
                     ignore_bias_bn: bool = True) -> Tensors:
    """A Gaussian direction shaped like ``params``, drawn from ``seed`` and normalised.

    Draws are made on the CPU in the order of ``params`` so a seed gives the same direction
    on every device.
    """
    g = torch.Generator().manual_seed(seed)
    raw = {k: torch.randn(v.shape, generator=g, dtype=v.dtype).to(v.device)
           for k, v in params.items()}
    return normalize_direction(raw, params, norm=norm, ignore_bias_bn=ignore_bias_bn)
