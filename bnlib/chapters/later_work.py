"""Chapter "What the book found, and what later work says": the answer to the paper's questions,
computed from the executed chapters' verdicts, and three experiments the later work suggests.

1. Matched learning rates (Bjorck et al. 2018): the shared VGG runs at lr 0.1 (core) and 0.5
   (variant) and the smoothness chapter's learning-rate sweep, nothing new trained.
2. Scale-invariant smoothness (Arora, Li & Lyu 2019): ``probes.scale.LayerScale`` on the core VGG
   pair's checkpoints, per layer, raw and in units of the layer's weight norm.
3. Sharpness against 2/eta (Cohen et al. 2021): a small MLP on a CIFAR-10 subset trained with
   full-batch gradient descent at a few step sizes, the top Hessian eigenvalue (Lanczos,
   ``probes.curvature.HessianTopK``) every ``gd_probe_every`` steps.
Defaults are the quick profile.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .. import config, profiles
from ..claims import Claim, Criterion, identity, left_chance, less, verdict
from ..config import Interval, ListOf, OneOf, param
from ..data import DataSpec
from ..models import ModelSpec
from ..page import count
from ..train import History, TrainConfig

TITLE = "What the book found, and what later work says"
NORMS = ("none", "bn")
NAMES = {"none": "standard", "bn": "BN"}
_FRAC = Interval(float, 0, 1, low_open=True, high_open=True)
_POS = Interval(float, 0, None, low_open=True)
_STEPS = Interval(int, 1, 1_000_000)


@dataclass(frozen=True)
class Folder:
    """A folder path (a string; empty: the default)."""

    def describe(self) -> str:
        return "a folder path (empty: the book's executed chapters)"

    def check(self, v: Any) -> Any:
        if not isinstance(v, str):
            raise TypeError
        return v


@dataclass(frozen=True)
class Params(profiles.VGGParams):
    chapters_dir: str = param("", Folder(), "executed chapters the answer reads (empty: book/chapters, "
                              "where `python -m bnlib book` puts them)")
    lr_large: float = param(0.5, Interval(float, 0, 10, low_open=True),
                            "the larger VGG learning rate (training chapter's; Santurkar et al.: 0.5)")
    scale_from: int = param(600, _STEPS, "first VGG step of the scale probe (choice: after the standard net's "
                            "plateau, which ends near step 300)")
    scale_every: int = param(600, _STEPS, "VGG steps between scale probes (choice; quick: 600, CPU budget)")
    rel_step: float = param(0.01, _FRAC, "step of each weight layer for beta, as a fraction of its "
                            "weight norm (choice: the order of an SGD step's relative size, measured on the page)")
    scale_c: float = param(2.0, _POS, "the factor the identity row scales BN-fed weights by (choice)")
    gd_dataset: str = param("cifar10", OneOf(("cifar10", "cifar10-mini")), "data of the GD runs (Cohen "
                            "et al.: a CIFAR-10 subset)")
    gd_size: int = param(500, Interval(int, 2, 50_000), "training images of the GD runs, all in every "
                         "step (Cohen et al.: 5,000; quick: 500, CPU budget)")
    gd_hidden: int = param(32, Interval(int, 1, 4096), "hidden units of the GD runs' MLP (choice)")
    gd_lrs: tuple = param((0.05, 0.1), ListOf(Interval(float, 0, 10, low_open=True)),
                          "GD step sizes eta (choice: 2/eta below the MLPs' sharpness at step 0, in the table)")
    gd_steps: int = param(200, _STEPS, "GD steps per run (choice, made before any run; CPU budget)")
    gd_probe_every: int = param(25, _STEPS, "GD steps between Lanczos runs (choice, made with gd_steps; CPU budget)")
    gd_seeds: int = param(2, Interval(int, 1, 20), "seeds of the GD runs (choice; CPU budget)")
    lanczos_tol: float = param(0.01, _FRAC, "relative accuracy of the top eigenvalue (choice: 1%)")
    k: float = param(2.0, Interval(float, 0, 100), "a gap over seeds holds if it holds on every seed or its "
                     "mean exceeds k seed spreads (choice: 2 sd of the per-seed gaps)")
    chance_frac: float = param(0.9, _FRAC, "a VGG net trained if its tail loss < this x ln 10 (as in the "
                               "training chapter)")
    tail_frac: float = param(0.1, _FRAC, "tail loss: the mean batch loss over this last fraction of the "
                             "steps (as in the training chapter)")
    minority: float = param(0.5, _FRAC, "'most of BN's advantage comes from the larger rate': its lead at "
                            "the matched rate must be below this share of its lead at the larger rate "
                            "(the word 'most')")
    scale_tol: float = param(1e-3, _FRAC, "identity tolerance (relative): float32 rounding through the "
                             "network leaves errors near 1e-5 (choice: 100 x that)")
    eos_low: float = param(0.8, _FRAC, "edge of stability: the judged sharpness is at least this x 2/eta, and "
                           "the edge row's window opens at the first probe that reaches it (choice: within 20%; "
                           "Lanczos is accurate to 1%)")
    eos_high: float = param(1.25, Interval(float, 1, 100), "and at most this x 2/eta (choice: 1/0.8)")
    eos_loss_floor: float = param(0.1, _POS, "the edge row judges the probes before the full-batch training loss "
                                  "first falls below this (choice, our reading of 'once the loss is small', where "
                                  "cross-entropy sharpness falls: the right class's mean log-probability above "
                                  "-0.1)")
    eos_min_probes: int = param(3, Interval(int, 1, 1000), "fewest probes the edge row's window may hold on a run, "
                                "else inconclusive (choice: a median of at least 3 probes)")
    late_frac: float = param(0.5, _FRAC, "the 'to the end of the run' row judges the probes in this last fraction "
                             "of a GD run (choice: the second half)")


_SMOKE = profiles.VGG["smoke"]
PROFILES = {
    "smoke": dict(_SMOKE, scale_from=2, scale_every=2, gd_dataset="cifar10-mini", gd_size=128, gd_hidden=16,
                  gd_steps=10, gd_probe_every=5, gd_seeds=1),
    "quick": {},
    "paper": dict(profiles.VGG["paper"], scale_from=1000, scale_every=1000, gd_size=5000, gd_hidden=200,
                  gd_lrs=(0.01, 0.02, 0.04), gd_steps=4000, gd_probe_every=100, gd_seeds=3),
}
KEY_SETTINGS = ("dataset", "depth", "width", "lr", "lr_large", "num_steps", "num_seeds", "variant_steps",
                "variant_seeds", "scale_from", "scale_every", "rel_step", "gd_dataset", "gd_size", "gd_hidden",
                "gd_lrs", "gd_steps", "gd_probe_every", "gd_seeds", "lanczos_tol")
THRESHOLDS = ("k", "chance_frac", "tail_frac", "minority", "scale_tol", "eos_low", "eos_high", "eos_loss_floor",
              "eos_min_probes", "late_frac")


# ---------------------------------------------------------------- the runs

def smoothness_cfg(cfg: Params):
    """The smoothness chapter's parameters at this profile and these shared VGG settings: its
    learning-rate sweep is reused, not retrained."""
    from . import smoothness

    shared = {f: getattr(cfg, f) for f in config.fields(profiles.VGGParams) if f != "profile"}
    return config.resolve(smoothness.Params, cfg.profile, **shared)


def lr_sweep(cfg: Params, store) -> dict[tuple, History]:
    """The smoothness chapter's VGG learning-rate sweep ``{(norm, lr, seed): History}``, from the store."""
    from . import smoothness

    s = smoothness_cfg(cfg)
    specs = {"vgg": profiles.vgg_specs(s), "dln": profiles.dln_specs(s)}
    return smoothness.sweep_runs(s, store, specs, smoothness.shared_runs(s))["vgg"]


def by_norm_seed(results: dict) -> dict[tuple[str, int], Any]:
    """``{(norm, lr, seed): x}`` of one learning rate as ``{(norm, seed): x}``."""
    return {(k[0], k[-1]): v for k, v in results.items()}


def scale_steps(cfg: Params) -> list[int]:
    """The VGG steps the scale probe measures: every ``scale_every`` from ``scale_from``, before the end."""
    return list(range(cfg.scale_from, cfg.num_steps, cfg.scale_every))


def gd_specs(cfg: Params) -> tuple[DataSpec, ModelSpec, TrainConfig]:
    """The edge-of-stability runs: a one-hidden-layer MLP on ``gd_size`` images, full-batch GD."""
    data = DataSpec(cfg.gd_dataset, train_size=cfg.gd_size)
    mlp = ModelSpec("mlp", sizes=(3 * 32 * 32, cfg.gd_hidden, 10), norm_after_relu=False)
    gd = TrainConfig("sgd", lr=cfg.gd_lrs[0], batch_size=None, num_steps=cfg.gd_steps, eval_every=cfg.gd_steps,
                     eval_size=500, record_every=cfg.gd_steps, record_size=64)
    return data, mlp, gd


def gd_probe_steps(cfg: Params) -> list[int]:
    return list(range(0, cfg.gd_steps, cfg.gd_probe_every))


