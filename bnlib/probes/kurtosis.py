"""The shape of a network's activation distributions (Santurkar et al. 2018, Sec. 3.3, Fig. 14).

lp normalisation fixes neither the variance nor the shape of a channel's distribution; the
paper's Fig. 14 shows that the activations of lp networks are no longer Gaussian-like. We
measure the shape by the excess kurtosis, ``E[(a - mean)^4] / var^2 - 3`` (population moments:
0 for a Gaussian, positive for heavier tails, -1.2 for a uniform), of every value of a layer
pooled and of each channel separately, and keep a fixed random sample of values for histograms.

Where (our choice, as in ``activations``): the output of the normaliser after weight layer i
(``activations.recording_site``), the pre-activation that goes through the ReLU, with batch
statistics, on the first ``size`` training images of the trajectory. Means and variances over
training come with every trajectory (the always-on records); the shape needs the activations
themselves, so ``ActivationShape`` is a probe spec the run store runs on a checkpoint.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from torch import nn
from torch.func import functional_call

from ..functional import capture, clone_state, probing
from ..train import StepContext
from .activations import recording_site


def excess_kurtosis(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """Population excess kurtosis E[(a - mean)^4] / var^2 - 3 along ``axis`` (0 for a Gaussian)."""
    return stats.kurtosis(a, axis=axis, fisher=True, bias=True)


def activation_shape(model: nn.Module, X: torch.Tensor, *, layers: Sequence[int], num_samples: int,
                     seed: int = 0) -> dict[str, np.ndarray]:
    """Shape of each layer's activations on ``X`` (batch statistics); the model is left untouched.

    Per layer i: ``layer{i}/sample`` (``num_samples`` values drawn with replacement from
    ``seed + i``, for histograms), ``layer{i}/kurtosis`` (all values pooled),
    ``layer{i}/kurtosis_channel`` (per channel over (n, h, w), (C,)) and
    ``layer{i}/var_channel`` (population variance, (C,)).
    """
    sites = {str(i): recording_site(model, i) for i in layers}
    with probing(model, "batch"), torch.no_grad(), capture(sites) as rec:
        functional_call(model, clone_state(model), (X,))
    out = {}
    for i in layers:
        a = rec[f"{i}.out"].double().cpu()                   # (N, C, H, W) or (N, C)
        units = a.transpose(0, 1).flatten(1).numpy()          # (C, N*H*W)
        idx = torch.randint(a.numel(), (num_samples,), generator=torch.Generator().manual_seed(seed + i))
        out[f"layer{i}/sample"] = a.flatten()[idx].numpy()
        out[f"layer{i}/kurtosis"] = np.array(excess_kurtosis(units.ravel()))
        out[f"layer{i}/kurtosis_channel"] = excess_kurtosis(units, axis=1)
        out[f"layer{i}/var_channel"] = units.var(axis=1)
    return out


@dataclass(frozen=True)
class ActivationShape:
    """Probe: ``activation_shape`` of ``layers`` on the first ``size`` training images."""

    layers: tuple[int, ...]        # weight-layer numbers (1-based); the norm after each is measured
    num_samples: int = 4096        # values kept per layer for its histogram
    size: int = 256                # training images (the first ones: the same for every network)
    seed: int = 0                  # seed of the sampled positions

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(int(i) for i in self.layers))

    def measure(self, ctx: StepContext) -> dict[str, np.ndarray]:
        return activation_shape(ctx.model, ctx.data.X_train[:self.size], layers=self.layers,
                                num_samples=self.num_samples, seed=self.seed)
