"""Figures of bounds and their two sides: how each term of Theorems 4.1 and 4.2 contributes on
a network, where printed forms fail, and what BN's epsilon changes.

``nets`` maps each seed to its per-step measurements of two BN layers as
``probes.capture.Statements`` returns them (``"step"`` (K,), ``"<layer>/<key>"`` (K, ...));
``inst`` the random instances of ``probes.capture.random_instances``; ``table`` one row per form (statement, form, share
failing on random instances and on the network).
"""

from __future__ import annotations

import textwrap

import numpy as np

from . import COLUMN_IN, band, color, legend_outside, panels
from .spectra import log_y

LAYERS = {"conv": "conv BN layer", "fc": "classifier BN layer"}


def _probe(net: dict, layer: str, key: str) -> np.ndarray:
    return np.asarray(net[f"{layer}/{key}"], float)


def _bands(ax, nets: dict, fn, kind: str, label: str | None = None, **kw) -> None:
    """``fn(net)`` against the SGD step, mean line and min..max band over the seeds of ``nets``."""
    runs = [nets[s] for s in sorted(nets)]
    band(ax, [np.asarray(n["step"]) for n in runs], [fn(n) for n in runs], kind, label_=label, **kw)


def thm41_terms(nets: dict):
    """Per layer: the share of ||g||^2 (sums over units) removed by the mean term and by the
    correlation term (log scale), and the median over units of (gamma/sigma)^2; ``nets`` holds
    one network dict per seed (mean line, min..max band over seeds)."""
    fig, flat = panels(4, height=2.5, sharex=True)
    axes = np.array(flat).reshape(2, 2)
    for col, (layer, title) in enumerate(LAYERS.items()):
        ax = axes[0, col]
        for term, kind, ls, lab in (("mean", "none", "-", r"mean term $\langle 1,g\rangle^2/m$"),
                                    ("corr", "bn", "--", r"correlation term $\langle g,\hat y\rangle^2/m$")):
            def removed(n, term=term, layer=layer):
                p = f"{layer}/thm_4_1/terms/"
                return np.maximum(np.asarray(n[p + term]).sum(1) / np.asarray(n[p + "norm"]).sum(1), 1e-12)
            _bands(ax, nets, removed, kind, lab, ls=ls, marker="o", ms=3)
        log_y(ax)
        ax.set_ylabel(r"share of $\|g\|^2$ removed")
        ax.set_title(title, fontsize="medium")
        ax = axes[1, col]
        _bands(ax, nets, lambda n, layer=layer: np.median(_probe(n, layer, "thm_4_1/terms/scale"), axis=1), "bn",
               r"$(\gamma/\sigma)^2$, median over units")
        ax.axhline(1, color="0.3", lw=0.8, ls=":")
        log_y(ax)
        ax.set_ylabel(r"$(\gamma/\sigma)^2$ (log scale)")
        ax.set_xlabel("SGD step")
    legend_outside(fig, ncol=2)
    return fig


def thm42_terms(nets: dict):
    """Per layer: the curvature along the gradient and (gamma/sigma)^2 v^T H v (top, symlog),
    the BN correction relative to the latter (middle), the share of units with <g, yhat> > 0;
    mean line and min..max band over the seeds of ``nets``."""
    fig, flat = panels(6, height=2.3, sharex=True)
    axes = np.array(flat).reshape(3, 2)
    for col, (layer, title) in enumerate(LAYERS.items()):
        ax = axes[0, col]
        lhs, hess = (lambda n, layer=layer, k=k: _probe(n, layer, f"thm_4_2/{k}") for k in ("exact/lhs", "terms/hess"))
        _bands(ax, nets, lhs, "bn", r"$v^\top (\partial^2\hat{\mathcal{L}}/\partial y^2)\, v$ (measured)", lw=2)
        _bands(ax, nets, hess, "none", r"$(\gamma/\sigma)^2\, v^\top H v$", ls="--")
        both = np.concatenate([_probe(n, layer, f"thm_4_2/{k}").ravel() for n in nets.values()
                               for k in ("exact/lhs", "terms/hess")])
        if np.all(both > 0):
            log_y(ax)
            ax.set_ylabel("curvature (log scale)")
        else:  # a sign change: symmetric log, linear within the smallest magnitude
            ax.set_yscale("symlog", linthresh=float(max(np.abs(both).min(), 1e-30)))
            ax.set_ylabel("curvature (symlog)")
        ax.set_title(title, fontsize="medium")
        _bands(axes[1, col], nets, lambda n, layer=layer, hess=hess: -_probe(n, layer, "thm_4_2/terms/correction")
               / np.abs(hess(n)), "none", "", marker="o", ms=3)
        axes[1, col].axhline(0, color="0.3", lw=0.8, ls=":")
        axes[1, col].set_ylabel(r"correction / $|(\gamma/\sigma)^2 v^\top H v|$")
        axes[1, col].ticklabel_format(axis="y", style="sci", scilimits=(-2, 2), useMathText=True)
        _bands(axes[2, col], nets, lambda n, layer=layer: (_probe(n, layer, "thm_4_2/terms/inner") > 0).mean(1),
               "bn", "", marker="o", ms=3)
        axes[2, col].set_ylim(-0.05, 1.05)
        axes[2, col].set_ylabel(r"share with $\langle g,\hat y\rangle > 0$")
        axes[2, col].set_xlabel("SGD step")
    legend_outside(fig, ncol=2)
    return fig


