"""Curves over training: loss and accuracy per step or evaluation, one line (band: min..max over seeds) per network."""

from __future__ import annotations

import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from . import band, color, label, legend_outside, panels


def running_mean(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing running mean (the first ``window - 1`` points average what exists so far)."""
    c = np.cumsum(np.insert(np.asarray(y, float), 0, 0.0))
    n = np.arange(1, len(y) + 1)
    lo = np.maximum(n - window, 0)
    return (c[n] - c[lo]) / (n - lo)


def log_ticks(ax, axis: str = "y") -> None:
    """Readable labelled ticks on a log axis of any range: under three decades 1, 2, 5 x 10^k (finer
    under one decade) written as plain numbers, instead of matplotlib's crowded minor labels;
    over three decades its powers of ten. Call once the data are drawn (it reads the limits)."""
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    decades = np.log10(hi / lo) if lo > 0 and hi > lo else np.inf
    if decades >= 3:
        return
    a = ax.yaxis if axis == "y" else ax.xaxis
    a.set_major_locator(LogLocator(subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0) if decades < 1 else (1.0, 2.0, 5.0)))
    a.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    a.set_minor_formatter(NullFormatter())


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
    fig, axes = panels(len(lrs), height=3.0, sharey=True)
    for ax, lr in zip(axes, lrs):
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
            _mark_diverged(ax, hs, xs, ys, norm, max_step)
        ax.set_xlabel("training step")
        ax.set_title(f"learning rate {lr:g}")
        if logy:
            ax.set_yscale("log")
    if logy:
        log_ticks(axes[0])  # the axes share their y axis: once, with every panel drawn
    axes[0].set_ylabel(ylabel or metric.replace("_", " "))
    legend_outside(fig, ncol=len(norms) if len(norms) <= 3 else 2)
    return fig


def _mark_diverged(ax, hs, xs, ys, norm: str, max_step: int | None) -> None:
    """A cross and "diverged" at the last point of each run that diverged within the steps shown."""
    for h, x, y in zip(hs, xs, ys):
        if not h.diverged or (max_step is not None and h.steps_done > max_step):
            continue  # finished, or diverged after the steps shown
        if len(y):
            ax.plot(x[-1], y[-1], "x", color=color(norm), ms=9, mew=2)
            ax.annotate("diverged", (x[-1], y[-1]), textcoords="offset points", xytext=(4, 4),
                        color=color(norm), fontsize=9)
        else:
            ax.annotate(f"{label(norm)}: diverged at step 1", (0.02, 0.02), xycoords="axes fraction",
                        color=color(norm), fontsize=9)
