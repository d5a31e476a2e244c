"""Chapter "Does BatchNorm reduce internal covariate shift?" (Santurkar et al. 2018, Sec. 2.2).

ICS in the optimisation sense of Definition 2.1 (``probes.ics.ICS``), measured for every
layer on checkpoints of (a) the shared VGG trajectories on CIFAR-10 (plain SGD at the paper's
two learning rates) and (b) the shared 25-layer deep linear network (DLN, full-batch gradient
descent), each with and without BatchNorm (Fig. 3). Defaults are the quick profile.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from .. import models, profiles
from ..claims import Claim, Criterion, verdict
from ..config import Interval, ListOf, OneOf, param
from ..data import DataSpec
from ..models import ModelSpec
from ..train import History, TrainConfig

TITLE = "Does BatchNorm reduce internal covariate shift?"
NORMS, NETS = ("none", "bn"), ("vgg", "dln")
PAPER_CONVS, PAPER_DLN = 13, 25  # the paper's layer numbers count 13 convs (VGG-16) and 25 DLN layers
_LR, _STEPS = Interval(float, 0, 10, low_open=True), Interval(int, 1, 1_000_000)
SOURCE = "Santurkar et al. 2018, Sec. 2.2, Fig. 3"


@dataclass(frozen=True)
class Params(profiles.VGGParams, profiles.DLNParams):
    lr_small: float = param(0.01, _LR, "the VGG's second, smaller learning rate (paper: 0.01)")
    ics_every: int = param(10, _STEPS, "VGG steps between ICS measurements (choice)")
    vgg_layers: tuple = param((5, 10), ListOf(Interval(int, 1, PAPER_CONVS)),
                              "VGG layers shown, numbered as in a 13-conv VGG (paper: 5, 10)")
    dln_lr_small: float = param(1e-7, _LR, "the DLN's second, smaller learning rate (paper: 1e-7)")
    dln_ics_every: int = param(50, _STEPS, "DLN steps between ICS measurements (choice)")
    dln_layers: tuple = param((9, 17), ListOf(Interval(int, 1, PAPER_DLN)),
                              "DLN layers shown, numbered as in a 25-layer DLN (paper: 9, 17)")
    dln_norm_output: bool = param(False, OneOf((False, True)), "BN also after the DLN's last layer (choice)")
    dln_loss: str = param("mse_sum", OneOf(("mse_sum", "mse")),
                          "DLN loss summed or averaged over the points (choice; paper silent)")


PROFILES = {"smoke": {**profiles.VGG["smoke"], **profiles.DLN["smoke"], "ics_every": 2, "dln_ics_every": 5},
            "quick": {},
            "paper": {**profiles.VGG["paper"], **profiles.DLN["paper"], "ics_every": 100, "dln_ics_every": 20}}
KEY_SETTINGS = ("dataset", "depth", "width", "lr", "lr_small", "batch_size", "num_steps", "ics_every",
                "dln_depth", "dln_lr", "dln_lr_small", "dln_steps", "dln_ics_every", "dln_loss", "num_seeds")


def dln_specs(cfg: Params) -> tuple[DataSpec, ModelSpec, TrainConfig]:
    """The shared DLN (``profiles.dln_specs``) with this chapter's two options; at their
    defaults the specs are exactly the other chapters' (norm_output None = the builder's False)."""
    linear, dln, gd = profiles.dln_specs(cfg, norm_output=cfg.dln_norm_output)
    return linear, dln, replace(gd, loss=cfg.dln_loss)


def ics_steps(cfg: Params) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The measured steps of the VGG and the DLN: every ``ics_every`` (``dln_ics_every``) from 0."""
    return tuple(range(0, cfg.num_steps, cfg.ics_every)), tuple(range(0, cfg.dln_steps, cfg.dln_ics_every))


def reached(steps: tuple[int, ...]) -> Callable[[History], list[int]]:
    """Of ``steps``, those a run reached before its end (a diverged run stops early)."""
    return lambda h: [s for s in steps if s < h.steps_done]


def lrs(cfg: Params, net: str) -> tuple[float, float]:
    return (cfg.lr, cfg.lr_small) if net == "vgg" else (cfg.dln_lr, cfg.dln_lr_small)


def n_convs(depth: int) -> int:
    """Conv layers of VGG-``depth`` (weight layers 1..n_convs are the convs)."""
    return sum(v != "M" for v in models.VGG_CONFIGS[depth])


def shown_layers(cfg: Params, net: str) -> list[int]:
    """The paper's layers at the same relative depth of this run's network (VGG-16's 13 convs,
    the 25-layer DLN), in this run's numbering."""
    n, paper, layers = ((n_convs(cfg.depth), PAPER_CONVS, cfg.vgg_layers) if net == "vgg"
                        else (cfg.dln_depth, PAPER_DLN, cfg.dln_layers))
    return [max(1, round(i * n / paper)) for i in layers]


def _median(ps: list[dict], key: str, layer: int) -> float:
    """Median over training of ``key`` at ``layer`` (finite values), then median over seeds."""
    vals = []
    for p in ps:
        v = (p["l2"] / p["g_norm"] if key == "rel_l2" else p[key])[:, layer - 1]  # (measurements,)
        vals.append(np.median(v[np.isfinite(v)]) if np.isfinite(v).any() else np.nan)
    return float(np.median(vals)) if vals else float("nan")


def ics_table(cfg: Params, ics: dict, *, net: str, layers: list[int] | None = None) -> pd.DataFrame:
    """Per (norm, lr, layer): medians over training (then seeds) of ||G - G'||, cos and
    ||G - G'|| / ||G||, from ``ics[net][(norm, lr, seed)]``; a diverged run gives what it reached."""
    rows = []
    for lr in lrs(cfg, net):
        for norm in NORMS:
            ps = [p for s in profiles.seeds(cfg) if "l2" in (p := ics[net][(norm, lr, s)])]
            for i in layers or range(1, (ps[0]["l2"].shape[1] if ps else 0) + 1):
                rows.append({"norm": norm, "lr": lr, "layer": i,
                             **{k: _median(ps, k, i) for k in ("l2", "cos", "rel_l2")}})
    return pd.DataFrame(rows)


def shown_table(cfg: Params, ics: dict) -> pd.DataFrame:
    """``ics_table`` of the shown layers of both networks, one frame."""
    return pd.concat([ics_table(cfg, ics, net=net, layers=shown_layers(cfg, net)).assign(net=net)
                      for net in NETS])[["net", "norm", "lr", "layer", "l2", "rel_l2", "cos"]]


def tail_loss(h: History, frac: float = 0.1) -> float:
    """Mean training loss over the last ``frac`` of the steps (inf if diverged)."""
    return float("inf") if h.diverged else float(np.mean(h.train_loss[-max(1, int(len(h.train_loss) * frac)):]))


def summary(cfg: Params, hist: dict) -> pd.DataFrame:
    """One row per (net, norm, lr): diverged runs, final training loss, final test accuracy (VGG)."""
    rows = []
    for net in NETS:
        for lr in lrs(cfg, net):
            for norm in NORMS:
                hs = [hist[net][(norm, lr, s)] for s in profiles.seeds(cfg)]
                rows.append({"net": net, "norm": norm, "lr": lr, "diverged runs": sum(h.diverged for h in hs),
                             "final train loss": np.mean([tail_loss(h) for h in hs]),
                             "final test acc": np.mean([np.nan if h.diverged else h.test_acc[-1] for h in hs])})
    return pd.DataFrame(rows)


COS_MARGIN = 0.05  # cosines within this of each other count as "similar" (choice)
NO_ICS, NEARLY_NO_ICS, UNCORRELATED, LOWER_BY = 0.99, 0.9, 0.3, 0.1  # cosine thresholds (choice)


def _fmt(cos) -> str:
    return "median cos " + ", ".join(f"{c:.3f}" for c in cos)


def _ics_larger(cos_bn: list[float], cos_none: list[float], l2_bn: list[float], l2_none: list[float],
                margin: float, diverged: bool) -> tuple[str, str]:
    ok = sum(cb <= cn + margin and lb >= ln for cb, cn, lb, ln in zip(cos_bn, cos_none, l2_bn, l2_none))
    return f"{ok} of {len(cos_bn)} (layer, lr) pairs", verdict(ok == len(cos_bn), partly=ok > 0, diverged=diverged)


def _trains_better(losses: list[tuple[float, float]]) -> tuple[str, str]:
    """``losses``: (final loss BN, final loss standard) per (network, lr)."""
    better = [bn < none for bn, none in losses]
    return f"{sum(better)} of {len(better)} settings", verdict(all(better), partly=any(better))


def _no_ics(cos_none: list[float], diverged: bool) -> tuple[str, str]:
    c = np.asarray(cos_none)
    return _fmt(c), verdict(bool(np.all(c >= NO_ICS)), partly=bool(np.all(c >= NEARLY_NO_ICS)), diverged=diverged)


def _uncorrelated(cos_bn: list[float], cos_none: list[float], diverged: bool) -> tuple[str, str]:
    b, n = np.asarray(cos_bn), np.asarray(cos_none)
    return _fmt(b), verdict(bool(np.all(np.abs(b) <= UNCORRELATED)), partly=bool(np.mean(b <= n - LOWER_BY) >= 0.5),
                            diverged=diverged)


CRITERIA = {
    "ics_larger": Criterion("With BN, ICS is similar or larger (VGG)", SOURCE,
                            "at each shown layer and lr, BN's median cos(G, G') is at most the standard net's "
                            "+ {margin:g} and its median ||G - G'|| at least the standard net's "
                            "(partly: in some of them)", _ics_larger),
    "trains_better": Criterion("BN networks still train better", SOURCE,
                               "lower final training loss with BN, in every network and lr (partly: in some)",
                               _trains_better),
    "no_ics": Criterion("The standard DLN has almost no ICS", SOURCE,
                        f"median cos(G, G') at least {NO_ICS:g} at each shown layer and lr "
                        f"(partly: at least {NEARLY_NO_ICS:g})", _no_ics),
    "uncorrelated": Criterion("In the BN DLN, G and G' are almost uncorrelated", SOURCE,
                              f"median |cos(G, G')| at most {UNCORRELATED:g} at each shown layer and lr (partly: "
                              f"BN's median cos at least {LOWER_BY:g} below the standard net's in at least half "
                              "of them)", _uncorrelated),
}


def shown(cfg: Params, ics: dict, net: str, norm: str, key: str) -> list[float]:
    """Median ``key`` (``ics_table``) of ``norm`` at every shown layer of ``net``, lr by lr."""
    t = ics_table(cfg, ics, net=net, layers=shown_layers(cfg, net))
    return t[t["norm"] == norm][key].tolist()


def claims(cfg: Params, hist: dict, ics: dict) -> list[Claim]:
    """The claims of Sec. 2.2 and Fig. 3, each decided by its criterion on the runs' numbers."""
    s = summary(cfg, hist).set_index(["net", "norm", "lr"])
    loss, dv = s["final train loss"], s["diverged runs"]
    diverged = {net: bool(any(dv[(net, n, lr)] for n in NORMS for lr in lrs(cfg, net))) for net in NETS}
    vgg = {f"{k}_{n}": shown(cfg, ics, "vgg", n, k) for k in ("cos", "l2") for n in NORMS}
    dln = {f"cos_{n}": shown(cfg, ics, "dln", n, "cos") for n in NORMS}
    return [CRITERIA["ics_larger"](**vgg, margin=COS_MARGIN, diverged=diverged["vgg"]),
            CRITERIA["trains_better"](losses=[(loss[(net, "bn", lr)], loss[(net, "none", lr)])
                                              for net in NETS for lr in lrs(cfg, net)]),
            CRITERIA["no_ics"](cos_none=dln["cos_none"], diverged=diverged["dln"]),
            CRITERIA["uncorrelated"](**dln, diverged=diverged["dln"])]


def key_numbers(cfg: Params, hist: dict, ics: dict) -> dict[str, float | int]:
    """The numbers the chapter's prose quotes (all glued), at the first lr of each network."""
    out: dict[str, float | int] = {"vgg_convs": n_convs(cfg.depth), "vgg_lr": cfg.lr, "dln_lr": cfg.dln_lr,
                                   "dln_depth": cfg.dln_depth, "dln_width": cfg.dln_width,
                                   "dln_points": cfg.dln_points}
    loss = summary(cfg, hist).set_index(["net", "norm", "lr"])["final train loss"]
    for net in NETS:
        lr, (a, b) = lrs(cfg, net)[0], shown_layers(cfg, net)[:2]
        t = ics_table(cfg, ics, net=net).set_index(["norm", "lr", "layer"])
        out |= {f"{net}_layer_a": a, f"{net}_layer_b": b}
        for norm in NORMS:
            for tag, i in (("a", a), ("b", b)):
                out[f"{net}_cos_{norm}_{tag}"] = float(t.loc[(norm, lr, i), "cos"])
                out[f"{net}_rel_{norm}_{tag}"] = float(t.loc[(norm, lr, i), "rel_l2"])
            out[f"{net}_loss_{norm}"] = float(loss[(net, norm, lr)])
        full = t.reset_index()
        wide = full[full["layer"] > 1].pivot_table(index=["lr", "layer"], columns="norm", values="cos")
        out[f"{net}_bn_lower_cos"] = int((wide["bn"] < wide["none"]).sum())  # layer 1: G' = G by definition
        out[f"{net}_pairs"] = len(wide)
    return out
