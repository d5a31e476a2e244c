"""Chapter "Does BatchNorm work by controlling covariate shift?" (Santurkar et al. 2018, Sec. 2.1).

Four VGGs trained alike: standard, + BN (the shared ``profiles.VGG`` runs, the training chapter's),
+ "noisy" BN (BN then the time-varying noise of Algorithm 1) and standard + the same noise without BN.
Per-unit moments at each normaliser's output come from the always-on records (Fig. 7, ``stability``),
the percentile bands of Figs. 1c and 2 from ``probes.activations.ActivationBands`` on checkpoints at
the record schedule. Defaults are the quick profile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import models, profiles
from ..claims import Claim, Criterion, verdict
from ..config import Interval, ListOf, OneOf, param
from ..probes.activations import distribution_shift
from ..train import History

TITLE = "Does BatchNorm work by controlling covariate shift?"
NORMS = ("none", "bn", "noisy_bn", "noise")
NOISY = ("noisy_bn", "noise")  # the networks with Algorithm 1's noise layers
PAPER_CONVS = 13  # conv layers of the paper-profile VGG-16, the depth its layer numbers refer to
V = profiles.VGG["quick"]
_LAYER = Interval(int, 1, PAPER_CONVS)
_STEPS = Interval(int, 1, 1_000_000)
_DATA = ("cifar10", "mnist", "cifar10-mini", "mnist-mini")
SOURCE = "Santurkar et al. 2018, Sec. 2.1, Fig. 2"


@dataclass(frozen=True)
class Params(profiles.VGGParams):
    dataset: str = param(V["dataset"], OneOf(_DATA), "training data (paper: CIFAR-10; seed 001: another data set)")
    n_mu: float = param(0.5, Interval(float, 0, 10), "half-range of the per-unit noise mean mu_j (paper: 0.5)")
    n_sigma: float = param(1.25, Interval(float, 1, 10), "upper end of the per-unit noise scale sigma_j (paper: 1.25)")
    r_mu: float = param(0.1, Interval(float, 0, 10), "per-sample half-range of the additive noise m (paper: 0.1)")
    r_sigma: float = param(0.1, Interval(float, 0, 10),
                           "per-sample sd of the multiplicative noise s (paper: 0.1; sd: choice)")
    layers_fig1: tuple = param((3, 11), ListOf(_LAYER), "layers of Fig. 1c, numbered in a 13-conv VGG (paper)")
    layers_fig2: tuple = param((2, 9, 13), ListOf(_LAYER), "layers of Fig. 2, numbered in a 13-conv VGG (paper)")
    num_samples: int = param(1024, _STEPS, "activations sampled per layer for the bands (choice)")
    num_units: int = param(3, Interval(int, 1, 64), "random units per layer in Fig. 7 (choice)")


PROFILES = {"smoke": {**profiles.VGG["smoke"], "num_samples": 256}, "quick": {}, "paper": profiles.VGG["paper"]}
KEY_SETTINGS = ("dataset", "depth", "width", "lr", "batch_size", "num_steps", "num_seeds")


def noise(cfg: Params) -> dict[str, float]:
    """Algorithm 1's options, the ``noise`` field of the noisy networks' ModelSpec."""
    return dict(n_mu=cfg.n_mu, n_sigma=cfg.n_sigma, r_mu=cfg.r_mu, r_sigma=cfg.r_sigma)


def record_steps(cfg: Params) -> tuple[int, ...]:
    """The steps of the always-on records (the profile's ``record_every``): the probes' checkpoints."""
    return tuple(range(0, cfg.num_steps, profiles.VGG_RECORDS[cfg.profile]["record_every"]))


def at_records(h: History) -> list[int]:
    """The steps a run has records for: ``record_steps``, cut short if it diverged."""
    return h.records["step"].tolist() if "step" in h.records else []


def at_end(h: History) -> list[int]:
    """The last step of a finished run; none for a diverged one (nothing to evaluate)."""
    return [] if h.diverged else [h.steps_done]


def prose_settings(cfg: Params) -> dict:
    """Settings the prose quotes that the header box does not show (glued as ``cfg_<name>``)."""
    rec = profiles.VGG_RECORDS[cfg.profile]
    return {"cfg_eval_size": cfg.eval_size, "cfg_num_samples": cfg.num_samples, "cfg_num_units": cfg.num_units,
            "cfg_probe_every": rec["record_every"], "cfg_probe_size": rec["record_size"]}


def n_convs(depth: int) -> int:
    """Conv layers of VGG-``depth`` (weight layers 1..n_convs are the convs)."""
    return sum(v != "M" for v in models.VGG_CONFIGS[depth])


def map_layer(layer: int, depth: int) -> int:
    """The paper's conv layer ``layer`` (of 13) at the same relative depth in VGG-``depth`` (slot i follows it)."""
    return max(1, round(layer * n_convs(depth) / PAPER_CONVS))


def recorded_layers(cfg: Params) -> list[int]:
    """Every layer the chapter shows: the mapped Fig. 1c and Fig. 2 layers, sorted."""
    return sorted({map_layer(i, cfg.depth) for i in (*cfg.layers_fig1, *cfg.layers_fig2)})


def _tail(x: np.ndarray, frac: float = 0.1) -> float:
    return float(np.mean(x[-max(1, int(len(x) * frac)):]))  # mean over the last 10% of the steps


def summary(cfg: Params, hist: dict, noise_on: dict) -> pd.DataFrame:
    """One row per network: training loss and accuracy over the last 10% of the steps, final test
    accuracy (noise off) and with the noise kept on (``noise_on``: NoiseOnAccuracy results). Seed
    means; a diverged run counts as infinite loss, nan accuracy."""
    rows = []
    for norm in NORMS:
        keys = [(norm, cfg.lr, s) for s in profiles.seeds(cfg)]
        hs = [hist[k] for k in keys]
        on = [noise_on[k]["test_acc"][-1] if len(noise_on.get(k, {}).get("step", ())) else np.nan for k in keys]
        rows.append({"network": norm, "diverged runs": sum(h.diverged for h in hs),
                     "final train loss": np.mean([np.inf if h.diverged else _tail(h.train_loss) for h in hs]),
                     "final train acc": np.mean([np.nan if h.diverged else _tail(h.train_acc) for h in hs]),
                     "final test acc": np.mean([np.nan if h.diverged else h.test_acc[-1] for h in hs]),
                     "final test acc, noise on": np.mean(on)})
    return pd.DataFrame(rows)


def headline(table: pd.DataFrame) -> dict:
    """The numbers of the summary the prose quotes, per network."""
    out = {}
    for n, r in table.set_index("network").iterrows():
        on, why = r["final test acc, noise on"], "diverged" if n in NOISY else "no noise"
        out.update({f"loss_{n}": r["final train loss"], f"acc_{n}": r["final test acc"],
                    f"div_{n}": "diverged" if r["diverged runs"] else "finished",
                    f"acc_on_{n}": f"{on:.1%}" if on == on else f"not measured ({why})"})
    return out


def stability(cfg: Params, hist: dict) -> pd.DataFrame:
    """Per (network, layer): ``distribution_shift`` of the records ``post{i}`` (normaliser output), seed mean."""
    rows = []
    for norm in NORMS:
        recs = [hist[(norm, cfg.lr, s)].records for s in profiles.seeds(cfg)]
        for i in recorded_layers(cfg):
            sh = [distribution_shift(r[f"post{i}.mean"], r[f"post{i}.var"]) for r in recs]
            rows.append({"network": norm, "layer": i, "mean shift": np.mean([x["mean_shift"] for x in sh]),
                         "var shift": np.mean([x["var_shift"] for x in sh])})
    return pd.DataFrame(rows)


def shift_numbers(stab: pd.DataFrame) -> dict:
    """Shifts per network and layer, their ranges over layers, and noisy BN's ratios to standard."""
    s, out = stab.set_index(["network", "layer"]), {}
    for k, c in (("mshift", "mean shift"), ("vshift", "var shift")):
        out.update({f"{k}_{n}_{i}": v for (n, i), v in s[c].items()})
        out.update({f"{k}_{n}_{m}": getattr(s.loc[n, c], m)() for n in NORMS for m in ("min", "max")})
    ratio = s.loc["noisy_bn"] / s.loc["none"]  # per layer, noisy BN over standard
    return {**out, "ratio_min": ratio["mean shift"].min(), "ratio_max": ratio["mean shift"].max(),
            "vratio_min": ratio["var shift"].min(), "vratio_max": ratio["var shift"].max(), "n_layers": len(ratio),
            "n_less_stable": int(((ratio["mean shift"] > 1) & (ratio["var shift"] > 1)).sum())}


def noise_only_shift(cfg: Params, *, n: int = 200_000) -> dict[str, float]:
    """The shifts Algorithm 1 alone gives a unit whose BN output is fixed (gamma 1, beta 0):
    mean mu_j, variance sigma_j^2 + r_sigma^2 + r_mu^2 / 3, redrawn each step (Monte Carlo)."""
    rng = np.random.default_rng(cfg.seed)
    mu = rng.uniform(-cfg.n_mu, cfg.n_mu, (n, 1))            # (steps, 1 unit)
    sigma = rng.uniform(1, cfg.n_sigma, (n, 1))
    return distribution_shift(mu, sigma**2 + cfg.r_sigma**2 + cfg.r_mu**2 / 3)


def _near_bn(loss: dict, acc: dict, diverged: bool) -> tuple[str, str]:
    gap_std, gap_noisy = loss["none"] - loss["bn"], loss["noisy_bn"] - loss["bn"]
    return (f"excess {gap_noisy:.3f} vs {gap_std:.3f} (test accuracy {acc['noisy_bn']:.1%} vs {acc['bn']:.1%})",
            verdict(gap_std > 0 and gap_noisy <= gap_std / 4, partly=bool(loss["noisy_bn"] < loss["none"]),
                    diverged=diverged))


def _beat_standard(loss: dict, acc: dict, diverged: bool) -> tuple[str, str]:
    beats = [loss[n] < loss["none"] and acc[n] > acc["none"] for n in ("bn", "noisy_bn")]
    return (f"loss {loss['bn']:.3f} / {loss['noisy_bn']:.3f} vs {loss['none']:.3f}; test accuracy "
            f"{acc['bn']:.1%} / {acc['noisy_bn']:.1%} vs {acc['none']:.1%}",
            verdict(all(beats), partly=any(beats), diverged=diverged))


def _less_stable(n_less_stable: int, n_layers: int, diverged: bool) -> tuple[str, str]:
    return f"{n_less_stable} of {n_layers} layers", verdict(n_less_stable == n_layers, partly=n_less_stable > 0,
                                                            diverged=diverged)


def _stalls(loss: dict, acc: dict, noise_diverged: bool, chance: float) -> tuple[str, str]:
    measured = "diverged" if noise_diverged else f"test accuracy {acc['noise']:.1%} (standard {acc['none']:.1%})"
    return measured, verdict(noise_diverged or acc["noise"] < chance + 0.05, partly=bool(loss["noise"] > loss["none"]))


CRITERIA = {
    "near_bn": Criterion("Noisy BN nearly matches BN", SOURCE,
                         "final training loss: noisy BN's excess over BN is at most 1/4 of the standard "
                         "net's excess over BN (partly: noisy BN still below standard)", _near_bn),
    "beat_standard": Criterion("BN and noisy BN both beat the standard net", SOURCE,
                               "lower final training loss and higher final test accuracy than standard, for "
                               "both (partly: for one of them)", _beat_standard),
    "less_stable": Criterion("Noisy BN's distributions are less stable than even the standard net's", SOURCE,
                             "mean shift and variance shift of noisy BN above the standard net's, in every "
                             "recorded layer (partly: in some)", _less_stable),
    "noise_stalls": Criterion("The same noise without BN prevents training", "Santurkar et al. 2018, Sec. 2.1",
                              "the noise-only net diverges or ends within 5 points of chance ({chance:.0%}) "
                              "test accuracy (partly: it trains, but worse than standard)", _stalls),
}


def claims(cfg: Params, hist: dict, noise_on: dict) -> list[Claim]:
    """The four claims of Sec. 2.1, each decided by its criterion on the runs' numbers."""
    s = summary(cfg, hist, noise_on).set_index("network")
    loss, acc, dv = s["final train loss"].to_dict(), s["final test acc"].to_dict(), s["diverged runs"] > 0
    sh = shift_numbers(stability(cfg, hist))
    return [CRITERIA["near_bn"](loss=loss, acc=acc, diverged=bool(dv["bn"] or dv["noisy_bn"])),
            CRITERIA["beat_standard"](loss=loss, acc=acc, diverged=bool(dv["none"])),
            CRITERIA["less_stable"](n_less_stable=sh["n_less_stable"], n_layers=sh["n_layers"],
                                    diverged=bool(dv["none"] or dv["noisy_bn"])),
            CRITERIA["noise_stalls"](loss=loss, acc=acc, noise_diverged=bool(dv["noise"]), chance=1 / 10)]
