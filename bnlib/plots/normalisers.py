"""Comparing normalisers (Santurkar et al. 2018, Sec. 3.3, Figs. 12-14): training curves, the
landscape along the gradient over training, activation histograms, shift against loss.

Results are ``res[(arch, norm, seed)]``: dicts with ``"hist"`` (a History), ``"line"`` (a
line-search probe over training: ``step``, ``loss_min``, ``loss_max``, ``grad_diff_max``,
``beta_eff``) and, where measured, ``"shape"`` (``probes.kurtosis.activation_shape``'s arrays).
``seeds_of`` maps each normaliser to its seeds; every curve is ``plots.band`` over them. A
centred-norm lp layer (``"l1c"``, ...) is drawn in its lp layer's colour, dashed.
"""

from __future__ import annotations

import numpy as np
from matplotlib import ticker

from . import band, color, label, legend_outside, panels

_LANDSCAPE = (("loss range", "loss range along the gradient"),
              ("grad_diff_max", r"largest gradient change ($\ell_2$)"),
              ("beta_eff", r"effective $\beta$-smoothness"))
_SHORT = {"none": "Standard", "bn": "BatchNorm", "l1": r"$\ell_1$", "l2": r"$\ell_2$", "linf": r"$\ell_\infty$",
          "ln": "LayerNorm", "gn": "GroupNorm", "l1c": r"$\ell_1$, centred", "l2c": r"$\ell_2$, centred",
          "linfc": r"$\ell_\infty$, centred"}


_CENTRED = {"l1c": "l1", "l2c": "l2", "linfc": "linf"}


def _kind(norm: str) -> str:
    """The colour key of ``norm``: a centred-norm lp layer takes its lp layer's."""
    return _CENTRED.get(norm, norm)


def _label(norm: str) -> str:
    return f"{label(_CENTRED[norm])}, centred" if norm in _CENTRED else label(norm)


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
    fig, (ax,) = panels(1, height=3.3)
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
    legend_outside(fig, ncol=3)
    return fig


def landscape(res: dict, arch: str, *, seeds_of: dict):
    """Loss range, largest gradient change and effective beta-smoothness along the gradient
    against the training step, one band per normaliser over its seeds, log scale."""
    fig, axes = panels(3, cols=3, height=3.0)
    for norm, seeds in seeds_of.items():
        probes = [res[arch, norm, s]["line"] for s in seeds]
        for ax, (key, _) in zip(axes, _LANDSCAPE):
            ys = [(p["loss_max"] - p["loss_min"]) if key == "loss range" else p[key] for p in probes]
            _band(ax, [p["step"] for p in probes], ys, norm, marker="o", ms=3)
    for ax, (_, name) in zip(axes, _LANDSCAPE):
        ax.set_xlabel("training step")
        ax.set_ylabel(name)
        ax.set_yscale("log")
        ax.xaxis.set_major_locator(ticker.MaxNLocator(4))
    legend_outside(fig, ncol=3)
    return fig


def histograms(res: dict, *, norms, layers, seed: int, bins: int = 60):
    """Histogram of each layer's activations per normaliser at the horizon, a normaliser's layers
    side by side (two normalisers a row for two layers), with a Gaussian of the same mean and
    variance (dashed) and the excess kurtosis k; one seed."""
    fig, flat = panels(len(norms) * len(layers), cols=2 * len(layers) if len(layers) <= 2 else len(layers),
                       height=1.75)
    for c, norm in enumerate(norms):
        for r, layer in enumerate(layers):
            ax, extras = flat[c * len(layers) + r], res[("vgg", norm, seed)].get("shape", {})
            ax.set_title(f"{_SHORT.get(norm, norm)}, layer {layer}", fontsize=9.5)
            ax.set_yticks([])
            a = extras.get(f"layer{layer}/sample")
            if a is None:
                ax.text(0.5, 0.5, "diverged", transform=ax.transAxes, ha="center")
                continue
            ax.hist(a, bins=bins, density=True, color=color(_kind(norm)), alpha=0.8, histtype="stepfilled")
            x = np.linspace(a.min(), a.max(), 200)
            m, s = a.mean(), a.std()
            ax.plot(x, np.exp(-0.5 * ((x - m) / s) ** 2) / (s * np.sqrt(2 * np.pi)), "k--", lw=0.8)
            ax.text(0.97, 0.95, f"k = {float(extras[f'layer{layer}/kurtosis']):.1f}",
                    transform=ax.transAxes, ha="right", va="top", fontsize=9)
            ax.xaxis.set_major_locator(ticker.MaxNLocator(3))
            ax.tick_params(labelsize=9)
    fig.supxlabel("activation (density on the vertical axis)", fontsize=10)
    return fig


def shift_vs_loss(per_seed, *, norms, sites: dict):
    """Training loss at the horizon against the step-to-step shift of the activations' mean
    and variance (columns), at each recording site of ``sites`` {key: name} (rows), one point per
    run (normaliser and seed)."""
    fig, flat = panels(2 * len(sites), cols=2, height=2.8, sharey=True)
    axes = [flat[i:i + 2] for i in range(0, len(flat), 2)]
    for row, (site, where) in zip(axes, sites.items()):
        for ax, col, name in zip(row, ("mean shift", "var shift"),
                                 ("mean shift\n(std. deviations per record)",
                                  "variance shift\n" r"($|\Delta \log \mathrm{var}|$ per record)")):
            for norm in norms:
                d = per_seed.xs(norm, level="norm")
                ax.scatter(d[f"{col} ({site})"], d["final train loss"], s=40, color=color(_kind(norm)),
                           label=_label(norm), marker="^" if norm in _CENTRED else "o")
            ax.set_xlabel(name.replace(")", ", log scale)"))
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(ticker.LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(2, 1)))
        row[0].set_ylabel(f"training loss\n(shift {where.split(' (')[0]})")
    legend_outside(fig, ncol=3)
    return fig


def channel_kurtosis(res: dict, *, norms, layers, seed: int):
    """Per-channel excess kurtosis of each layer's activations (one panel per layer), one box of
    channels per normaliser, at the horizon; one seed. The pooled value is the diamond."""
    fig, axes = panels(len(layers), cols=2, height=3.4)
    for ax, layer in zip(axes, layers):
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
        ax.set_xticks(range(len(shown)), [_SHORT.get(n, n) for n in shown], rotation=35, ha="right", fontsize=9.5)
        ax.set_title(f"layer {layer}", fontsize=10)
        ax.set_yscale("symlog", linthresh=1)
    axes[0].set_ylabel("excess kurtosis per channel\n(symmetric log scale)")
    legend_outside(fig)
    return fig