def reached(steps: list[int]):
    """``steps`` a run reached (a diverged run stops early), as a function of its History."""
    return lambda h: [s for s in steps if s < h.steps_done]


# ---------------------------------------------------------------- experiment 1: matched learning rates

def tail(h: History, frac: float, steps: int | None = None) -> float:
    """Mean batch loss over the last ``frac`` of the first ``steps`` steps; inf if diverged before."""
    n = h.steps_done if steps is None else steps
    if h.diverged and h.steps_done <= n:
        return float("inf")
    return float(np.mean(h.train_loss[:n][-max(1, int(n * frac)):]))


def matched(cfg: Params, hist: dict) -> dict[str, list[float]]:
    """Per variant seed, tail losses after ``variant_steps`` steps: ``none``/``bn`` at the matched
    rate ``lr`` (the core runs' first steps) and at ``lr_large``."""
    seeds, n = profiles.seeds(cfg, "variant_seeds"), cfg.variant_steps
    out = {}
    for norm in NORMS:
        out[norm] = [tail(hist[(norm, cfg.lr, s)], cfg.tail_frac, n) for s in seeds]
        out[f"{norm}_large"] = [tail(hist[(norm, cfg.lr_large, s)], cfg.tail_frac, n) for s in seeds]
    return out


def sweep_table(cfg: Params, sweep: dict) -> pd.DataFrame:
    """Per swept lr and network: the tail loss (inf: diverged) of the sweep runs (seed means)."""
    rows = [{"lr": lr, "network": NAMES[n], "tail loss": tail(h, cfg.tail_frac)} for (n, lr, _), h in sweep.items()]
    return pd.DataFrame(rows).groupby(["lr", "network"], as_index=False)["tail loss"].mean()


def _fails(x: float, chance_frac: float) -> bool:
    return not left_chance([x], frac=chance_frac)


def _larger_rate(bn_large, none_large, none, chance_frac) -> tuple[str, str]:
    ok = left_chance(none, frac=chance_frac)
    bn_ok = left_chance(bn_large, frac=chance_frac)
    fails = sum(_fails(x, chance_frac) for x in none_large)
    text = (f"at the larger rate: BN tail loss {_fmt(bn_large)}, standard {_fmt(none_large)} (standard failed on "
            f"{fails}/{len(none_large)} seeds: diverged or at chance)")
    if not ok:
        return text + "; inconclusive: the standard net did not train at the matched rate", "inconclusive"
    if not bn_ok:
        return text + "; inconclusive: BN did not train at the larger rate either", "inconclusive"
    return text, verdict(fails == len(none_large), partly=less(bn_large, none_large).holds)


def _most_from_rate(bn, none, bn_large, minority, chance_frac, k) -> tuple[str, str]:
    lead = np.subtract(none, bn)
    lead_large = np.subtract(none, bn_large)
    share = ", ".join(f"{a:.2f} / {b:.2f}" for a, b in zip(lead, lead_large))
    text = f"BN's lead at the matched rate / at the larger rate: {share} (per seed)"
    if not left_chance(none, frac=chance_frac):
        return text + "; inconclusive: the standard net did not train at the matched rate", "inconclusive"
    if not np.all(lead_large > 0):
        return text + "; inconclusive: BN at the larger rate is not ahead on every seed", "inconclusive"
    g = less(lead, minority * lead_large, k=k)
    return text + f" ({g.seeds()})", g.verdict()


