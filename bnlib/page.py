"""Helpers for chapter notebooks: glue numbers into the prose, show the settings header,
show the claims table. Thin wrappers over MyST-NB's ``glue`` (myst_nb.glue).

In prose write ``{glue:text}`key``` (strings and numbers) or ``{glue:text}`key:.3f```.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from IPython.display import Markdown, display, update_display

from . import claims as claims_
from . import config


class Text(str):
    """A string glued without quotes (its repr is itself)."""

    def __repr__(self) -> str:
        return str(self)


def glue(key: str, value: Any) -> Any:
    """Glue ``value`` under ``key`` for ``{glue:text}`` without displaying it; return it."""
    from myst_nb import glue as _glue

    if isinstance(value, np.generic):  # numpy 2 reprs "np.float64(...)", which glue cannot format
        value = value.item()
    _glue(key, Text(value) if isinstance(value, str) else value, display=False)
    return value


def glue_all(values: dict[str, Any]) -> None:
    """Glue every ``key: value`` of ``values`` (see ``glue``)."""
    for k, v in values.items():
        glue(k, v)


def _fmt(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    return f"{v:g}" if isinstance(v, float) else str(v)


_SETTINGS: dict[str, Any] = {}  # the header shown by ``settings``, completed by ``finish``


def _seeds(cfg) -> str:
    from . import profiles

    out = ", ".join(map(str, profiles.seeds(cfg)))
    if hasattr(cfg, "variant_seeds"):
        out += f" (core runs); {', '.join(map(str, profiles.seeds(cfg, 'variant_seeds')))} (variants)"
    return out


def settings(cfg, *, chapter: str | None = None) -> None:
    """Glue the profile and the chapter's key settings, and show them as the page header
    (its run time is filled in by ``finish()`` at the end of the page)."""
    mod, known = config.spec_module(type(cfg)), config.fields(type(cfg))
    glue("profile", cfg.profile)
    rows = []
    for k in ("seed", *mod.KEY_SETTINGS):
        glue(f"cfg_{k}", _fmt(getattr(cfg, k)))
        rows.append(f"| `{k}` | {_fmt(getattr(cfg, k))} | {known[k].metadata['help']} |")
    scale = {"smoke": "a plumbing test on tiny data, not a result",
             "quick": "CPU-sized: smaller models and fewer steps than the paper",
             "paper": "the papers' own settings"}[cfg.profile]
    text = (f":::{{admonition}} Executed with the `{cfg.profile}` profile\n:class: note\n\n"
            f"This page was executed with the **{cfg.profile}** profile ({scale}), seeds {_seeds(cfg)}. "
            "@RUN_TIME@Key settings:\n\n"
            "| parameter | value | meaning |\n| --- | --- | --- |\n" + "\n".join(rows) + "\n:::\n")
    _SETTINGS.update(text=text, t0=time.perf_counter())
    display(Markdown(text.replace("@RUN_TIME@", "")), display_id="bnlib-settings")


def finish() -> float:
    """Write the page's run time (training and probes not already in the store included) into
    the settings header shown by ``settings``; return it in seconds."""
    took = time.perf_counter() - _SETTINGS["t0"]
    when = time.strftime("%Y-%m-%d", time.gmtime())
    run = (f"It ran in **{took / 60:.1f} min** here on {when} (a run another page had already trained is "
           "loaded, not retrained). ")
    update_display(Markdown(_SETTINGS["text"].replace("@RUN_TIME@", run)), display_id="bnlib-settings")
    glue("run_time_min", round(took / 60, 1))
    return took


def thresholds(cfg):
    """The chapter's ``THRESHOLDS``: value and the one-line reason for each (the help text), as
    the table the page shows under its claims."""
    known = config.fields(type(cfg))
    names = config.spec_module(type(cfg)).THRESHOLDS
    df = pd.DataFrame([{"threshold": n, "value": f"{getattr(cfg, n):g}", "reason": known[n].metadata["help"]}
                       for n in names])
    return df.style.format(escape="html").hide(axis="index")


def claims(rows: list[claims_.Claim], *, prefix: str = "claim") -> pd.DataFrame:
    """Glue each verdict as ``<prefix>_<i>_verdict`` (1-based) and return the table."""
    for i, c in enumerate(rows, 1):
        glue(f"{prefix}_{i}_verdict", c.verdict)
        glue(f"{prefix}_{i}_measured", c.measured)
    return claims_.table(rows)
