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


# The book's content column is about 770 px wide at 1400 px; at DPI, a figure COLUMN_IN inches wide
# fills it at 100% and is never shrunk (a wider one is scaled down, and its text with it).
DPI = 110
COLUMN_IN = 7.0


def use_style() -> None:
    """The book's plotting theme (seaborn whitegrid, readable sizes); figures are drawn at twice
    their displayed resolution, so a click on one (the book's enlarge view) stays sharp."""
    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.95)
    plt.rcParams.update({"figure.dpi": DPI, "savefig.dpi": DPI, "axes.spines.top": False,
                         "axes.spines.right": False, "legend.frameon": False})
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats
    except ImportError:  # not in a kernel
        return
    set_matplotlib_formats("retina")


def panels(n: int, *, cols: int = 2, height: float = 2.7, width: float = COLUMN_IN, **kw):
    """``n`` panels in rows of at most ``cols``, the figure as wide as the column (panels are
    stacked, never shrunk); returns (fig, list of n axes). ``kw`` go to ``plt.subplots``."""
    cols = max(1, min(cols, n))
    rows = -(-n // cols)
    kw.setdefault("layout", "constrained")
    fig, axes = plt.subplots(rows, cols, figsize=(width, height * rows), squeeze=False, **kw)
    flat = list(axes.ravel())
    for i, ax in enumerate(flat[n:], start=n):
        flat[i - cols].xaxis.set_tick_params(labelbottom=True)  # the panel above now ends its column
        ax.remove()
    return fig, flat[:n]


def legend_outside(fig, axes=None, *, ncol: int | None = None, loc: str = "outside lower center") -> None:
    """One legend for the whole figure, outside the axes (below them by default), with every
    label once: a legend never sits on the data."""
    seen: dict[str, object] = {}
    for ax in axes if axes is not None else fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if not lab.startswith("_"):
                seen.setdefault(lab, h)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    if not seen:
        return
    ncol = ncol or min(len(seen), 3)
    if type(fig.get_layout_engine()).__name__ == "ConstrainedLayoutEngine":
        fig.legend(list(seen.values()), list(seen), loc=loc, ncol=ncol)
    else:  # below the figure; the inline backend's tight bounding box keeps it in the image
        fig.legend(list(seen.values()), list(seen), loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol)


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
