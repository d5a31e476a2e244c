"""Chapter "Filter-normalised loss surfaces" (seed 000, Sec. 3; Li et al. 2018).

LeNet and VGG-16, each with and without BN, trained with Adam (lr 0.01, batch 128) on
CIFAR-10 as in seed 000. During training: the loss range and effective beta-smoothness along
the gradient (Santurkar et al. Sec. 3.2, the probe of ``probes.landscape``). After training:
1D interpolation from the initial to the final weights, 1D slices and a 2D surface along
filter-normalised random directions, and a sharpness number, with BN in eval mode as Li et
al. do. Defaults are the quick profile.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .. import data, device, models, runs, train
from ..claims import Claim, verdict
from ..config import ChapterParams, Interval, ListOf, OneOf, param
from ..probes import landscape, surface
from ..probes.directions import NORMS as DIRECTION_NORMS
from ..probes.directions import random_direction

TITLE = "Filter-normalised loss surfaces"
ARCHS = ("lenet", "vgg16")
ARCH_NAMES = {"lenet": "LeNet", "vgg16": "VGG-16"}
NORMS = ("none", "bn")
SEED_SRC = "seed 000 (Oxford mini-project)"
STUCK = 0.9  # a net whose final training loss exceeds STUCK * ln(10) has not left chance level


@dataclass(frozen=True)
class Params(ChapterParams):
    dataset: str = param("cifar10", OneOf(("cifar10", "cifar10-mini")), "data (seed: CIFAR-10)")
    train_size: int = param(50_000, Interval(int, 1, 50_000), "training images (seed: all)")
    lr: float = param(0.01, Interval(float, 0, 10, low_open=True),
                      "Adam learning rate (seed: 0.01)")
    batch_size: int = param(128, Interval(int, 1, 50_000), "examples per Adam step (seed: 128)")
    lenet_steps: int = param(400, Interval(int, 1, 10**6),
                             "LeNet Adam steps (seed: 20 epochs = 7,800; quick: 400, choice)")
    vgg_steps: int = param(250, Interval(int, 1, 10**6),
                           "VGG-16 Adam steps (seed: 7,800; quick: 250, choice)")
    vgg_width: float = param(0.125, Interval(float, 0, 4, low_open=True),
                             "VGG-16 channel multiplier (seed: 1; quick: 1/8, choice)")
    eval_size: int = param(2000, Interval(int, 1, 10_000), "test images per evaluation (choice)")
    probe_every: int = param(25, Interval(int, 1, 10**6),
                             "steps between landscape probes (seed: every step; choice)")
    multipliers: tuple = param((0.5, 1.0, 2.0, 4.0), ListOf(Interval(float, 0, 100, low_open=True)),
                               "step multipliers s of theta - s lr g (Santurkar: [1/2, 4])")
    surface_size: int = param(500, Interval(int, 1, 50_000),
                              "training images a surface is evaluated on (Li et al.: all; choice)")
    lenet_grid: int = param(21, Interval(int, 3, 401), "2D grid points per axis, LeNet (Li: 51)")
    vgg_grid: int = param(11, Interval(int, 3, 401), "2D grid points per axis, VGG-16 (Li: 51)")
    line_points: int = param(25, Interval(int, 3, 1001), "points of each 1D curve (choice)")
    span: float = param(1.0, Interval(float, 0, 100, low_open=True),
                        "grid half-width in direction units (Li et al.: 1)")
    direction_norm: str = param("filter", OneOf(DIRECTION_NORMS), "direction normalisation (Li)")
    ignore_bias_bn: bool = param(True, OneOf((True, False)),
                                 "zero direction for biases and BN parameters (Li et al.)")
    bn_mode: str = param("running", OneOf(("running", "batch")),
                         "BN statistics on the surfaces (Li et al.: running)")
    interp_bn_mode: str = param("batch", OneOf(("running", "batch")),
                                "BN statistics along the init-to-final line (choice)")
    radius: float = param(0.25, Interval(float, 0, 100, low_open=True),
                          "sharpness radius in direction units (choice)")
    sharp_dirs: int = param(8, Interval(int, 1, 1000), "random directions for sharpness (choice)")
    points_per_call: int = param(1, Interval(int, 1, 4096),
                                 "grid points per vmapped forward (1 on CPU; more on a GPU)")
    device: str = param("auto", OneOf(("auto", "cpu", "cuda", "mps")), "compute device")


PROFILES = {
    "smoke": dict(dataset="cifar10-mini", train_size=2000, lenet_steps=8, vgg_steps=4,
                  vgg_width=0.0625, eval_size=200, probe_every=4, multipliers=(0.5, 2.0),
                  surface_size=64, lenet_grid=3, vgg_grid=3, line_points=5, sharp_dirs=2),
    "quick": {},
    "paper": dict(lenet_steps=7800, vgg_steps=7800, vgg_width=1.0, eval_size=10_000,
                  probe_every=10, multipliers=(0.5, 1.0, 1.5, 2.0, 3.0, 4.0), surface_size=10_000,
                  lenet_grid=51, vgg_grid=51, line_points=101, sharp_dirs=32, points_per_call=8),
}
KEY_SETTINGS = ("dataset", "lr", "batch_size", "lenet_steps", "vgg_steps", "vgg_width",
                "probe_every", "surface_size", "lenet_grid", "vgg_grid", "span", "bn_mode",
                "radius", "sharp_dirs")


def make_net(arch: str, norm: str, cfg: Params) -> torch.nn.Module:
    """LeNet-5 or VGG-16 (width ``cfg.vgg_width``) with ``norm`` after every hidden layer."""
    torch.manual_seed(cfg.seed)
    if arch == "lenet":
        return models.lenet(norm=norm, seed=cfg.seed)
    return models.vgg(16, width=cfg.vgg_width, norm=norm, seed=cfg.seed)


def _state(prefix: str, model: torch.nn.Module) -> dict[str, np.ndarray]:
    return {f"{prefix}/{k}": v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def _tensors(r: dict, prefix: str, dev) -> dict[str, torch.Tensor]:
    n = len(prefix) + 1
    return {k[n:]: torch.as_tensor(v, device=dev) for k, v in r.items()
            if k.startswith(prefix + "/")}


def train_one(cfg: Params, arch: str, norm: str, d: data.Data, *, progress: bool = True) -> dict:
    """Train one net with the landscape probe; the result holds the History's arrays and the
    initial and final state (``init/...``, ``final/...``). Cached."""
    key = _train_key(cfg, arch, norm)
    tc = train.TrainConfig(**key["train"])

    def compute() -> dict:
        model = make_net(arch, norm, cfg).to(d.device)
        init = _state("init", model)
        probe = landscape.as_probe("landscape", cfg.probe_every, lr=None,
                                   multipliers=cfg.multipliers)
        h = train.fit(model, d, tc, probes=[probe], progress=progress, desc=f"{arch} {norm}")
        return {**h.to_arrays(), **init, **_state("final", model)}

    return runs.cached("surfaces-train", key, compute,
                       depends=(runs.module_path(__name__), "probes/landscape"))


def _train_key(cfg: Params, arch: str, norm: str) -> dict:
    """Everything one training run depends on (its cache key)."""
    steps = cfg.lenet_steps if arch == "lenet" else cfg.vgg_steps
    tc = train.TrainConfig(optimizer="adam", lr=cfg.lr, batch_size=cfg.batch_size,
                           num_steps=steps, eval_every=max(1, steps // 5),
                           eval_size=cfg.eval_size, seed=cfg.seed)
    return {"net": dict(arch=arch, norm=norm, seed=cfg.seed, data=cfg.dataset, n=cfg.train_size,
                        width=cfg.vgg_width if arch == "vgg16" else None),
            "train": dataclasses.asdict(tc),
            "probe": dict(every=cfg.probe_every, multipliers=list(cfg.multipliers))}


def trained(cfg: Params, arch: str, norm: str, r: dict, dev) -> tuple[torch.nn.Module, dict]:
    """The trained net rebuilt from a ``train_one`` result, and its initial parameters."""
    model = make_net(arch, norm, cfg).to(dev)
    model.load_state_dict(_tensors(r, "final", dev))
    init = _tensors(r, "init", dev)
    return model.eval(), {k: init[k] for k, _ in model.named_parameters()}


def landscapes(cfg: Params, arch: str, norm: str, r: dict, X: torch.Tensor,
               y: torch.Tensor) -> dict:
    """Interpolation, two 1D slices, the 2D surface and the sharpness of one trained net.

    Directions come from seeds ``seed + 1`` and ``seed + 2``; sharpness directions from
    ``seed + 10`` on. The 2D grid is written to a resumable file while it runs. Cached.
    """
    model, init = trained(cfg, arch, norm, r, X.device)
    n_grid = cfg.lenet_grid if arch == "lenet" else cfg.vgg_grid
    fields = ("surface_size", "line_points", "span", "direction_norm", "ignore_bias_bn",
              "bn_mode", "interp_bn_mode", "radius", "sharp_dirs", "points_per_call")
    key = {"trained": _train_key(cfg, arch, norm), "grid": n_grid,
           **{k: getattr(cfg, k) for k in fields}}
    depends = (runs.module_path(__name__), "probes/surface", "probes/directions")
    opts = dict(bn_mode=cfg.bn_mode, points_per_call=cfg.points_per_call)

    def compute() -> dict:
        params = {k: v.detach() for k, v in model.named_parameters()}
        d1, d2 = (random_direction(params, seed=cfg.seed + s, norm=cfg.direction_norm,
                                   ignore_bias_bn=cfg.ignore_bias_bn) for s in (1, 2))
        line = np.linspace(-cfg.span, cfg.span, cfg.line_points)
        grid = np.linspace(-cfg.span, cfg.span, n_grid)
        partial = runs.runs_root() / "surfaces-partial" / f"{runs.config_hash(key, depends)}.npz"
        partial.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        s2 = surface.surface_2d(model, X, y, directions=(d1, d2), xs=grid, ys=grid, path=partial,
                                **opts)
        t_2d = time.perf_counter() - t0
        s1 = [surface.slice_1d(model, X, y, direction=d, xs=line, **opts) for d in (d1, d2)]
        it = surface.interpolate(model, X, y, start=init, end=params,
                                 alphas=np.linspace(-0.5, 1.5, cfg.line_points),
                                 bn_mode=cfg.interp_bn_mode, points_per_call=cfg.points_per_call)
        sharp = dict(radius=cfg.radius, num_directions=cfg.sharp_dirs, seed=cfg.seed + 10,
                     norm=cfg.direction_norm, ignore_bias_bn=cfg.ignore_bias_bn,
                     points_per_call=cfg.points_per_call)
        sh = surface.sharpness(model, X, y, bn_mode=cfg.bn_mode, **sharp)
        # eval-mode BN is not invariant to a filter's scale, batch-mode BN is: show both
        sh_batch = surface.sharpness(model, X, y, bn_mode="batch", **sharp)
        os.remove(partial)  # the cache holds the finished grid from here on
        return {"grid": grid, "loss2d": s2.loss, "acc2d": s2.acc, "line": line,
                "slice1": s1[0].loss, "slice2": s1[1].loss, "alphas": it.xs,
                "interp": it.loss, "interp_acc": it.acc, "time_2d_s": t_2d,
                **{f"sharp_{k}": v for k, v in sh.items()},
                **{f"sharp_batch_{k}": v for k, v in sh_batch.items()}}

    return runs.cached("surfaces", key, compute, depends=depends)


def run(cfg: Params, *, progress: bool = True) -> dict[tuple[str, str], dict]:
    """Every (arch, norm): its training result merged with its landscapes."""
    dev = device(cfg.device)
    d = data.load(cfg.dataset, device=dev, train_size=cfg.train_size)
    X, y = d.X_train[:cfg.surface_size], d.y_train[:cfg.surface_size]
    out = {}
    for arch in ARCHS:
        for norm in NORMS:
            r = train_one(cfg, arch, norm, d, progress=progress)
            out[arch, norm] = {**r, **landscapes(cfg, arch, norm, r, X, y)}
    return out



def _centre(r: dict) -> float:
    c = len(r["grid"]) // 2
    return float(r["loss2d"][c, c])


def summary(cfg: Params, res: dict) -> pd.DataFrame:
    """One row per net: how it trained and every landscape number the claims use."""
    rows = []
    for (arch, norm), r in res.items():
        n = max(1, len(r["train_loss"]) // 10)
        lo, hi = r["probe/landscape/loss_min"], r["probe/landscape/loss_max"]
        rows.append({
            "arch": arch, "norm": norm, "diverged": bool(r["diverged"]),
            "final train loss": float(np.mean(r["train_loss"][-n:])),
            "test acc": float(r["test_acc"][-1]),
            "loss variation": float(np.mean(hi - lo)),
            "beta_eff": float(np.mean(r["probe/landscape/beta_eff"])),
            "centre loss": _centre(r),
            "surface std": float(np.std(r["loss2d"])),
            "max / centre": float(np.max(r["loss2d"]) / _centre(r)),
            "sharpness": float(r["sharp_rise"]),
            "sharpness (batch BN)": float(r["sharp_batch_rise"]),
            "2D points/s": r["loss2d"].size / float(r["time_2d_s"])})
    return pd.DataFrame(rows)


def _stuck(df: pd.DataFrame) -> dict[str, bool]:
    """Per architecture: did either net stay at chance level (final loss > STUCK ln 10)?"""
    t = df.set_index(["arch", "norm"])["final train loss"]
    return {a: bool(max(t[a, "bn"], t[a, "none"]) > STUCK * np.log(10)) for a in ARCHS}


def _pairwise(df: pd.DataFrame, col: str) -> tuple[list[bool], str]:
    """Per comparable architecture: is BN's value below the standard net's? And the text."""
    t, stuck = df.set_index(["arch", "norm"])[col], _stuck(df)
    ok = [bool(t[a, "bn"] < t[a, "none"]) for a in ARCHS if not stuck[a]]
    text = "; ".join(f"{ARCH_NAMES[a]}: BN {t[a, 'bn']:.3g} vs standard {t[a, 'none']:.3g}"
                     + (" (a net at chance level: not compared)" if stuck[a] else "")
                     for a in ARCHS)
    return ok, text


def claims(cfg: Params, res: dict) -> list[Claim]:
    """Seed 000's claims, decided per architecture whose two nets both left chance level:
    reproduced if BN wins on both architectures, partly if on some."""
    df = summary(cfg, res)
    div = bool(df.diverged.any())
    rows = [
        ("BN reduces the variation of the loss along the gradient during training",
         "Fig. 1", "loss variation", "mean over probed steps of max - min loss along "
         "theta - s lr g: BN < standard"),
        ("BN lowers the effective beta-smoothness (more predictive gradients)", "Fig. 1",
         "beta_eff", "mean over probed steps of beta_eff: BN < standard"),
        ("BN flattens the loss surface (smaller variance of the loss over it)", "Fig. 2",
         "surface std", "standard deviation of the loss over the 2D grid: BN < standard"),
        ("Without BN the surface reaches extreme values at its edges, hence log scale",
         "Sec. 3, Fig. 2", "max / centre", "largest loss on the grid / loss at its centre: "
         "BN < standard"),
        ("BN's minimum is flatter (sharpness)", "Sec. 3; Li et al. 2018",
         "sharpness", f"mean loss rise at radius {cfg.radius:g} along {cfg.sharp_dirs} "
         f"random directions, both signs, BN {cfg.bn_mode} statistics: BN < standard"),
    ]
    out = []
    for claim, where, col, criterion in rows:
        ok, text = _pairwise(df, col)
        out.append(Claim(claim, f"{SEED_SRC}, {where}",
                         criterion + " on both networks (partly: on one)", text,
                         verdict(len(ok) == len(ARCHS) and all(ok), partly=any(ok),
                                 diverged=div)))
    return out


SHORT = {"final train loss": "loss", "test acc": "acc", "loss variation": "var",
         "beta_eff": "beta", "surface std": "std", "max / centre": "ratio",
         "sharpness": "sharp", "sharpness (batch BN)": "sharpb", "centre loss": "centre",
         "2D points/s": "pps"}


def numbers(cfg: Params, res: dict) -> dict[str, float | str]:
    """Every number the chapter's prose quotes, by glue key ``<arch>_<norm>_<what>``."""
    df = summary(cfg, res).set_index(["arch", "norm"])
    out: dict[str, float | str] = {f"{a}_{n}_{s}": float(df.loc[(a, n), col])
                                   for (a, n) in df.index for col, s in SHORT.items()}
    stuck = [f"{ARCH_NAMES[a]} {'with' if n == 'bn' else 'without'} BN" for (a, n) in df.index
             if df.loc[(a, n), "final train loss"] > STUCK * np.log(10)]
    out["stuck"] = ", ".join(stuck) or "none"
    out["stuck_frac"] = STUCK
    out["n_points"] = int(sum(r["loss2d"].size for r in res.values()))
    out["time_2d"] = float(sum(r["time_2d_s"] for r in res.values()))
    return out
