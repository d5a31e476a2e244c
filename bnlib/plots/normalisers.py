"""Comparing normalisers (Santurkar et al. 2018, Sec. 3.3, Figs. 12-14): training curves, the
landscape along the gradient over training, activation histograms, shift against loss.

Results are ``res[(arch, norm, seed)]``: dicts with ``"hist"`` (a History), ``"line"`` (a
line-search probe over training: ``step``, ``loss_min``, ``loss_max``, ``grad_diff_max``,
``beta_eff``) and, where measured, ``"shape"`` (``probes.kurtosis.activation_shape``'s arrays).
``seeds_of`` maps each normaliser to its seeds; every curve is ``plots.band`` over them. A
centred-norm lp layer (``"l1c"``, ...) is drawn in its lp layer's colour, dashed.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import band, color, label

_LANDSCAPE = (("loss range", "loss range along the gradient"),
              ("grad_diff_max", "max gradient change (l2)"),
              ("beta_eff", "effective beta-smoothness"))


_CENTRED = {"l1c": "l1", "l2c": "l2", "linfc": "linf"}


def _kind(norm: str) -> str:
    """The colour key of ``norm``: a centred-norm lp layer takes its lp layer's."""
    return _CENTRED.get(norm, norm)


def _label(norm: str) -> str:
    return f"{label(_CENTRED[norm])}, centred norm" if norm in _CENTRED else label(norm)


def _band(ax, xs, ys, norm: str, **kw) -> None:
    """``plots.band`` with the centred-norm layers' label and dashes."""
    band(ax, xs, ys, _kind(norm), label_=_label(norm), **({"ls": "--"} if norm in _CENTRED else {}), **kw)


def _trailing(y: np.ndarray, w: int) -> np.ndarray:
    """Trailing running mean over ``w`` values (shorter at the start)."""
    c = np.cumsum(np.concatenate([[0.0], np.asarray(y, float)]))
    i = np.arange(1, len(y) + 1)
    return (c[i] - c[np.maximum(i - w, 0)]) / np.minimum(i, w)


