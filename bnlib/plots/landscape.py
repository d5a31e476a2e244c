"""Figures of the loss landscape along a line (Santurkar et al. 2018, Figs. 4, 10, 11).

Every function takes line-search results (``probes.landscape.LineSearch``) as
``{norm: probe}``, where ``probe`` holds arrays over probed steps as the run store returns
them (``step`` (K,), ``loss_min`` (K,), ``grad_diff`` (K, S), ...), so any chapter can plot
any normaliser the same way; plus the factor curves and the learning-rate sweep built on them.
"""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..probes.landscape import QUANTITIES, factors
from . import band, color, label, legend_outside, panels
from .curves import log_ticks

GRAD_CHANGE = r"$\|\nabla\mathcal{L}(\theta_s) - \nabla\mathcal{L}(\theta)\|_2$"
PANELS = (  # (lower key, upper key or None, title, y label) of the three panels of Fig. 4
    ("loss_min", "loss_max", "(a) loss along the line", None),
    ("grad_diff_min", "grad_diff_max", "(b) gradient change along the line, " + GRAD_CHANGE, "gradient change"),
    ("beta_eff", None, r"(c) effective $\beta$-smoothness: largest gradient change per unit distance",
     r"effective $\beta$"),
)

FACTOR_LABELS = {"beta_eff": r"effective $\beta$-smoothness"}  # legend labels in maths where QUANTITIES has words


def landscape_panels(probes: dict[str, dict], *, log_loss: bool = False,
                     loss_label: str = "loss along the line", step_label: str = "training step"):
    """Fig. 4: loss range, gradient-change range (bands: min..max over the line) and
    effective beta-smoothness, against the training step, one colour per normaliser."""
    fig, axes = panels(3, cols=1, height=2.2, sharex=True)
    for ax, (lo, hi, title, ylabel) in zip(axes, PANELS):
        for norm, p in probes.items():
            if hi is None:
                ax.plot(p["step"], p[lo], "o-", ms=3, color=color(norm), label=label(norm))
            else:
                ax.fill_between(p["step"], p[lo], p[hi], color=color(norm), alpha=0.3, lw=0)
                ax.plot(p["step"], p[lo], color=color(norm), lw=1, label=label(norm))
                ax.plot(p["step"], p[hi], color=color(norm), lw=1)
        log = lo != "loss_min" or log_loss
        ax.set_yscale("log" if log else "linear")
        if log:
            log_ticks(ax)
        ax.set_ylabel((loss_label if lo == "loss_min" else ylabel) + ("\n(log scale)" if log else ""))
        ax.set_title(title, loc="left", fontsize=10)
    axes[-1].set_xlabel(step_label)
    legend_outside(fig)
    return fig


def lr_robustness(probes: dict[str, dict], *, lr: float, cmap: str = "viridis"):
    """Fig. 11: gradient change against the step size s * lr, one line per probed training
    step coloured by that step; one panel per normaliser, shared axes."""
    fig, axes = panels(len(probes), height=3.2, sharey=True)
    last = max(int(p["step"].max()) for p in probes.values())
    norm_c = mpl.colors.Normalize(0, max(last, 1))
    for ax, (norm, p) in zip(axes, probes.items()):
        for t, mults, diff in zip(p["step"], p["multipliers"], p["grad_diff"]):
            ax.plot(mults * lr, diff, "o-", ms=2.5, lw=1.2, color=plt.get_cmap(cmap)(norm_c(t)))
        ax.set_xscale("log")
        ax.set_yscale("log")
        log_ticks(ax, "x")
        ax.set_xlabel(r"step size $s\eta$ (log scale)")
        ax.set_title(label(norm), color=color(norm), fontsize=10)
    log_ticks(axes[0])  # shared y axis: once, with every panel drawn
    axes[0].set_ylabel("gradient change " + GRAD_CHANGE + "\n(log scale)")
    fig.colorbar(mpl.cm.ScalarMappable(norm_c, cmap), ax=axes, label="training step")
    return fig