def thm41_scatter(inst: dict):
    """Random instances: both sides of Theorem 4.1 divided by (gamma/sigma)^2 ||g||^2; points
    below the diagonal break the statement."""
    fig, (ax,) = panels(1, height=4.2, width=0.7 * COLUMN_IN)
    ref = inst["thm_4_1/terms/scale"] * inst["thm_4_1/terms/norm"]
    x = inst["thm_4_1/corrected/lhs"] / ref
    for form, c, lab in (("seed003", "0.45", r"Santurkar et al. ($1/\sqrt{m}$)"),
                         ("corrected", color("bn"), r"corrected ($1/m$)")):
        ax.scatter(x, inst[f"thm_4_1/{form}/rhs"] / ref, s=4, color=c, alpha=0.5, lw=0, label=lab)
    ax.plot([0, 1], [0, 1], color="0.2", lw=0.8)
    ax.set_xlabel(r"left side $\|\partial\hat{\mathcal{L}}/\partial y\|^2$ / $(\gamma/\sigma)^2\|g\|^2$")
    ax.set_ylabel(r"right side / $(\gamma/\sigma)^2\|g\|^2$")
    ax.legend(markerscale=3, loc="upper left")
    return fig


def failure_rates(table):
    """Share of random instances and of probed VGG units where each form fails."""
    fig, (ax,) = panels(1, height=5.6)
    labels = [textwrap.fill(f"{r.statement}: {r.form}", 32) for r in table.itertuples()]
    y = np.arange(len(table))
    ax.barh(y - 0.2, table["random instances failing"], height=0.4, color="0.55",
            label="random instances")
    ax.barh(y + 0.2, table["VGG: failing"].fillna(0), height=0.4, color=color("bn"),
            label="VGG units × probe steps")
    for i in np.flatnonzero((table["random instances failing"] == 0) & ~(table["VGG: failing"] > 0)):
        ax.text(0.01, y[i], "never fails", va="center", fontsize="small", color="0.3")
    ax.set_yticks(y, labels, fontsize="small")
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.xaxis.set_major_formatter("{x:.0%}")
    ax.set_xlabel("share where the form fails")
    legend_outside(fig, ncol=2)
    return fig


def eps_effect(inst_eps: dict):
    """How far the eps-free forms are off when BN divides by sqrt(var + eps): relative gap
    against delta = eps / sigma^2."""
    fig, (ax,) = panels(1, height=3.8, width=0.75 * COLUMN_IN)
    d = inst_eps["delta"]
    for key, c, lab in (("thm_4_1/corrected", color("bn"), r"Thm 4.1 ($1/m$ form)"),
                        ("thm_4_2/seed000", "0.45", "Thm 4.2 (Oxford report form)")):
        r = np.abs(inst_eps[f"{key}/rhs"] - inst_eps[f"{key}/lhs"]) / inst_eps[f"{key}/mag"]
        ax.scatter(d, np.maximum(r, 1e-18), s=4, color=c, alpha=0.5, lw=0, label=lab)
    ax.plot([d.min(), 1], [d.min(), 1], color="0.2", lw=0.8, ls=":", label=r"gap = $\delta$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$\delta = \epsilon / \sigma^2$ (log scale)")
    ax.set_ylabel("|right side − left side| / size\n(log scale)")
    legend_outside(fig, ncol=3)
    return fig
