"""Figures in one style: a seaborn theme, one colour and label per normaliser everywhere.

Nothing happens on import; call ``use_style()`` once per notebook.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns

_PALETTE = sns.color_palette("tab10")
NORM_COLORS = {  # the same colour for a normaliser in every chapter
    "none": _PALETTE[0], "bn": _PALETTE[1], "noisy_bn": _PALETTE[2], "noise": _PALETTE[3],
    "l1": _PALETTE[4], "l2": _PALETTE[5], "linf": _PALETTE[6], "ln": _PALETTE[8],
    "gn": _PALETTE[9], "wn": _PALETTE[7],
}
NORM_LABELS = {
    "none": "Standard", "bn": "Standard + BatchNorm", "noisy_bn": 'Standard + "noisy" BatchNorm',
    "noise": "Standard + noise (no BN)", "l1": "l1 normalisation", "l2": "l2 normalisation",
    "linf": "l-inf normalisation", "ln": "LayerNorm", "gn": "GroupNorm", "wn": "Weight norm",
}


def use_style() -> None:
    """The book's plotting theme (seaborn whitegrid, readable sizes, crisp figures)."""
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.95)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 110, "axes.spines.top": False,
                         "axes.spines.right": False, "legend.frameon": False})


def color(kind: str):
    """The colour of normaliser ``kind`` (same in every figure)."""
    return NORM_COLORS[kind]


def label(kind: str) -> str:
    """The legend label of normaliser ``kind``."""
    return NORM_LABELS[kind]


def band(ax, x_list, y_list, kind, *, lw: float = 1.6, label_: str | None = None, **kw) -> None:
    """Mean line with a min..max band over seeds (curves cut at the shortest run): the one way
    every figure shows seeds. ``x_list``/``y_list`` hold one array per seed."""
    n = min(len(y) for y in y_list)
    if n == 0:
        return
    Y = np.stack([np.asarray(y[:n], float) for y in y_list])
    x = np.asarray(x_list[0][:n])
    ax.plot(x, Y.mean(0), color=color(kind), label=label(kind) if label_ is None else label_, lw=lw, **kw)
    if len(y_list) > 1:
        ax.fill_between(x, Y.min(0), Y.max(0), color=color(kind), alpha=0.2, lw=0)


def seed_caption(seeds) -> str:
    """The caption sentence that says what a band means."""
    n = len(seeds)
    return (f"Lines: mean over {n} seeds ({', '.join(map(str, seeds))}); shaded: min..max over seeds."
            if n > 1 else f"One seed ({seeds[0]}): no band.")
