"""Chapter "Training with and without BatchNorm" (Santurkar et al. 2018, Fig. 1a,b).

A VGG trained with plain SGD on CIFAR-10 without augmentation, with and without BN, at the
paper's two learning rates. The lr 0.1 pair is the book's shared core VGG (``profiles.VGG``,
``num_steps`` x ``num_seeds``): other chapters probe the same runs. The lr 0.5 pair is a
variant (``variant_steps`` x ``variant_seeds``). Defaults are the quick profile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import profiles
from ..claims import CHANCE_LOSS, Claim, Criterion, left_chance, less
from ..config import Interval, param
from ..train import History

TITLE = "Training with and without BatchNorm"
NORMS = ("none", "bn")
NAMES = {"none": "standard", "bn": "BN", "noisy_bn": "noisy BN", "noise": "noise only"}
SOURCE = "Santurkar et al. 2018, Fig. 1"
_FRAC = Interval(float, 0, 1, low_open=True)


@dataclass(frozen=True)
class Params(profiles.VGGParams):
    lr_large: float = param(0.5, Interval(float, 0, 10, low_open=True),
                            "the larger learning rate of Fig. 1 (paper: 0.5); run at variant_steps x variant_seeds")
    k: float = param(2.0, Interval(float, 0, 100), "a mean gap must exceed k seed spreads when not every seed "
                     "agrees: 2 sd of the per-seed gaps (choice)")
    chance_frac: float = param(0.9, _FRAC, "a net left chance if every seed's tail loss < chance_frac x ln 10: "
                               "10% below a uniform guess is beyond batch noise of a 150-step mean (choice)")
    tail_frac: float = param(0.1, _FRAC, "final loss: the mean batch loss over the last tail_frac of the steps: "
                             "100-150 batches average out batch-to-batch noise (choice)")
    faster_margin: float = param(0.25, _FRAC, "'BN trains faster': BN must reach the standard net's final loss "
                                 "with at least this fraction of the budget to spare, a 4/3 speed-up (choice)")


PROFILES = {"smoke": profiles.VGG["smoke"], "quick": {}, "paper": profiles.VGG["paper"]}
KEY_SETTINGS = ("dataset", "depth", "width", "lr", "lr_large", "batch_size", "num_steps", "num_seeds",
                "variant_steps", "variant_seeds")
THRESHOLDS = ("k", "chance_frac", "tail_frac", "faster_margin")



def listed(values, fmt=str) -> str:
    """Values for prose, "0, 1 and 2": a bare "0, 1, 2" glued into a page would be read back as a
    tuple and shown as "(0, 1, 2)"."""
    items = [fmt(v) for v in values]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def tail_loss(h: History, frac: float = 0.1, steps: int | None = None) -> float:
    """Mean batch training loss over the last ``frac`` of the first ``steps`` steps (all if None);
    inf if the run diverged before ``steps``."""
    n = h.steps_done if steps is None else steps
    if h.diverged and h.steps_done <= n:
        return float("inf")
    return float(np.mean(h.train_loss[:n][-max(1, int(n * frac)):]))


def acc_at(h: History, steps: int | None = None) -> float:
    """Test accuracy at the last evaluation at or before ``steps`` (the last one if None); nan
    if the run diverged before ``steps``."""
    if h.diverged and (steps is None or h.steps_done <= steps):
        return float("nan")
    ok = h.eval_step <= (h.eval_step[-1] if steps is None else steps)
    return float(h.test_acc[ok][-1]) if ok.any() else float("nan")


def steps_to_reach(h: History, target: float, window: int) -> int | None:
    """First step at which the running-mean training loss falls to ``target`` (None if never)."""
    if len(h.train_loss) < window:
        return None
    run = np.convolve(h.train_loss, np.ones(window) / window, mode="valid")
    hit = np.flatnonzero(run <= target)
    return int(hit[0] + window) if hit.size else None


def per_seed(cfg: Params, hist: dict, lr: float) -> pd.DataFrame:
    """One row per (network, seed) at ``lr``: diverged, final training loss, final test accuracy."""
    rows = [{"network": key[0], "seed": key[-1], "diverged": h.diverged,
             "final train loss": tail_loss(h, cfg.tail_frac), "final test acc": acc_at(h),
             "best test acc": float(np.nanmax(h.test_acc))}
            for key, h in hist.items() if key[1] == lr]
    return pd.DataFrame(rows).set_index(["network", "seed"]).sort_index()


def summary(cfg: Params, hist: dict) -> pd.DataFrame:
    """One row per (lr, network): seeds, steps, diverged runs, and seed means of the final
    training loss, final and best test accuracy."""
    rows = []
    for lr in (cfg.lr, cfg.lr_large):
        df = per_seed(cfg, hist, lr)
        for n in NORMS:
            d = df.loc[n]
            rows.append({"lr": lr, "network": NAMES[n], "seeds": len(d),
                         "steps": max(h.steps_done for k, h in hist.items() if k[:2] == (n, lr)),
                         "diverged runs": int(d["diverged"].sum()), **d.drop(columns="diverged").mean()})
    return pd.DataFrame(rows)


def headline(cfg: Params, hist: dict) -> dict:
    """The numbers the chapter's prose quotes (glued into it), computed from the summary."""
    s = summary(cfg, hist).set_index(["network", "lr"])
    lo, hi = cfg.lr, cfg.lr_large
    loss, acc, dv = s["final train loss"], s["final test acc"], s["diverged runs"]
    return {"loss_bn": loss["BN", lo], "loss_none": loss["standard", lo],
            "acc_bn": acc["BN", lo], "acc_none": acc["standard", lo],
            "loss_bn_large": loss["BN", hi], "loss_none_large": loss["standard", hi],
            "diverged_large": ", ".join(f"{int(dv[NAMES[n], hi])} of {cfg.variant_seeds} {NAMES[n]}" for n in NORMS),
            "chance_loss": cfg.chance_frac * CHANCE_LOSS, "none_large_state": _state(cfg, hist, hi)}


