"""Figures of internal covariate shift in the sense of Definition 2.1 (Santurkar et al. 2018,
Fig. 3): training loss above ||G - G'|| and cos(G, G') of chosen layers, and per-layer heat maps.

Inputs are plain results: Histories and ICS probe results (``probes.ics.ICS``, arrays
``step``, ``l2``, ``cos``, ``g_norm``), keyed ``(norm, lr, seed)``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.lines import Line2D

from . import COLUMN_IN, band, color, label
from .curves import log_ticks, running_mean

LAYER_STYLES = ("-", "--", ":", "-.")


ROWS = {  # key of an ICS result -> y label; "rel_l2" = ||G - G'|| / ||G||
    "l2": "raw ICS\n" + r"$\|G - G'\|_2$ (log)", "rel_l2": "relative ICS\n" + r"$\|G - G'\| / \|G\|$ (log)",
    "cos": r"$\cos(G, G')$", "g_norm": "gradient norm\n" + r"$\|G\|_2$ (log)",
}


def _values(p: dict, key: str, layer: int) -> np.ndarray:
    return (p["l2"] / p["g_norm"] if key == "rel_l2" else p[key])[:, layer - 1]


def curves(hist: dict, ics: dict, *, norms, seeds: dict, layers: list[int], smooth: int = 1,
           loss_label: str = "training loss", log_loss: bool = False, rows=tuple(ROWS)):
    """Columns: learning rates (``seeds``: {lr: the seeds run there}). Rows: training loss (from
    ``hist``), then ``rows`` of ``ROWS`` (from ``ics``) of ``layers`` (line style per layer,
    colour per normaliser) against the step; mean over seeds with a min..max band (``plots.band``)."""
    lrs = list(seeds)
    fig, axes = plt.subplots(1 + len(rows), len(lrs), figsize=(COLUMN_IN, 2.3 + 1.9 * len(rows)),
                             sharex="col", squeeze=False, layout="constrained")
    for col, lr in enumerate(lrs):
        ax_loss = axes[0, col]
        for norm in norms:
            ys = [running_mean(hist[(norm, lr, s)].train_loss, smooth) for s in seeds[lr]]
            band(ax_loss, [np.arange(1, len(y) + 1) for y in ys], ys, norm)
            ps = [p for s in seeds[lr] if "l2" in (p := ics[(norm, lr, s)])]
            for layer, ls in zip(layers, LAYER_STYLES):
                for ax, key in zip(axes[1:, col], rows):
                    if ps:
                        band(ax, [p["step"] for p in ps], [_values(p, key, layer) for p in ps], norm, ls=ls, lw=1.5)
        n = len(seeds[lr])
        ax_loss.set_title(f"learning rate {lr:g}, {n} seed{'s' * (n > 1)}", fontsize=10)
        ax_loss.set_yscale("log" if log_loss else "linear")
        for ax, key in zip(axes[1:, col], rows):
            if key == "cos":
                ax.set_ylim(-1.05, 1.05)
            else:
                ax.set_yscale("log")
                log_ticks(ax)
        axes[-1, col].set_xlabel("training step")
    axes[0, 0].set_ylabel(loss_label + (" (log)" if log_loss else ""))
    for ax, key in zip(axes[1:, 0], rows):
        ax.set_ylabel(ROWS[key])
    handles = [Line2D([], [], color=color(n), label=label(n)) for n in norms]
    handles += [Line2D([], [], color="0.3", ls=ls, label=f"layer {i}") for i, ls in zip(layers, LAYER_STYLES)]
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles))
    return fig


def heatmap(panels: list[tuple[str, dict]], *, metric: str = "cos"):
    """One panel per ``(title, ics result of one run)``: ``metric`` over layers (y) and training
    steps (x). ``cos`` on [-1, 1]; ``rel_l2`` = ||G - G'|| / ||G||, on one log colour scale
    shared by the panels."""
    Zs = []
    for _, p in panels:
        Z = p["cos"] if metric == "cos" else p["l2"] / p["g_norm"]  # (measurements, layers)
        Zs.append((p["step"], np.where(np.isfinite(Z) & ((Z > 0) | (metric == "cos")), Z, np.nan)))
    if metric == "cos":
        opts = dict(cmap="RdBu", vmin=-1, vmax=1)
    else:
        vals = np.concatenate([Z[np.isfinite(Z)] for _, Z in Zs])
        lo, hi = (vals.min(), vals.max()) if vals.size else (1e-6, 1.0)
        opts = dict(cmap="viridis", norm=LogNorm(lo, hi))
    cols = min(2, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(COLUMN_IN, 2.6 * rows + 0.5), squeeze=False, layout="constrained")
    for ax, (title, _), (steps, Z) in zip(axes.ravel(), panels, Zs):
        dx = steps[1] - steps[0] if len(steps) > 1 else 1
        extent = (steps[0] - dx / 2, steps[-1] + dx / 2, Z.shape[1] + 0.5, 0.5)
        im = ax.imshow(Z.T, aspect="auto", extent=extent, interpolation="nearest", **opts)
        ax.set_title(title, fontsize=9, loc="left")
        ax.grid(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("layer")
    for ax in axes[-1]:
        ax.set_xlabel("training step")
    for ax in axes.ravel()[len(panels):]:
        ax.remove()
    fig.supxlabel("Layer 1 (top row): no layer before it, so $G' = G$ by definition: cos 1, ICS 0"
                  + ("" if metric == "cos" else " (blank on the log scale)"), fontsize=9)
    fig.colorbar(im, ax=axes.ravel()[:len(panels)].tolist(),
                 label=r"$\cos(G, G')$" if metric == "cos" else r"$\|G - G'\| \,/\, \|G\|$ (log scale)")
    return fig
