"""Chapter "Is BatchNorm the only way to smooth the landscape?" (Santurkar et al. 2018, Sec. 3.3).

The VGG and the deep linear network (DLN) trained with no normalisation, BatchNorm, lp
normalisation (p = 1, 2, inf; ``bnlib.norms.LpNorm``), LayerNorm and GroupNorm. Each run
records its training curves, the landscape along the gradient (the smoothness chapter's
``landscape.as_probe``), per-channel activation statistics over training
(``activations.activation_stats``) and, at the end, the shape of the activation
distributions (excess kurtosis). The paper defines the lp schemes in one sentence; everything
else about them (norm before or after centring, eps, affine, eval statistics) is a parameter
here. Defaults are the quick profile.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from scipy import stats

from .. import data, device, models, runs, train
from ..claims import Claim, verdict
from ..config import ChapterParams, Interval, ListOf, OneOf, as_dict, param
from ..functional import clone_state, probing
from ..probes import activations, landscape

TITLE = "Is BatchNorm the only way to smooth the landscape? lp normalisation"
NORMS = ("none", "bn", "l1", "l2", "linf", "ln", "gn")  # plotting order
LP = ("l1", "l2", "linf")
LANDSCAPE = ("loss range", "grad-diff max", "beta_eff")  # the three panels of the paper's Fig. 4
ARCHS = ("vgg", "dln")
DEPENDS = (runs.module_path(__name__), "probes/landscape", "probes/activations")  # cached runs' code
_POS = dict(low_open=True)


@dataclass(frozen=True)
class Params(ChapterParams):
    dataset: str = param("cifar10", OneOf(("cifar10", "cifar10-mini")), "VGG training data (paper: CIFAR-10)")
    depth: int = param(11, OneOf((11, 13, 16, 19)), "VGG depth (paper: 'VGG-like'; quick: 11, choice)")
    width: float = param(0.125, Interval(float, 0, 4, **_POS),
                         "VGG channel multiplier (paper 1; quick 1/8, choice)")
    lr: float = param(0.1, Interval(float, 0, 10, **_POS), "VGG SGD learning rate (paper: 0.1)")
    batch_size: int = param(128, Interval(int, 2, 50_000), "VGG examples per SGD step (paper: 128)")
    num_steps: int = param(200, Interval(int, 1, 1_000_000), "VGG SGD steps (paper: 15,000; quick: choice)")
    eval_every: int = param(50, Interval(int, 1, 1_000_000), "VGG steps between test evaluations (choice)")
    eval_size: int = param(2000, Interval(int, 1, 10_000), "test images per evaluation (choice)")
    train_size: int = param(50_000, Interval(int, 1, 50_000), "VGG training images (paper: all 50,000)")
    lp_norm_of: str = param("raw", OneOf(("raw", "centered")),
                            "lp norm of the raw or the centred input (paper: 'before shifting the mean')")
    lp_center: bool = param(True, OneOf((True, False)), "lp layers subtract the batch mean (paper: yes)")
    lp_eps: float = param(1e-5, Interval(float, 0, 1), "added to mean(abs(x)^p) (choice: BN's 1e-5)")
    lp_affine: bool = param(True, OneOf((True, False)),
                            "learnable gamma, beta after lp layers (choice: as BN)")
    lp_momentum: float = param(0.1, Interval(float, 0, 1, **_POS),
                               "running-average momentum of the eval statistics (choice: BN's 0.1)")
    gn_groups: int = param(8, Interval(int, 1, 512), "GroupNorm groups, reduced to divide C (choice)")
    probe_every: int = param(25, Interval(int, 1, 1_000_000), "VGG steps between landscape probes (choice)")
    multipliers: tuple = param((0.5, 1.0, 2.0, 4.0), ListOf(Interval(float, 0, 1e3, **_POS)),
                               "VGG steps along the gradient, in units of lr (paper: [1/2, 4])")
    act_layers: tuple = param((3, 7), ListOf(Interval(int, 1, 20)),
                              "VGG layers whose activations are recorded (choice)")
    act_every: int = param(10, Interval(int, 1, 1_000_000), "steps between activation records (choice)")
    probe_size: int = param(256, Interval(int, 2, 10_000), "fixed images for activation records (choice)")
    hist_samples: int = param(4096, Interval(int, 16, 1_000_000), "activations kept per histogram (choice)")
    dln_depth: int = param(25, Interval(int, 2, 200), "DLN layers (paper: 25)")
    dln_width: int = param(10, Interval(int, 1, 1000), "DLN width (paper: 10)")
    dln_points: int = param(1000, Interval(int, 2, 100_000), "DLN data points (paper: 1000)")
    dln_lr: float = param(1e-6, Interval(float, 0, 1, **_POS), "DLN gradient-descent step (paper: 1e-6)")
    dln_loss: str = param("mse_sum", OneOf(("mse_sum", "mse")),
                          "DLN loss summed or averaged over points (choice)")
    dln_steps: int = param(500, Interval(int, 1, 1_000_000), "DLN steps (paper: 10,000; quick: choice)")
    dln_probe_every: int = param(50, Interval(int, 1, 1_000_000),
                                 "DLN steps between landscape probes (choice)")
    dln_multipliers: tuple = param((0.01, 0.1, 1.0, 10.0, 30.0), ListOf(Interval(float, 0, 1e4, **_POS)),
                                   "DLN steps along the gradient, in units of dln_lr (paper: [1/100, 30])")
    margin: float = param(0.05, Interval(float, 0, 1), "'comparable to BN': accuracy within this (choice)")
    similar_factor: float = param(3.0, Interval(float, 1, 1e3),
                                  "'similar smoothing': within this factor of BN (choice)")
    num_seeds: int = param(1, Interval(int, 1, 20), "seeds per setting (choice)")
    device: str = param("auto", OneOf(("auto", "cpu", "cuda", "mps")), "compute device")


PROFILES = {
    "smoke": dict(dataset="cifar10-mini", width=0.0625, num_steps=3, eval_every=3, eval_size=64,
                  train_size=500, batch_size=16, probe_every=3, multipliers=(1.0, 4.0), act_every=1,
                  probe_size=16, hist_samples=256, dln_depth=4, dln_points=50, dln_steps=3,
                  dln_probe_every=3, dln_multipliers=(1.0, 30.0)),
    "quick": {},
    "paper": dict(depth=16, width=1.0, num_steps=15_000, eval_every=250, eval_size=10_000,
                  probe_every=100, act_every=100, act_layers=(3, 11), dln_steps=10_000,
                  dln_probe_every=100, num_seeds=3),
}
KEY_SETTINGS = ("dataset", "depth", "width", "lr", "num_steps", "lp_norm_of", "lp_center", "lp_eps",
                "lp_affine", "lp_momentum", "dln_lr", "dln_loss", "dln_steps", "num_seeds")


def lp_options(cfg: Params) -> dict:
    """Keyword options of every ``LpNorm`` of the chapter (see ``bnlib.norms.LpNorm``)."""
    return dict(eps=cfg.lp_eps, center=cfg.lp_center, norm_of=cfg.lp_norm_of,
                affine=cfg.lp_affine, momentum=cfg.lp_momentum)


def excess_kurtosis(a: np.ndarray, axis: int = -1) -> np.ndarray:
    """Population excess kurtosis E[(a - mean)^4] / var^2 - 3 (0 for a Gaussian)."""
    return stats.kurtosis(a, axis=axis, fisher=True, bias=True)


def activation_shape(model: torch.nn.Module, X: torch.Tensor, *, layers, num_samples: int,
                     seed: int = 0) -> dict[str, np.ndarray]:
    """Shape of each layer's activations on ``X`` (batch statistics), the model untouched.

    Recorded where ``activations.recording_site`` records (the norm's output). Per layer:
    ``sample`` (``num_samples`` values drawn with a seeded generator, for histograms),
    ``kurtosis`` (excess kurtosis of all the layer's values pooled), ``kurtosis_channel``
    (per channel over (n, h, w), shape (C,)) and ``var_channel`` (population variance, (C,)).
    """
    sites = {i: activations.recording_site(model, i) for i in layers}
    outs: dict[int, torch.Tensor] = {}
    hooks = [s.register_forward_hook(lambda _m, _i, o, i=i: outs.__setitem__(i, o.detach()))
             for i, s in sites.items()]
    try:
        with probing(model, "batch"), torch.no_grad():
            torch.func.functional_call(model, clone_state(model), (X,))
    finally:
        for h in hooks:
            h.remove()
    result = {}
    for i in layers:
        a = outs[i].double().cpu()                          # (N, C, H, W) or (N, C)
        units = a.transpose(0, 1).flatten(1).numpy()         # (C, N*H*W)
        g = torch.Generator().manual_seed(seed + i)
        idx = torch.randint(a.numel(), (num_samples,), generator=g)
        result[f"layer{i}/sample"] = a.flatten()[idx].numpy()
        result[f"layer{i}/kurtosis"] = np.array(excess_kurtosis(units.ravel()))
        result[f"layer{i}/kurtosis_channel"] = excess_kurtosis(units, axis=1)
        result[f"layer{i}/var_channel"] = units.var(axis=1)
    return result


def _run_key(cfg: Params, arch: str, norm: str, seed: int, tcfg: train.TrainConfig) -> dict:
    opts = dict(lp=lp_options(cfg) if norm in LP else None, groups=cfg.gn_groups if norm == "gn" else None)
    if arch == "vgg":
        model = dict(depth=cfg.depth, width=cfg.width, data=cfg.dataset, train_size=cfg.train_size,
                     multipliers=cfg.multipliers, act_layers=cfg.act_layers, act_every=cfg.act_every,
                     probe_size=cfg.probe_size, hist_samples=cfg.hist_samples)
    else:
        model = dict(depth=cfg.dln_depth, width=cfg.dln_width, points=cfg.dln_points,
                     multipliers=cfg.dln_multipliers)
    return dict(arch=arch, norm=norm, seed=seed, norm_options=opts, model=model, train=as_dict(tcfg))


def run_one(cfg: Params, arch: str, norm: str, seed: int, *,
            dataset: Callable[[], data.Data] | None = None, force: bool = False,
            progress: bool = True) -> tuple[train.History, dict]:
    """Train one network (cached); return its History and the end-of-training extras.
    ``dataset`` returns the VGG's data (called only if the run is not cached)."""
    dev = device(cfg.device)
    kw = dict(lp=lp_options(cfg), groups=cfg.gn_groups)
    if arch == "vgg":
        tcfg = train.TrainConfig(lr=cfg.lr, batch_size=cfg.batch_size, num_steps=cfg.num_steps,
                                 eval_every=cfg.eval_every, eval_size=cfg.eval_size, seed=seed)
        every, mult = cfg.probe_every, cfg.multipliers
    else:
        tcfg = train.TrainConfig(lr=cfg.dln_lr, batch_size=None, num_steps=cfg.dln_steps,
                                 loss=cfg.dln_loss, eval_every=cfg.dln_steps, seed=seed)
        every, mult = cfg.dln_probe_every, cfg.dln_multipliers

    def compute() -> dict:
        torch.manual_seed(seed)  # Glorot init: the same weights for every normaliser
        if arch == "vgg":
            d = dataset() if dataset else data.load(cfg.dataset, device=dev, train_size=cfg.train_size)
            model = models.vgg(cfg.depth, width=cfg.width, norm=norm, seed=seed, **kw).to(dev)
        else:
            d = data.linear_regression(n=cfg.dln_points, dim=cfg.dln_width, seed=seed, device=dev)
            model = models.deep_linear(depth=cfg.dln_depth, width=cfg.dln_width, norm=norm,
                                       seed=seed, **kw).to(dev)
        # torch's group_norm has no vmap rule for 4-d inputs: evaluate LN/GN multipliers in a loop
        vectorize = not (arch == "vgg" and norm in ("ln", "gn"))
        probes = [landscape.as_probe("landscape", every, lr=None, multipliers=mult, vectorize=vectorize)]
        if arch == "vgg":
            Xp = d.X_train[:cfg.probe_size]  # fixed images: changes come from the weights
            probes.append(train.Probe("act", lambda ctx: activations.activation_stats(
                ctx.model, Xp, bn_mode="batch", layers=cfg.act_layers), cfg.act_every))
        h = train.fit(model, d, tcfg, probes=probes, progress=progress, desc=f"{arch} {norm} seed={seed}")
        out = h.to_arrays()
        if arch == "vgg" and not h.diverged:
            shape = activation_shape(model, Xp, layers=cfg.act_layers, num_samples=cfg.hist_samples)
            out.update({f"shape/{k}": v for k, v in shape.items()})
            out["test_acc_batch_stats"] = train.evaluate(model, d.X_test[:cfg.eval_size],
                                                         d.y_test[:cfg.eval_size], bn_mode="batch")[1]
        return out

    res = runs.cached("lp_norms", _run_key(cfg, arch, norm, seed, tcfg), compute, depends=DEPENDS,
                      force=force)
    extras = {k.removeprefix("shape/"): v for k, v in res.items()
              if k.startswith("shape/") or k == "test_acc_batch_stats"}
    return train.History.from_arrays(res), extras


def run(cfg: Params, *, force: bool = False, progress: bool = True) -> dict:
    """Every run of the chapter, keyed by (arch, norm, seed); the CIFAR data is loaded once,
    and only if some run is not cached."""
    d = functools.cache(lambda: data.load(cfg.dataset, device=device(cfg.device), train_size=cfg.train_size))
    return {(a, n, cfg.seed + s): run_one(cfg, a, n, cfg.seed + s, dataset=d, force=force,
                                          progress=progress)
            for a in ARCHS for n in NORMS for s in range(cfg.num_seeds)}


def _tail_loss(h: train.History, frac: float = 0.1) -> float:
    """Mean batch training loss over the last ``frac`` of the steps (inf if diverged)."""
    if h.diverged:
        return float("inf")
    return float(np.mean(h.train_loss[-max(1, int(len(h.train_loss) * frac)):]))


def _row(cfg: Params, arch: str, h: train.History, extras: dict) -> dict:
    """One run's numbers: performance, landscape (mean over probes), activation shape."""
    ls = h.probes.get("landscape", {})
    row = {"final train loss": _tail_loss(h), "diverged": h.diverged,
           "mean train loss": float(np.mean(h.train_loss)) if not h.diverged else float("inf"),
           "loss range": float(np.mean(ls["loss_max"] - ls["loss_min"])) if ls else np.nan,
           "grad-diff max": float(np.mean(ls["grad_diff_max"])) if ls else np.nan,
           "beta_eff": float(np.mean(ls["beta_eff"])) if ls else np.nan}
    if arch == "dln":
        return row
    row["test acc"] = np.nan if h.diverged else float(h.test_acc[-1])
    row["test acc (batch stats)"] = extras.get("test_acc_batch_stats", np.nan)
    act = h.probes.get("act", {})
    shifts = [activations.distribution_shift(act[f"layer{i}.mean"], act[f"layer{i}.var"])
              for i in cfg.act_layers] if len(act.get("step", ())) > 1 else []
    row["mean shift"] = float(np.mean([s["mean_shift"] for s in shifts])) if shifts else np.nan
    row["var shift"] = float(np.mean([s["var_shift"] for s in shifts])) if shifts else np.nan
    for i in cfg.act_layers:
        row[f"kurtosis L{i}"] = float(extras.get(f"layer{i}/kurtosis", np.nan))
        k = extras.get(f"layer{i}/kurtosis_channel")
        row[f"channel kurtosis L{i}"] = float(np.median(k)) if k is not None else np.nan
    return row


def summary(cfg: Params, res: dict, arch: str) -> pd.DataFrame:
    """One row per normaliser (means over seeds): final loss, test accuracy, the landscape
    numbers (means over the probed steps), distribution shift and excess kurtosis."""
    rows = {}
    for norm in NORMS:
        per_seed = [_row(cfg, arch, *res[(arch, norm, cfg.seed + s)]) for s in range(cfg.num_seeds)]
        rows[norm] = {k: (any(r[k] for r in per_seed) if k == "diverged"
                          else float(np.mean([r[k] for r in per_seed]))) for k in per_seed[0]}
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "norm"
    return df


def _count(ok: list[bool]) -> str:
    return verdict(all(ok), partly=any(ok))


def claims(cfg: Params, res: dict) -> list[Claim]:
    """The chapter's claims (Santurkar et al. 2018, Sec. 3.3), each by a computed criterion."""
    v, d = summary(cfg, res, "vgg"), summary(cfg, res, "dln")
    src = "Santurkar et al. 2018, Sec. 3.3"
    div = lambda df, norms: bool(df.loc[list(norms), "diverged"].any())  # noqa: E731
    acc = v["test acc"]
    close = [acc[n] >= acc["bn"] - cfg.margin for n in LP]
    smooth = {a: [df.loc[n, q] < df.loc["none", q] and df.loc[n, q] <= cfg.similar_factor * df.loc["bn", q]
                  for n in LP for q in LANDSCAPE] for a, df in (("vgg", v), ("dln", d))}
    shift_more = [v.loc[n, "mean shift"] > v.loc["none", "mean shift"]
                  and v.loc[n, "var shift"] > v.loc["none", "var shift"] for n in LP]
    shift_any = [v.loc[n, "mean shift"] > v.loc["none", "mean shift"]
                 or v.loc[n, "var shift"] > v.loc["none", "var shift"] for n in LP]
    better = [v.loc[n, "final train loss"] < v.loc["none", "final train loss"] for n in LP]
    kl = f"kurtosis L{cfg.act_layers[-1]}"
    gauss = [abs(v.loc[n, kl]) > abs(v.loc["bn", kl]) for n in LP]
    fmt = lambda col, f: ", ".join(f"{n} {v.loc[n, col]:{f}}" for n in ("none", "bn", *LP))  # noqa: E731
    return [
        Claim("All lp schemes reach performance comparable to BatchNorm (VGG)", src + ", Fig. 13",
              f"final test accuracy of each of l1, l2, linf >= BN's - {cfg.margin:.0%}",
              fmt("test acc", ".1%"),
              verdict(all(close), partly=any(close), diverged=div(v, ("bn", *LP)))),
        *[Claim(f"lp schemes smooth the landscape like BatchNorm ({a.upper()})", src + ", Figs. 11, 12",
                "for each lp net and each of loss range, largest gradient change and effective "
                f"beta-smoothness (means over the probes): < the standard net's and <= "
                f"{cfg.similar_factor:g} x BN's; partly if some of these checks pass",
                f"{sum(smooth[a])} of {len(smooth[a])} checks pass; beta_eff: "
                + ", ".join(f"{n} {df.loc[n, 'beta_eff']:.3g}" for n in ("none", "bn", *LP)),
                verdict(all(smooth[a]), partly=any(smooth[a]), diverged=div(df, NORMS)))
          for a, df in (("vgg", v), ("dln", d))],
        Claim("lp activations shift more than the standard network's, yet lp nets train better",
              src, "for each lp net: mean shift and variance shift (step to step, layers "
              f"{', '.join(map(str, cfg.act_layers))}) > the standard net's, and final training "
              "loss < the standard net's; partly if all train better but only some shifts are larger",
              f"mean shift: {fmt('mean shift', '.3f')}; var shift: {fmt('var shift', '.3f')}; "
              f"loss: {fmt('final train loss', '.3f')}",
              verdict(all(s and b for s, b in zip(shift_more, better)),
                      partly=all(b for b in better) and any(shift_any), diverged=div(v, ("none", *LP)))),
        Claim("lp activations are no longer Gaussian-like (VGG)", src + ", Fig. 14",
              f"|excess kurtosis| of layer {cfg.act_layers[-1]} (pooled) of each lp net > BN's",
              fmt(kl, ".2f"), _count(gauss)),
        Claim("On the deep linear network, l1 normalisation beats BatchNorm", src + ", Fig. 13",
              "DLN mean training loss over the run (area under the curve): l1 < BN; partly if "
              "only the final loss (last 10% of steps) is lower",
              f"mean: l1 {d.loc['l1', 'mean train loss']:.4g} vs BN {d.loc['bn', 'mean train loss']:.4g}; "
              f"final: l1 {d.loc['l1', 'final train loss']:.4g} vs BN {d.loc['bn', 'final train loss']:.4g}",
              verdict(d.loc["l1", "mean train loss"] < d.loc["bn", "mean train loss"],
                      partly=d.loc["l1", "final train loss"] < d.loc["bn", "final train loss"],
                      diverged=div(d, ("l1", "bn")))),
    ]
