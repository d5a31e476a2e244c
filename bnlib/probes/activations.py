"""Activation statistics over training: the distributions of Santurkar et al. (2018), Sec. 2.1.

Figs. 1c and 2 of the paper show, for one layer, the distribution of a random sample of its
activations at each training step as percentile bands; Fig. 7 shows the mean and variance of
a few random activations. Per-channel means and variances come with every trajectory (the
always-on records, ``train.moments``); the percentile bands need the activations themselves,
so ``ActivationBands`` is a probe spec the run store runs on stored checkpoints, on a fixed
batch, so changes over time come from the parameters (and the noise), never from the data.
``NoiseOnAccuracy`` evaluates a network trained with Algorithm 1's noise with the noise kept on.

Where we measure (our choice): for layer i (1-based conv/linear index, ``weight_layers``) we
record the output of the normalisation module that follows it (Identity for the standard
network, BN, BN + noise, or noise alone), i.e. the pre-activation that goes through the ReLU
into layer i + 1: the ``post{i}`` site of the records. That is where BN sets the first two
moments and where Algorithm 1 injects its noise; after the ReLU half of the distribution
would be clipped away. A layer with no norm after it (the output layer) is recorded at its
own output.

What we record, per layer: ``q``, percentiles of a fixed random sample (same images, same
positions every call) at the normal distribution's 0, +-0.5, +-1, +-1.5 sigma and the extremes,
the bands of TensorBoard's distribution plots, which the paper's figures resemble; ``mean``
and ``var``, per channel (the "unit" of Algorithm 1) over the (n, h, w) positions, population
variance. ``distribution_shift`` turns a series of those into a step-to-step stability number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from ..data import Data
from ..functional import capture, clone_state, probing
from ..models import weight_layers
from ..norms import ActivationNoise
from ..train import StepContext

# TensorBoard's compressed-histogram percentiles: Phi(k) for k = -inf, -1.5, -1, -0.5, 0, ...
BAND_PERCENTILES = (0.0, 6.68, 15.87, 30.85, 50.0, 69.15, 84.13, 93.32, 100.0)
_NOT_A_NORM = (nn.Conv2d, nn.Linear, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.Flatten, nn.Dropout)


def recording_site(model: nn.Module, layer: int) -> nn.Module:
    """The module whose output stands for layer ``layer``: the norm right after it, if any."""
    layers = weight_layers(model)
    if not 1 <= layer <= len(layers):
        raise ValueError(f"layer must be in 1..{len(layers)} (conv/linear layers of the model); "
                         f"got {layer}")
    target = layers[layer - 1]
    for parent in model.modules():
        children = list(parent.children())
        for k, child in enumerate(children):
            if child is target:
                nxt = children[k + 1] if k + 1 < len(children) else None
                return target if nxt is None or isinstance(nxt, _NOT_A_NORM) else nxt
    return target  # the model itself is the layer


def activation_stats(model: nn.Module, X: torch.Tensor, y: torch.Tensor | None = None, *,
                     bn_mode: str, layers: Sequence[int], num_samples: int = 1024,
                     percentiles: Sequence[float] = BAND_PERCENTILES,
                     seed: int = 0) -> dict[str, np.ndarray]:
    """Percentiles and per-channel mean/variance of ``layers``' activations on the batch ``X``.

    ``bn_mode="batch"`` runs BN on batch statistics with the noise layers active (their draw
    is the one the next training step will see, then their generators are put back);
    ``"running"`` uses BN's running averages and switches the noise off. ``y`` is unused (the
    probe signature). The sample of layer i is ``num_samples`` flat positions drawn with
    replacement from ``seed + i``: fixed for a fixed batch shape. Returns float64 arrays keyed
    ``"layer{i}.q"`` (len(percentiles),), ``"layer{i}.mean"`` and ``"layer{i}.var"`` (C,).
    The model (parameters, buffers, modes, every RNG) is left bit-identical.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1; got {num_samples}")
    sites = {str(i): recording_site(model, i) for i in layers}
    params, buffers = clone_state(model)
    with probing(model, bn_mode), torch.no_grad(), capture(sites) as rec:
        functional_call(model, (params, buffers), (X,))
    q = torch.tensor(percentiles, dtype=torch.float64) / 100
    result: dict[str, np.ndarray] = {}
    for i in layers:
        a = rec[f"{i}.out"].double()                               # (N, C, H, W) or (N, C)
        g = torch.Generator().manual_seed(seed + i)
        idx = torch.randint(a.numel(), (num_samples,), generator=g).to(a.device)
        result[f"layer{i}.q"] = torch.quantile(a.flatten()[idx], q.to(a.device)).cpu().numpy()
        dims = (0, *range(2, a.dim()))                              # all but the channel
        var, mean = torch.var_mean(a, dim=dims, correction=0)       # (C,) each
        result[f"layer{i}.mean"], result[f"layer{i}.var"] = mean.cpu().numpy(), var.cpu().numpy()
    return result