def _tuned(bn_best, none_best, lrs, chance_frac) -> tuple[str, str]:
    text = (f"best swept rate: BN {bn_best[1]:g} (tail loss {bn_best[0]:.3f}) vs standard {none_best[1]:g} "
            f"({none_best[0]:.3f}); swept {', '.join(f'{x:g}' for x in lrs)}; 1 seed")
    if _fails(none_best[0], chance_frac):
        return text + "; inconclusive: the standard net trained at no swept rate", "inconclusive"
    return text, verdict(bn_best[0] < none_best[0])


def _fmt(xs) -> str:
    return ", ".join("diverged" if not np.isfinite(x) else f"{x:.3f}" for x in xs)


# ---------------------------------------------------------------- experiment 2: scale-invariant smoothness

def scale_values(res: dict, seeds: list[int]) -> dict[str, dict[str, list[float]]]:
    """Per quantity (``beta``, ``beta_w2``, ``grad``, ``grad_w``) and network, per seed the median
    over probed steps and the BN net's BN-fed layers of the log10 value."""
    fed = np.asarray(res[("bn", seeds[0])]["bn_fed"][0], bool)
    q = {"beta": lambda r: r["beta"], "beta_w2": lambda r: r["beta"] * r["weight_norm"] ** 2,
         "grad": lambda r: r["grad_norm"], "grad_w": lambda r: r["grad_norm"] * r["weight_norm"]}
    return {name: {n: [float(np.median(np.log10(f(res[(n, s)])[:, fed]))) for s in seeds] for n in NORMS}
            for name, f in q.items()}


def _lower_bn(bn, none, k, none_loss, chance_frac) -> tuple[str, str]:
    g = less(bn, none, k=k)
    fac = ", ".join(f"x{10 ** (b - a):.2f}" for a, b in zip(bn, none))
    text = f"standard / BN: {fac} (per seed, medians of log10; {g.seeds()})"
    if not left_chance(none_loss, frac=chance_frac):
        return text + "; inconclusive: the standard net did not train", "inconclusive"
    return text, g.verdict()


def _scale_identity(loss_err, grad_err, fixed_loss_err, fixed_grad_err, cos, tol) -> tuple[str, str]:
    text = (f"largest over BN runs, probed steps and BN-fed layers, against eps / c^2: relative loss error "
            f"{loss_err:.1e}, ||c g(cW) - g(W)|| / ||g|| {grad_err:.1e}. Not judged, with eps fixed: "
            f"{fixed_loss_err:.1e} and {fixed_grad_err:.1e}; |cos(W, g)| {cos:.1e}")
    return text, identity(max(loss_err, grad_err) <= tol)


# ---------------------------------------------------------------- experiment 3: sharpness against 2/eta

def floor_step(loss, floor: float) -> int:
    """The first step whose full-batch training loss is below ``floor`` (the run's length if none)."""
    below = np.flatnonzero(np.asarray(loss) < floor)
    return int(below[0]) if below.size else len(loss)


def edge_window(step, ratio, end: int, eos_low: float) -> np.ndarray:
    """Which probes the edge row judges: those before step ``end`` (the loss floor), from the first
    one whose sharpness x eta / 2 reaches ``eos_low`` (all of them if none does)."""
    step, ratio = np.asarray(step), np.asarray(ratio)
    before = step < end
    reached_at = step[before & (ratio >= eos_low)]
    return before & (step >= (reached_at[0] if reached_at.size else step.min()))


def sharpness(cfg: Params, runs: dict, top: dict) -> pd.DataFrame:
    """One row per GD run: network, eta, seed, diverged, final loss, the step the loss fell below
    ``eos_loss_floor``, and the top eigenvalue (and x eta / 2) at step 0, as the median over the edge
    row's window (``edge_window``, with its first step and size; x eta / 2 also at its last probe) and
    over the last ``late_frac``."""
    rows = []
    for (norm, lr, seed), h in runs.items():
        t = top[(norm, lr, seed)]
        lam, step = np.asarray(t["eigenvalues"])[:, 0], np.asarray(t["step"])
        end = floor_step(h.train_loss, cfg.eos_loss_floor)
        window = edge_window(step, lam * lr / 2, end, cfg.eos_low)
        late = step >= (1 - cfg.late_frac) * cfg.gd_steps
        lam_window = float(np.median(lam[window])) if window.any() else float("nan")
        lam_late = float(np.median(lam[late])) if late.any() else float("nan")
        rows.append({"network": norm, "eta": lr, "seed": seed, "diverged": h.diverged,
                     "final loss": tail(h, cfg.tail_frac), "floor step": end,
                     "window from": int(step[window][0]) if window.any() else -1, "window probes": int(window.sum()),
                     "lam_first": float(lam[0]), "lam_window": lam_window, "lam_late": lam_late,
                     "ratio_first": float(lam[0]) * lr / 2, "ratio_window": lam_window * lr / 2,
                     "ratio_window_last": float(lam[window][-1]) * lr / 2 if window.any() else float("nan"),
                     "ratio_late": lam_late * lr / 2})
    return pd.DataFrame(rows).sort_values(["network", "eta", "seed"]).reset_index(drop=True)


def sharpness_table(sharp: pd.DataFrame) -> pd.DataFrame:
    """``sharpness`` as the page shows it: human labels, one row per run."""
    out = sharp.assign(network=sharp.network.map({"none": "standard", "bn": "BatchNorm"}),
                       diverged=sharp.diverged.map({True: "yes", False: "no"}))
    out = out.drop(columns=["lam_window", "lam_late", "ratio_window_last"])
    return out.rename(columns={"eta": "step size", "floor step": "loss below floor at step",
                               "lam_first": "top eigenvalue, step 0", "ratio_first": "x eta/2, step 0",
                               "ratio_window": "x eta/2, window", "ratio_late": "x eta/2, late"})


def _in_band(r, eos_low, eos_high) -> tuple[np.ndarray, str]:
    r = np.asarray(r, float)
    inside = (r >= eos_low) & (r <= eos_high)
    text = (f"{', '.join(f'{x:.2f}' for x in r)} (within [{eos_low:g}, {eos_high:g}] on "
            f"{int(inside.sum())}/{len(r)} runs)")
    return inside, text


def _trained(final_loss, diverged, chance_frac) -> tuple[bool, str]:
    ok = not any(diverged) and left_chance(final_loss, frac=chance_frac)
    return ok, "" if ok else "; inconclusive: a GD run diverged or did not leave chance"


def _edge(ratio_window, n_window, min_probes, final_loss, diverged, eos_low, eos_high,
          chance_frac) -> tuple[str, str]:
    inside, text = _in_band(ratio_window, eos_low, eos_high)
    text = f"window median of sharpness x eta / 2 per run: {text}; probes in the window: " + \
        ", ".join(map(str, n_window))
    ok, why = _trained(final_loss, diverged, chance_frac)
    if ok and min(n_window) < min_probes:
        ok, why = False, f"; inconclusive: a run's window holds fewer than {min_probes} probes"
    return text + why, verdict(bool(inside.all()), partly=2 * int(inside.sum()) > len(inside), precondition=ok)


def _edge_late(ratio_late, ratio_first, final_loss, diverged, eos_low, eos_high, chance_frac) -> tuple[str, str]:
    inside, text = _in_band(ratio_late, eos_low, eos_high)
    rose = int((np.asarray(ratio_late) > np.asarray(ratio_first)).sum())
    text = f"late median of sharpness x eta / 2 per run: {text}; rose from step 0 on {rose}/{len(inside)}"
    ok, why = _trained(final_loss, diverged, chance_frac)
    return text + why, verdict(bool(inside.all()), partly=2 * int(inside.sum()) > len(inside), precondition=ok)


def _bn_flatter(bn, none, k, final_loss, diverged, chance_frac) -> tuple[str, str]:
    g = less(bn, none, k=k)
    ok, why = _trained(final_loss, diverged, chance_frac)
    runs = f"{len(bn)} runs (seed, eta), paired; the Gap counts them as seeds: "
    return runs + g.text(("BN", "standard"), "{:.2f}") + why, g.verdict(precondition=ok)


BJORCK = "Bjorck et al. 2018"
PRE = "Precondition: the standard net trained at lr {lr:g} (tail loss < {chance_frac:g} ln 10, every seed)"
CRITERIA = {
    "larger_rate": Criterion(
        "BN allows a larger learning rate than the standard network", BJORCK,
        "at lr {lr_large:g} after {steps} steps the standard net fails (diverged or tail loss >= {chance_frac:g} "
        "ln 10) on every seed while BN trains (partly: both train, BN lower on every seed or beyond {k:g} "
        "spreads). " + PRE + "; BN trained at lr {lr_large:g}", _larger_rate),
    "most_from_rate": Criterion(
        "Most of BN's advantage comes from the larger learning rate it allows", BJORCK,
        "BN's lead over the standard net at lr {lr:g} (same rate) < {minority:g} x its lead when it takes lr "
        "{lr_large:g}, after {steps} steps, every seed or beyond {k:g} spreads. " + PRE +
        "; BN at lr {lr_large:g} ahead on every seed", _most_from_rate),
    "tuned": Criterion(
        "BN keeps its advantage when each network takes its own best learning rate",
        "Santurkar et al. 2018, Fig. 1, against Bjorck et al. 2018",
        "smoothness chapter's sweep ({sweep_steps} steps): BN's lowest tail loss over the swept rates < the "
        "standard net's lowest (1 seed). Precondition: the standard net trained at some swept rate", _tuned),
    "identity": Criterion(
        "Scale invariance: a layer that feeds BN can be scaled by c without changing the loss, and its "
        "gradient scales as 1/c", "Arora, Li & Lyu 2019",
        "every BN-fed layer scaled by c = {c:g}, BN's eps by 1 / c^2 (BN divides by sqrt(var + eps)): "
        "relative loss change and ||c g(cW) - g(W)|| / ||g(W)|| both <= {scale_tol:g}", _scale_identity),
    "beta_raw": Criterion(
        "Per layer, BN lowers the effective beta-smoothness (raw)", "Santurkar et al. 2018, Sec. 3.2",
        "per-layer beta (every layer steps {rel_step:g} ||W_i|| along -g_i), median over probed steps {steps} and the "
        "BN-fed layers: BN < standard, every seed or beyond {k:g} spreads (log10). " + PRE, _lower_bn),
    "beta_scaled": Criterion(
        "BN's smoothness advantage survives the scale-invariant measure ||W||^2 beta",
        "Santurkar et al. 2018, Sec. 3.2, read with Arora, Li & Lyu 2019",
        "||W_i||^2 beta_i, same medians: BN < standard, every seed or beyond {k:g} spreads (log10). " + PRE,
        _lower_bn),
    "grad_raw": Criterion(
        "Per layer, BN lowers the gradient norm (raw)", "Santurkar et al. 2018, Sec. 3.2",
        "||g_i||, median over probed steps and BN-fed layers: BN < standard, every seed or beyond {k:g} "
        "spreads (log10). " + PRE, _lower_bn),
    "grad_scaled": Criterion(
        "BN's gradient-norm advantage survives the scale-invariant measure ||W|| ||g||",
        "Santurkar et al. 2018, Sec. 3.2, read with Arora, Li & Lyu 2019",
        "||W_i|| ||g_i||, same medians: BN < standard, every seed or beyond {k:g} spreads (log10). " + PRE,
        _lower_bn),
    "edge": Criterion(
        "Under full-batch gradient descent the standard net's sharpness settles at about 2/eta (edge of "
        "stability)", "Cohen et al. 2021",
        "median top Hessian eigenvalue x eta / 2 over each GD run's window (the probes from the first that reaches "
        "{eos_low:g} until the training loss first falls below {eos_loss_floor:g}; all probes before that if none "
        "reaches it) within [{eos_low:g}, {eos_high:g}] on every (seed, eta) (partly: on more than half of the "
        "runs). Preconditions: no run diverged, every run left chance, every window holds at least {min_probes} "
        "probes", _edge),
    "edge_late": Criterion(
        "... and stays there to the end of the run", "Cohen et al. 2021",
        "median top Hessian eigenvalue x eta / 2 over the last {late_pct} of each GD run within [{eos_low:g}, "
        "{eos_high:g}] on every (seed, eta) (partly: on more than half of the runs). Preconditions: no run "
        "diverged, every run left chance", _edge_late),
    "bn_flatter": Criterion(
        "With BN the top Hessian eigenvalue is lower (a smoother landscape)",
        "Santurkar et al. 2018, Sec. 3.2; Ghorbani et al. 2019",
        "median sharpness x eta / 2 over the last {late_pct} of each GD run, paired (seed, eta): BN < standard "
        "on every pair or beyond {k:g} spreads. Precondition: no run diverged, every run left chance", _bn_flatter),
}


def claims_matched(cfg: Params, hist: dict, sweep: dict, sweep_steps: int) -> list[Claim]:
    """The matched-learning-rate rows: larger rate, share of the lead, tuned rates."""
    m = matched(cfg, hist)
    th = dict(k=cfg.k, chance_frac=cfg.chance_frac, lr=cfg.lr, lr_large=cfg.lr_large, steps=cfg.variant_steps)
    table = sweep_table(cfg, sweep)
    best = {n: min(((r["tail loss"], r.lr) for _, r in table[table.network == NAMES[n]].iterrows()),
                   key=lambda t: (t[0], t[1])) for n in NORMS}
    return [CRITERIA["larger_rate"](bn_large=m["bn_large"], none_large=m["none_large"], none=m["none"], **th),
            CRITERIA["most_from_rate"](bn=m["bn"], none=m["none"], bn_large=m["bn_large"], minority=cfg.minority,
                                       **th),
            CRITERIA["tuned"](bn_best=best["bn"], none_best=best["none"], lrs=sorted(set(table.lr)),
                              sweep_steps=sweep_steps, **th)]


def claims_scale(cfg: Params, res: dict, core_loss: list[float]) -> list[Claim]:
    """The scale-invariance rows: the identity, then raw and scaled beta and gradient norm."""
    seeds = profiles.seeds(cfg)
    v = scale_values(res, seeds)
    bn = [res[("bn", s)] for s in seeds]
    fed = np.asarray(bn[0]["bn_fed"][0], bool)
    worst = {k: max(float(np.nanmax(r[k])) for r in bn)
             for k in ("scaled_loss_err", "scaled_grad_err", "fixed_eps_loss_err", "fixed_eps_grad_err")}
    ident = dict(loss_err=worst["scaled_loss_err"], grad_err=worst["scaled_grad_err"],
                 fixed_loss_err=worst["fixed_eps_loss_err"], fixed_grad_err=worst["fixed_eps_grad_err"],
                 cos=max(float(np.max(np.abs(r["cos"][:, fed]))) for r in bn))
    th = dict(k=cfg.k, chance_frac=cfg.chance_frac, lr=cfg.lr, none_loss=core_loss)
    steps = ", ".join(map(str, scale_steps(cfg)))
    rows = [CRITERIA["identity"](**ident, tol=cfg.scale_tol, c=cfg.scale_c, scale_tol=cfg.scale_tol)]
    for key, q in (("beta_raw", "beta"), ("beta_scaled", "beta_w2"), ("grad_raw", "grad"), ("grad_scaled", "grad_w")):
        rows.append(CRITERIA[key](bn=v[q]["bn"], none=v[q]["none"], rel_step=cfg.rel_step, steps=steps, **th))
    return rows


