"""Figures of Hessian spectra and of the runs they were measured on (Reyes & Levy, Figs. 1-3, 8).

``res`` is a dict of runs keyed by (variant, seed), each a dict of per-epoch arrays (epoch 0 =
initialisation; ``epoch`` names the probed epochs): ``<split>_loss``/``<split>_acc``,
``time_s``, ``ll_eigs`` (epochs, P) every eigenvalue of one Hessian block, descending, and
``full_top`` (epochs, k) the top of the full spectrum. A line is the mean over seeds and the
band spans min to max. ``style`` maps each variant to (normaliser kind for the colour, line
style, legend label); ``STYLE`` holds the MLP variants with BN after and before the ReLU.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

from . import COLUMN_IN, color, label, legend_outside, panels
from . import band as band_

STYLE = {  # variant -> (norm kind for the colour, line style, legend label)
    "none": ("none", "-", label("none")),
    "bn": ("bn", "-", label("bn") + " after ReLU"),
    "bn_before": ("bn", "--", label("bn") + " before ReLU"),
}


def _stack(res: dict, variant: str, fn) -> np.ndarray:
    rows = [np.asarray(fn(r), float) for (v, _), r in res.items() if v == variant]
    n = max(len(r) for r in rows)
    return np.stack([np.pad(r, (0, n - len(r)), constant_values=np.nan) for r in rows])


def _epochs(res: dict, variant: str, n: int) -> np.ndarray:
    """The probed epochs of ``variant``'s runs (0, 1, ... if a run does not name them)."""
    r = next(r for (v, _), r in res.items() if v == variant)
    return np.asarray(r.get("epoch", np.arange(n)))[:n]


def _plain(v: float) -> str:
    """A tick label: plain digits from 0.001 to 10,000, else m x 10^e in mathtext."""
    if v == 0 or 1e-3 <= abs(v) < 1e4:
        return f"{v:g}"
    m, e = f"{v:.0e}".split("e")
    return rf"${m}\times10^{{{int(e)}}}$" if m != "1" else rf"$10^{{{int(e)}}}$"


def log_y(ax, fmt=_plain) -> None:
    """A log y axis labelled at 1, 2 and 5 times each power of ten by ``fmt`` (plain numbers by
    default), so a range under a decade still gets labels."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v)))


def _line(ax, x: np.ndarray, Y: np.ndarray, variant: str, style: dict, **kw) -> None:
    kind, ls, lab = style[variant]
    ax.plot(x, np.nanmean(Y, 0), ls, color=color(kind), label=lab, **kw)
    if len(Y) > 1:
        ax.fill_between(x, np.nanmin(Y, 0), np.nanmax(Y, 0), color=color(kind), alpha=0.2, lw=0)


def epoch_curves(res: dict, variants, *, x: str = "epoch", style: dict = STYLE):
    """Loss (top) and accuracy (bottom) on the training and validation sets (left, right),
    against epochs or against training wall-clock time (``x="time"``)."""
    fig, flat = panels(4, height=2.4, sharex=True)
    axes = np.array(flat).reshape(2, 2)
    for j, split in enumerate(("train", "val")):
        for i, metric in enumerate(("loss", "acc")):
            ax = axes[i, j]
            for v in variants:
                Y = _stack(res, v, lambda r, k=f"{split}_{metric}": r[k])
                xs = (_epochs(res, v, Y.shape[1]) if x == "epoch"
                      else np.nanmean(_stack(res, v, lambda r: r["time_s"]), 0)[: Y.shape[1]])
                _line(ax, xs, Y, v, style, marker="o", ms=3)
            name = "training" if split == "train" else "validation"
            ax.set_ylabel(f"{name} {'loss (log scale)' if metric == 'loss' else 'accuracy'}")
            if metric == "loss":
                log_y(ax)
            else:  # from epoch 1 on: the initialisation's chance level would flatten the curves
                trained = np.concatenate([_stack(res, v, lambda r, k=f"{split}_acc": r[k])[:, 1:].ravel()
                                          for v in variants])
                ax.set_ylim(np.nanmin(trained) - 0.01, min(1.0, np.nanmax(trained) + 0.01))
                ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0%}"))
    for ax in axes[1]:
        ax.set_xlabel("epoch" if x == "epoch" else "training time (s)")
    legend_outside(fig, ncol=2)
    return fig


def top_eigenvalues(res: dict, variants, *, key: str = "ll_eigs", k: int = 10, style: dict = STYLE):
    """The k largest Hessian eigenvalues against epochs, one panel per network, side by side
    (seed Fig. 8)."""
    fig, axes = panels(len(variants), cols=3, height=2.9, sharey=True)
    for ax, v in zip(axes, variants, strict=True):
        kind, ls, lab = style[v]
        for i in range(k):
            Y = _stack(res, v, lambda r, i=i: np.asarray(r[key])[:, i])
            ax.plot(_epochs(res, v, Y.shape[1]), np.nanmean(Y, 0), ls, color=color(kind),
                    alpha=1 - 0.8 * i / k, lw=1.4, marker="o", ms=2)
        log_y(ax)
        ax.set_xlabel("epoch")
        ax.set_title(lab.replace("Standard + ", ""), fontsize="medium")
    axes[0].set_ylabel(rf"top {k} eigenvalues (darkest: $\lambda_1$)")
    return fig


def kappas(res: dict, variants, *, k: int = 10, style: dict = STYLE):
    """kappa' = lambda_1 / lambda_k against epochs: last-layer block (left), full Hessian
    (right)."""
    fig, axes = panels(2, height=2.9)
    for ax, key, name in zip(axes, ("ll_eigs", "full_top"), (r"last-layer block $W_2$", "all parameters"),
                             strict=True):
        for v in variants:
            Y = _stack(res, v, lambda r, key=key: np.asarray(r[key])[:, 0]
                       / np.asarray(r[key])[:, k - 1])
            ok = ~np.all(np.isnan(Y), 0)  # epochs where this Hessian was computed
            _line(ax, _epochs(res, v, Y.shape[1])[ok], Y[:, ok], v, style, marker="o", ms=3)
        ax.set_xlabel("epoch")
        ax.set_title(name, fontsize="medium")
    axes[0].set_ylabel(rf"$\kappa' = \lambda_1 / \lambda_{{{k}}}$")
    legend_outside(fig, ncol=2)
    return fig


def spectrum(res: dict, variants, *, epoch: int = -1, zero_rel: float = 1e-6,
             floor: float = 1e-12, style: dict = STYLE):
    """Every eigenvalue of the last-layer Hessian at one epoch as |lambda| / lambda_1, sorted,
    log scale, values below ``floor`` drawn at it; negative ones marked with crosses; the
    dotted line is ``zero_rel``."""
    fig, (ax,) = panels(1, height=3.4)
    for v in variants:
        r = next(r for (w, _), r in res.items() if w == v)  # first seed
        lam = np.asarray(r["ll_eigs"])[epoch]
        kind, ls, lab = style[v]
        rel = np.abs(lam) / lam[0]
        order = np.argsort(-rel)
        idx = np.arange(1, lam.size + 1)
        ax.plot(idx, np.maximum(rel[order], floor), ls, color=color(kind), label=lab, lw=1.4)
        neg = lam[order] < 0
        ax.plot(idx[neg], np.maximum(rel[order], floor)[neg], "x", color=color(kind), ms=3)
    ax.axhline(zero_rel, color="0.3", ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_ylim(floor / 3, 3)
    ax.set_xlabel(r"eigenvalue rank (by $|\lambda|$)")
    ax.set_ylabel(r"$|\lambda| / \lambda_1$ (log scale)")
    legend_outside(fig, ncol=2)
    return fig


def search_grid(table: pd.DataFrame, *, style: dict = STYLE):
    """Validation accuracy of every (lr, l2) of the search, one heatmap per network."""
    nets = list(dict.fromkeys(table.network))
    fig, axes = panels(len(nets), height=3.0, sharey=True)
    for ax, v in zip(axes, nets, strict=True):
        grid = table[table.network == v].pivot(index="l2", columns="lr", values="val_acc")
        im = ax.imshow(grid.values, vmin=0, vmax=1, cmap="viridis", origin="lower", aspect="auto")
        for (i, j), val in np.ndenumerate(grid.values):
            ax.text(j, i, f"{val:.1%}", ha="center", va="center", fontsize=9,
                    color="white" if val < 0.6 else "black")
        ax.set_xticks(range(grid.shape[1]), [f"{c:g}" for c in grid.columns])
        ax.set_yticks(range(grid.shape[0]), [f"{c:g}" for c in grid.index])
        ax.set_xlabel("Adam learning rate")
        ax.grid(False)
        ax.set_title(style[v][2], fontsize="medium")
    axes[0].set_ylabel(r"$\ell_2$ weight")
    fig.colorbar(im, ax=axes, label="validation accuracy")
    return fig


def outliers(res: dict, variants, *, classes: int = 10, style: dict = STYLE):
    """The whole Hessian's largest eigenvalues at the last epoch against their index (left) and
    the ratio of neighbours lambda_i / lambda_(i+1) (right); the dotted line marks i = classes."""
    fig, axes = panels(2, height=2.9)
    for v in variants:
        Y = _stack(res, v, lambda r: np.asarray(r["top"], float))
        i = np.arange(1, Y.shape[1] + 1)
        _line(axes[0], i, Y, v, style, marker="o", ms=3)
        _line(axes[1], i[:-1], Y[:, :-1] / Y[:, 1:], v, style, marker="o", ms=3)
    for ax in axes:
        ax.axvline(classes + 0.5 if ax is axes[0] else classes, color="0.3", ls=":", lw=1)
        ax.set_xticks(range(1, Y.shape[1] + 1, 2))
        ax.set_xlabel(r"eigenvalue index $i$")
    log_y(axes[0])
    axes[0].set_ylabel(r"$\lambda_i$ (log scale)")
    axes[1].set_ylabel(r"$\lambda_i / \lambda_{i+1}$")
    legend_outside(fig)
    return fig


def width_sweep(widths: dict, floors: dict, *, band: float = 0.01):
    """Share of the whole Hessian's eigenvalues *not* within ``band`` lambda_1 of zero against
    the hidden width (standard net; mean over seeds, band min..max, log scales), under the most
    the rank bound allows (``floors``: {width: least share of exact zeros}). ``widths``:
    {width: {"share": per seed near-zero shares, ...}}."""
    ws = sorted(widths)
    fig, (ax,) = panels(1, height=3.2, width=0.8 * COLUMN_IN)
    away = 1 - np.array([widths[w]["share"] for w in ws]).T  # (seeds, widths)
    band_(ax, [ws] * len(away), list(away), "none", label_="measured (standard net)")
    ax.plot(ws, away.mean(0), "o", color=color("none"), ms=4)
    ax.plot(ws, [1 - floors[w] for w in ws], "--", color="0.4", lw=1.2, label="most allowed by the rank bound")
    ax.set_xscale("log")
    log_y(ax, lambda v: f"{v:.1%}" if v < 0.01 else f"{v:.0%}")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(ws, [str(w) for w in ws])
    ax.set_xlabel("hidden units (log scale)")
    ax.set_ylabel(rf"share with $|\lambda| > {band:g}\,\lambda_1$" + "\n(log scale)")
    legend_outside(fig, ncol=1)
    return fig
