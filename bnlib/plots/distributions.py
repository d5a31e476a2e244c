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

from . import band, color, label

SITE_WORDS = {"pre": "before the normaliser", "post": "after the normaliser"}


def bands(results: dict, *, norms: Sequence[str], layers: Sequence[int], lr: float, seed: int,
          paper_layers: Sequence[int] | None = None, max_step: int | None = None, site: str = "post"):
    """Percentile bands of each layer's sampled activations over training (rows: layers,
    columns: networks), at the steps up to ``max_step`` (all if None), at ``site`` (``"post"``:
    the normaliser's output, ``"pre"``: its input). Shades from light to dark: min..max, 7..93,
    16..84, 31..69 percent (normal sigma levels, TensorBoard's bands); the line is the median.
    ``paper_layers`` names each row's layer in the paper's numbering too."""
    fig, axes = plt.subplots(len(layers), len(norms), figsize=(3.1 * len(norms), 2.3 * len(layers)),
                             sharex=True, squeeze=False)
    for r, i in enumerate(layers):
        for c, norm in enumerate(norms):
            ax, res = axes[r, c], results[(norm, lr, seed)]
            keep = res["step"] <= (np.inf if max_step is None else max_step)
            q, step = res[f"layer{i}.{'pre.' if site == 'pre' else ''}q"][keep], res["step"][keep]  # (K, P), (K,)
            p = q.shape[1]
            for k in range(p // 2):
                ax.fill_between(step, q[:, k], q[:, p - 1 - k], color=color(norm), alpha=0.15 + 0.15 * k, lw=0)
            ax.plot(step, q[:, p // 2], color=color(norm), lw=1.0)
            ax.text(0.02, 0.97, f"{label(norm)}, {SITE_WORDS[site]}", transform=ax.transAxes, va="top", fontsize=7)
            if c == 0:
                paper = f" (paper {paper_layers[r]})" if paper_layers is not None else ""
                ax.set_ylabel(f"layer {i}{paper}\nactivation")
    for ax in axes[-1]:
        ax.set_xlabel("training step")
    fig.tight_layout()
    return fig


def unit_traces(hist: dict, *, norms: Sequence[str], layers: Sequence[int], lr: float, seed: int,
                num_units: int, unit_seed: int = 0, site: str = "post"):
    """Mean and variance over the record batch of ``num_units`` random units (channels) per
    layer against steps, from the always-on records at ``site`` (``"post"``: the normaliser's
    output; ``"pre"``: its input). Rows: layers; columns: mean, variance on a log scale."""
    fig, axes = plt.subplots(len(layers), 2, figsize=(10, 2.4 * len(layers)), sharex=True, squeeze=False)
    rng = np.random.default_rng(unit_seed)
    for r, i in enumerate(layers):
        n_ch = hist[(norms[0], lr, seed)].records[f"{site}{i}.mean"].shape[1]
        units = rng.choice(n_ch, size=min(num_units, n_ch), replace=False)
        for z, norm in enumerate(norms):  # later networks drawn below earlier ones
            rec = hist[(norm, lr, seed)].records
            for u_idx, u in enumerate(units):
                kw = dict(color=color(norm), lw=0.9, alpha=0.85, zorder=len(norms) - z,
                          label=label(norm) if r == 0 and u_idx == 0 else None)
                axes[r, 0].plot(rec["step"], rec[f"{site}{i}.mean"][:, u], **kw)
                axes[r, 1].plot(rec["step"], rec[f"{site}{i}.var"][:, u], **{**kw, "label": None})
        axes[r, 0].set_ylabel(f"layer {i}: unit mean")
        axes[r, 1].set_ylabel(f"layer {i}: unit variance")
        axes[r, 1].set_yscale("log")
    for ax in axes[-1]:
        ax.set_xlabel("training step")
    fig.legend(loc="upper center", ncol=len(norms), fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


def shifts(table: pd.DataFrame, *, norms: Sequence[str], sites: Sequence[str] = ("pre", "post")):
    """Grouped bars of the step-to-step mean shift and variance shift per layer and network
    (columns ``network``, ``site``, ``layer``, ``mean shift``, ``var shift``), one row of panels
    per site, log scale."""
    fig, axes = plt.subplots(len(sites), 2, figsize=(10, 3.2 * len(sites)), squeeze=False)
    layers = sorted(table["layer"].unique())
    w = 0.8 / len(norms)
    ylabels = ("mean shift (|change of mean| / sd)", "variance shift (|change of log var|)")
    for r, site in enumerate(sites):
        t = table[table["site"] == site].set_index(["network", "layer"])
        for ax, col, ylabel in zip(axes[r], ("mean shift", "var shift"), ylabels, strict=True):
            for k, norm in enumerate(norms):
                ax.bar(np.arange(len(layers)) + (k - (len(norms) - 1) / 2) * w, t.loc[norm].reindex(layers)[col],
                       w, color=color(norm), label=label(norm))
            ax.set_xticks(np.arange(len(layers)), [str(i) for i in layers])
            ax.set_xlabel("layer")
            ax.set_ylabel(ylabel)
            ax.set_yscale("log")
            ax.set_title(SITE_WORDS[site], fontsize=9)
    _legend_above(fig, axes, len(norms))
    return fig


def _legend_above(fig, axes, n: int) -> None:
    """One legend for the figure, above the panels (off the data)."""
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=n, fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.93))


def lags(medians: pd.DataFrame, *, norms: Sequence[str], sites: Sequence[str] = ("pre", "post")):
    """Shift against lag (log-log): per network, the median over layers of the shift from an
    anchor step to ``lag`` steps later (columns ``network``, ``site``, ``seed``, ``lag``, ``mean
    shift``, ``var shift``), mean line and min..max band over seeds. Rows: sites; columns: the
    mean and the variance shift."""
    fig, axes = plt.subplots(len(sites), 2, figsize=(10, 3.2 * len(sites)), sharex=True, squeeze=False)
    ylabels = ("mean shift (|change of mean| / sd)", "variance shift (|change of log var|)")
    for r, site in enumerate(sites):
        for ax, col, ylabel in zip(axes[r], ("mean shift", "var shift"), ylabels, strict=True):
            for norm in norms:
                d = medians[(medians["site"] == site) & (medians["network"] == norm)]
                seeds = sorted(d["seed"].unique())
                per = [d[d["seed"] == s].sort_values("lag") for s in seeds]
                band(ax, [p["lag"].to_numpy() for p in per], [p[col].to_numpy() for p in per], norm, marker="o")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ticks = sorted(medians["lag"].unique())
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.xaxis.set_minor_locator(plt.NullLocator())
            ax.set_ylabel(ylabel)
            ax.set_title(SITE_WORDS[site], fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("lag (training steps)")
    _legend_above(fig, axes, len(norms))
    return fig