def record_batch(data: Data, size: int, seed: int) -> torch.Tensor:
    """``size`` training images drawn once with ``seed``: the trainer's recipe for the fixed
    batch of the always-on records, so with the trajectory's seed and ``record_size`` it is
    that very batch (``train.Trainer.X_rec``)."""
    g = torch.Generator().manual_seed(seed)
    return data.X_train[torch.randperm(len(data.X_train), generator=g)[:size].to(data.device)]


@dataclass(frozen=True)
class ActivationBands:
    """Probe: percentile bands of a fixed sample of activations at ``layers`` (Figs. 1c, 2).

    Runs the network as it trains (BN on batch statistics, noise on, with the draw the coming
    step makes) on ``record_batch(data, size, batch_seed)``; ``size=None`` takes the
    trajectory's ``record_size``. Returns ``"layer{i}.q"`` (len(BAND_PERCENTILES),) per layer.
    """

    layers: tuple[int, ...]        # weight-layer numbers (1-based); the norm after each is measured
    num_samples: int = 1024        # activations sampled per layer (same positions every step)
    size: int | None = None        # images in the fixed batch (None: the trajectory's record_size)
    batch_seed: int = 0            # seed of the batch and of the sampled positions

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(int(i) for i in self.layers))

    def measure(self, ctx: StepContext) -> dict[str, np.ndarray]:
        X = record_batch(ctx.data, self.size or ctx.cfg.record_size, self.batch_seed)
        stats = activation_stats(ctx.model, X, bn_mode="batch", layers=self.layers,
                                 num_samples=self.num_samples, seed=self.batch_seed)
        return {k: v for k, v in stats.items() if k.endswith(".q")}


@torch.no_grad()
def noise_on_accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *,
                      chunk: int = 1000) -> float:
    """Test accuracy with BN on running statistics but the noise layers active (fresh draws
    per chunk), the network as it was trained; model and generators are left unchanged."""
    with probing(model, "running"):
        for m in model.modules():
            if isinstance(m, ActivationNoise):
                m.train()
        correct = sum((model(Xc).argmax(dim=1) == yc).sum().item()
                      for Xc, yc in zip(X.split(chunk), y.split(chunk), strict=True))
    return correct / len(X)


@dataclass(frozen=True)
class NoiseOnAccuracy:
    """Probe: ``noise_on_accuracy`` on the first ``size`` test images (None: the trajectory's
    ``eval_size``, the images of its test evaluations). Returns ``"test_acc"``."""

    size: int | None = None

    def measure(self, ctx: StepContext) -> dict[str, float]:
        n = self.size or ctx.cfg.eval_size or len(ctx.data.X_test)
        return {"test_acc": noise_on_accuracy(ctx.model, ctx.data.X_test[:n], ctx.data.y_test[:n])}


def distribution_shift(mean: np.ndarray, var: np.ndarray, *,
                       eps: float = 1e-12) -> dict[str, float]:
    """Step-to-step instability of per-unit distributions; inputs are (T, C) series.

    ``mean_shift``: average over consecutive records and units of
    ``|mean[t+1] - mean[t]| / sqrt(var[t])``, the move of the mean in units of the spread
    (scale-free, so networks with and without normalisation compare). ``var_shift``: average
    of ``|log var[t+1] - log var[t]|``. ``eps`` guards constant (dead) units.
    """
    mean, var = np.asarray(mean, dtype=np.float64), np.asarray(var, dtype=np.float64)
    if mean.ndim != 2 or mean.shape != var.shape or mean.shape[0] < 2:
        raise ValueError(f"mean and var must both be (T, C) with T >= 2; got {mean.shape} and "
                         f"{var.shape}")
    dm = np.abs(np.diff(mean, axis=0)) / np.sqrt(var[:-1] + eps)   # (T-1, C)
    dv = np.abs(np.diff(np.log(var + eps), axis=0))                 # (T-1, C)
    return {"mean_shift": float(dm.mean()), "var_shift": float(dv.mean())}
