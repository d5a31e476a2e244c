"""Figures of activation distributions and their moments over training (Santurkar et al. 2018,
Figs. 1c, 2 and 7), and of the step-to-step shifts of those moments.

Inputs are keyed ``(norm, lr, seed)`` like the sweeps and ``curves``; each figure shows one
learning rate and one seed. Percentiles come from
``probes.activations.ActivationBands`` results (``"step"``, ``"layer{i}.q"``); moments from a
History's always-on records (``"step"``, ``"pre{i}.mean"``, ``"post{i}.var"``, ...): ``pre`` is the
normaliser's input, ``post`` its output.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import COLUMN_IN, band, color, label, legend_outside, panels
from .curves import log_ticks

SITE_WORDS = {"pre": "before the normaliser", "post": "after the normaliser"}
SHIFT_LABELS = {"mean shift": r"mean shift, $|\Delta \bar a_j| \,/\, \sqrt{v_j}$",
                "var shift": r"variance shift, $|\Delta \log v_j|$"}


def bands(results: dict, *, norms: Sequence[str], layers: Sequence[int], lr: float, seed: int,
          paper_layers: Sequence[int] | None = None, max_step: int | None = None, site: str = "post"):
    """Percentile bands of each layer's sampled activations over training (rows: networks,
    columns: layers), at the steps up to ``max_step`` (all if None), at ``site`` (``"post"``:
    the normaliser's output, ``"pre"``: its input). Shades from light to dark: min..max, 7..93,
    16..84, 31..69 percent (normal sigma levels, TensorBoard's bands); the line is the median.
    ``paper_layers`` names each column's layer in the paper's numbering too."""
    fig = plt.figure(figsize=(COLUMN_IN, 2.2 * len(norms)), layout="constrained")
    for sub, norm in zip(np.atleast_1d(fig.subfigures(len(norms), 1)), norms):
        sub.suptitle(f"{label(norm)}, {SITE_WORDS[site]}", x=0.01, ha="left", fontsize=10, color=color(norm))
        for c, (ax, i) in enumerate(zip(np.atleast_1d(sub.subplots(1, len(layers))), layers)):
            res = results[(norm, lr, seed)]
            keep = res["step"] <= (np.inf if max_step is None else max_step)
            q, step = res[f"layer{i}.{'pre.' if site == 'pre' else ''}q"][keep], res["step"][keep]  # (K, P), (K,)
            p = q.shape[1]
            for k in range(p // 2):
                ax.fill_between(step, q[:, k], q[:, p - 1 - k], color=color(norm), alpha=0.15 + 0.15 * k, lw=0)
            ax.plot(step, q[:, p // 2], color=color(norm), lw=1.0)
            ax.set_title(f"layer {i}" + (f" (paper {paper_layers[c]})" if paper_layers is not None else ""),
                         fontsize=9)
            ax.set_xlabel("training step" if norm == norms[-1] else "")
            if c == 0:
                ax.set_ylabel("activation")
    return fig


def unit_traces(hist: dict, *, norms: Sequence[str], layers: Sequence[int], lr: float, seed: int,
                num_units: int, unit_seed: int = 0, site: str = "post"):
    """Mean and variance over the record batch of ``num_units`` random units (channels) per
    layer against steps, from the always-on records at ``site`` (``"post"``: the normaliser's
    output; ``"pre"``: its input). Rows: layers; columns: mean, variance on a log scale."""
    fig, axes = panels(2 * len(layers), cols=2, height=2.2, sharex=True)
    rng = np.random.default_rng(unit_seed)
    for r, i in enumerate(layers):
        ax_mean, ax_var = axes[2 * r], axes[2 * r + 1]
        n_ch = hist[(norms[0], lr, seed)].records[f"{site}{i}.mean"].shape[1]
        units = rng.choice(n_ch, size=min(num_units, n_ch), replace=False)
        for z, norm in enumerate(norms):  # later networks drawn below earlier ones
            rec = hist[(norm, lr, seed)].records
            for u_idx, u in enumerate(units):
                kw = dict(color=color(norm), lw=0.9, alpha=0.85, zorder=len(norms) - z,
                          label=label(norm) if u_idx == 0 else None)
                ax_mean.plot(rec["step"], rec[f"{site}{i}.mean"][:, u], **kw)
                ax_var.plot(rec["step"], rec[f"{site}{i}.var"][:, u], **kw)
        ax_mean.set_ylabel(f"layer {i}: unit mean")
        ax_var.set_ylabel(f"layer {i}: unit variance\n(log scale)")
        ax_var.set_yscale("log")
        log_ticks(ax_var)
    for ax in axes[-2:]:
        ax.set_xlabel("training step")
    legend_outside(fig, ncol=len(norms))
    return fig


def shifts(table: pd.DataFrame, *, norms: Sequence[str], sites: Sequence[str] = ("pre", "post")):
    """Grouped bars of the step-to-step mean shift and variance shift per layer and network
    (columns ``network``, ``site``, ``layer``, ``mean shift``, ``var shift``), one row of panels
    per site, log scale."""
    fig, axes = panels(2 * len(sites), cols=2, height=2.6)
    layers = sorted(table["layer"].unique())
    w = 0.8 / len(norms)
    for r, site in enumerate(sites):
        t = table[table["site"] == site].set_index(["network", "layer"])
        for ax, col in zip(axes[2 * r:2 * r + 2], ("mean shift", "var shift"), strict=True):
            for k, norm in enumerate(norms):
                ax.bar(np.arange(len(layers)) + (k - (len(norms) - 1) / 2) * w, t.loc[norm].reindex(layers)[col],
                       w, color=color(norm), label=label(norm))
            ax.set_xticks(np.arange(len(layers)), [str(i) for i in layers])
            ax.set_xlabel("layer")
            ax.set_ylabel(SHIFT_LABELS[col] + "\n(log scale)")
            ax.set_yscale("log")
            log_ticks(ax)
            ax.set_title(SITE_WORDS[site], fontsize=10)
    legend_outside(fig, ncol=2)
    return fig


def lags(medians: pd.DataFrame, *, norms: Sequence[str], sites: Sequence[str] = ("pre", "post")):
    """Shift against lag (log-log): per network, the median over layers of the shift from an
    anchor step to ``lag`` steps later (columns ``network``, ``site``, ``seed``, ``lag``, ``mean
    shift``, ``var shift``), mean line and min..max band over seeds. Rows: sites; columns: the
    mean and the variance shift."""
    fig, axes = panels(2 * len(sites), cols=2, height=2.6, sharex=True)
    ticks = sorted(medians["lag"].unique())
    for r, site in enumerate(sites):
        for ax, col in zip(axes[2 * r:2 * r + 2], ("mean shift", "var shift"), strict=True):
            for norm in norms:
                d = medians[(medians["site"] == site) & (medians["network"] == norm)]
                seeds = sorted(d["seed"].unique())
                per = [d[d["seed"] == s].sort_values("lag") for s in seeds]
                band(ax, [p["lag"].to_numpy() for p in per], [p[col].to_numpy() for p in per], norm, marker="o")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.xaxis.set_minor_locator(plt.NullLocator())
            ax.set_ylabel(SHIFT_LABELS[col] + "\n(log scale)")
            ax.set_title(SITE_WORDS[site], fontsize=10)
            log_ticks(ax)
    for ax in axes[-2:]:
        ax.set_xlabel("lag (training steps, log scale)")
    legend_outside(fig, ncol=2)
    return fig