def training_curves(res: dict, arch: str, *, seeds_of: dict, metric: str, upto: int, smooth: int = 1,
                    ylabel: str = "", logy: bool = False):
    """Training loss (per step, trailing mean over ``smooth``) or a test metric (per evaluation)
    of every normaliser on ``arch`` up to step ``upto``, mean and min..max band over its seeds."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for norm, seeds in seeds_of.items():
        hs = [res[arch, norm, s]["hist"] for s in seeds]
        if metric == "train_loss":
            ys = [_trailing(h.train_loss[:upto], smooth) for h in hs]
            xs = [np.arange(1, len(y) + 1) for y in ys]
        else:
            xs = [h.eval_step[h.eval_step <= upto] for h in hs]
            ys = [getattr(h, metric)[h.eval_step <= upto] for h in hs]
        _band(ax, xs, ys, norm)
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def landscape(res: dict, arch: str, *, seeds_of: dict):
    """Loss range, largest gradient change and effective beta-smoothness along the gradient
    against the training step, one band per normaliser over its seeds, log scale."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for norm, seeds in seeds_of.items():
        probes = [res[arch, norm, s]["line"] for s in seeds]
        for ax, (key, _) in zip(axes, _LANDSCAPE):
            ys = [(p["loss_max"] - p["loss_min"]) if key == "loss range" else p[key] for p in probes]
            _band(ax, [p["step"] for p in probes], ys, norm, marker="o", ms=3)
    for ax, (_, name) in zip(axes, _LANDSCAPE):
        ax.set_xlabel("training step")
        ax.set_ylabel(name)
        ax.set_yscale("log")
    axes[-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def histograms(res: dict, *, norms, layers, seed: int, bins: int = 60):
    """Histogram of each layer's activations (rows) per normaliser (columns) at the horizon,
    with a Gaussian of the same mean and variance (dashed) and the excess kurtosis; one seed."""
    fig, axes = plt.subplots(len(layers), len(norms), figsize=(1.9 * len(norms), 1.9 * len(layers)),
                             squeeze=False)
    for r, layer in enumerate(layers):
        for c, norm in enumerate(norms):
            ax, extras = axes[r, c], res[("vgg", norm, seed)].get("shape", {})
            a = extras.get(f"layer{layer}/sample")
            if a is None:
                ax.text(0.5, 0.5, "diverged", transform=ax.transAxes, ha="center")
                continue
            ax.hist(a, bins=bins, density=True, color=color(_kind(norm)), alpha=0.8, histtype="stepfilled")
            x = np.linspace(a.min(), a.max(), 200)
            m, s = a.mean(), a.std()
            ax.plot(x, np.exp(-0.5 * ((x - m) / s) ** 2) / (s * np.sqrt(2 * np.pi)), "k--", lw=0.8)
            ax.text(0.97, 0.95, f"k = {float(extras[f'layer{layer}/kurtosis']):.1f}",
                    transform=ax.transAxes, ha="right", va="top", fontsize=8)
            ax.set_yticks([])
            ax.tick_params(labelsize=7)
            if r == 0:
                ax.set_title(_label(norm), fontsize=8)  # column header, not a figure title
            if c == 0:
                ax.set_ylabel(f"layer {layer}\ndensity", fontsize=8)
            if r == len(layers) - 1:
                ax.set_xlabel("activation", fontsize=8)
    fig.tight_layout()
    return fig


def shift_vs_loss(per_seed, *, norms, sites: dict):
    """Training loss at the horizon against the step-to-step shift of the activations' mean
    and variance (columns), at each recording site of ``sites`` {key: name} (rows), one point per
    run (normaliser and seed)."""
    fig, axes = plt.subplots(len(sites), 2, figsize=(9, 3.2 * len(sites)), sharey=True, squeeze=False)
    for row, (site, where) in zip(axes, sites.items()):
        for ax, col, name in zip(row, ("mean shift", "var shift"),
                                 ("mean shift (spreads per record)", "variance shift (|d log var| per record)")):
            for norm in norms:
                d = per_seed.xs(norm, level="norm")
                ax.scatter(d[f"{col} ({site})"], d["final train loss"], s=40, color=color(_kind(norm)),
                           label=_label(norm), marker="^" if norm in _CENTRED else "o")
            ax.set_xlabel(name)
            ax.set_xscale("log")
        row[0].set_ylabel(f"training loss at the horizon\n{where.split(' (')[0]}")
    axes[0, 1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def channel_kurtosis(res: dict, *, norms, layers, seed: int):
    """Per-channel excess kurtosis of each layer's activations (one panel per layer), one box of
    channels per normaliser, at the horizon; one seed. The pooled value is the diamond."""
    fig, axes = plt.subplots(1, len(layers), figsize=(4.6 * len(layers), 3.6), squeeze=False)
    for ax, layer in zip(axes[0], layers):
        shown = [n for n in norms if "shape" in res[("vgg", n, seed)]]
        data = [res[("vgg", n, seed)]["shape"][f"layer{layer}/kurtosis_channel"] for n in shown]
        parts = ax.boxplot(data, positions=range(len(shown)), widths=0.6, patch_artist=True, showfliers=True,
                           flierprops={"ms": 2})
        for patch, n in zip(parts["boxes"], shown):
            patch.set_facecolor(color(_kind(n)))
            patch.set_alpha(0.6)
        pooled = [float(res[("vgg", n, seed)]["shape"][f"layer{layer}/kurtosis"]) for n in shown]
        ax.scatter(range(len(shown)), pooled, marker="D", color="k", s=18, zorder=3,
                   label="all channels pooled")
        ax.axhline(0, color="0.5", lw=0.8, ls=":")
        ax.set_xticks(range(len(shown)), [_label(n).replace(" normalisation", "") for n in shown], rotation=30,
                      ha="right", fontsize=7)
        ax.set_ylabel(f"layer {layer}: excess kurtosis per channel")
        ax.set_yscale("symlog", linthresh=1)
    axes[0, -1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig
