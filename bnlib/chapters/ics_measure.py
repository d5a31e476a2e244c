"""Chapter "Does BatchNorm reduce internal covariate shift?" (Santurkar et al. 2018, Sec. 2.2).

ICS in the optimisation sense of Definition 2.1 (``probes.ics``), recorded for every layer
during training of (a) the VGG on CIFAR-10 with plain SGD at two learning rates and (b) the
25-layer deep linear network (DLN) on synthetic regression with full-batch gradient descent,
each with and without BatchNorm (Fig. 3). Defaults are the quick profile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .. import data, device, models, runs, train
from ..claims import Claim, verdict
from ..config import ChapterParams, Interval, ListOf, OneOf, as_dict, param
from ..probes.ics import ics

TITLE = "Does BatchNorm reduce internal covariate shift?"
NORMS = ("none", "bn")
PAPER_CONVS = 13  # conv layers of the paper-profile VGG-16, the depth its layer numbers refer to
_LR = Interval(float, 0, 10, low_open=True)
DEPENDS = (runs.module_path(__name__), "probes/ics")  # code the cached runs depend on


@dataclass(frozen=True)
class Params(ChapterParams):
    dataset: str = param("cifar10", OneOf(("cifar10", "cifar10-mini")),
                         "VGG training data (paper: CIFAR-10)")
    depth: int = param(11, OneOf((11, 13, 16, 19)),
                       "VGG depth (paper: 'VGG-like'; quick 11, choice)")
    width: float = param(0.25, Interval(float, 0, 4, low_open=True),
                         "channel multiplier of the VGG (paper 1; quick 1/4, choice)")
    vgg_lrs: tuple = param((0.1, 0.01), ListOf(_LR), "VGG SGD learning rates (paper: 0.1, 0.01)")
    batch_size: int = param(128, Interval(int, 2, 50_000), "examples per SGD step (paper: 128)")
    vgg_steps: int = param(200, Interval(int, 1, 1_000_000),
                           "VGG SGD steps per run (paper: 15,000; quick: 200, choice)")
    vgg_ics_every: int = param(10, Interval(int, 1, 1_000_000),
                               "VGG steps between ICS measurements (choice)")
    vgg_layers: tuple = param((5, 10), ListOf(Interval(int, 1, PAPER_CONVS)),
                              "VGG layers shown, numbered as in a 13-conv VGG (paper: 5, 10)")
    eval_every: int = param(50, Interval(int, 1, 1_000_000),
                            "VGG steps between test evaluations (choice)")
    eval_size: int = param(2000, Interval(int, 1, 10_000), "test images per evaluation (choice)")
    train_size: int = param(50_000, Interval(int, 2, 50_000), "training images used (paper: all)")
    dln_depth: int = param(25, Interval(int, 2, 100), "DLN layers (paper: 25)")
    dln_width: int = param(10, Interval(int, 1, 1000), "DLN width = input dimension (paper: 10)")
    dln_points: int = param(1000, Interval(int, 2, 1_000_000), "DLN data points (paper: 1000)")
    dln_lrs: tuple = param((1e-6, 1e-7), ListOf(_LR), "DLN gradient-descent learning rates (paper)")
    dln_steps: int = param(2500, Interval(int, 1, 1_000_000),
                           "DLN full-batch steps (paper: 10,000; quick: 2,500, choice)")
    dln_ics_every: int = param(50, Interval(int, 1, 1_000_000),
                               "DLN steps between ICS measurements (choice)")
    dln_layers: tuple = param((9, 17), ListOf(Interval(int, 1, 100)),
                              "DLN layers shown (paper: 9, 17)")
    dln_norm_output: bool = param(False, OneOf((False, True)),
                                  "BN also after the DLN's last layer (choice)")
    dln_loss: str = param("mse_sum", OneOf(("mse_sum", "mse")),
                          "DLN loss summed or averaged over the points (choice; paper silent)")
    dln_dtype: str = param("float64", OneOf(("float64", "float32")),
                           "DLN precision (choice: float64 resolves tiny ICS)")
    num_seeds: int = param(1, Interval(int, 1, 20), "seeds per setting (choice)")
    device: str = param("auto", OneOf(("auto", "cpu", "cuda", "mps")), "compute device")


PROFILES = {
    "smoke": dict(dataset="cifar10-mini", width=0.125, batch_size=32, vgg_steps=6, vgg_ics_every=2,
                  eval_every=3, eval_size=200, train_size=2000, dln_steps=30, dln_ics_every=5),
    "quick": {},
    "paper": dict(depth=16, width=1.0, vgg_steps=15_000, vgg_ics_every=100, eval_every=250,
                  eval_size=10_000, dln_steps=10_000, dln_ics_every=20, num_seeds=3),
}
KEY_SETTINGS = ("dataset", "depth", "width", "vgg_lrs", "batch_size", "vgg_steps", "vgg_ics_every",
                "dln_lrs", "dln_steps", "dln_ics_every", "dln_loss", "num_seeds")


def n_convs(depth: int) -> int:
    """Conv layers of VGG-``depth`` (weight layers 1..n_convs are the convs)."""
    return sum(v != "M" for v in models.VGG_CONFIGS[depth])


def map_layer(layer: int, depth: int) -> int:
    """The paper's conv layer ``layer`` (of 13) at the same relative depth in VGG-``depth``."""
    return max(1, round(layer * n_convs(depth) / PAPER_CONVS))


def shown_layers(cfg: Params, net: str) -> list[int]:
    """The layers the figures show, in this run's numbering."""
    if net == "vgg":
        return [map_layer(i, cfg.depth) for i in cfg.vgg_layers]
    bad = [i for i in cfg.dln_layers if i > cfg.dln_depth]
    if bad:
        raise ValueError(f"Parameter 'dln_layers' of chapter 'ics_measure' must be layers of the "
                         f"{cfg.dln_depth}-layer DLN; got {bad}. Example: -p dln_layers '[9, 17]'")
    return list(cfg.dln_layers)


def seeds(cfg: Params) -> list[int]:
    return [cfg.seed + s for s in range(cfg.num_seeds)]


def _ics_probe(every: int) -> train.Probe:
    """Definition 2.1 for every layer, on the step's own batch, in training mode."""
    def fn(ctx: train.StepContext) -> dict:
        return ics(ctx.model, ctx.X, ctx.y, optimizer=ctx.optimizer, loss=ctx.loss,
                   bn_mode="batch")
    return train.Probe("ics", fn, every)


def run_vgg(cfg: Params, norm: str, lr: float, seed: int, d: data.Data, *, force: bool = False,
            progress: bool = True) -> train.History:
    """One VGG run with the ICS probe (cached by its full config)."""
    tcfg = train.TrainConfig(optimizer="sgd", lr=lr, batch_size=cfg.batch_size,
                             num_steps=cfg.vgg_steps, eval_every=cfg.eval_every,
                             eval_size=cfg.eval_size, seed=seed)
    key = {"model": dict(arch="vgg", depth=cfg.depth, width=cfg.width, norm=norm, seed=seed),
           "data": dict(name=cfg.dataset, train_size=cfg.train_size), "train": as_dict(tcfg),
           "probe": dict(ics_every=cfg.vgg_ics_every, bn_mode="batch")}

    def compute() -> dict:
        torch.manual_seed(seed)
        model = models.vgg(cfg.depth, width=cfg.width, norm=norm, seed=seed).to(d.device)
        return train.fit(model, d, tcfg, probes=[_ics_probe(cfg.vgg_ics_every)],
                         progress=progress, desc=f"VGG {norm} lr={lr:g}").to_arrays()

    return train.History.from_arrays(runs.cached("ics_measure", key, compute, depends=DEPENDS,
                                                     force=force))


def run_dln(cfg: Params, norm: str, lr: float, seed: int, *, force: bool = False,
            progress: bool = True) -> train.History:
    """One DLN run: full-batch GD on x ~ N(0, I), targets A x (data.linear_regression)."""
    dtype = getattr(torch, cfg.dln_dtype)
    tcfg = train.TrainConfig(optimizer="sgd", lr=lr, batch_size=None, num_steps=cfg.dln_steps,
                             loss=cfg.dln_loss, eval_every=cfg.dln_steps, seed=seed)
    key = {"model": dict(arch="deep_linear", depth=cfg.dln_depth, width=cfg.dln_width, norm=norm,
                         norm_output=cfg.dln_norm_output, seed=seed, dtype=cfg.dln_dtype),
           "data": dict(name="linear_regression", n=cfg.dln_points, seed=seed),
           "train": as_dict(tcfg), "probe": dict(ics_every=cfg.dln_ics_every, bn_mode="batch")}

    def compute() -> dict:
        dev = device(cfg.device)
        d = data.linear_regression(n=cfg.dln_points, dim=cfg.dln_width, seed=seed, device=dev,
                                   dtype=dtype)
        torch.manual_seed(seed)
        model = models.deep_linear(depth=cfg.dln_depth, width=cfg.dln_width, norm=norm,
                                   norm_output=cfg.dln_norm_output, seed=seed)
        model = model.to(device=dev, dtype=dtype)
        return train.fit(model, d, tcfg, probes=[_ics_probe(cfg.dln_ics_every)],
                         progress=progress, desc=f"DLN {norm} lr={lr:g}").to_arrays()

    return train.History.from_arrays(runs.cached("ics_measure", key, compute, depends=DEPENDS,
                                                     force=force))


def run(cfg: Params, *, force: bool = False,
        progress: bool = True) -> dict[tuple[str, str, float, int], train.History]:
    """Every run, keyed (net, norm, lr, seed) with net "vgg" or "dln"; CIFAR loaded once."""
    shown_layers(cfg, "dln")  # fail before training if the DLN layers do not exist
    d = data.load(cfg.dataset, device=device(cfg.device), train_size=cfg.train_size)
    out = {("vgg", n, lr, s): run_vgg(cfg, n, lr, s, d, force=force, progress=progress)
           for lr in cfg.vgg_lrs for n in NORMS for s in seeds(cfg)}
    out |= {("dln", n, lr, s): run_dln(cfg, n, lr, s, force=force, progress=progress)
            for lr in cfg.dln_lrs for n in NORMS for s in seeds(cfg)}
    return out


def lrs(cfg: Params, net: str) -> tuple:
    return cfg.vgg_lrs if net == "vgg" else cfg.dln_lrs


def _median(records: list[dict], key: str, layer: int) -> float:
    """Median over training of ``key`` at ``layer``, then median over seeds (finite values)."""
    vals = []
    for p in records:
        v = p["l2"] / p["g_norm"] if key == "rel_l2" else p[key]
        v = v[:, layer - 1]  # (records,)
        vals.append(np.median(v[np.isfinite(v)]) if np.isfinite(v).any() else np.nan)
    return float(np.median(vals)) if vals else float("nan")


def ics_table(cfg: Params, hist: dict, *, net: str,
              layers: list[int] | None = None) -> pd.DataFrame:
    """Per (norm, lr, layer): medians over training (then over seeds) of ||G - G'||, cos and
    ||G - G'|| / ||G||. A diverged run contributes the records it has."""
    rows = []
    for lr in lrs(cfg, net):
        for norm in NORMS:
            ps = [h.probes["ics"] for s in seeds(cfg)
                  if "ics" in (h := hist[(net, norm, lr, s)]).probes]
            n_layers = ps[0]["l2"].shape[1] if ps else 0
            for i in layers or range(1, n_layers + 1):
                rows.append({"norm": norm, "lr": lr, "layer": i,
                             **{k: _median(ps, k, i) for k in ("l2", "cos", "rel_l2")}})
    return pd.DataFrame(rows)


def shown_table(cfg: Params, hist: dict) -> pd.DataFrame:
    """``ics_table`` of the shown layers of both networks, one frame."""
    return pd.concat([ics_table(cfg, hist, net=net, layers=shown_layers(cfg, net)).assign(net=net)
                      for net in ("vgg", "dln")])[["net", "norm", "lr", "layer", "l2", "rel_l2",
                                                   "cos"]]


def _tail_loss(h: train.History, frac: float = 0.1) -> float:
    """Mean training loss over the last ``frac`` of the steps (inf if diverged)."""
    if h.diverged:
        return float("inf")
    return float(np.mean(h.train_loss[-max(1, int(len(h.train_loss) * frac)):]))


def summary(cfg: Params, hist: dict) -> pd.DataFrame:
    """One row per (net, norm, lr): final training loss, final test accuracy (VGG), seed means."""
    rows = []
    for net in ("vgg", "dln"):
        for lr in lrs(cfg, net):
            for norm in NORMS:
                hs = [hist[(net, norm, lr, s)] for s in seeds(cfg)]
                rows.append({"net": net, "norm": norm, "lr": lr,
                             "diverged runs": sum(h.diverged for h in hs),
                             "final train loss": np.mean([_tail_loss(h) for h in hs]),
                             "final test acc": np.mean([np.nan if h.diverged else h.test_acc[-1]
                                                        for h in hs])})
    return pd.DataFrame(rows)


COS_MARGIN = 0.05  # cosines within this of each other count as "similar" (choice)


def claims(cfg: Params, hist: dict) -> list[Claim]:
    """The claims of Sec. 2.2 and Fig. 3, each decided by a computed criterion."""
    src = "Santurkar et al. 2018, Sec. 2.2, Fig. 3"
    v = ics_table(cfg, hist, net="vgg", layers=shown_layers(cfg, "vgg")).set_index(
        ["norm", "lr", "layer"])
    checks = [(v.loc[("bn", lr, i), "cos"] <= v.loc[("none", lr, i), "cos"] + COS_MARGIN,
               v.loc[("bn", lr, i), "l2"] >= v.loc[("none", lr, i), "l2"])
              for lr in cfg.vgg_lrs for i in shown_layers(cfg, "vgg")]
    n_ok = sum(a and b for a, b in checks)
    s = summary(cfg, hist).set_index(["net", "norm", "lr"])
    loss, dv = s["final train loss"], s["diverged runs"]
    settings = [(net, lr) for net in ("vgg", "dln") for lr in lrs(cfg, net)]
    better = [loss[(net, "bn", lr)] < loss[(net, "none", lr)] for net, lr in settings]
    dl = ics_table(cfg, hist, net="dln", layers=shown_layers(cfg, "dln")).set_index(
        ["norm", "lr", "layer"])
    idx = [(lr, i) for lr in cfg.dln_lrs for i in shown_layers(cfg, "dln")]
    cos_std = np.array([dl.loc[("none", lr, i), "cos"] for lr, i in idx])
    cos_bn = np.array([dl.loc[("bn", lr, i), "cos"] for lr, i in idx])
    dln_dv = any(dv[("dln", n, lr)] for n in NORMS for lr in cfg.dln_lrs)
    fmt = ", ".join
    return [
        Claim("With BN, ICS is similar or larger (VGG)", src,
              f"at each shown layer and lr, BN's median cos(G, G') is at most the standard net's "
              f"+ {COS_MARGIN:g} and its median ||G - G'|| at least the standard net's "
              "(partly: in some of them)",
              f"{n_ok} of {len(checks)} (layer, lr) pairs",
              verdict(n_ok == len(checks), partly=n_ok > 0,
                      diverged=any(dv[("vgg", n, lr)] for n in NORMS for lr in cfg.vgg_lrs))),
        Claim("BN networks still train better", src,
              "lower final training loss with BN, in every network and lr (partly: in some)",
              f"{sum(better)} of {len(better)} settings",
              verdict(all(better), partly=any(better))),
        Claim("The standard DLN has almost no ICS", src,
              "median cos(G, G') at least 0.99 at each shown layer and lr (partly: at least 0.9)",
              f"median cos {fmt(f'{c:.3f}' for c in cos_std)}",
              verdict(bool(np.all(cos_std >= 0.99)), partly=bool(np.all(cos_std >= 0.9)),
                      diverged=dln_dv)),
        Claim("In the BN DLN, G and G' are almost uncorrelated", src,
              "median |cos(G, G')| at most 0.3 at each shown layer and lr (partly: BN's median "
              "cos at least 0.1 below the standard net's in at least half of them)",
              f"median cos {fmt(f'{c:.3f}' for c in cos_bn)}",
              verdict(bool(np.all(np.abs(cos_bn) <= 0.3)),
                      partly=bool(np.mean(cos_bn <= cos_std - 0.1) >= 0.5), diverged=dln_dv)),
    ]


def key_numbers(cfg: Params, hist: dict) -> dict[str, float | int]:
    """The numbers the chapter's prose quotes (all glued), at the first lr of each network."""
    out: dict[str, float | int] = {"vgg_convs": n_convs(cfg.depth), "vgg_lr": cfg.vgg_lrs[0],
                                   "dln_lr": cfg.dln_lrs[0], "dln_depth": cfg.dln_depth,
                                   "dln_width": cfg.dln_width, "dln_points": cfg.dln_points}
    for net in ("vgg", "dln"):
        lr, (a, b) = lrs(cfg, net)[0], shown_layers(cfg, net)[:2]
        t = ics_table(cfg, hist, net=net).set_index(["norm", "lr", "layer"])
        out |= {f"{net}_layer_a": a, f"{net}_layer_b": b}
        for norm in NORMS:
            for tag, i in (("a", a), ("b", b)):
                out[f"{net}_cos_{norm}_{tag}"] = float(t.loc[(norm, lr, i), "cos"])
                out[f"{net}_rel_{norm}_{tag}"] = float(t.loc[(norm, lr, i), "rel_l2"])
        full = t.reset_index()
        full = full[full["layer"] > 1]  # layer 1 has nothing before it: G' = G
        wide = full.pivot_table(index=["lr", "layer"], columns="norm", values="cos")
        out[f"{net}_bn_lower_cos"] = int((wide["bn"] < wide["none"]).sum())
        out[f"{net}_pairs"] = len(wide)
    s = summary(cfg, hist).set_index(["net", "norm", "lr"])["final train loss"]
    for net in ("vgg", "dln"):
        for norm in NORMS:
            out[f"{net}_loss_{norm}"] = float(s[(net, norm, lrs(cfg, net)[0])])
    return out