def claims_edge(cfg: Params, sharp: pd.DataFrame) -> list[Claim]:
    """The edge-of-stability rows (the window, then to the end of the run) and BN's sharpness, on every GD run."""
    none, bn = sharp[sharp.network == "none"], sharp[sharp.network == "bn"]
    th = dict(k=cfg.k, chance_frac=cfg.chance_frac, eos_low=cfg.eos_low, eos_high=cfg.eos_high,
              late_pct=f"{cfg.late_frac:.0%}", eos_loss_floor=cfg.eos_loss_floor)
    trained = dict(final_loss=list(none["final loss"]), diverged=list(none.diverged))
    every = dict(final_loss=list(sharp["final loss"]), diverged=list(sharp.diverged))
    return [CRITERIA["edge"](ratio_window=list(none.ratio_window), n_window=list(none["window probes"]),
                             min_probes=cfg.eos_min_probes, **trained, **th),
            CRITERIA["edge_late"](ratio_late=list(none.ratio_late), ratio_first=list(none.ratio_first), **trained,
                                  **th),
            CRITERIA["bn_flatter"](bn=list(bn.ratio_late), none=list(none.ratio_late), **every, **th)]


# ---------------------------------------------------------------- numbers the prose quotes

def paper_text() -> str:
    """What the ``paper`` profile runs, in words, from its settings (never typed by hand)."""
    p = config.resolve(Params, "paper")
    return (f"runs the paper's VGG for {p.num_steps:,} steps, probes the scale every {p.scale_every:,} steps, "
            f"and trains the gradient-descent runs on {p.gd_size:,} images for {p.gd_steps:,} steps at "
            f"{count(len(p.gd_lrs), 'step size')} ({', '.join(f'{x:g}' for x in p.gd_lrs)})")


def numbers(cfg: Params, hist: dict, sweep: dict, res: dict, sharp: pd.DataFrame) -> dict[str, Any]:
    """Every number the chapter's prose quotes, by glue key (means over seeds unless said)."""
    m = matched(cfg, hist)
    out: dict[str, Any] = {f"m_{k}": float(np.mean(v)) for k, v in m.items()}
    out["paper_text"] = paper_text()
    lead, lead_large = np.subtract(m["none"], m["bn"]), np.subtract(m["none"], m["bn_large"])
    out |= {"lead": float(lead.mean()), "lead_large": float(lead_large.mean()),
            "sweep_lrs": ", ".join(f"{x:g}" for x in sorted({k[1] for k in sweep})),
            "sweep_seeds": count(len({k[-1] for k in sweep}), "seed"),
            "sweep_steps": smoothness_cfg(cfg).sweep_steps}
    seeds = profiles.seeds(cfg)
    fed = np.asarray(res[("bn", seeds[0])]["bn_fed"][0], bool)
    for n in NORMS:
        rs = [res[(n, s)] for s in seeds]
        rel = [cfg.lr * r["grad_norm"][:, fed] / r["weight_norm"][:, fed] for r in rs]
        growth = [r["weight_norm"][-1, fed] / r["weight_norm"][0, fed] for r in rs]
        out[f"rel_sgd_step_{n}"] = float(np.median(np.concatenate([x.ravel() for x in rel])))
        out[f"w_growth_{n}"] = float(np.median(np.concatenate(growth)))
    out |= {"n_fed": int(fed.sum()), "n_layers": len(fed), "scale_steps": ", ".join(map(str, scale_steps(cfg)))}
    for n in NORMS:
        d = sharp[sharp.network == n]
        for col in ("ratio_first", "ratio_window", "ratio_window_last", "ratio_late"):
            out[f"{col}_{n}"] = ", ".join(f"{r:.2f}" for r in d[col])
        out[f"gd_loss_{n}"] = float(d["final loss"].mean())
    none = sharp[sharp.network == "none"]
    out["lam_first_none"] = ", ".join(f"{x:.0f}" for x in none.lam_first)
    out["floor_steps"] = ", ".join(str(x) if x < cfg.gd_steps else "never" for x in none["floor step"])
    out["window_probes"] = ", ".join(map(str, none["window probes"]))
    out["two_over_eta"] = ", ".join(f"{2 / x:g}" for x in cfg.gd_lrs)
    out["late_from"] = int((1 - cfg.late_frac) * cfg.gd_steps)
    return out
