"""Chapter "Is BatchNorm the only way to smooth the landscape?" (Santurkar et al. 2018, Sec. 3.3).

The VGG and the deep linear network (DLN) with no normalisation, BatchNorm, lp normalisation
(p = 1, 2, inf; ``norms.LpNorm``), LayerNorm and GroupNorm; none and BN are the book's shared
trajectories (``profiles``). Probed from the store: the smoothness chapter's line search, and at
the end the activations' shape and the test accuracy with batch statistics; the moments over
training are the always-on records. Everything the paper leaves open about lp is a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from .. import profiles
from ..claims import Claim, Criterion, verdict
from ..config import Interval, ListOf, OneOf, param
from ..data import DataSpec
from ..models import ModelSpec
from ..probes import activations, evaluation, kurtosis, landscape
from ..runs import Runs, Store, Trajectory
from ..train import TrainConfig

TITLE = "Is BatchNorm the only way to smooth the landscape? lp normalisation"
NORMS = ("none", "bn", "l1", "l2", "linf", "ln", "gn")  # plotting order
LP = ("l1", "l2", "linf")
LANDSCAPE = ("loss range", "grad-diff max", "beta_eff")  # the three panels of the paper's Fig. 4
SRC = "Santurkar et al. 2018, Sec. 3.3"
_POS = dict(low_open=True)
_STEPS = Interval(int, 1, 1_000_000)


@dataclass(frozen=True)
class Params(profiles.VGGParams, profiles.DLNParams):
    lp_norm_of: str = param("raw", OneOf(("raw", "centered")),
                            "lp norm of the raw or the centred input (paper: 'before shifting the mean')")
    lp_center: bool = param(True, OneOf((True, False)), "lp layers subtract the batch mean (paper: yes)")
    lp_eps: float = param(1e-5, Interval(float, 0, 1), "added to mean(abs(x)^p) (choice: BN's 1e-5)")
    lp_affine: bool = param(True, OneOf((True, False)), "learnable gamma, beta after lp layers (choice: as BN)")
    lp_momentum: float = param(0.1, Interval(float, 0, 1, **_POS),
                               "running-average momentum of the eval statistics (choice: BN's 0.1)")
    gn_groups: int = param(8, Interval(int, 1, 512), "GroupNorm groups, reduced to divide C (choice)")
    probe_every: int = param(25, _STEPS, "VGG steps between landscape probes (choice)")
    multipliers: tuple = param((0.5, 1.0, 2.0, 4.0), ListOf(Interval(float, 0, 1e3, **_POS)),
                               "VGG steps along the gradient, in units of lr (paper: [1/2, 4])")
    act_layers: tuple = param((3, 7), ListOf(Interval(int, 1, 20)), "VGG layers whose activations are studied (choice)")
    probe_size: int = param(256, Interval(int, 2, 10_000), "fixed images for the activation histograms (choice)")
    hist_samples: int = param(4096, Interval(int, 16, 1_000_000), "activations kept per histogram (choice)")
    dln_loss: str = param("mse_sum", OneOf(("mse_sum", "mse")), "DLN loss summed or averaged over points (choice)")
    dln_probe_every: int = param(100, _STEPS, "DLN steps between landscape probes (choice)")
    dln_multipliers: tuple = param((0.01, 0.1, 1.0, 10.0, 30.0), ListOf(Interval(float, 0, 1e4, **_POS)),
                                   "DLN steps along the gradient, in units of dln_lr (paper: [1/100, 30])")
    margin: float = param(0.05, Interval(float, 0, 1), "'comparable to BN': accuracy within this (choice)")
    similar_factor: float = param(3.0, Interval(float, 1, 1e3), "'similar smoothing': within this factor of BN")


PROFILES = {
    "smoke": {**profiles.VGG["smoke"], **profiles.DLN["smoke"], "probe_every": 2, "multipliers": (1.0, 4.0),
              "probe_size": 16, "hist_samples": 256, "dln_probe_every": 10, "dln_multipliers": (1.0, 30.0)},
    "quick": {},
    "paper": {**profiles.VGG["paper"], **profiles.DLN["paper"], "probe_every": 250, "act_layers": (3, 11),
              "dln_probe_every": 200},
}
KEY_SETTINGS = ("dataset", "depth", "width", "lr", "num_steps", "lp_norm_of", "lp_center", "lp_eps", "lp_affine",
                "lp_momentum", "dln_lr", "dln_loss", "dln_steps", "num_seeds")


def variant(cfg: Params, norm: str) -> dict:
    """The ModelSpec fields of normaliser ``norm``: the lp options for l1, l2, linf only, the
    group count for gn only, nothing else (so none and BN are the other chapters' nets)."""
    if norm in LP:
        return {"norm": norm, "lp": dict(norm_of=cfg.lp_norm_of, center=cfg.lp_center, eps=cfg.lp_eps,
                                         affine=cfg.lp_affine, momentum=cfg.lp_momentum)}
    return {"norm": norm, "groups": cfg.gn_groups} if norm == "gn" else {"norm": norm}


def sweep(store: Store, cfg: Params, arch: str, data_spec: DataSpec, model: ModelSpec, train: TrainConfig) -> Runs:
    """Every normaliser of NORMS (``variant``) on ``arch``'s specs, every seed: ``{(norm, seed): ...}``,
    with checkpoints at ``probe_steps``. The DLN's loss is ``cfg.dln_loss`` (default: the shared one)."""
    train = train if arch == "vgg" else replace(train, loss=cfg.dln_loss)
    return Runs(store, {(n, s): Trajectory(data_spec, model.with_(**variant(cfg, n)), train, s)
                        for n in NORMS for s in profiles.seeds(cfg)}, checkpoints=tuple(probe_steps(cfg, arch)))


def probe_steps(cfg: Params, arch: str) -> list[int]:
    """The training steps probed along the gradient: 0, probe_every, ... (before each update); on
    the store's default checkpoints where the profile allows (smoke, paper), else a few steps away."""
    vgg = arch == "vgg"
    return list(range(0, cfg.num_steps if vgg else cfg.dln_steps, cfg.probe_every if vgg else cfg.dln_probe_every))


def line_search(cfg: Params, arch: str, norm: str) -> landscape.LineSearch:
    """The smoothness chapter's probe with this chapter's multipliers (no vmap for LN/GN on the
    VGG: torch's group_norm has no vmap rule for 4-d inputs)."""
    vgg = arch == "vgg"
    return landscape.LineSearch(cfg.multipliers if vgg else cfg.dln_multipliers,
                                vectorize=False if vgg and norm in ("ln", "gn") else None)


def at_end(cfg: Params) -> dict:
    """The probes of a trained VGG: its activations' shape, its test accuracy with batch statistics."""
    return {"shape": kurtosis.ActivationShape(cfg.act_layers, num_samples=cfg.hist_samples, size=cfg.probe_size),
            "batch_acc": evaluation.Evaluation(bn_mode="batch", size=cfg.eval_size)}


def measure(cfg: Params, nets: dict[str, Runs]) -> dict[tuple, dict]:
    """Every probe from the store: ``res[arch, norm, seed]`` holds the History (``"hist"``), the
    line search over training (``"line"``) and, for a VGG that did not diverge, ``at_end``'s results."""
    res = {}
    for arch, runs_ in nets.items():
        for (norm, seed), traj in runs_.items():
            h, probe = runs_.hist[norm, seed], runs_.store.probe
            steps = [s for s in probe_steps(cfg, arch) if s <= h.steps_done]
            r = res[arch, norm, seed] = {"hist": h, "line": probe(traj, line_search(cfg, arch, norm), steps)}
            if arch == "vgg" and not h.diverged:
                end = {k: probe(traj, p, [h.steps_done]) for k, p in at_end(cfg).items()}
                r.update({k: {q: v[0] for q, v in e.items()} for k, e in end.items()})
    return res


def _row(cfg: Params, arch: str, r: dict) -> dict:
    """One run's numbers: performance, landscape (mean over probes), activation shift and shape."""
    h, ls = r["hist"], r["line"]
    tail = h.train_loss[-max(1, int(len(h.train_loss) * 0.1)):]
    row = {"final train loss": np.inf if h.diverged else float(np.mean(tail)), "diverged": h.diverged,
           "mean train loss": np.inf if h.diverged else float(np.mean(h.train_loss))}
    row.update({k: float(np.mean(f(ls))) if len(ls["step"]) else np.nan
                for k, (_, f) in zip(LANDSCAPE, landscape.QUANTITIES.values())})
    if arch == "dln":
        return row
    row["test acc"] = np.nan if h.diverged else float(h.test_acc[-1])
    row["test acc (batch stats)"] = float(r["batch_acc"]["test_acc"]) if "batch_acc" in r else np.nan
    rec = h.records
    shifts = [activations.distribution_shift(rec[f"post{i}.mean"], rec[f"post{i}.var"])
              for i in cfg.act_layers] if len(rec.get("step", ())) > 1 else []
    for k in ("mean", "var"):
        row[f"{k} shift"] = float(np.mean([s[f"{k}_shift"] for s in shifts])) if shifts else np.nan
    shape = r.get("shape", {})
    for i in cfg.act_layers:
        row[f"kurtosis L{i}"] = float(shape.get(f"layer{i}/kurtosis", np.nan))
        row[f"channel kurtosis L{i}"] = float(np.median(shape[f"layer{i}/kurtosis_channel"])) if shape else np.nan
    return row


def summary(cfg: Params, res: dict, arch: str) -> pd.DataFrame:
    """One row per normaliser (means over seeds): final loss, test accuracy, the landscape
    numbers (means over the probed steps), distribution shift and excess kurtosis."""
    rows = {}
    for norm in NORMS:
        per_seed = [_row(cfg, arch, res[arch, norm, s]) for s in profiles.seeds(cfg)]
        rows[norm] = {k: (any(r[k] for r in per_seed) if k == "diverged" else float(np.mean([r[k] for r in per_seed])))
                      for k in per_seed[0]}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("norm")


def _fmt(values: dict, f: str) -> str:
    return ", ".join(f"{n} {values[n]:{f}}" for n in ("none", "bn", *LP))


def _comparable(acc: dict, margin: float, diverged: bool) -> tuple[str, str]:
    close = [acc[n] >= acc["bn"] - margin for n in LP]
    return _fmt(acc, ".1%"), verdict(all(close), partly=any(close), diverged=diverged)


def _smooth(q: dict, similar_factor: float, diverged: bool) -> tuple[str, str]:
    ok = [q[n][k] < q["none"][k] and q[n][k] <= similar_factor * q["bn"][k] for n in LP for k in LANDSCAPE]
    return (f"{sum(ok)} of {len(ok)} checks pass; beta_eff: " + _fmt({n: q[n]["beta_eff"] for n in q}, ".3g"),
            verdict(all(ok), partly=any(ok), diverged=diverged))


def _shift(mean_shift: dict, var_shift: dict, loss: dict, diverged: bool) -> tuple[str, str]:
    more = [mean_shift[n] > mean_shift["none"] and var_shift[n] > var_shift["none"] for n in LP]
    some = [mean_shift[n] > mean_shift["none"] or var_shift[n] > var_shift["none"] for n in LP]
    better = [loss[n] < loss["none"] for n in LP]
    return (f"mean shift: {_fmt(mean_shift, '.3f')}; var shift: {_fmt(var_shift, '.3f')}; loss: {_fmt(loss, '.3f')}",
            verdict(all(m and b for m, b in zip(more, better)), partly=all(better) and any(some), diverged=diverged))


def _non_gaussian(kurt: dict) -> tuple[str, str]:
    heavier = [abs(kurt[n]) > abs(kurt["bn"]) for n in LP]
    return _fmt(kurt, ".2f"), verdict(all(heavier), partly=any(heavier))


def _l1_beats_bn(mean: dict, final: dict, diverged: bool) -> tuple[str, str]:
    return (f"mean: l1 {mean['l1']:.4g} vs BN {mean['bn']:.4g}; final: l1 {final['l1']:.4g} vs BN {final['bn']:.4g}",
            verdict(mean["l1"] < mean["bn"], partly=final["l1"] < final["bn"], diverged=diverged))


_SMOOTH = ("for each lp net and each of loss range, largest gradient change and effective beta-smoothness (means "
           "over the probes): < the standard net's and <= {similar_factor:g} x BN's; partly if some of these "
           "checks pass")
CRITERIA = {
    "comparable": Criterion("All lp schemes reach performance comparable to BatchNorm (VGG)", SRC + ", Fig. 13",
                            "final test accuracy of each of l1, l2, linf >= BN's - {margin:.0%}", _comparable),
    **{f"smooth_{a}": Criterion(f"lp schemes smooth the landscape like BatchNorm ({a.upper()})",
                                SRC + ", Figs. 11, 12", _SMOOTH, _smooth) for a in ("vgg", "dln")},
    "shift": Criterion("lp activations shift more than the standard network's, yet lp nets train better", SRC,
                       "for each lp net: mean shift and variance shift (step to step, layers {layers}) > the "
                       "standard net's, and final training loss < the standard net's; partly if all train better "
                       "but only some shifts are larger", _shift),
    "non_gaussian": Criterion("lp activations are no longer Gaussian-like (VGG)", SRC + ", Fig. 14",
                              "|excess kurtosis| of layer {layer} (pooled) of each lp net > BN's", _non_gaussian),
    "l1_dln": Criterion("On the deep linear network, l1 normalisation beats BatchNorm", SRC + ", Fig. 13",
                        "DLN mean training loss over the run (area under the curve): l1 < BN; partly if only the "
                        "final loss (last 10% of steps) is lower", _l1_beats_bn),
}


def claims(cfg: Params, res: dict) -> list[Claim]:
    """The chapter's claims (Santurkar et al. 2018, Sec. 3.3), each decided by its criterion."""
    v, d = summary(cfg, res, "vgg"), summary(cfg, res, "dln")
    div = lambda df, norms=NORMS: bool(df.loc[list(norms), "diverged"].any())  # noqa: E731
    col = lambda df, c: df[c].to_dict()  # noqa: E731
    q = {a: df[list(LANDSCAPE)].to_dict(orient="index") for a, df in (("vgg", v), ("dln", d))}
    return [CRITERIA["comparable"](acc=col(v, "test acc"), margin=cfg.margin, diverged=div(v, ("bn", *LP))),
            *[CRITERIA[f"smooth_{a}"](q=q[a], similar_factor=cfg.similar_factor, diverged=div(df))
              for a, df in (("vgg", v), ("dln", d))],
            CRITERIA["shift"](mean_shift=col(v, "mean shift"), var_shift=col(v, "var shift"),
                              loss=col(v, "final train loss"), diverged=div(v, ("none", *LP)),
                              layers=", ".join(map(str, cfg.act_layers))),
            CRITERIA["non_gaussian"](kurt=col(v, f"kurtosis L{cfg.act_layers[-1]}"), layer=cfg.act_layers[-1]),
            CRITERIA["l1_dln"](mean=col(d, "mean train loss"), final=col(d, "final train loss"),
                               diverged=div(d, ("l1", "bn")))]
