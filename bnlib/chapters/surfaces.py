"""Chapter "Filter-normalised loss surfaces" (the Oxford report, Sec. 3; Li et al. 2018).

LeNet and VGG-16, each with and without BN, trained with Adam (lr 0.01, batch 128) on CIFAR-10
as in the Oxford report (store trajectories only this chapter uses: their settings are its parameters).
Probed from the store: during training, the smoothness chapter's line search along the gradient;
at the end, ``around`` (``probes.surface``). Defaults are the quick profile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import profiles
from ..claims import CHANCE_LOSS, Claim, Criterion, left_chance, less, verdict
from ..config import ChapterParams, Interval, ListOf, OneOf, param
from ..data import DataSpec
from ..models import ModelSpec
from ..probes import surface
from ..probes.directions import NORMS as DIRECTION_NORMS
from ..runs import Runs, Store, Trajectory
from ..train import TrainConfig

TITLE = "Filter-normalised loss surfaces"
ARCHS = ("lenet", "vgg16")
ARCH_NAMES = {"lenet": "LeNet", "vgg16": "VGG-16"}
NORMS = ("none", "bn")
SEED_SRC = "Oxford report (loss-landscape mini-project)"
_POS = dict(low_open=True)


@dataclass(frozen=True)
class Params(ChapterParams):
    dataset: str = param("cifar10", OneOf(("cifar10", "cifar10-mini")), "data (seed: CIFAR-10)")
    train_size: int = param(50_000, Interval(int, 1, 50_000), "training images (seed: all)")
    lr: float = param(0.01, Interval(float, 0, 10, **_POS), "Adam learning rate (seed: 0.01)")
    batch_size: int = param(128, Interval(int, 1, 50_000), "examples per Adam step (seed: 128)")
    archs: tuple = param(("lenet",), ListOf(OneOf(ARCHS)), "networks trained (seed: LeNet and VGG-16; quick: "
                         "LeNet only, since VGG-16 without BN does not train under Adam in a CPU budget)")
    num_seeds: int = param(1, Interval(int, 1, 20), "seeds per network: seed, seed + 1, ... (seed: 1; choice)")
    lenet_steps: int = param(7800, Interval(int, 1, 10**6), "LeNet Adam steps (seed: 20 epochs, 7,800; quick: "
                             "6 epochs, 2,340, to fit the book's 25-minute CPU budget)")
    vgg_steps: int = param(7800, Interval(int, 1, 10**6), "VGG-16 Adam steps (seed: 20 epochs, 7,800)")
    vgg_width: float = param(0.125, Interval(float, 0, 4, **_POS), "VGG-16 channel multiplier (seed: 1; quick: 1/8)")
    eval_size: int = param(2000, Interval(int, 1, 10_000), "test images per evaluation (choice)")
    probe_every: int = param(780, Interval(int, 1, 10**6),
                             "steps between landscape probes (seed: every step; quick: 780, every other epoch: "
                             "the line along Adam's update is paid for by halving the probes along the gradient)")
    multipliers: tuple = param((0.5, 1.0, 2.0, 4.0), ListOf(Interval(float, 0, 100, **_POS)),
                               "step multipliers s of theta - s lr g and of theta + s u, u Adam's update "
                               "(Santurkar: [1/2, 4])")
    surface_size: int = param(500, Interval(int, 1, 50_000),
                              "training images a surface is evaluated on (Li et al.: all; choice)")
    lenet_grid: int = param(11, Interval(int, 3, 401), "2D grid points per axis, LeNet (Li: 51; quick: 11, CPU "
                            "budget: 15 before, cut with the line probes to pay for the Adam-update line)")
    vgg_grid: int = param(11, Interval(int, 3, 401), "2D grid points per axis, VGG-16 (Li: 51)")
    line_points: int = param(25, Interval(int, 3, 1001), "points of each 1D curve (choice)")
    span: float = param(1.0, Interval(float, 0, 100, **_POS), "grid half-width in direction units (Li et al.: 1)")
    direction_norm: str = param("filter", OneOf(DIRECTION_NORMS), "direction normalisation (Li)")
    ignore_bias_bn: bool = param(True, OneOf((True, False)),
                                 "zero direction for biases and BN parameters (Li et al.)")
    bn_mode: str = param("running", OneOf(("running", "batch")), "BN statistics on the surfaces (Li et al.: running)")
    interp_bn_mode: str = param("batch", OneOf(("running", "batch")),
                                "BN statistics along the init-to-final line (choice)")
    radius: float = param(0.25, Interval(float, 0, 100, **_POS), "sharpness radius in direction units (choice)")
    sharp_dirs: int = param(8, Interval(int, 1, 1000), "random directions for sharpness (choice)")
    k: float = param(2.0, Interval(float, 0, 100), "a gap that does not hold on every seed must exceed k seed "
                     "spreads (sample std of the per-seed gaps): about a 95% two-sided margin")
    chance_frac: float = param(0.9, Interval(float, 0, 1, **_POS), "precondition 'left chance': final loss < this "
                               "x ln 10, since a landscape around weights still at chance describes no minimum")
    points_per_call: int = param(1, Interval(int, 1, 4096), "grid points per vmapped forward (1 on CPU; more on a GPU)")


PROFILES = {
    "smoke": dict(dataset="cifar10-mini", train_size=2000, archs=ARCHS, lenet_steps=8, vgg_steps=4, vgg_width=0.0625,
                  eval_size=200, probe_every=4, multipliers=(0.5, 2.0), surface_size=64, lenet_grid=3,
                  vgg_grid=3, line_points=5, sharp_dirs=2),
    "quick": dict(lenet_steps=2340),
    "paper": dict(archs=ARCHS, num_seeds=3, vgg_width=1.0, eval_size=10_000, probe_every=150,
                  multipliers=(0.5, 1.0, 1.5, 2.0, 3.0, 4.0), surface_size=10_000, lenet_grid=51, vgg_grid=51,
                  line_points=101, sharp_dirs=32, points_per_call=8),
}
THRESHOLDS = ("k", "chance_frac")
KEY_SETTINGS = ("dataset", "archs", "num_seeds", "lr", "batch_size", "lenet_steps", "vgg_steps", "vgg_width",
                "probe_every", "surface_size", "lenet_grid", "vgg_grid", "span", "bn_mode", "radius", "sharp_dirs", "k",
                "chance_frac")


def adam(cfg: Params, arch: str) -> TrainConfig:
    """The Oxford report's optimiser for ``arch``: Adam at ``cfg.lr``, batches of ``cfg.batch_size``,
    five test evaluations, the profile's always-on records."""
    steps = cfg.lenet_steps if arch == "lenet" else cfg.vgg_steps
    return TrainConfig("adam", lr=cfg.lr, batch_size=cfg.batch_size, num_steps=steps,
                       eval_every=max(1, steps // 5), eval_size=cfg.eval_size, **profiles.VGG_RECORDS[cfg.profile])


def nets(store: Store, cfg: Params) -> dict[str, Runs]:
    """Each network of ``cfg.archs`` without and with BN, every seed, trained with ``adam``
    (checkpoints at ``probe_steps``): ``{arch: Runs keyed (norm, seed)}``."""
    cifar = DataSpec(cfg.dataset, train_size=cfg.train_size)
    spec = {"lenet": ModelSpec("lenet"), "vgg16": ModelSpec("vgg", depth=16, width=cfg.vgg_width)}
    return {a: store.sweep(cifar, spec[a], adam(cfg, a), norm=list(NORMS), seeds=profiles.seeds(cfg),
                           checkpoints=tuple(probe_steps(cfg, a))) for a in cfg.archs}


def probe_steps(cfg: Params, arch: str) -> list[int]:
    """The training steps probed along the gradient: 0, probe_every, ... (before each update)."""
    return list(range(0, adam(cfg, arch).num_steps, cfg.probe_every))


def around(cfg: Params, arch: str, traj: Trajectory) -> dict:
    """What is measured around the trained weights of ``traj``: the plane of directions from
    seeds ``seed + 1``, ``seed + 2`` and the slices along each, the line from its initial
    weights, and the sharpness (directions from ``seed + 10`` on) with running and batch BN
    statistics (batch-mode BN is invariant to a filter's scale, eval-mode BN is not)."""
    dirs = dict(size=cfg.surface_size, span=cfg.span, seeds=(cfg.seed + 1, cfg.seed + 2), norm=cfg.direction_norm,
                ignore_bias_bn=cfg.ignore_bias_bn, bn_mode=cfg.bn_mode, points_per_call=cfg.points_per_call)
    sharp = dict(size=cfg.surface_size, radius=cfg.radius, directions=cfg.sharp_dirs, seed=cfg.seed + 10,
                 norm=cfg.direction_norm, ignore_bias_bn=cfg.ignore_bias_bn, points_per_call=cfg.points_per_call)
    return {"plane": surface.Plane(points=cfg.lenet_grid if arch == "lenet" else cfg.vgg_grid, **dirs),
            "slices": surface.Slices(points=cfg.line_points, **dirs),
            "interp": surface.Interpolation(traj.model, traj.seed, size=cfg.surface_size, points=cfg.line_points,
                                            bn_mode=cfg.interp_bn_mode, points_per_call=cfg.points_per_call),
            "sharp": surface.Sharpness(bn_mode=cfg.bn_mode, **sharp),
            "sharp_batch": surface.Sharpness(bn_mode="batch", **sharp)}


def update_line(cfg: Params) -> surface.UpdateLine:
    """The line along Adam's own update at each probed step (direction and length: s = 1 is the
    step training took), with the multipliers of the line along the gradient."""
    return surface.UpdateLine(cfg.multipliers)


def measure(cfg: Params, trained: dict[str, Runs], line) -> dict[tuple[str, str, int], dict]:
    """Every probe of every net from the store: ``res[arch, norm, seed]`` holds its History
    (``"hist"``), the ``line`` search along the gradient at ``probe_steps`` (``"line"``, arrays
    over the steps), the line along Adam's update there (``"update"``) and ``around``'s results
    at the last step (``"plane"``, ...)."""
    res = {}
    for arch, nets_ in trained.items():
        for (norm, seed), traj in nets_.items():
            h = nets_.hist[norm, seed]
            steps = [s for s in probe_steps(cfg, arch) if s <= h.steps_done]
            end = {k: nets_.store.probe(traj, p, [h.steps_done]) for k, p in around(cfg, arch, traj).items()}
            res[arch, norm, seed] = {"hist": h, "line": nets_.store.probe(traj, line, steps),
                                     "update": nets_.store.probe(traj, update_line(cfg), steps),
                                     **{k: {q: v[0] for q, v in r.items()} for k, r in end.items()}}
    return res


def one_seed(res: dict, seed: int) -> dict[tuple[str, str], dict]:
    """The results of one seed, keyed ``(arch, norm)`` (the pictures show one seed)."""
    return {(a, n): r for (a, n, s), r in res.items() if s == seed}


def summary(res: dict) -> pd.DataFrame:
    """One row per net and seed: how it trained and every landscape number the claims use
    (medians over the probed steps along the gradient and along Adam's update)."""
    rows = []
    for (arch, norm, seed), r in res.items():
        h, line, upd, plane = r["hist"], r["line"], r["update"], r["plane"]
        centre = float(plane["loss"][len(plane["grid"]) // 2, len(plane["grid"]) // 2])
        shares = surface.definite_shares(plane["loss"])
        rows.append({
            "arch": arch, "norm": norm, "seed": seed, "diverged": h.diverged,
            "final train loss": float(np.mean(h.train_loss[-max(1, len(h.train_loss) // 10):])),
            "test acc": float(h.test_acc[-1]),
            "loss variation": float(np.median(line["loss_max"] - line["loss_min"])),
            "beta_eff": float(np.median(line["beta_eff"])),
            "loss variation (Adam step)": float(np.median(upd["loss_max"] - upd["loss_min"])),
            "beta_eff (Adam step)": float(np.median(upd["beta_eff"])),
            "Adam step length": float(np.median(upd["update_norm"])),
            "gradient norm": float(np.median(line["grad_norm0"])),
            "centre loss": centre, "surface std": float(np.std(plane["loss"])),
            "max / centre": float(np.max(plane["loss"]) / centre),
            "max / chance": float(np.max(plane["loss"]) / CHANCE_LOSS),
            "concave share": shares["concave"], "convex share": shares["convex"],
            "sharpness": float(r["sharp"]["rise"]), "sharpness (batch BN)": float(r["sharp_batch"]["rise"]),
            "2D points/s": plane["loss"].size / float(plane["time_s"])})
    return pd.DataFrame(rows)


def readable(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``summary`` for a reader: network names, "yes"/"no" for BatchNorm, columns in words."""
    out = df.assign(**{c: df[c].map(f) for c, f in (("arch", ARCH_NAMES), ("norm", {"none": "no", "bn": "yes"}))
                       if c in df})
    return out.rename(columns={"arch": "network", "norm": "BatchNorm", "test acc": "test accuracy"})


def _decide(gaps: dict, trained: dict, names: tuple[str, str]) -> tuple[str, str]:
    """Per network (paired seeds): ``gaps[a]`` holds; a network whose pair did not train
    (``trained[a]`` False) or whose seeds disagree within the spread is not decided."""
    decided = {a: g.holds for a, g in gaps.items() if trained[a] and not g.swamped}
    text = "; ".join(f"{ARCH_NAMES.get(a, a)}: " + g.text(names, "{:.3g}")
                     + ("" if trained[a] else " (a net at chance level or diverged: not decided)")
                     for a, g in gaps.items())
    if not decided:
        return text, "inconclusive"
    if len(decided) == len(gaps) and all(decided.values()):
        return text, "reproduced"
    return text, verdict(False, partly=any(decided.values()))


def _bn_lower(bn: dict, none: dict, trained: dict, k: float) -> tuple[str, str]:
    """BN's value < the standard net's on each network (``_decide``)."""
    return _decide({a: less(bn[a], none[a], k=k) for a in bn}, trained, ("BN", "standard"))


def _bn_higher(bn: dict, none: dict, trained: dict, k: float) -> tuple[str, str]:
    """BN's value > the standard net's on each network (``_decide``)."""
    return _decide({a: less(none[a], bn[a], k=k) for a in bn}, trained, ("standard", "BN"))


_TAIL = (", paired seeds, on every seed or by more than {k:g} seed spreads. Partly: on some network and not (or not "
         "decidably) on another. Precondition per network: both nets left chance (final loss < {chance_frac:g} ln "
         "10) and did not diverge")


def _row(claim: str, where: str, criterion: str, higher: bool = False) -> Criterion:
    return Criterion(claim, f"{SEED_SRC}, {where}", criterion + (": BN > standard" if higher else ": BN < standard")
                     + " on each network trained ({archs})" + _TAIL, _bn_higher if higher else _bn_lower)


_ADAM = " (our addition: the report probes along the gradient, but its nets step along Adam's update)"
CRITERIA = {  # the summary column each criterion reads -> the criterion
    "loss variation": _row("BN reduces the variation of the loss along the gradient during training", "Fig. 1",
                           "along the raw gradient: median over probed steps of max - min loss along theta - s lr g"),
    "beta_eff": _row("BN lowers the effective beta-smoothness (more predictive gradients)", "Fig. 1",
                     "along the raw gradient: median over probed steps of beta_eff on theta - s lr g"),
    "loss variation (Adam step)": _row(
        "BN reduces the variation of the loss along the step the optimiser takes", "Fig. 1" + _ADAM,
        "along Adam's update u (its direction and length): median over probed steps of max - min loss on "
        "theta + s u"),
    "beta_eff (Adam step)": _row(
        "BN lowers the effective beta-smoothness along the step the optimiser takes", "Fig. 1" + _ADAM,
        "along Adam's update u: median over probed steps of beta_eff on theta + s u"),
    "surface std": _row("BN flattens the loss surface (smaller variance of the loss over it)", "Fig. 2",
                        "standard deviation of the loss over the 2D grid"),
    "max / chance": _row("Without BN the surface reaches extreme values at its edges, hence log scale",
                         "Sec. 3, Fig. 2", "largest loss on the 2D grid (a maximum: the claim is about the "
                         "largest values) / ln 10, the chance loss, a reference that does not depend on how far "
                         "each net trained (the centre loss does)"),
    "concave share": _row("BN makes the surface more concave", "Sec. 3, Fig. 2",
                          "share of the 2D grid's interior points whose Hessian by central finite differences is "
                          "negative definite", higher=True),
    "sharpness": _row("BN's minimum is flatter (sharpness)", "Sec. 3; Li et al. 2018",
                      "mean loss rise at radius {radius:g} along {sharp_dirs} random directions, both signs, "
                      "BN {bn_mode} statistics"),
}


def trained_pairs(cfg: Params, df: pd.DataFrame) -> dict[str, bool]:
    """Per architecture: did both nets leave chance (every seed) and not diverge?"""
    out = {}
    for a in cfg.archs:
        d = df[df.arch == a]
        out[a] = left_chance(d["final train loss"], frac=cfg.chance_frac) and not d.diverged.any()
    return out


def claims(cfg: Params, res: dict) -> list[Claim]:
    """The Oxford report's claims, each decided by its criterion on the per-seed summary."""
    df = summary(res)
    seeds = profiles.seeds(cfg)
    t = df.set_index(["arch", "norm", "seed"])
    per = lambda col, n: {a: [float(t.loc[(a, n, s), col]) for s in seeds] for a in cfg.archs}  # noqa: E731
    return [c(bn=per(col, "bn"), none=per(col, "none"), trained=trained_pairs(cfg, df), k=cfg.k,
              chance_frac=cfg.chance_frac, archs=", ".join(ARCH_NAMES[a] for a in cfg.archs), radius=cfg.radius,
              sharp_dirs=cfg.sharp_dirs, bn_mode=cfg.bn_mode) for col, c in CRITERIA.items()]


SHORT = dict(zip(("final train loss", "test acc", "loss variation", "beta_eff", "loss variation (Adam step)",
                  "beta_eff (Adam step)", "Adam step length", "gradient norm", "surface std", "max / centre",
                  "max / chance", "concave share", "convex share", "sharpness", "sharpness (batch BN)",
                  "centre loss", "2D points/s"),
                 ("loss", "acc", "var", "beta", "uvar", "ubeta", "ulen", "gnorm", "std", "ratio", "edge", "concave",
                  "convex", "sharp", "sharpb", "centre", "pps")))


def numbers(cfg: Params, res: dict) -> dict[str, float | str]:
    """Every number the chapter's prose quotes, by glue key ``<arch>_<norm>_<what>`` (means over
    seeds), and which networks stayed at chance level."""
    df = summary(res)
    t = df.groupby(["arch", "norm"])[list(SHORT)].mean()
    out: dict[str, float | str] = {f"{a}_{n}_{s}": float(t.loc[(a, n), col])
                                   for (a, n) in t.index for col, s in SHORT.items()}
    stuck = df.groupby(["arch", "norm"])["final train loss"].max() > cfg.chance_frac * np.log(10)
    out["stuck"] = ", ".join(f"{ARCH_NAMES[a]} {'with' if n == 'bn' else 'without'} BN"
                             for (a, n), v in stuck.items() if v) or "none"
    return {**out, "n_points": int(sum(r["plane"]["loss"].size for r in res.values())),
            "time_2d": float(sum(r["plane"]["time_s"] for r in res.values()))}
