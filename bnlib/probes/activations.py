"""Activation statistics over training: the distributions of Santurkar et al. (2018), Sec. 2.1.

Figs. 1c and 2 of the paper show, for one layer, the distribution of a random sample of its
activations at each training step as percentile bands; Fig. 7 shows the mean and variance of
a few random activations. Per-channel means and variances come with every trajectory (the
always-on records, ``train.moments``); the percentile bands need the activations themselves,
so ``ActivationBands`` is a probe spec the run store runs on stored checkpoints, on a fixed
batch, so changes over time come from the parameters (and the noise), never from the data.
``NoiseOnAccuracy`` evaluates a network trained with Algorithm 1's noise with the noise kept on.

Where we measure: for layer i (1-based conv/linear index, ``weight_layers``) at two sites of
the normalisation module that follows it (Identity for the standard network, BN, BN + noise,
or noise alone): its input, the layer's raw output (``pre``, the site the paper's Fig. 1c
plots), and its output, the pre-activation that goes through the ReLU into layer i + 1
(``post``, where Algorithm 1 injects its noise). A BN channel's batch mean and variance at
``post`` are beta and gamma^2 by construction. These are the ``pre{i}``/``post{i}`` sites of
the always-on records. A layer with no norm after it (the output layer) has both sites at its
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
from ..models import norm_slots, weight_layers
from ..norms import ActivationNoise
from ..train import StepContext, moments

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
    ``"layer{i}.q"`` (len(percentiles),), ``"layer{i}.mean"`` and ``"layer{i}.var"`` (C,) at
    the normaliser's output, and the same with ``"layer{i}.pre."`` at its input.
    The model (parameters, buffers, modes, every RNG) is left bit-identical.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1; got {num_samples}")
    sites = {str(i): recording_site(model, i) for i in layers}
    own = {i for i in layers if sites[str(i)] is weight_layers(model)[i - 1]}  # no norm: output twice
    params, buffers = clone_state(model)
    with probing(model, bn_mode), torch.no_grad(), capture(sites, inputs=True) as rec:
        functional_call(model, (params, buffers), (X,))
    q = torch.tensor(percentiles, dtype=torch.float64) / 100
    result: dict[str, np.ndarray] = {}
    for i in layers:
        for name, key in ((f"layer{i}.", f"{i}.out"), (f"layer{i}.pre.", f"{i}.in")):
            a = rec[f"{i}.out" if i in own else key].double()
            g = torch.Generator().manual_seed(seed + i)               # same positions at both sites
            idx = torch.randint(a.numel(), (num_samples,), generator=g).to(a.device)
            result[f"{name}q"] = torch.quantile(a.flatten()[idx], q.to(a.device)).cpu().numpy()
            var, mean = torch.var_mean(a, dim=(0, *range(2, a.dim())), correction=0)  # (C,) each
            result[f"{name}mean"], result[f"{name}var"] = mean.cpu().numpy(), var.cpu().numpy()
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
    trajectory's ``record_size``. Returns ``"layer{i}.q"`` (normaliser output) and
    ``"layer{i}.pre.q"`` (its input), (len(BAND_PERCENTILES),) each, per layer.
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


@dataclass(frozen=True)
class Moments:
    """Probe: the always-on records' moments (``train.moments``: per-channel mean and variance
    before, ``pre{i}``, and after, ``post{i}``, every normaliser slot i) at any step, so shifts
    can be measured at lags shorter than the record spacing; and ``gamma{i}``/``beta{i}``/``eps{i}``
    of the BatchNorm in slot i, if any. On ``record_batch(data, record_size, batch_seed)``: the
    trajectory's own record batch when ``batch_seed`` is its seed."""

    batch_seed: int = 0

    def measure(self, ctx: StepContext) -> dict[str, np.ndarray]:
        out = moments(ctx.model, record_batch(ctx.data, ctx.cfg.record_size, self.batch_seed))
        for i, slot in enumerate(norm_slots(ctx.model), 1):
            bn = next((m for m in slot.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)), None)
            if bn is not None and bn.affine:
                out.update({f"gamma{i}": bn.weight.detach().cpu().numpy().copy(),
                            f"beta{i}": bn.bias.detach().cpu().numpy().copy(), f"eps{i}": np.array(bn.eps)})
        return out


def lag_shift(steps: Sequence[int], mean: np.ndarray, var: np.ndarray, anchors: Sequence[int],
              lag: int) -> dict[str, float]:
    """``distribution_shift`` from each anchor step a to step a + ``lag``, averaged over the
    anchors: ``steps`` (T,) labels the rows of the (T, C) ``mean`` and ``var``, which must hold
    both steps of every pair."""
    row = {int(s): k for k, s in enumerate(steps)}
    missing = [a for a in anchors if a not in row or a + lag not in row]
    if missing or not len(anchors):
        raise ValueError(f"lag_shift needs steps a and a + {lag} for every anchor; missing for {missing}")
    pairs = [distribution_shift(mean[[row[a], row[a + lag]]], var[[row[a], row[a + lag]]]) for a in anchors]
    return {k: float(np.mean([p[k] for p in pairs])) for k in ("mean_shift", "var_shift")}


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
