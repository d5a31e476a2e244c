"""Chapter "Training with and without BatchNorm" (Santurkar et al. 2018, Fig. 1a,b).

A VGG trained with plain SGD on CIFAR-10 without augmentation, with and without BN, at
the paper's two learning rates. Defaults are the quick profile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .. import data, device, models, runs, train
from ..claims import Claim, verdict
from ..config import ChapterParams, Interval, OneOf, as_dict, param

TITLE = "Training with and without BatchNorm"
NORMS = ("none", "bn")


@dataclass(frozen=True)
class Params(ChapterParams):
    dataset: str = param("cifar10", OneOf(("cifar10", "cifar10-mini")), "training data (paper: CIFAR-10)")
    depth: int = param(11, OneOf((11, 13, 16, 19)), "VGG depth (paper: 'VGG-like'; quick: 11, choice)")
    width: float = param(0.25, Interval(float, 0, 4, low_open=True),
                         "channel multiplier of the VGG (paper 1; quick 1/4, choice)")
    lr: float = param(0.1, Interval(float, 0, 10, low_open=True), "SGD learning rate (paper: 0.1)")
    lr_large: float = param(0.5, Interval(float, 0, 10, low_open=True),
                            "the larger learning rate of Fig. 1 (paper: 0.5)")
    batch_size: int = param(128, Interval(int, 1, 50_000), "examples per SGD step (paper: 128)")
    num_steps: int = param(250, Interval(int, 1, 1_000_000),
                           "SGD steps per run (paper: 15,000; quick: 250, choice)")
    eval_every: int = param(50, Interval(int, 1, 1_000_000), "steps between test evaluations (choice)")
    eval_size: int = param(2000, Interval(int, 1, 10_000), "test images per evaluation (choice)")
    train_size: int = param(50_000, Interval(int, 1, 50_000), "training images used (paper: all 50,000)")
    num_seeds: int = param(1, Interval(int, 1, 20), "seeds per setting (choice)")
    device: str = param("auto", OneOf(("auto", "cpu", "cuda", "mps")), "compute device")


PROFILES = {
    "smoke": dict(dataset="cifar10-mini", width=0.125, num_steps=6, eval_every=3, eval_size=200,
                  train_size=2000, batch_size=32),
    "quick": {},
    "paper": dict(depth=16, width=1.0, num_steps=15_000, eval_every=250, eval_size=10_000, num_seeds=3),
}
KEY_SETTINGS = ("dataset", "depth", "width", "lr", "lr_large", "batch_size", "num_steps", "num_seeds")


def settings_grid(cfg: Params) -> list[tuple[str, float, int]]:
    """Every (norm, lr, seed) run of the chapter, in plotting order."""
    return [(n, lr, cfg.seed + s) for lr in (cfg.lr, cfg.lr_large) for n in NORMS
            for s in range(cfg.num_seeds)]


def run_one(cfg: Params, norm: str, lr: float, seed: int, *, dataset: data.Data | None = None,
            force: bool = False, progress: bool = True) -> train.History:
    """Train one VGG (cached by its full config); ``dataset`` avoids reloading the data."""
    tcfg = train.TrainConfig(optimizer="sgd", lr=lr, batch_size=cfg.batch_size, num_steps=cfg.num_steps,
                             eval_every=cfg.eval_every, eval_size=cfg.eval_size, seed=seed)
    key = {"model": dict(arch="vgg", depth=cfg.depth, width=cfg.width, norm=norm, seed=seed),
           "data": dict(name=cfg.dataset, train_size=cfg.train_size), "train": as_dict(tcfg)}
    dev = device(cfg.device)

    def compute() -> dict:
        torch.manual_seed(seed)
        model = models.vgg(cfg.depth, width=cfg.width, norm=norm, seed=seed).to(dev)
        d = dataset or data.load(cfg.dataset, device=dev, train_size=cfg.train_size)
        h = train.fit(model, d, tcfg, progress=progress, desc=f"{norm} lr={lr:g} seed={seed}")
        return h.to_arrays()

    return train.History.from_arrays(runs.cached("training", key, compute, force=force,
                                                 depends=(runs.module_path(__name__),)))


def run(cfg: Params, *, force: bool = False,
        progress: bool = True) -> dict[tuple[str, float, int], train.History]:
    """All runs of the chapter, keyed by (norm, lr, seed); the data is loaded once."""
    dev = device(cfg.device)
    d = data.load(cfg.dataset, device=dev, train_size=cfg.train_size)
    return {k: run_one(cfg, *k, dataset=d, force=force, progress=progress) for k in settings_grid(cfg)}


def _tail_loss(h: train.History, frac: float = 0.1) -> float:
    """Mean batch training loss over the last ``frac`` of the steps run (inf if diverged)."""
    if h.diverged:
        return float("inf")
    n = max(1, int(len(h.train_loss) * frac))
    return float(np.mean(h.train_loss[-n:]))


def summary(cfg: Params, hist: dict) -> pd.DataFrame:
    """One row per (norm, lr): final training loss, final and best test accuracy, mean over seeds."""
    import pandas as pd

    rows = []
    for lr in (cfg.lr, cfg.lr_large):
        for norm in NORMS:
            hs = [hist[(norm, lr, cfg.seed + s)] for s in range(cfg.num_seeds)]
            rows.append({"network": norm, "lr": lr,
                         "diverged runs": sum(h.diverged for h in hs),
                         "final train loss": np.mean([_tail_loss(h) for h in hs]),
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


def steps_to_reach(h: train.History, target: float, window: int) -> int | None:
    """First step at which the running-mean training loss falls to ``target`` (None if never)."""
    if len(h.train_loss) < window:
        return None
    run = np.convolve(h.train_loss, np.ones(window) / window, mode="valid")
    hit = np.flatnonzero(run <= target)
    return int(hit[0] + window) if hit.size else None


def claims(cfg: Params, hist: dict) -> list[Claim]:
    """The chapter's claims, each decided by a computed criterion."""
    df = summary(cfg, hist).set_index(["network", "lr"])
    loss = df["final train loss"]
    acc = df["final test acc"]
    dv = df["diverged runs"]
    lo, hi = cfg.lr, cfg.lr_large
    src = "Santurkar et al. 2018, Fig. 1"
    window = max(1, cfg.num_steps // 10)
    first = [steps_to_reach(hist[("bn", lo, cfg.seed + s)], loss["none", lo], window)
             for s in range(cfg.num_seeds)]
    reached = [f for f in first if f is not None]
    frac = np.mean(reached) / cfg.num_steps if reached else float("nan")
    out = [
        Claim("BN reaches a lower training loss within the same step budget", src,
              f"mean batch loss over the last 10% of steps at lr {lo:g}: BN < standard",
              f"BN {loss['bn', lo]:.3f} vs standard {loss['none', lo]:.3f}",
              verdict(loss["bn", lo] < loss["none", lo], diverged=bool(dv["bn", lo] or dv["none", lo]))),
        Claim("BN trains faster", src,
              f"BN reaches the standard net's final loss (running mean over {window} steps) "
              "in fewer steps than the budget, in every seed",
              f"{frac:.0%} of the budget" if reached else "never reached",
              verdict(len(reached) == cfg.num_seeds and frac < 1, partly=bool(reached))),
        Claim("BN reaches a higher test accuracy (paper: 83% vs 80% after 15k steps)", src,
              f"final test accuracy at lr {lo:g}: BN > standard",
              f"BN {acc['bn', lo]:.1%} vs standard {acc['none', lo]:.1%}",
              verdict(acc["bn", lo] > acc["none", lo], diverged=bool(dv["bn", lo] or dv["none", lo]))),
        Claim(f"BN keeps its advantage at the larger learning rate {hi:g}", src,
              f"at lr {hi:g}: BN's final training loss < standard's (a diverged run counts as infinite loss)",
              f"BN {loss['bn', hi]:.3f} vs standard {loss['none', hi]:.3f}"
              + (f" ({int(dv['none', hi])} standard run(s) diverged)" if dv["none", hi] else ""),
              verdict(loss["bn", hi] < loss["none", hi], diverged=bool(dv["bn", hi]))),
    ]
    return out
