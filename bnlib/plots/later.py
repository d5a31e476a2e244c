"""Figures of the last chapter: the learning-rate comparison, per-layer smoothness raw and in units
of the weight norm, and sharpness against 2/eta along full-batch gradient descent."""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import band, color, label, legend_outside, panels


def rates(table: pd.DataFrame, matched: dict[str, list[float]], lr: float, lr_large: float):
    """Top: tail loss against the swept learning rate per network (diverged runs at the top
    edge, marked x). Bottom: the paired runs, tail loss at ``lr`` and ``lr_large`` per seed."""
    fig, (top, bottom) = panels(2, cols=1, height=2.6)
    finite = table["tail loss"][np.isfinite(table["tail loss"])]
    cap = float(finite.max()) * 1.1 if len(finite) else 3.0
    for norm, name in (("none", "standard"), ("bn", "BN")):
        t = table[table.network == name].sort_values("lr")
        y = np.where(np.isfinite(t["tail loss"]), t["tail loss"], cap)
        top.plot(t.lr, y, "o-", color=color(norm), label=label(norm))
        bad = ~np.isfinite(t["tail loss"].to_numpy())
        top.plot(t.lr[bad], y[bad], "x", color=color(norm), ms=10, mew=2)
        for a, b in zip(matched[norm], matched[f"{norm}_large"]):
            bottom.plot([0, 1], [a, min(b, cap)], "o-", color=color(norm), alpha=0.8)
    top.set_xscale("log")
    top.set(xlabel=r"learning rate $\eta$", ylabel="tail training loss", title="the sweep (x: diverged)")
    bottom.set_xticks([0, 1], [rf"$\eta = {lr:g}$ (matched)", rf"$\eta = {lr_large:g}$"])
    bottom.set(ylabel="tail training loss", title="paired runs, one line per seed", xlim=(-0.3, 1.3))
    legend_outside(fig, ncol=2)
    return fig


def layers(res: dict, seeds: list[int]):
    """Per weight layer (x), median over probed steps of four quantities, one panel each, raw
    (left column) and in units of the weight norm (right column); band over seeds."""
    qs = [(r"$\beta_i$", lambda r: r["beta"]),
          (r"$\|W_i\|^2\,\beta_i$", lambda r: r["beta"] * r["weight_norm"] ** 2),
          (r"$\|g_i\|$", lambda r: r["grad_norm"]),
          (r"$\|W_i\|\,\|g_i\|$", lambda r: r["grad_norm"] * r["weight_norm"])]
    fig, axes = panels(4, cols=2, height=2.5)
    fed = np.asarray(res[("bn", seeds[0])]["bn_fed"][0], bool)
    x = np.arange(1, len(fed) + 1)
    for ax, (name, f) in zip(axes, qs):
        for norm in ("none", "bn"):
            band(ax, [x] * len(seeds), [np.median(f(res[(norm, s)]), axis=0) for s in seeds], norm)
        ax.set_yscale("log")
        ax.set(xlabel="weight layer $i$", ylabel=name, xticks=x)
        for i in x[~fed]:
            ax.axvspan(i - 0.5, i + 0.5, color="0.9", lw=0, zorder=0)
    legend_outside(fig, ncol=2)
    return fig


def sharpness(top: dict, lrs: list[float]):
    """Top Hessian eigenvalue along full-batch GD, one panel per step size eta (stacked), a band
    over seeds per network, and the line 2/eta."""
    fig, axes = panels(len(lrs), cols=1, height=2.5, sharex=True)
    for ax, lr in zip(axes, lrs):
        for norm in ("none", "bn"):
            runs = [v for (n, e, _), v in sorted(top.items()) if n == norm and e == lr]
            if runs:
                band(ax, [np.asarray(r["step"]) for r in runs],
                     [np.asarray(r["eigenvalues"])[:, 0] for r in runs], norm)
        ax.axhline(2 / lr, color="k", ls="--", lw=1.2, label=r"$2/\eta$")
        ax.set_yscale("log")
        ax.set(ylabel=r"$\lambda_{\max}$", title=rf"$\eta = {lr:g}$")
    axes[-1].set_xlabel("gradient-descent step")
    legend_outside(fig, ncol=3)
    return fig
