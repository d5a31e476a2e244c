"""Figures of the chapter on the noise experiment (Santurkar et al. 2018, Figs. 1c, 2, 7).

``hist`` is the chapter's dict of runs keyed (norm, lr, seed); activation records come from
the ``"act"`` probe (``probes.activations.activation_stats``).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import color, label
from .curves import running_mean

_METRICS = (("train_loss", "training loss (cross-entropy)"), ("train_acc", "training accuracy"),
            ("test_loss", "test loss (cross-entropy)"), ("test_acc", "test accuracy"))


def training_curves(hist: dict, *, norms, lr: float, seeds, smooth: int = 1):
    """Training loss/accuracy (running mean over ``smooth`` steps) and test loss/accuracy
    against steps, one line per network (mean over seeds, band: min..max)."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.4), sharex=True)
    for ax, (metric, ylabel) in zip(axes.flat, _METRICS, strict=True):
        for norm in norms:
            hs = [hist[(norm, lr, s)] for s in seeds]
            if metric.startswith("train"):
                xs = [np.arange(1, h.steps_done + 1) for h in hs]
                ys = [running_mean(getattr(h, metric), smooth) for h in hs]
            else:
                xs, ys = [h.eval_step for h in hs], [getattr(h, metric) for h in hs]
            n = min(len(y) for y in ys)
            if n == 0:
                continue
            Y = np.stack([y[:n] for y in ys])
            ax.plot(xs[0][:n], Y.mean(0), color=color(norm), label=label(norm), lw=1.6)
            if len(ys) > 1:
                ax.fill_between(xs[0][:n], Y.min(0), Y.max(0), color=color(norm), alpha=0.2, lw=0)
            if any(h.diverged for h in hs):
                ax.plot(xs[0][n - 1], Y.mean(0)[-1], "x", color=color(norm), ms=9, mew=2)
        ax.set_ylabel(ylabel)
    for ax in axes[1]:
        ax.set_xlabel("training step")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def bands(hist: dict, *, norms, layers, paper_layers, lr: float, seed: int):
    """Percentile bands of each layer's sampled activations over training (rows: layers,
    columns: networks). Shades from light to dark: min..max, 7..93, 16..84, 31..69 percent
    (normal sigma levels, TensorBoard's bands); the line is the median."""
    fig, axes = plt.subplots(len(layers), len(norms), figsize=(3.1 * len(norms), 2.3 * len(layers)),
                             sharex=True, squeeze=False)
    for r, (i, j) in enumerate(zip(layers, paper_layers, strict=True)):
        for c, norm in enumerate(norms):
            ax, rec = axes[r, c], hist[(norm, lr, seed)].probes["act"]
            q, step = rec[f"layer{i}.q"], rec["step"]  # (K, P), (K,)
            p = q.shape[1]
            for k in range(p // 2):
                ax.fill_between(step, q[:, k], q[:, p - 1 - k], color=color(norm),
                                alpha=0.15 + 0.15 * k, lw=0)
            ax.plot(step, q[:, p // 2], color=color(norm), lw=1.0)
            ax.text(0.02, 0.97, label(norm), transform=ax.transAxes, va="top", fontsize=7)
            if c == 0:
                ax.set_ylabel(f"layer {i} (paper {j})\nactivation")
    for ax in axes[-1]:
        ax.set_xlabel("training step")
    fig.tight_layout()
    return fig


def unit_traces(hist: dict, *, norms, layers, lr: float, seed: int, num_units: int,
                unit_seed: int = 0):
    """Mean and variance over the probe batch of ``num_units`` random units (channels) per
    layer against steps (rows: layers; columns: mean, variance on a log scale)."""
    fig, axes = plt.subplots(len(layers), 2, figsize=(10, 2.4 * len(layers)), sharex=True,
                             squeeze=False)
    rng = np.random.default_rng(unit_seed)
    for r, i in enumerate(layers):
        n_ch = hist[(norms[0], lr, seed)].probes["act"][f"layer{i}.mean"].shape[1]
        units = rng.choice(n_ch, size=min(num_units, n_ch), replace=False)
        for z, norm in enumerate(norms):  # later networks drawn below earlier ones
            rec = hist[(norm, lr, seed)].probes["act"]
            for u_idx, u in enumerate(units):
                kw = dict(color=color(norm), lw=0.9, alpha=0.85, zorder=len(norms) - z,
                          label=label(norm) if r == 0 and u_idx == 0 else None)
                axes[r, 0].plot(rec["step"], rec[f"layer{i}.mean"][:, u], **kw)
                axes[r, 1].plot(rec["step"], rec[f"layer{i}.var"][:, u], **{**kw, "label": None})
        axes[r, 0].set_ylabel(f"layer {i}: unit mean")
        axes[r, 1].set_ylabel(f"layer {i}: unit variance")
        axes[r, 1].set_yscale("log")
    for ax in axes[-1]:
        ax.set_xlabel("training step")
    fig.legend(loc="upper center", ncol=len(norms), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


def shifts(table: pd.DataFrame, *, norms):
    """Grouped bars of the step-to-step mean shift and variance shift per layer and network
    (the chapter's ``stability`` table), log scale."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    layers = sorted(table["layer"].unique())
    w = 0.8 / len(norms)
    ylabels = ("mean shift (|change of mean| / sd)", "variance shift (|change of log var|)")
    for ax, col, ylabel in zip(axes, ("mean shift", "var shift"), ylabels, strict=True):
        for k, norm in enumerate(norms):
            vals = table.set_index(["network", "layer"]).loc[norm].reindex(layers)[col]
            ax.bar(np.arange(len(layers)) + (k - (len(norms) - 1) / 2) * w, vals, w,
                   color=color(norm), label=label(norm))
        ax.set_xticks(np.arange(len(layers)), [str(i) for i in layers])
        ax.set_xlabel("layer")
        ax.set_ylabel(ylabel)
        ax.set_yscale("log")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig
