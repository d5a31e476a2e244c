"""Chapter "Training with and without BatchNorm" (Santurkar et al. 2018, Fig. 1a,b).

A VGG trained with plain SGD on CIFAR-10 without augmentation, with and without BN, at the
paper's two learning rates. The trajectories are the shared VGG runs of ``profiles.VGG``:
other chapters probe the same ones. Defaults are the quick profile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import profiles
from ..claims import Claim, Criterion, verdict
from ..config import Interval, param
from ..train import History

TITLE = "Training with and without BatchNorm"
NORMS = ("none", "bn")
SOURCE = "Santurkar et al. 2018, Fig. 1"


@dataclass(frozen=True)
class Params(profiles.VGGParams):
    lr_large: float = param(0.5, Interval(float, 0, 10, low_open=True),
                            "the larger learning rate of Fig. 1 (paper: 0.5)")


PROFILES = {"smoke": profiles.VGG["smoke"], "quick": {}, "paper": profiles.VGG["paper"]}
KEY_SETTINGS = ("dataset", "depth", "width", "lr", "lr_large", "batch_size", "num_steps", "num_seeds")


def tail_loss(h: History, frac: float = 0.1) -> float:
    """Mean batch training loss over the last ``frac`` of the steps run (inf if diverged)."""
    if h.diverged:
        return float("inf")
    return float(np.mean(h.train_loss[-max(1, int(len(h.train_loss) * frac)):]))


def steps_to_reach(h: History, target: float, window: int) -> int | None:
    """First step at which the running-mean training loss falls to ``target`` (None if never)."""
    if len(h.train_loss) < window:
        return None
    run = np.convolve(h.train_loss, np.ones(window) / window, mode="valid")
    hit = np.flatnonzero(run <= target)
    return int(hit[0] + window) if hit.size else None


def summary(cfg: Params, hist: dict) -> pd.DataFrame:
    """One row per (norm, lr): final training loss, final and best test accuracy, mean over seeds."""
    rows = []
    for lr in (cfg.lr, cfg.lr_large):
        for norm in NORMS:
            hs = [hist[(norm, lr, s)] for s in profiles.seeds(cfg)]
            rows.append({"network": norm, "lr": lr, "diverged runs": sum(h.diverged for h in hs),
                         "final train loss": np.mean([tail_loss(h) for h in hs]),
                         "final test acc": np.mean([np.nan if h.diverged else h.test_acc[-1] for h in hs]),
                         "best test acc": np.mean([np.nanmax(h.test_acc) for h in hs])})
    return pd.DataFrame(rows)


def headline(cfg: Params, hist: dict) -> dict:
    """The numbers the chapter's prose quotes (glued into it), computed from the summary."""
    row = summary(cfg, hist).set_index(["network", "lr"])
    lo, hi = cfg.lr, cfg.lr_large
    loss, acc = row["final train loss"], row["final test acc"]
    return {"loss_bn": loss["bn", lo], "loss_none": loss["none", lo],
            "acc_bn": acc["bn", lo], "acc_none": acc["none", lo],
            "bn_lower": "lower" if loss["bn", lo] < loss["none", lo] else "not lower",
            "loss_bn_large": loss["bn", hi], "loss_none_large": loss["none", hi],
            "diverged_large": ", ".join(f"{int(row['diverged runs'][n, hi])} of {cfg.num_seeds}"
                                        f" {'BN' if n == 'bn' else 'standard'}" for n in NORMS)}


def _lower(bn: float, none: float, diverged: bool) -> tuple[str, str]:
    return f"BN {bn:.3f} vs standard {none:.3f}", verdict(bn < none, diverged=diverged)


def _faster(fractions: list[float | None], num_seeds: int) -> tuple[str, str]:
    reached = [f for f in fractions if f is not None]
    frac = float(np.mean(reached)) if reached else float("nan")
    return (f"{frac:.0%} of the budget" if reached else "never reached",
            verdict(len(reached) == num_seeds and frac < 1, partly=bool(reached)))


def _higher_acc(bn: float, none: float, diverged: bool) -> tuple[str, str]:
    return f"BN {bn:.1%} vs standard {none:.1%}", verdict(bn > none, diverged=diverged)


def _large_lr(bn: float, none: float, none_diverged: int, bn_diverged: bool) -> tuple[str, str]:
    note = f" ({none_diverged} standard run(s) diverged)" if none_diverged else ""
    return f"BN {bn:.3f} vs standard {none:.3f}{note}", verdict(bn < none, diverged=bn_diverged)


CRITERIA = {
    "lower": Criterion("BN reaches a lower training loss within the same step budget", SOURCE,
                       "mean batch loss over the last 10% of steps at lr {lr:g}: BN < standard", _lower),
    "faster": Criterion("BN trains faster", SOURCE,
                        "BN reaches the standard net's final loss (running mean over {window} steps) "
                        "in fewer steps than the budget, in every seed", _faster),
    "accuracy": Criterion("BN reaches a higher test accuracy (paper: 83% vs 80% after 15k steps)", SOURCE,
                          "final test accuracy at lr {lr:g}: BN > standard", _higher_acc),
    "large_lr": Criterion("BN keeps its advantage at the larger learning rate", SOURCE,
                          "at lr {lr:g}: BN's final training loss < standard's (a diverged run counts "
                          "as infinite loss)", _large_lr),
}


def claims(cfg: Params, hist: dict) -> list[Claim]:
    """The chapter's claims, each decided by its criterion on the runs' numbers."""
    df = summary(cfg, hist).set_index(["network", "lr"])
    loss, acc, dv = df["final train loss"], df["final test acc"], df["diverged runs"]
    lo, hi = cfg.lr, cfg.lr_large
    window = max(1, cfg.num_steps // 10)
    fractions = [None if (s := steps_to_reach(hist[("bn", lo, seed)], loss["none", lo], window)) is None
                 else s / cfg.num_steps for seed in profiles.seeds(cfg)]
    either = bool(dv["bn", lo] or dv["none", lo])
    return [CRITERIA["lower"](bn=loss["bn", lo], none=loss["none", lo], diverged=either, lr=lo),
            CRITERIA["faster"](fractions=fractions, num_seeds=cfg.num_seeds, window=window),
            CRITERIA["accuracy"](bn=acc["bn", lo], none=acc["none", lo], diverged=either, lr=lo),
            CRITERIA["large_lr"](bn=loss["bn", hi], none=loss["none", hi], none_diverged=int(dv["none", hi]),
                                 bn_diverged=bool(dv["bn", hi]), lr=hi)]
