"""Curves over training: loss and accuracy per step or evaluation, one line (band: min..max over seeds) per network."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import band, color, label


def running_mean(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing running mean (the first ``window - 1`` points average what exists so far)."""
    c = np.cumsum(np.insert(np.asarray(y, float), 0, 0.0))
    n = np.arange(1, len(y) + 1)
    lo = np.maximum(n - window, 0)
    return (c[n] - c[lo]) / (n - lo)


def seeds_of(hist: dict, norm: str, lr: float) -> list[int]:
    """The seeds ``hist`` (keyed ``(norm, lr, seed)``) holds for one network and learning rate."""
    return sorted(k[-1] for k in hist if k[:-1] == (norm, lr))


def curves(hist: dict, *, norms, lrs, metric: str, smooth: int = 1, ylabel: str = "",
           logy: bool = False, max_step: int | None = None):
    """One panel per learning rate; a line (band: min..max over the seeds ``hist`` holds) per
    normaliser, up to ``max_step`` (all steps if None).

    ``metric`` is ``train_loss`` / ``train_acc`` (per step, smoothed over ``smooth`` steps)
    or ``test_loss`` / ``test_acc`` (at evaluation steps). A diverged run ends with an x.
    """
    fig, axes = plt.subplots(1, len(lrs), figsize=(5.2 * len(lrs), 3.6), sharey=True, squeeze=False)
    for ax, lr in zip(axes[0], lrs):
        for norm in norms:
            hs = [hist[(norm, lr, s)] for s in seeds_of(hist, norm, lr)]
            if metric.startswith("train"):
                xs = [np.arange(1, h.steps_done + 1) for h in hs]
                ys = [running_mean(getattr(h, metric), smooth) for h in hs]
            else:
                xs = [h.eval_step for h in hs]
                ys = [getattr(h, metric) for h in hs]
            if max_step is not None:
                ys = [y[x <= max_step] for x, y in zip(xs, ys)]
                xs = [x[x <= max_step] for x in xs]
            band(ax, xs, ys, norm)
            for h, x, y in zip(hs, xs, ys):
                if h.diverged and max_step is not None and h.steps_done > max_step:
                    continue  # it diverged after the steps shown
                if h.diverged and len(y):
                    ax.plot(x[-1], y[-1], "x", color=color(norm), ms=9, mew=2)
                    ax.annotate("diverged", (x[-1], y[-1]), textcoords="offset points",
                                xytext=(4, 4), color=color(norm), fontsize=8)
                elif h.diverged:
                    ax.annotate(f"{label(norm)}: diverged at step 1", (0.02, 0.02),
                                xycoords="axes fraction", color=color(norm), fontsize=8)
        ax.set_xlabel("training step")
        ax.text(0.98, 0.95, f"lr = {lr:g}", transform=ax.transAxes, ha="right", va="top")
        if logy:
            ax.set_yscale("log")
    axes[0, 0].set_ylabel(ylabel or metric.replace("_", " "))
    axes[0, -1].legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig
