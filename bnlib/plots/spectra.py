"""Figures of Hessian spectra and of the runs they were measured on (Reyes & Levy, Figs. 1-3, 8).

``res`` is a dict of runs keyed by (variant, seed), each a dict of per-epoch arrays (epoch 0 =
initialisation; ``epoch`` names the probed epochs): ``<split>_loss``/``<split>_acc``,
``time_s``, ``ll_eigs`` (epochs, P) every eigenvalue of one Hessian block, descending, and
``full_top`` (epochs, k) the top of the full spectrum. A line is the mean over seeds and the
band spans min to max. ``style`` maps each variant to (normaliser kind for the colour, line
style, legend label); ``STYLE`` holds the MLP variants with BN after and before the ReLU.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import band as band_
from . import color, label

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


def _line(ax, x: np.ndarray, Y: np.ndarray, variant: str, style: dict, **kw) -> None:
    kind, ls, lab = style[variant]
    ax.plot(x, np.nanmean(Y, 0), ls, color=color(kind), label=lab, **kw)
    if len(Y) > 1:
        ax.fill_between(x, np.nanmin(Y, 0), np.nanmax(Y, 0), color=color(kind), alpha=0.2, lw=0)


def epoch_curves(res: dict, variants, *, x: str = "epoch", style: dict = STYLE):
    """Loss (top) and accuracy (bottom) on the training and validation sets (left, right),
    against epochs or against training wall-clock time (``x="time"``)."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.4), sharex=True)
    for j, split in enumerate(("train", "val")):
        for i, metric in enumerate(("loss", "acc")):
            ax = axes[i, j]
            for v in variants:
                Y = _stack(res, v, lambda r, k=f"{split}_{metric}": r[k])
                xs = (_epochs(res, v, Y.shape[1]) if x == "epoch"
                      else np.nanmean(_stack(res, v, lambda r: r["time_s"]), 0)[: Y.shape[1]])
                _line(ax, xs, Y, v, style, marker="o", ms=3)
            name = "training" if split == "train" else "validation"
            ax.set_ylabel(f"{name} {'loss (cross-entropy)' if metric == 'loss' else 'accuracy'}")
            if metric == "loss":
                ax.set_yscale("log")
    for ax in axes[1]:
        ax.set_xlabel("epoch" if x == "epoch" else "training time (s): steps x interleaved s/step")
    axes[0, 1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def top_eigenvalues(res: dict, variants, *, key: str = "ll_eigs", k: int = 10, style: dict = STYLE):
    """The k largest Hessian eigenvalues against epochs, one panel per network (seed Fig. 8)."""
    fig, axes = plt.subplots(1, len(variants), figsize=(4.2 * len(variants), 3.4), sharey=True,
                             squeeze=False)
    for ax, v in zip(axes[0], variants, strict=True):
        kind, ls, lab = style[v]
        for i in range(k):
            Y = _stack(res, v, lambda r, i=i: np.asarray(r[key])[:, i])
            ax.plot(_epochs(res, v, Y.shape[1]), np.nanmean(Y, 0), ls, color=color(kind),
                    alpha=1 - 0.8 * i / k, lw=1.4, marker="o", ms=2)
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.text(0.98, 0.97, lab, transform=ax.transAxes, ha="right", va="top", fontsize=8)
    axes[0, 0].set_ylabel(rf"top {k} eigenvalues (darkest: $\lambda_1$)")
    fig.tight_layout()
    return fig


def kappas(res: dict, variants, *, k: int = 10, style: dict = STYLE):
    """kappa' = lambda_1 / lambda_k against epochs: last-layer block (left), full Hessian
    (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, key, name in zip(axes, ("ll_eigs", "full_top"), ("last layer W2", "all parameters"),
                             strict=True):
        for v in variants:
            Y = _stack(res, v, lambda r, key=key: np.asarray(r[key])[:, 0]
                       / np.asarray(r[key])[:, k - 1])
            ok = ~np.all(np.isnan(Y), 0)  # epochs where this Hessian was computed
            _line(ax, _epochs(res, v, Y.shape[1])[ok], Y[:, ok], v, style, marker="o", ms=3)
        ax.set_xlabel("epoch")
        ax.set_ylabel(rf"$\kappa' = \lambda_1 / \lambda_{{{k}}}$, {name}")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def spectrum(res: dict, variants, *, epoch: int = -1, zero_rel: float = 1e-6,
             floor: float = 1e-12, style: dict = STYLE):
    """Every eigenvalue of the last-layer Hessian at one epoch as |lambda| / lambda_1, sorted,
    log scale, values below ``floor`` drawn at it; negative ones marked with crosses; the
    dotted line is ``zero_rel``."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
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
    ax.set_ylabel(r"$|\lambda| / \lambda_1$, last-layer Hessian")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


def search_grid(table: pd.DataFrame, *, style: dict = STYLE):
    """Validation accuracy of every (lr, l2) of the search, one heatmap per network."""
    nets = list(dict.fromkeys(table.network))
    fig, axes = plt.subplots(1, len(nets), figsize=(4.4 * len(nets), 3.4), squeeze=False)
    for j, (ax, v) in enumerate(zip(axes[0], nets, strict=True)):
        grid = table[table.network == v].pivot(index="l2", columns="lr", values="val_acc")
        im = ax.imshow(grid.values, vmin=0, vmax=1, cmap="viridis", origin="lower", aspect="auto")
        for (i, j), val in np.ndenumerate(grid.values):
            ax.text(j, i, f"{val:.1%}", ha="center", va="center", fontsize=8,
                    color="white" if val < 0.6 else "black")
        ax.set_xticks(range(grid.shape[1]), [f"{c:g}" for c in grid.columns])
        ax.set_yticks(range(grid.shape[0]), [f"{c:g}" for c in grid.index] if j == 0 else [])
        ax.set_xlabel("Adam learning rate")
        ax.grid(False)
        ax.text(0.02, 1.02, style[v][2], transform=ax.transAxes, fontsize=8)
    axes[0, 0].set_ylabel("l2 weight (weight_decay)")
    fig.colorbar(im, ax=axes[0].tolist(), label="validation accuracy")
    return fig


def outliers(res: dict, variants, *, classes: int = 10, style: dict = STYLE):
    """The whole Hessian's largest eigenvalues at the last epoch against their index (left) and
    the ratio of neighbours lambda_i / lambda_(i+1) (right); the dotted line marks i = classes."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for v in variants:
        Y = _stack(res, v, lambda r: np.asarray(r["top"], float))
        i = np.arange(1, Y.shape[1] + 1)
        _line(axes[0], i, Y, v, style, marker="o", ms=3)
        _line(axes[1], i[:-1], Y[:, :-1] / Y[:, 1:], v, style, marker="o", ms=3)
    for ax in axes:
        ax.axvline(classes + 0.5 if ax is axes[0] else classes, color="0.3", ls=":", lw=1)
        ax.set_xticks(range(1, Y.shape[1] + 1, 2))
        ax.set_xlabel("eigenvalue index i")
    axes[0].set_yscale("log")
    axes[0].set_ylabel(r"$\lambda_i$, whole Hessian, last epoch")
    axes[1].set_ylabel(r"$\lambda_i / \lambda_{i+1}$")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def width_sweep(widths: dict, floors: dict, *, band: float = 0.01):
    """Share of the whole Hessian's eigenvalues *not* within ``band`` lambda_1 of zero against
    the hidden width (standard net; mean over seeds, band min..max, log scales), under the most
    the rank bound allows (``floors``: {width: least share of exact zeros}). ``widths``:
    {width: {"share": per seed near-zero shares, ...}}."""
    ws = sorted(widths)
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    away = 1 - np.array([widths[w]["share"] for w in ws]).T  # (seeds, widths)
    band_(ax, [ws] * len(away), list(away), "none", label_="measured (standard net)")
    ax.plot(ws, away.mean(0), "o", color=color("none"), ms=4)
    ax.plot(ws, [1 - floors[w] for w in ws], "--", color="0.4", lw=1.2, label="most allowed by the rank bound")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.minorticks_off()
    ax.set_xticks(ws, [str(w) for w in ws])
    ax.set_xlabel("hidden units")
    ax.set_ylabel(rf"share of eigenvalues with $|\lambda| > {band:g}\,\lambda_1$")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