def _state(cfg: Params, hist: dict, lr: float) -> str:
    """Whether the standard net at ``lr`` left chance on every seed, in words for the prose."""
    loss = per_seed(cfg, hist, lr).loc["none", "final train loss"]
    if left_chance(loss, frac=cfg.chance_frac):
        return "left chance on every seed"
    return (f"did not leave chance on {int((~(loss < cfg.chance_frac * CHANCE_LOSS)).sum())} of {len(loss)} "
            f"seeds (final loss at or above {cfg.chance_frac * CHANCE_LOSS:.2f}, or diverged)")


# ---------------------------------------------------------------- criteria (pure functions of numbers)

def _pre(none_loss: Sequence[float], frac: float, diverged: bool) -> tuple[bool, str]:
    """Precondition: no needed run diverged and the standard net left chance on every seed."""
    if diverged:
        return False, "; inconclusive: a run the comparison needs diverged"
    if not left_chance(none_loss, frac=frac):
        return False, f"; inconclusive: the standard net did not leave chance (tail loss >= {frac * CHANCE_LOSS:.2f})"
    return True, ""


def _lower(bn: Sequence[float], none: Sequence[float], k: float, chance_frac: float,
           diverged: bool) -> tuple[str, str]:
    ok, why = _pre(none, chance_frac, diverged)
    g = less(bn, none, k=k)
    return g.text(("BN", "standard")) + why, g.verdict(precondition=ok)


def _faster(bn_frac: Sequence[float], none: Sequence[float], k: float, chance_frac: float,
            faster_margin: float, diverged: bool) -> tuple[str, str]:
    ok, why = _pre(none, chance_frac, diverged)
    g = less(bn_frac, [1.0] * len(bn_frac), k=k, margin=faster_margin)
    within = less(bn_frac, [1.0] * len(bn_frac), k=k)
    fr = ", ".join("never" if not np.isfinite(f) else f"{f:.0%}" for f in bn_frac)
    return (f"steps BN needed, as a fraction of the budget: {fr} ({g.seeds()})" + why,
            g.verdict(precondition=ok, partly=within.holds))