def ratio_curves(panels_: dict[str, list[dict[str, dict]]], *, num: str = "none", den: str = "bn"):
    """The ``num`` / ``den`` factor of each of Fig. 4's quantities over training (log scale;
    above 1: ``den`` smoother), one panel per entry of ``panels_`` ({panel label: [{norm: probe}
    per seed]}): the mean over seeds with a min..max band (one seed: a line)."""
    fig, axes = panels(len(panels_), height=3.0, sharey=True)
    for ax, (title, per_seed) in zip(axes, panels_.items()):
        fs = [factors(p[num], p[den]) for p in per_seed]
        n = min(len(f["step"]) for f in fs)
        for i, (key, (name, _)) in enumerate(QUANTITIES.items()):
            Y, c = np.stack([f[key][:n] for f in fs]), plt.get_cmap("Dark2")(i)
            ax.plot(fs[0]["step"][:n], Y.mean(0), "o-", ms=3, color=c, label=FACTOR_LABELS.get(key, name))
            if len(fs) > 1:
                ax.fill_between(fs[0]["step"][:n], Y.min(0), Y.max(0), color=c, alpha=0.2, lw=0)
        ax.axhline(1, color="0.4", lw=1, ls="--")
        ax.set_yscale("log")
        ax.set_xlabel("training step")
        ax.set_title(title, fontsize=10)
    axes[0].set_ylabel((f"{label(num)} / {label(den)}" if (num, den) != ("none", "bn") else "standard / BN")
                       + " (factor, log scale)")
    log_ticks(axes[0])  # shared y axis: once, with every panel drawn
    legend_outside(fig, ncol=2)
    return fig


def lr_sweep(table: pd.DataFrame, *, bars: dict[str, float], networks: dict[str, str],
             relative: tuple[str, ...] = ()):
    """Tail training loss against the learning rate (divided by the initial loss for the
    networks in ``relative``), one line per normaliser, one panel per network, a dashed line at
    the network's "trains" bar (``bars``); a cross at the top marks a diverged run."""
    fig, axes = panels(len(networks), height=3.0)
    for ax, (arch, title) in zip(axes, networks.items()):
        sub = table[table["network"] == arch]
        div = sub["initial loss"] if arch in relative else 1.0
        vals = (sub["tail loss"] / div).to_numpy()
        top = max(bars[arch], float(np.max(vals[np.isfinite(vals)], initial=bars[arch])))  # crosses go here
        for norm, g in sub.groupby("norm", sort=False):
            g = g.sort_values("lr")
            y = (g["tail loss"] / (g["initial loss"] if arch in relative else 1.0)).to_numpy()
            ok = np.isfinite(y)
            ax.plot(g["lr"][ok], y[ok], "o-", color=color(norm), label=label(norm))
            ax.plot(g["lr"][~ok], np.full((~ok).sum(), top), "x", ms=9, mew=2, color=color(norm))
        ax.axhline(bars[arch], color="0.4", lw=1, ls="--")
        ax.set_xscale("log")
        log_ticks(ax, "x")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("learning rate (log scale)")
        ax.set_ylabel("tail / initial training loss" if arch in relative else "tail training loss")
    legend_outside(fig)
    return fig


def gradient_norms(grads: dict[str, dict[str, np.ndarray]], titles: dict[str, str]):
    """Per-layer gradient norms, one panel per site (``grads``: {site: {norm: (seeds, layers)}};
    ``titles``: {site: (panel title, y label)}), the layer on x, a log y axis; mean over seeds
    with a min..max band (``plots.band``)."""
    fig, axes = panels(len(grads), height=3.0)
    for ax, (site, per_norm) in zip(axes, grads.items()):
        for norm, Y in per_norm.items():
            layers = np.arange(1, Y.shape[1] + 1)
            band(ax, [layers] * len(Y), list(Y), norm, marker="o", ms=3)
        ax.set_yscale("log")
        log_ticks(ax)
        ax.set_xticks(layers)
        ax.set_xlabel("weight layer (input side first)")
        ax.set_title(titles[site][0], fontsize=10)
        ax.set_ylabel(titles[site][1] + " (log scale)")
    legend_outside(fig)
    return fig
