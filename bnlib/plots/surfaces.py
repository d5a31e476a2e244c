"""Loss-surface figures (Li et al. 2018; the Oxford report): curves along the gradient over training,
1D lines, 2D contours and 3D surfaces around trained weights.

``probe_curves`` takes ``res[(arch, norm, seed)]`` and draws every seed; the others take one
seed's results ``res[(arch, norm)]`` (``chapters.surfaces.one_seed``): dicts with ``"line"`` (a line-search probe
over training: ``step``, ``loss_min``, ``loss_max``, ``beta_eff``, ...), ``"interp"``
(``alphas``, ``loss``), ``"slices"`` (``xs``, ``loss`` (2, n)) and ``"plane"`` (``grid``,
``loss`` (n, n)), as ``probes.surface``'s specs return them, and ``labels`` {arch: name}. The
with/without-BN pair of an architecture always shares its axis or colour limits, so the two
can be compared at a glance.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import colors, ticker

from . import COLUMN_IN, band, color, label, legend_outside, panels


def _values(loss: np.ndarray, log: bool) -> np.ndarray:
    return np.log10(loss) if log else loss


def _log_ticks(ax) -> None:
    """A log y axis that spans less than a decade gets labelled ticks at 1, 1.5, 2, 3, 5, 7 x 10^k
    (otherwise it may show a single label, or none)."""
    lo, hi = ax.get_ylim()
    if hi < 10 * lo:
        ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
        ax.yaxis.set_major_formatter(ticker.FormatStrFormatter("%.3g"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def _zlabel(log: bool) -> str:
    return r"$\log_{10}$ training loss" if log else "training loss (cross-entropy)"


def probe_curves(res: dict, *, archs, norms, seeds, labels: dict, key: str, ylabel: str, logy: bool = True,
                 line: str = "line"):
    """One panel per architecture: a probe quantity against the training step, per norm, from
    ``res[(arch, norm, seed)]``.

    ``key="range"`` shades, per seed, the smallest to the largest loss seen along the probed
    line (the Oxford report's "loss variation"); any other key is ``plots.band`` over ``seeds``.
    ``line`` picks the probe: ``"line"`` (along the gradient) or ``"update"`` (along Adam's step).
    """
    fig, axes = panels(len(archs), cols=2, height=3.2)
    for ax, arch in zip(axes, archs):
        for norm in norms:
            rs = [res[arch, norm, s][line] for s in seeds]
            if key == "range":
                for i, r in enumerate(rs):
                    ax.fill_between(r["step"], r["loss_min"], r["loss_max"], color=color(norm),
                                    alpha=0.35 / len(rs), lw=0, label=label(norm) if i == 0 else None)
            else:
                band(ax, [r["step"] for r in rs], [r[key] for r in rs], norm)
        ax.set_xlabel("training step")
        ax.set_title(labels[arch], fontsize=10)
        if logy:
            ax.set_yscale("log")
            _log_ticks(ax)
    axes[0].set_ylabel(ylabel + ("\n(log scale)" if logy else ""))
    legend_outside(fig)
    return fig


def lines(res: dict, *, archs, norms, labels: dict, kind: str, log: bool = True):
    """1D curves, one panel per architecture: ``kind="interp"`` (initial to final weights)
    or ``"slices"`` (the two random directions, solid and dashed)."""
    fig, axes = panels(len(archs), cols=2, height=3.2)
    for ax, arch in zip(axes, archs):
        for norm in norms:
            r = res[arch, norm]
            if kind == "interp":
                ax.plot(r["interp"]["alphas"], r["interp"]["loss"], color=color(norm), label=label(norm))
            else:
                for loss, ls in zip(r["slices"]["loss"], ("-", "--")):
                    ax.plot(r["slices"]["xs"], loss, color=color(norm), ls=ls, label=label(norm) if ls == "-" else None)
        if kind == "interp":
            for a in (0, 1):
                ax.axvline(a, color="0.6", lw=0.8, zorder=0)
            ax.set_xlabel(r"$\alpha$ (0: initial weights, 1: trained weights)")
        else:
            ax.set_xlabel("step along the direction (filter-norm units)")
        ax.set_title(labels[arch], fontsize=10)
        if log:
            ax.set_yscale("log")
            _log_ticks(ax)
    axes[0].set_ylabel("training loss" + (" (log scale)" if log else ""))
    legend_outside(fig)
    return fig


def _limits(res: dict, arch: str, norms, log: bool) -> tuple[float, float]:
    z = np.concatenate([_values(res[arch, n]["plane"]["loss"], log).ravel() for n in norms])
    return float(np.nanmin(z)), float(np.nanmax(z))


def contours(res: dict, *, archs, norms, labels: dict, log: bool = False, levels: int = 20):
    """2D contour maps: rows are architectures, columns norms; one colour scale per row."""
    fig, flat = panels(len(archs) * len(norms), cols=len(norms), height=3.1, sharex=True, sharey=True)
    axes = np.array(flat).reshape(len(archs), len(norms))
    for row, arch in zip(axes, archs):
        vmin, vmax = _limits(res, arch, norms, log)
        lv = np.linspace(vmin, vmax, levels)
        for ax, norm in zip(row, norms):
            r = res[arch, norm]["plane"]
            g = r["grid"]
            cs = ax.contourf(g, g, _values(r["loss"], log).T, levels=lv, cmap="viridis",
                             norm=colors.Normalize(vmin, vmax), extend="neither")
            ax.contour(g, g, _values(r["loss"], log).T, levels=lv, colors="k", linewidths=0.3)
            ax.plot(0, 0, "w+", ms=8)
            ax.set_aspect("equal")
            ax.set_title(f"{labels[arch]}, {label(norm)}", fontsize=10)
        fig.colorbar(cs, ax=list(row), label=_zlabel(log), ticks=ticker.MaxNLocator(6),
                     format="%.3g")
    for ax in axes[-1]:
        ax.set_xlabel("direction 1 (filter-norm units)")
    for ax in axes[:, 0]:
        ax.set_ylabel("direction 2")
    return fig


def surfaces3d(res: dict, *, archs, norms, labels: dict, log: bool = False):
    """3D surface plots laid out like ``contours``, with a shared z range per row."""
    fig = plt.figure(figsize=(COLUMN_IN, 3.4 * len(archs)))
    for i, arch in enumerate(archs):
        vmin, vmax = _limits(res, arch, norms, log)
        for j, norm in enumerate(norms):
            r = res[arch, norm]["plane"]
            A, B = np.meshgrid(r["grid"], r["grid"], indexing="ij")
            ax = fig.add_subplot(len(archs), len(norms), i * len(norms) + j + 1, projection="3d")
            ax.plot_surface(A, B, _values(r["loss"], log), cmap="viridis", vmin=vmin, vmax=vmax,
                            linewidth=0, antialiased=True)
            ax.set_zlim(vmin, vmax)
            ax.set_xlabel("direction 1", fontsize=9)
            ax.set_ylabel("direction 2", fontsize=9)
            ax.set_zlabel(_zlabel(log), fontsize=9)
            ax.set_title(f"{labels[arch]}, {label(norm)}", fontsize=10)
            ax.tick_params(labelsize=9)
    fig.tight_layout()
    return fig
