"""Chapter "Does BatchNorm work by controlling covariate shift?" (Santurkar et al. 2018, Sec. 2.1).

Four VGGs trained alike: standard, + BN (the shared ``profiles.VGG`` runs, the training chapter's),
+ "noisy" BN (BN then the time-varying noise of Algorithm 1) and standard + the same noise without BN.
The noisy nets are variants (``variant_steps`` x ``variant_seeds``), so every comparison is made on
the variant seeds at step ``variant_steps``, the core runs cut there.
Per-unit moments before (``pre``: the layer's output, the site of the paper's Fig. 1c) and after
(``post``: where the noise is injected) each normaliser come from the always-on records (Fig. 7,
``stability``), and at lags shorter than the record spacing from ``probes.activations.Moments``
(``lag_table``); the percentile bands of Figs. 1c and 2 from ``ActivationBands`` on checkpoints at
the record schedule. Cai & Wei's replication on another data set is run on MNIST with a LeNet
(``mnist_specs``). Defaults are the quick profile.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import models, page, profiles
from ..claims import CHANCE_LOSS, Claim, Criterion, Gap, identity, left_chance, less, verdict
from ..config import Interval, ListOf, OneOf, param
from ..data import DataSpec
from ..models import ModelSpec
from ..probes.activations import distribution_shift, lag_shift
from ..train import History, TrainConfig
from .training import acc_at, listed, tail_loss

TITLE = "Does BatchNorm work by controlling covariate shift?"
NORMS = ("none", "bn", "noisy_bn", "noise")
NOISY = ("noisy_bn", "noise")  # the networks with Algorithm 1's noise layers
NAME = {"none": "standard", "bn": "BN", "noisy_bn": "noisy BN", "noise": "noise only"}
PAPER_CONVS = 13  # conv layers of the paper-profile VGG-16, the depth its layer numbers refer to
V = profiles.VGG["quick"]
_LAYER = Interval(int, 1, PAPER_CONVS)
_STEPS = Interval(int, 1, 1_000_000)
_DATA = ("cifar10", "mnist", "cifar10-mini", "mnist-mini")
_FRAC = Interval(float, 0, 1, low_open=True)
SOURCE = "Santurkar et al. 2018, Sec. 2.1, Fig. 2"
SITES = ("pre", "post")  # the normaliser's input (the layer's output) and its output
SITE_NAME = {"pre": "before the normaliser", "post": "after the normaliser"}
MNIST_NORMS = ("none", "bn", "noisy_bn")


@dataclass(frozen=True)
class Params(profiles.VGGParams):
    dataset: str = param(V["dataset"], OneOf(_DATA), "training data (paper: CIFAR-10; Cai & Wei: another data set)")
    n_mu: float = param(0.5, Interval(float, 0, 10), "half-range of the per-unit noise mean mu_j (paper: 0.5)")
    n_sigma: float = param(1.25, Interval(float, 1, 10), "upper end of the per-unit noise scale sigma_j (paper: 1.25)")
    r_mu: float = param(0.1, Interval(float, 0, 10), "per-sample half-range of the additive noise m (paper: 0.1)")
    r_sigma: float = param(0.1, Interval(float, 0, 10),
                           "per-sample sd of the multiplicative noise s (paper: 0.1; sd: choice)")
    layers_fig1: tuple = param((3, 11), ListOf(_LAYER), "layers of Fig. 1c, numbered in a 13-conv VGG (paper)")
    layers_fig2: tuple = param((2, 9, 13), ListOf(_LAYER), "layers of Fig. 2, numbered in a 13-conv VGG (paper)")
    num_samples: int = param(1024, _STEPS, "activations sampled per layer for the bands (choice)")
    num_units: int = param(3, Interval(int, 1, 64), "random units per layer in Fig. 7 (choice)")
    k: float = param(2.0, Interval(float, 0, 100), "a mean gap must exceed k seed spreads when not every seed "
                     "agrees: 2 sd of the per-seed gaps (choice)")
    chance_frac: float = param(0.9, _FRAC, "a net left chance if every seed's tail loss < chance_frac x ln 10: "
                               "10% below a uniform guess is beyond batch noise of a 100-step mean (choice)")
    tail_frac: float = param(0.1, _FRAC, "final loss: the mean batch loss over the last tail_frac of the compared "
                             "steps: 100 batches average out batch-to-batch noise (choice)")
    near_frac: float = param(0.25, _FRAC, "'noisy BN nearly matches BN': its loss excess over BN at most this "
                             "fraction of the standard net's, i.e. 4x closer to BN than the standard net is (choice)")
    acc_margin: float = param(0.03, Interval(float, 0, 1), "'nearly matches' on test accuracy: noisy BN at most "
                              "this far below BN; 3 points, twice the sd (1.5) of a difference of two accuracies "
                              "on 2,000 images (choice)")
    lags: tuple = param((1, 10, 100), ListOf(_STEPS), "lags (steps) of the distribution shift (issue: 1, 10, 100)")
    lag_anchors: tuple = param((500,), ListOf(Interval(int, 0, 1_000_000)),
                               "steps the lagged shifts start from: past the plateau, a + max lag within the "
                               "noisy runs; quick: one (each short lag replays the run from a checkpoint, CPU "
                               "budget; choice)")
    marginal: float = param(2.0, Interval(float, 1, 100, low_open=True),
                            "'differ only marginally' (Fig. 1c): BN's shift within this factor of the standard "
                            "net's either way; a factor 2 is what a reader of a log-scale plot calls small (choice)")
    grow_ratio: float = param(2.0, Interval(float, 1, 1000, low_open=True),
                              "'grows with the lag': shift at the longest lag over the shortest above this; i.i.d. "
                              "noise gives about 1, a steady drift up to the lag ratio (choice)")
    ident_tol: float = param(1e-3, Interval(float, 0, 1, low_open=True),
                             "identity row: largest relative error allowed; float32 moments over 64 images "
                             "agree to about 1e-5 (choice)")
    mnist_data: str = param("mnist", OneOf(("mnist", "mnist-mini")), "data of the replication on another data "
                            "set (Cai & Wei do not name theirs; MNIST: choice)")
    mnist_steps: int = param(200, _STEPS, "SGD steps of the MNIST LeNets; the standard LeNet leaves chance within "
                             "100 (choice)")


PROFILES = {"smoke": {**profiles.VGG["smoke"], "num_samples": 256, "lags": (1, 2, 4), "lag_anchors": (0,),
                     "mnist_data": "mnist-mini", "mnist_steps": 6},
            "quick": {},
            "paper": {**profiles.VGG["paper"], "lag_anchors": (2000, 6000, 10_000), "mnist_steps": 3000}}
KEY_SETTINGS = ("dataset", "depth", "width", "lr", "batch_size", "num_steps", "num_seeds", "variant_steps",
                "variant_seeds")
THRESHOLDS = ("k", "chance_frac", "tail_frac", "near_frac", "acc_margin", "marginal", "grow_ratio", "ident_tol")


def noise(cfg: Params) -> dict[str, float]:
    """Algorithm 1's options, the ``noise`` field of the noisy networks' ModelSpec."""
    return dict(n_mu=cfg.n_mu, n_sigma=cfg.n_sigma, r_mu=cfg.r_mu, r_sigma=cfg.r_sigma)


def record_steps(cfg: Params, steps: int | None = None) -> tuple[int, ...]:
    """The steps of the always-on records (the profile's ``record_every``) in a run of ``steps``
    steps (``num_steps`` if None): the probes' checkpoints."""
    return tuple(range(0, steps or cfg.num_steps, profiles.VGG_RECORDS[cfg.profile]["record_every"]))


def at_records(h: History) -> list[int]:
    """The steps a run has records for: ``record_steps``, cut short if it diverged."""
    return h.records["step"].tolist() if "step" in h.records else []


def at_end(h: History) -> list[int]:
    """The last step of a finished run; none for a diverged one (nothing to evaluate)."""
    return [] if h.diverged else [h.steps_done]


def prose_settings(cfg: Params) -> dict:
    """Settings the prose quotes that the header box does not show (glued as ``cfg_<name>``; the
    record spacing also in words, ``record_spacing``: "25 steps", "1 step")."""
    rec = profiles.VGG_RECORDS[cfg.profile]
    return {"record_spacing": page.count(rec["record_every"], "step"), "cfg_eval_size": cfg.eval_size,
            "cfg_num_samples": cfg.num_samples, "cfg_num_units": cfg.num_units,
            "cfg_probe_every": rec["record_every"], "cfg_probe_size": rec["record_size"],
            "cfg_compare_steps": cfg.variant_steps,
            "cfg_compare_epochs": cfg.variant_steps * cfg.batch_size / cfg.train_size,
            "cfg_compare_seeds": listed(compared_seeds(cfg)), "cfg_mnist_steps": cfg.mnist_steps}


def compared_seeds(cfg: Params) -> list[int]:
    """The seeds every comparison uses: the variant seeds (the noisy nets'), a prefix of the core seeds."""
    return profiles.seeds(cfg, "variant_seeds")


def n_convs(depth: int) -> int:
    """Conv layers of VGG-``depth`` (weight layers 1..n_convs are the convs)."""
    return sum(v != "M" for v in models.VGG_CONFIGS[depth])


def map_layer(layer: int, depth: int) -> int:
    """The paper's conv layer ``layer`` (of 13) at the same relative depth in VGG-``depth`` (slot i follows it)."""
    return max(1, round(layer * n_convs(depth) / PAPER_CONVS))


def recorded_layers(cfg: Params) -> list[int]:
    """Every layer the chapter shows: the mapped Fig. 1c and Fig. 2 layers, sorted."""
    return sorted({map_layer(i, cfg.depth) for i in (*cfg.layers_fig1, *cfg.layers_fig2)})


def per_seed(cfg: Params, hist: dict, noise_on: dict) -> pd.DataFrame:
    """One row per (network, compared seed), all at step ``variant_steps`` (the noisy nets' length):
    diverged, final training loss (tail mean, noise on), test accuracy (noise off) and, for the
    noisy nets, test accuracy with the noise kept on (``noise_on``: NoiseOnAccuracy results)."""
    rows, n = [], cfg.variant_steps
    for norm in NORMS:
        for s in compared_seeds(cfg):
            h, on = hist[(norm, cfg.lr, s)], noise_on.get((norm, cfg.lr, s), {})
            rows.append({"network": norm, "seed": s, "diverged": h.diverged and h.steps_done <= n,
                         "final train loss": tail_loss(h, cfg.tail_frac, n), "final test acc": acc_at(h, n),
                         "final test acc, noise on": on["test_acc"][-1] if len(on.get("step", ())) else np.nan})
    return pd.DataFrame(rows).set_index(["network", "seed"])


def summary(cfg: Params, hist: dict, noise_on: dict) -> pd.DataFrame:
    """One row per network: diverged runs and seed means of ``per_seed``'s numbers (a diverged
    run counts as infinite loss, nan accuracy)."""
    df = per_seed(cfg, hist, noise_on)
    out = df.drop(columns="diverged").groupby(level="network", sort=False).mean()
    out.insert(0, "diverged runs", df["diverged"].groupby(level="network", sort=False).sum().astype(int))
    return out.reset_index()


def headline(table: pd.DataFrame) -> dict:
    """The numbers of the summary the prose quotes, per network."""
    out = {}
    for n, r in table.set_index("network").iterrows():
        on, why = r["final test acc, noise on"], "diverged" if n in NOISY else "no noise"
        out.update({f"loss_{n}": r["final train loss"], f"acc_{n}": r["final test acc"],
                    f"div_{n}": f"diverged in {page.count(r['diverged runs'], 'seed')}" if r["diverged runs"]
                    else "finished",
                    f"acc_on_{n}": f"{on:.1%}" if on == on else f"not measured ({why})"})
    return out


def shifts_per_seed(cfg: Params, hist: dict, norms: Sequence[str] = NORMS, seeds: Sequence[int] | None = None,
                    steps: int | None = None) -> pd.DataFrame:
    """Per (network, seed, site, layer): ``distribution_shift`` of the records ``pre{i}``/``post{i}``
    between consecutive records before ``steps`` (default ``variant_steps``, the span every network
    ran), on ``seeds`` (default: the compared seeds)."""
    rows, steps = [], steps or cfg.variant_steps
    for norm in norms:
        for s in seeds or compared_seeds(cfg):
            rec = hist[(norm, cfg.lr, s)].records
            keep = rec["step"] < steps if "step" in rec else np.zeros(0, bool)
            for site in SITES:
                for i in recorded_layers(cfg):
                    sh = (distribution_shift(rec[f"{site}{i}.mean"][keep], rec[f"{site}{i}.var"][keep])
                          if keep.sum() > 1 else {"mean_shift": np.nan, "var_shift": np.nan})  # died early
                    rows.append({"network": norm, "seed": s, "site": site, "layer": i,
                                 "mean shift": sh["mean_shift"], "var shift": sh["var_shift"]})
    return pd.DataFrame(rows)


def stability(shifts: pd.DataFrame) -> pd.DataFrame:
    """Per (network, site, layer): the shifts' means over seeds."""
    return shifts.groupby(["network", "site", "layer"], sort=False)[["mean shift", "var shift"]].mean().reset_index()


def stability_wide(stab: pd.DataFrame, quantity: str) -> pd.DataFrame:
    """One column of ``stability`` (``"mean shift"`` or ``"var shift"``) as the page shows it: one row
    per site and layer (in words), the networks side by side (by their short names)."""
    t = stab.assign(site=stab["site"].map(SITE_NAME), network=stab["network"].map(NAME),
                    layer=[f"layer {i}" for i in stab["layer"]])
    wide = t.pivot_table(index=["site", "layer"], columns="network", values=quantity)
    rows = pd.MultiIndex.from_frame(t[["site", "layer"]].drop_duplicates())
    return wide.reindex(index=rows, columns=[NAME[n] for n in NORMS if NAME[n] in wide.columns])


def median_shifts(shifts: pd.DataFrame, site: str = "post") -> dict[str, dict[str, list[float]]]:
    """{"mean shift" | "var shift": {network: per-seed medians over the recorded layers}} at
    ``site``, seeds sorted."""
    med = shifts[shifts["site"] == site].groupby(["network", "seed"])[["mean shift", "var shift"]].median()
    return {c: {n: med.loc[n, c].sort_index().tolist() for n in med.index.unique("network")} for c in med}


def shift_numbers(stab: pd.DataFrame, site: str = "post") -> dict:
    """Shifts per network and layer at ``site``, their ranges over layers, and noisy BN's ratios
    to standard (range and median over layers)."""
    s, out = stab[stab["site"] == site].drop(columns="site").set_index(["network", "layer"]), {}
    for k, c in (("mshift", "mean shift"), ("vshift", "var shift")):
        out.update({f"{k}_{n}_{i}": v for (n, i), v in s[c].items()})
        out.update({f"{k}_{n}_{m}": getattr(s.loc[n, c], m)() for n in NORMS for m in ("min", "max", "median")})
    ratio = s.loc["noisy_bn"] / s.loc["none"]  # per layer, noisy BN over standard
    return {**out, "ratio_min": ratio["mean shift"].min(), "ratio_max": ratio["mean shift"].max(),
            "ratio_median": ratio["mean shift"].median(), "vratio_median": ratio["var shift"].median(),
            "vratio_min": ratio["var shift"].min(), "vratio_max": ratio["var shift"].max(), "n_layers": len(ratio),
            "n_less_stable": int(((ratio["mean shift"] > 1) & (ratio["var shift"] > 1)).sum())}


def fig1c_ratios(cfg: Params, hist: dict) -> dict[str, list[float]]:
    """Fig. 1c on the core runs (every core seed, all ``num_steps``), before the normaliser: per
    seed, BN's median shift over the recorded layers divided by the standard net's."""
    sh = shifts_per_seed(cfg, hist, ("none", "bn"), profiles.seeds(cfg), cfg.num_steps)
    med = median_shifts(sh, "pre")
    return {c: [b / a for a, b in zip(med[c]["none"], med[c]["bn"])] for c in med}


def lag_steps(cfg: Params, h: History) -> list[int]:
    """The steps the lag probe needs: each anchor a and a + lag, for the anchors the run reached."""
    return sorted({a + lag for a in anchors(cfg, h) for lag in (0, *cfg.lags)})


def anchors(cfg: Params, h: History) -> list[int]:
    """The lag anchors a with a + the longest lag within the run (all, unless it diverged early)."""
    return [a for a in cfg.lag_anchors if a + max(cfg.lags) <= h.steps_done]


def lag_table(cfg: Params, hist: dict, moments: dict) -> pd.DataFrame:
    """Per (network, seed, site, layer, lag): ``lag_shift`` of the ``Moments`` probe results from
    every anchor a to a + lag (nan where a run has no anchor)."""
    rows = []
    for key, res in moments.items():
        a = anchors(cfg, hist[key])
        for site in SITES:
            for i in recorded_layers(cfg):
                for lag in cfg.lags:
                    sh = (lag_shift(res["step"], res[f"{site}{i}.mean"], res[f"{site}{i}.var"], a, lag) if a
                          else {"mean_shift": np.nan, "var_shift": np.nan})
                    rows.append({"network": key[0], "seed": key[-1], "site": site, "layer": i, "lag": lag,
                                 "mean shift": sh["mean_shift"], "var shift": sh["var_shift"]})
    return pd.DataFrame(rows)


def lag_medians(lags: pd.DataFrame) -> pd.DataFrame:
    """Per (network, seed, site, lag): medians over the recorded layers."""
    return lags.groupby(["network", "site", "seed", "lag"])[["mean shift", "var shift"]].median().reset_index()


def lag_growth(cfg: Params, lags: pd.DataFrame, norm: str, site: str = "post") -> dict[str, list[float]]:
    """Per compared seed: the median shift at the longest lag over that at the shortest."""
    m = lag_medians(lags).set_index(["network", "site", "seed", "lag"])
    lo, hi = min(cfg.lags), max(cfg.lags)
    return {c: [m.loc[(norm, site, s, hi), c] / m.loc[(norm, site, s, lo), c] for s in compared_seeds(cfg)]
            for c in ("mean shift", "var shift")}


def bn_identity_errors(moments: dict) -> dict[str, float]:
    """Largest errors, over the BN runs' probed steps, slots and channels, of the identities of
    a BN output on its own batch: mean = beta (error in units of |gamma|) and variance =
    gamma^2 v / (v + eps), v the input's variance (relative error)."""
    em, ev = 0.0, 0.0
    for key, r in moments.items():
        if key[0] != "bn":
            continue
        for i in range(1, 1 + sum(k.startswith("gamma") for k in r)):
            g, b, v = r[f"gamma{i}"], r[f"beta{i}"], r[f"pre{i}.var"]
            em = max(em, float(np.max(np.abs(r[f"post{i}.mean"] - b) / np.abs(g))))
            want = g**2 * v / (v + r[f"eps{i}"][:, None])
            ev = max(ev, float(np.max(np.abs(r[f"post{i}.var"] / want - 1))))
    return {"mean": em, "var": ev}


def mnist_specs(cfg: Params) -> tuple[DataSpec, ModelSpec, TrainConfig]:
    """Cai & Wei's other data set: MNIST, a LeNet (1 channel, 28 x 28) and the chapter's SGD
    for ``mnist_steps`` steps (our choices: they name neither)."""
    t = TrainConfig("sgd", lr=cfg.lr, batch_size=cfg.batch_size, num_steps=cfg.mnist_steps,
                    eval_every=cfg.eval_every, eval_size=cfg.eval_size, **profiles.VGG_RECORDS[cfg.profile])
    return DataSpec(cfg.mnist_data), ModelSpec("lenet", in_channels=1, image_size=28, noise=noise(cfg)), t


def mnist_losses(cfg: Params, hist: dict) -> dict[str, list[float]]:
    """Final training loss (noise on) of each MNIST network on the compared seeds."""
    return {n: [tail_loss(hist[(n, cfg.lr, s)], cfg.tail_frac) for s in compared_seeds(cfg)] for n in MNIST_NORMS}


def noise_only_shift(cfg: Params, *, n: int = 200_000) -> dict[str, float]:
    """The shifts Algorithm 1 alone gives a unit whose BN output is fixed (gamma 1, beta 0):
    mean mu_j, variance sigma_j^2 + r_sigma^2 + r_mu^2 / 3, redrawn each step (Monte Carlo)."""
    rng = np.random.default_rng(cfg.seed)
    mu = rng.uniform(-cfg.n_mu, cfg.n_mu, (n, 1))            # (steps, 1 unit)
    sigma = rng.uniform(1, cfg.n_sigma, (n, 1))
    return distribution_shift(mu, sigma**2 + cfg.r_sigma**2 + cfg.r_mu**2 / 3)


# ---------------------------------------------------------------- criteria (pure functions of numbers)

def _pre(none: Sequence[float], chance_frac: float, diverged: bool) -> tuple[bool, str]:
    """Precondition: no needed run diverged and the standard net left chance on every seed."""
    if diverged:
        return False, "; inconclusive: a run the comparison needs diverged"
    if not left_chance(none, frac=chance_frac):
        return False, (f"; inconclusive: the standard net did not leave chance "
                       f"(tail loss >= {chance_frac * CHANCE_LOSS:.2f})")
    return True, ""


def _decide(gaps: Sequence[Gap], *, partly: bool, precondition: bool) -> str:
    """reproduced if every gap holds; inconclusive if the others hold and a swamped gap (seed
    spread larger than the gap) decides; else partly (the row's own criterion, a swamped gap
    counting as not holding) or not reproduced. Inconclusive first if a precondition fails."""
    if not precondition:
        return "inconclusive"
    if any(g.swamped for g in gaps) and all(g.holds or g.swamped for g in gaps):
        return "inconclusive"
    return verdict(all(g.holds for g in gaps), partly=partly)


def _d(a: Sequence[float], b: Sequence[float], c: float = 1.0) -> list[float]:
    return [c * (x - y) for x, y in zip(a, b)]


def _near_bn(loss: dict, acc: dict, near_frac: float, acc_margin: float, k: float, chance_frac: float,
             diverged: bool) -> tuple[str, str]:
    ok, why = _pre(loss["none"], chance_frac, diverged)
    bn_helps = less(loss["bn"], loss["none"], k=k)
    if ok and not bn_helps.holds:
        ok, why = False, "; inconclusive: BN's loss is not below the standard net's, so near BN is not far from it"
    g_loss = less(_d(loss["noisy_bn"], loss["bn"]), _d(loss["none"], loss["bn"], near_frac), k=k)
    g_acc = less(acc["bn"], acc["noisy_bn"], k=k, margin=-acc_margin)
    text = (f"loss excess over BN: {g_loss.text(('noisy BN', f'{near_frac:g} x standard'))}; test accuracy: "
            f"{g_acc.text(('BN', 'noisy BN'), '{:.1%}')}")
    return text + why, _decide((g_loss, g_acc), partly=g_loss.holds != g_acc.holds, precondition=ok)


def _beat_standard(loss: dict, acc: dict, k: float, chance_frac: float, diverged: bool) -> tuple[str, str]:
    ok, why = _pre(loss["none"], chance_frac, diverged)
    gaps = {n: (less(loss[n], loss["none"], k=k), less(acc["none"], acc[n], k=k)) for n in ("bn", "noisy_bn")}
    text = "; ".join(f"{NAME[n]}: loss {gl.text((NAME[n], 'standard'))}, test accuracy "
                     f"{ga.text(('standard', NAME[n]), '{:.1%}')}" for n, (gl, ga) in gaps.items())
    one = any(gl.holds and ga.holds for gl, ga in gaps.values())
    return text + why, _decide([g for p in gaps.values() for g in p], partly=one, precondition=ok)


def _less_stable(mshift: dict, vshift: dict, loss_none: Sequence[float], k: float, chance_frac: float,
                 diverged: bool) -> tuple[str, str]:
    ok, why = _pre(loss_none, chance_frac, diverged)
    gm = less(mshift["none"], mshift["noisy_bn"], k=k)
    gv = less(vshift["none"], vshift["noisy_bn"], k=k)
    text = (f"median over layers, mean shift: {gm.text(('standard', 'noisy BN'), '{:.4f}')}; variance shift: "
            f"{gv.text(('standard', 'noisy BN'), '{:.4f}')}")
    return text + why, _decide((gm, gv), partly=gm.holds != gv.holds, precondition=ok)


def _stalls(noise: Sequence[float], none: Sequence[float], k: float, chance_frac: float,
            none_diverged: bool) -> tuple[str, str]:
    ok, why = _pre(none, chance_frac, none_diverged)
    stalled = [not left_chance([x], frac=chance_frac) for x in noise]  # a diverged run (inf) did not train
    worse = less(none, noise, k=k)
    vals = ", ".join("diverged" if np.isinf(x) else f"{x:.3f}" for x in noise)
    text = (f"noise-only final loss {vals} (stalled on {sum(stalled)}/{len(noise)} seeds; threshold "
            f"{chance_frac * CHANCE_LOSS:.2f}); {worse.text(('standard', 'noise only'))}")
    swamped = not all(stalled) and worse.swamped
    return text + why, verdict(all(stalled), partly=worse.holds, precondition=ok and not swamped)


def _bn_identity(err_mean: float, err_var: float, ident_tol: float) -> tuple[str, str]:
    text = (f"largest error over BN runs, slots, channels and probed steps: mean {err_mean:.1e} (x |gamma|), "
            f"variance {err_var:.1e} (relative)")
    return text, identity(err_mean <= ident_tol and err_var <= ident_tol)


def _marginal(ratio_mean: Sequence[float], ratio_var: Sequence[float], marginal: float,
              loss_none: Sequence[float], chance_frac: float, diverged: bool) -> tuple[str, str]:
    ok, why = _pre(loss_none, chance_frac, diverged)
    within = {c: [1 / marginal < r < marginal for r in rs] for c, rs in (("mean", ratio_mean), ("variance", ratio_var))}
    text = "; ".join(f"{c} shift, BN / standard: " + ", ".join(f"{r:.2f}" for r in rs) + f" (within on "
                     f"{sum(within[c])}/{len(rs)} seeds)" for c, rs in (("mean", ratio_mean), ("variance", ratio_var)))
    both = [all(w) for w in within.values()]
    return text + why, verdict(all(both), partly=any(both), precondition=ok)


def _lag_growth(noisy: dict, none: dict, grow_ratio: float, k: float, diverged: bool) -> tuple[str, str]:
    n = len(noisy["mean shift"])
    g = [grow_ratio] * n
    gaps = {c: (less(noisy[c], g, k=k), less(g, none[c], k=k)) for c in ("mean shift", "var shift")}
    text = "; ".join(f"{c}, longest / shortest lag: noisy BN " + ", ".join(f"{x:.2f}" for x in noisy[c]) +
                     ", standard " + ", ".join(f"{x:.2f}" for x in none[c]) for c in gaps)
    text += f" ({n} seed{'s' if n > 1 else ''})"
    one = any(a.holds and b.holds for a, b in gaps.values())
    why = "; inconclusive: a run the comparison needs diverged" if diverged else ""
    return text + why, _decide([g for p in gaps.values() for g in p], partly=one, precondition=not diverged)


def _mnist_beats(loss: dict, k: float, chance_frac: float, diverged: bool) -> tuple[str, str]:
    ok, why = _pre(loss["none"], chance_frac, diverged)
    g = less(loss["noisy_bn"], loss["none"], k=k)
    return g.text(("noisy BN", "standard")) + why, g.verdict(precondition=ok)


def _mnist_near(loss: dict, near_frac: float, k: float, chance_frac: float, diverged: bool) -> tuple[str, str]:
    ok, why = _pre(loss["none"], chance_frac, diverged)
    if ok and not less(loss["bn"], loss["none"], k=k).holds:
        ok, why = False, "; inconclusive: BN's loss is not below the standard net's, so near BN is not far from it"
    g = less(_d(loss["noisy_bn"], loss["bn"]), _d(loss["none"], loss["bn"], near_frac), k=k)
    return f"loss excess over BN: {g.text(('noisy BN', f'{near_frac:g} x standard'))}" + why, \
        g.verdict(precondition=ok)


PRE = ("Precondition: the standard net left chance (tail loss < {chance_frac:g} ln 10 on every seed at step "
       "{steps}) and no run the row compares diverged. ")
ALL = "on every paired seed, or mean gap > {k:g} seed spreads"
CRITERIA = {
    "near_bn": Criterion("Noisy BN nearly matches BN", SOURCE,
                         PRE + "Also BN's loss < standard's. Both: noisy BN's final-loss excess over BN < "
                         "{near_frac:g} x the standard net's excess, and noisy BN's test accuracy > BN's "
                         "- {acc_margin:.0%}, "
                         + ALL + " (partly: only one of the two)", _near_bn),
    "beat_standard": Criterion("BN and noisy BN both beat the standard net", SOURCE,
                               PRE + "For each of BN and noisy BN: final training loss < standard's and test "
                               "accuracy > standard's, " + ALL + " (partly: both hold for one of the two)",
                               _beat_standard),
    "less_stable": Criterion("Noisy BN's distributions are less stable than even the standard net's", SOURCE,
                             PRE + "Site: after the normaliser (where the noise acts; the standard net has no "
                             "normaliser, so its two sites agree). Median over the recorded layers of the mean "
                             "shift and of the variance shift between records {record_every} steps apart: noisy "
                             "BN > standard, " + ALL + " (partly: only one of the two)", _less_stable),
    "noise_stalls": Criterion("The same noise without BN prevents training", "Santurkar et al. 2018, Sec. 2.1",
                              PRE + "The noise-only net's final training loss (noise on) stays >= {chance_frac:g} "
                              "ln 10 on every seed, or it diverges (partly: it trains, but its loss > standard's, "
                              + ALL + ")", _stalls),
    "bn_identity": Criterion("A BN channel's batch mean and variance after the normaliser are β and γ² "
                             "(so stability measured there is stability by construction)", "Ioffe & Szegedy 2015, "
                             "Alg. 1 (algebra)", "Site: after the normaliser, BN runs, {probed} probed steps. On the "
                             "record batch: |mean - beta| / |gamma| and |var / (gamma^2 v / (v + eps)) - 1| <= "
                             "{ident_tol:g}, v the variance before the normaliser; the largest error over every "
                             "channel (an identity holds everywhere or not at all)", _bn_identity),
    "marginal": Criterion("BN and standard nets differ only marginally in distributional stability",
                          "Santurkar et al. 2018, Sec. 1, Fig. 1c",
                          PRE.replace("{steps}", "{num_steps}") + "Site: before the normaliser (the layer's output, "
                          "the paper's Fig. 1c). Core runs, every seed, all {num_steps} steps: median over the "
                          "recorded layers of the mean shift and of the variance shift between records "
                          "{record_every} steps apart; BN / standard within a factor {marginal:g} either way on "
                          "every seed, for both (partly: for one of the two)", _marginal),
    "lag_growth": Criterion("The injected shift is redrawn at every step: it does not grow with the lag, while "
                            "training's own drift does", "Santurkar et al. 2018, Sec. 2.1 and App. A (Alg. 1)",
                            "Precondition: no compared run diverged. Site: after the normaliser. Median over the "
                            "recorded layers of the shift from steps {anchors} to {lags_hi} steps later over the "
                            "shift at the shortest lag, {lags_lo} (lags in steps): noisy BN < {grow_ratio:g} and "
                            "standard > {grow_ratio:g}, "
                            + ALL + ", for the mean and the variance shift (partly: for one of the two)", _lag_growth),
    "mnist_beats": Criterion("On another data set the noisy BN net still trains better than the standard net",
                             "Cai & Wei 2020, Sec. 3.2",
                             "MNIST, LeNet, {mnist_steps} steps. Precondition: the standard LeNet left chance (tail "
                             "loss < {chance_frac:g} ln 10 on every seed) and no run diverged. Final training loss "
                             "(noise on): noisy BN < standard, " + ALL, _mnist_beats),
    "mnist_near": Criterion("On another data set the noise barely slows BN's training",
                            "Cai & Wei 2020, Sec. 3.2; Santurkar et al. 2018, Fig. 2",
                            "MNIST, LeNet, {mnist_steps} steps. Precondition: as the row above, and BN's loss < "
                            "standard's. Noisy BN's final-loss excess over BN < {near_frac:g} x the standard net's "
                            "excess, " + ALL, _mnist_near),
}


def claims(cfg: Params, hist: dict, noise_on: dict, shifts: pd.DataFrame, lags: pd.DataFrame, moments: dict,
           mnist: dict) -> list[Claim]:
    """The claims of Sec. 2.1 (compared seeds, step ``variant_steps``), Fig. 1c (core runs), the
    lags, the BN identity and Cai & Wei's MNIST replication."""
    df = per_seed(cfg, hist, noise_on)
    loss = {n: df.loc[n, "final train loss"].tolist() for n in NORMS}
    acc = {n: df.loc[n, "final test acc"].tolist() for n in NORMS}
    dv = {n: bool(df.loc[n, "diverged"].any()) for n in NORMS}
    med, err, fig1c = median_shifts(shifts), bn_identity_errors(moments), fig1c_ratios(cfg, hist)
    core_none = [tail_loss(hist[("none", cfg.lr, s)], cfg.tail_frac) for s in profiles.seeds(cfg)]
    core_dv = any(hist[(n, cfg.lr, s)].diverged for n in ("none", "bn") for s in profiles.seeds(cfg))
    mloss = mnist_losses(cfg, mnist)
    mdv = any(h.diverged for h in mnist.values())
    th = dict(k=cfg.k, chance_frac=cfg.chance_frac, steps=cfg.variant_steps,
              record_every=profiles.VGG_RECORDS[cfg.profile]["record_every"])
    return [CRITERIA["near_bn"](loss=loss, acc=acc, near_frac=cfg.near_frac, acc_margin=cfg.acc_margin,
                                diverged=dv["none"] or dv["bn"] or dv["noisy_bn"], **th),
            CRITERIA["beat_standard"](loss=loss, acc=acc, diverged=dv["none"] or dv["bn"] or dv["noisy_bn"], **th),
            CRITERIA["less_stable"](mshift=med["mean shift"], vshift=med["var shift"], loss_none=loss["none"],
                                    diverged=dv["none"] or dv["noisy_bn"], **th),
            CRITERIA["noise_stalls"](noise=loss["noise"], none=loss["none"], none_diverged=dv["none"], **th),
            CRITERIA["bn_identity"](err_mean=err["mean"], err_var=err["var"], ident_tol=cfg.ident_tol,
                                    probed=len(next(iter(moments.values()))["step"]) if moments else 0),
            CRITERIA["marginal"](ratio_mean=fig1c["mean shift"], ratio_var=fig1c["var shift"], marginal=cfg.marginal,
                                 loss_none=core_none, diverged=core_dv, num_steps=cfg.num_steps, **th),
            CRITERIA["lag_growth"](noisy=lag_growth(cfg, lags, "noisy_bn"), none=lag_growth(cfg, lags, "none"),
                                   grow_ratio=cfg.grow_ratio, diverged=dv["none"] or dv["noisy_bn"], k=cfg.k,
                                   anchors=", ".join(map(str, cfg.lag_anchors)), lags_hi=max(cfg.lags),
                                   lags_lo=min(cfg.lags)),
            CRITERIA["mnist_beats"](loss=mloss, diverged=mdv, mnist_steps=cfg.mnist_steps, **th),
            CRITERIA["mnist_near"](loss=mloss, near_frac=cfg.near_frac, diverged=mdv, mnist_steps=cfg.mnist_steps,
                                   **th)]