def _higher_acc(bn: Sequence[float], none: Sequence[float], none_loss: Sequence[float], k: float,
                chance_frac: float, diverged: bool) -> tuple[str, str]:
    ok, why = _pre(none_loss, chance_frac, diverged)
    g = less(none, bn, k=k)
    return g.text(("standard", "BN"), "{:.1%}") + why, g.verdict(precondition=ok)


def _large_lr(bn: Sequence[float], none: Sequence[float], none_small: Sequence[float], k: float,
              chance_frac: float) -> tuple[str, str]:
    both = any(np.isinf(a) and np.isinf(b) for a, b in zip(bn, none))
    ok, why = _pre(none_small, chance_frac, both)
    with np.errstate(invalid="ignore"):  # inf - inf on a seed where both diverged: precondition fails
        g = less(bn, none, k=k)
        return g.text(("BN", "standard")) + why, g.verdict(precondition=ok)


PRE = "Precondition: the standard net at lr {lr:g} left chance (tail loss < {chance_frac:g} ln 10 on every seed)"
CRITERIA = {
    "lower": Criterion("BN reaches a lower training loss within the same step budget", SOURCE,
                       "final training loss at lr {lr:g}: BN < standard on every paired seed, or mean gap > "
                       "{k:g} seed spreads. " + PRE + " and no run diverged", _lower),
    "faster": Criterion("BN trains faster", SOURCE,
                        "steps BN needs to reach the standard net's final loss (running mean over {window} "
                        "steps, same seed) <= {keep:.0%} of the budget, every seed or mean beyond {k:g} spreads "
                        "(partly: BN reaches it within the budget). " + PRE, _faster),
    "accuracy": Criterion("BN reaches a higher test accuracy (paper: 83% vs 80% after 15k steps)", SOURCE,
                          "final test accuracy at lr {lr:g}: BN > standard (same test images), every seed or "
                          "mean beyond {k:g} spreads. " + PRE, _higher_acc),
    "large_lr": Criterion("BN keeps its advantage at the larger learning rate", SOURCE,
                          "final training loss at lr {lr_large:g} after {steps} steps: BN < standard (a diverged run "
                          "counts as infinite loss), every seed or mean beyond {k:g} spreads. " + PRE +
                          ", and no seed where both diverged", _large_lr),
}


def claims(cfg: Params, hist: dict) -> list[Claim]:
    """The chapter's claims, each decided by its criterion on the runs' per-seed numbers."""
    lo, hi, core, var = cfg.lr, cfg.lr_large, profiles.seeds(cfg), profiles.seeds(cfg, "variant_seeds")
    loss = {n: [tail_loss(hist[(n, lo, s)], cfg.tail_frac) for s in core] for n in NORMS}
    acc = {n: [acc_at(hist[(n, lo, s)]) for s in core] for n in NORMS}
    diverged = any(hist[(n, lo, s)].diverged for n in NORMS for s in core)
    window = max(1, int(cfg.num_steps * cfg.tail_frac))
    reach = [steps_to_reach(hist[("bn", lo, s)], x, window) for s, x in zip(core, loss["none"])]
    bn_frac = [np.inf if r is None else r / cfg.num_steps for r in reach]
    big = {n: [tail_loss(hist[(n, hi, s)], cfg.tail_frac) for s in var] for n in NORMS}
    small = [tail_loss(hist[("none", lo, s)], cfg.tail_frac, cfg.variant_steps) for s in var]
    th = dict(k=cfg.k, chance_frac=cfg.chance_frac, lr=lo)
    return [CRITERIA["lower"](bn=loss["bn"], none=loss["none"], diverged=diverged, **th),
            CRITERIA["faster"](bn_frac=bn_frac, none=loss["none"], diverged=diverged, window=window,
                               faster_margin=cfg.faster_margin, keep=1 - cfg.faster_margin, **th),
            CRITERIA["accuracy"](bn=acc["bn"], none=acc["none"], none_loss=loss["none"], diverged=diverged, **th),
            CRITERIA["large_lr"](bn=big["bn"], none=big["none"], none_small=small, lr_large=hi,
                                 steps=cfg.variant_steps, **th)]
