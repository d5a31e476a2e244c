"""Helpers for chapter notebooks: glue numbers into the prose, show the settings header,
show the claims table. Thin wrappers over MyST-NB's ``glue`` (myst_nb.glue).

In prose write ``{glue:text}`key``` (strings and numbers) or ``{glue:text}`key:.3f```.
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from IPython.display import Markdown, display, update_display

from . import claims as claims_
from . import config, runs


class Text(str):
    """A string glued as text: ``{glue:text}`` literal-evaluates the recorded repr, which gives
    back exactly this string (a bare "0, 1, 2" would come back as a tuple, "2,000" as (2, 0))."""

    def __repr__(self) -> str:
        return repr(str(self))


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


def count(n: int, noun: str, plural: str | None = None) -> Text:
    """``n`` and the noun, singular or plural ("1 seed", "3 seeds"): glue this instead of
    writing "seed(s)" in prose."""
    n = int(n)
    return Text(f"{n} {noun if n == 1 else plural or noun + 's'}")


def _fmt(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    return number(v) if isinstance(v, float) else str(v)


def number(v: float) -> str:
    """``v`` as a reader writes it: 0.1, 1e-6 (not 1e-06), 2."""
    return re.sub(r"e([+-])0*(\d)", lambda m: "e" + m[1].replace("+", "") + m[2], f"{v:g}")


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
    glue("seeds", _seeds(cfg))
    glue("device", _device(cfg.device))
    rows = []
    for k in ("seed", *mod.KEY_SETTINGS):
        v = getattr(cfg, k)
        glue(f"cfg_{k}", v if type(v) is int else _fmt(v))  # an int keeps formats like {glue:text}`key:,`
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
    display(Markdown(rerun_box(chapter or mod.__name__.rsplit(".", 1)[-1], cfg.profile)))


def rerun_box(chapter: str, profile: str) -> str:
    """A collapsed box with the exact commands that re-run this page, and where the output lands."""
    return (f":::{{dropdown}} Re-run this page\n\n"
            f"From the repository root (after `make book` or `make test` has created `.venv`):\n\n"
            f"```bash\n.venv/bin/python -m bnlib params {chapter}   # every parameter, per profile\n"
            f".venv/bin/python -m bnlib run {chapter} --profile {profile} -p seed 1   # any -p NAME VALUE\n```\n\n"
            f"The executed notebook lands in `_build/notebooks/{chapter}.ipynb`; networks and probe results go "
            "to the run store `_runs/`, so whatever this page already computed with the same settings is "
            "loaded, not redone. A bad name or value stops with a message before anything runs.\n:::\n")


def finish() -> float:
    """Write the page's run time (training and probes not already in the store included) into
    the settings header shown by ``settings``; return it in seconds."""
    took = time.perf_counter() - _SETTINGS["t0"]
    when = time.strftime("%Y-%m-%d", time.gmtime())
    run = (f"It ran in **{took / 60:.1f} min** here on {when} (a run another page had already trained is "
           "loaded, not retrained). ")
    update_display(Markdown(_SETTINGS["text"].replace("@RUN_TIME@", run)), display_id="bnlib-settings")
    glue("run_time_min", round(took / 60, 1))
    glue("trajectories_trained", sum(runs.USED.values()))
    glue("trajectories_loaded", sum(not t for t in runs.USED.values()))
    glue_all({f"env_{k}": v for k, v in environment().items()})
    return took


def _device(spec: str) -> str:
    """The device a chapter ran on, in words: the GPU's name, or the CPU's model and cores."""
    import os

    import torch

    from . import device

    dev = device(spec)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    model = next((ln.split(":", 1)[1].strip() for ln in _read("/proc/cpuinfo").splitlines()
                  if ln.startswith("model name")), platform.processor() or "CPU")
    return f"{dev.type.upper()}: {model}, {os.cpu_count()} cores"


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _git(*args: str) -> str:
    root = Path(__file__).resolve().parent.parent
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10).stdout.strip()


def environment() -> dict[str, str]:
    """The bnlib commit (``-dirty`` with uncommitted changes), torch and Python versions, date."""
    import torch

    try:
        commit = _git("rev-parse", "--short=10", "HEAD") or "unknown"
        commit += "-dirty" if _git("status", "--porcelain", "--untracked-files=no") else ""
    except (OSError, subprocess.SubprocessError):
        commit = "unknown (no git)"
    return {"commit": commit, "torch": torch.__version__, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def thresholds(cfg):
    """The chapter's ``THRESHOLDS``: value and the one-line reason for each (the help text), as
    the table the page shows under its claims."""
    known = config.fields(type(cfg))
    names = config.spec_module(type(cfg)).THRESHOLDS
    df = pd.DataFrame([{"threshold": n, "value": f"{getattr(cfg, n):g}", "reason": known[n].metadata["help"]}
                       for n in names])
    return df.style.format(escape="html").hide(axis="index")


def claims(rows: list[claims_.Claim], *, prefix: str = "claim"):
    """Glue each verdict as ``<prefix>_<i>_verdict`` (1-based), and every row as ``claims_json``
    for the answer page, and return the table as the page shows it: text escaped, the verdict
    cells coloured as on the answer page (``book/_static/bnlib.css``)."""
    for i, c in enumerate(rows, 1):
        glue(f"{prefix}_{i}_verdict", c.verdict)
        glue(f"{prefix}_{i}_measured", c.measured)
    glue("claims_json", json.dumps([asdict(c) for c in rows]))  # read by the answer page
    df = claims_.table(rows)
    classes = pd.DataFrame("", index=df.index, columns=df.columns)
    classes["Verdict"] = ["verdict verdict-" + v.replace(" ", "-") for v in df["Verdict"]]
    return df.style.format(escape="html").hide(axis="index").set_td_classes(classes)
