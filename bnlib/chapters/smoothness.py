"""Chapter "The smoothing effect" (Santurkar et al. 2018, Sec. 3.2; Figs. 4, 10, 11).

A VGG on CIFAR-10 and the 25-layer deep linear network (DLN), with and without BN, trained
while ``probes.landscape`` measures the loss and the gradient along the gradient direction
(and along random directions) every few steps; plus a learning-rate sweep. Defaults are the
quick profile.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .. import data, device, models, runs, train
from ..claims import Claim, verdict
from ..config import ChapterParams, Interval, ListOf, OneOf, as_dict, param
from ..probes import landscape

TITLE = "The smoothing effect: the landscape along the gradient"
NORMS = ("none", "bn")
ARCHS = ("vgg", "dln")
DIRECTIONS = ("grad", "rand")  # probe names: along the gradient, along a random direction
DIRECTION_LABELS = {"grad": "along the gradient", "rand": "along a random direction"}
_POS = dict(low=0, low_open=True)


@dataclass(frozen=True)
class Params(ChapterParams):
    dataset: str = param("cifar10", OneOf(("cifar10", "cifar10-mini")),
                         "VGG training data (paper: CIFAR-10)")
    train_size: int = param(50_000, Interval(int, 128, 50_000), "training images used (paper: all)")
    depth: int = param(11, OneOf((11, 13, 16, 19)),
                       "VGG depth (paper: 'VGG-like'; quick 11, choice)")
    width: float = param(0.25, Interval(float, high=4, **_POS),
                         "VGG channel multiplier (paper 1; quick 1/4, choice)")
    lr: float = param(0.1, Interval(float, high=10, **_POS), "VGG SGD learning rate (paper: 0.1)")
    batch_size: int = param(128, Interval(int, 2, 50_000), "VGG examples per step (paper: 128)")
    num_steps: int = param(200, Interval(int, 1, 1_000_000),
                           "VGG SGD steps (paper: 15,000; quick 200, choice)")
    probe_every: int = param(25, Interval(int, 1, 1_000_000),
                             "VGG steps between probes (paper: every step; choice)")
    mult_min: float = param(0.5, Interval(float, high=100, **_POS),
                            "smallest VGG step multiplier s (paper: 1/2)")
    mult_max: float = param(4.0, Interval(float, high=100, **_POS),
                            "largest VGG step multiplier s (paper: 4)")
    num_mults: int = param(6, Interval(int, 2, 100), "multipliers per line, log-spaced (choice)")
    direction_kind: str = param("unit", OneOf(landscape.DIRECTION_KINDS),
                                "random direction: unit or filter-normalised (choice)")
    dln_depth: int = param(25, Interval(int, 2, 200), "DLN layers (paper: 25)")
    dln_width: int = param(10, Interval(int, 1, 1000), "DLN width (paper: 10)")
    dln_points: int = param(1000, Interval(int, 2, 1_000_000),
                            "DLN data points, all in every step (paper: 1000)")
    dln_loss: str = param("mse_sum", OneOf(("mse_sum", "mse")),
                          "DLN loss summed or averaged over the points (choice)")
    dln_lr: float = param(1e-6, Interval(float, high=1, **_POS),
                          "DLN gradient-descent learning rate (paper: 1e-6)")
    dln_steps: int = param(1500, Interval(int, 1, 1_000_000),
                           "DLN steps (paper: 10,000; quick 1500, choice)")
    dln_probe_every: int = param(100, Interval(int, 1, 1_000_000),
                                 "DLN steps between probes (choice)")
    dln_mult_min: float = param(0.01, Interval(float, high=1000, **_POS),
                                "smallest DLN step multiplier (paper: 1/100)")
    dln_mult_max: float = param(30.0, Interval(float, high=1000, **_POS),
                                "largest DLN step multiplier (paper: 30)")
    sweep_lrs: tuple = param((0.1, 0.5, 2.0), ListOf(Interval(float, high=100, **_POS), 2),
                             "VGG learning rates of the sweep (choice)")
    sweep_steps: int = param(40, Interval(int, 1, 1_000_000), "VGG steps per sweep run (choice)")
    dln_sweep_lrs: tuple = param((1e-7, 1e-6, 1e-5, 1e-4),
                                 ListOf(Interval(float, high=1, **_POS), 2),
                                 "DLN learning rates of the sweep (choice)")
    dln_sweep_steps: int = param(300, Interval(int, 1, 1_000_000),
                                 "DLN steps per sweep run (choice)")
    trained_below: float = param(0.9, Interval(float, 0, 1, low_open=True, high_open=True),
                                 "a run 'trains' if final loss < this x initial loss (choice)")
    device: str = param("auto", OneOf(("auto", "cpu", "cuda", "mps")), "compute device")


PROFILES = {
    "smoke": dict(dataset="cifar10-mini", train_size=512, width=0.125, batch_size=32,
                  num_steps=4, probe_every=2, num_mults=3, dln_depth=6, dln_points=64,
                  dln_steps=4, dln_probe_every=2, sweep_lrs=(0.1, 2.0), sweep_steps=3,
                  dln_sweep_lrs=(1e-6, 1e-4), dln_sweep_steps=3),
    "quick": {},
    "paper": dict(depth=16, width=1.0, num_steps=15_000, probe_every=100, num_mults=8,
                  dln_steps=10_000, dln_probe_every=100, sweep_lrs=(0.01, 0.03, 0.1, 0.3, 1.0, 3.0),
                  sweep_steps=2000, dln_sweep_lrs=(1e-7, 3e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4),
                  dln_sweep_steps=10_000),
}
KEY_SETTINGS = ("dataset", "depth", "width", "lr", "num_steps", "probe_every", "mult_min",
                "mult_max", "num_mults", "direction_kind", "dln_lr", "dln_steps", "sweep_lrs",
                "sweep_steps")


def multipliers(cfg: Params, arch: str) -> np.ndarray:
    """The log-spaced multipliers s of the line search for ``arch``."""
    lo, hi = (cfg.mult_min, cfg.mult_max) if arch == "vgg" else (cfg.dln_mult_min, cfg.dln_mult_max)
    if not lo < hi:
        raise ValueError(f"Multiplier range of {arch} must have min < max; got [{lo}, {hi}]")
    return np.geomspace(lo, hi, cfg.num_mults)


def _setup(cfg: Params, arch: str, norm: str, lr: float, steps: int, seed: int):
    """(model builder, TrainConfig, cache-key pieces) of one run."""
    if arch == "vgg":
        tcfg = train.TrainConfig(lr=lr, batch_size=cfg.batch_size, num_steps=steps,
                                 eval_every=steps, eval_size=1000, seed=seed)
        spec = dict(arch="vgg", depth=cfg.depth, width=cfg.width, norm=norm, seed=seed)
        build = lambda: models.vgg(cfg.depth, width=cfg.width, norm=norm, seed=seed)  # noqa: E731
        dspec = dict(name=cfg.dataset, train_size=cfg.train_size)
    else:
        tcfg = train.TrainConfig(lr=lr, batch_size=None, num_steps=steps, loss=cfg.dln_loss,
                                 eval_every=steps, seed=seed)
        spec = dict(arch="dln", depth=cfg.dln_depth, width=cfg.dln_width, norm=norm, seed=seed)
        build = lambda: models.deep_linear(depth=cfg.dln_depth, width=cfg.dln_width, norm=norm,  # noqa: E731
                                           seed=seed)
        dspec = dict(name="linear", n=cfg.dln_points, dim=cfg.dln_width, seed=seed)
    return build, tcfg, {"model": spec, "data": dspec, "train": as_dict(tcfg)}


def load_data(cfg: Params, arch: str) -> data.Data:
    dev = device(cfg.device)
    if arch == "vgg":
        return data.load(cfg.dataset, device=dev, train_size=cfg.train_size, test_size=1000)
    return data.linear_regression(n=cfg.dln_points, dim=cfg.dln_width, seed=cfg.seed, device=dev)


def probes_for(cfg: Params, arch: str) -> list[train.Probe]:
    """The line-search probes of ``arch``: along the gradient every ``probe_every`` steps, along
    a random direction every other time (it costs as much and serves as a check)."""
    every = cfg.probe_every if arch == "vgg" else cfg.dln_probe_every
    s = multipliers(cfg, arch)
    return [landscape.as_probe("grad", every, lr=None, multipliers=s),
            landscape.as_probe("rand", 2 * every, lr=None, multipliers=s,
                               direction=cfg.direction_kind, seed=cfg.seed)]


@contextlib.contextmanager
def _threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` intra-op CPU threads (None: unchanged). The DLN's 10 x 10 matrices are
    far too small to split: with two threads, synchronisation costs more than the work."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def run_one(cfg: Params, arch: str, norm: str, *, lr: float | None = None, steps: int | None = None,
            probed: bool = True, dataset: data.Data | None = None, force: bool = False,
            progress: bool = True) -> train.History:
    """One cached run of ``arch`` with ``norm``; ``probed`` adds the line-search probes."""
    lr = lr if lr is not None else (cfg.lr if arch == "vgg" else cfg.dln_lr)
    steps = steps if steps is not None else (cfg.num_steps if arch == "vgg" else cfg.dln_steps)
    build, tcfg, key = _setup(cfg, arch, norm, lr, steps, cfg.seed)
    probes = probes_for(cfg, arch) if probed else []
    if probed:
        key["probes"] = [dict(name=p.name, every=p.every) for p in probes]
        key["line"] = dict(multipliers=multipliers(cfg, arch).tolist(),
                           direction=cfg.direction_kind)

    def compute() -> dict:
        torch.manual_seed(cfg.seed)
        model = build().to(device(cfg.device))
        d = dataset or load_data(cfg, arch)
        with _threads(1 if arch == "dln" else None):
            return train.fit(model, d, tcfg, probes=probes, progress=progress,
                             desc=f"{arch} {norm} lr={lr:g}").to_arrays()

    return train.History.from_arrays(runs.cached("smoothness", key, compute, force=force))


def run(cfg: Params, *, force: bool = False, progress: bool = True) -> dict:
    """Every run of the chapter: ``{"landscape": {(arch, norm): History},
    "sweep": {(arch, norm, lr): History}}``."""
    out: dict = {"landscape": {}, "sweep": {}}
    for arch in ARCHS:
        d = load_data(cfg, arch)
        lrs, steps = (cfg.sweep_lrs, cfg.sweep_steps) if arch == "vgg" else (cfg.dln_sweep_lrs,
                                                                            cfg.dln_sweep_steps)
        for norm in NORMS:
            out["landscape"][arch, norm] = run_one(cfg, arch, norm, dataset=d, force=force,
                                                   progress=progress)
            for lr in lrs:
                out["sweep"][arch, norm, lr] = run_one(cfg, arch, norm, lr=lr, steps=steps,
                                                       probed=False, dataset=d, force=force,
                                                       progress=progress)
    return out


def probes(res: dict, arch: str, direction: str = "grad") -> dict[str, dict]:
    """``{norm: probe arrays}`` of the landscape runs of ``arch``, for ``plots.smoothness``."""
    return {n: res["landscape"][arch, n].probes.get(direction, {}) for n in NORMS}


def _aligned(hists: dict, arch: str, direction: str) -> tuple[np.ndarray, dict, dict]:
    """Probe steps present in both runs of ``arch``, and each run's probe arrays at them."""
    pn, pb = (hists[arch, n].probes.get(direction, {"step": np.array([], int)}) for n in NORMS)
    steps = np.intersect1d(pn["step"], pb["step"])
    pick = lambda p: {k: v[np.isin(p["step"], steps)] for k, v in p.items()}  # noqa: E731
    return steps, pick(pn), pick(pb)


METRICS = {  # name -> (label, function of a probe dict giving one value per probed step)
    "loss_range": ("loss range along the line", lambda p: p["loss_max"] - p["loss_min"]),
    "grad_diff": ("largest gradient change", lambda p: p["grad_diff_max"]),
    "beta_eff": ("effective beta-smoothness", lambda p: p["beta_eff"]),
}


def ratios(hists: dict, arch: str, direction: str = "grad") -> pd.DataFrame:
    """Per probed step: each metric without BN divided by the same metric with BN (> 1 means
    BN is smoother there)."""
    steps, pn, pb = _aligned(hists, arch, direction)
    df = pd.DataFrame({"step": steps})
    for name, (_, f) in METRICS.items():
        with np.errstate(divide="ignore", invalid="ignore"):
            df[name] = f(pn) / f(pb)
    return df


def ratio_summary(hists: dict) -> pd.DataFrame:
    """Median and largest standard/BN factor of each metric, per network and direction; the
    largest also over the first half of training only ("early"), and the last probed one."""
    rows = []
    for arch in ARCHS:
        for direction in DIRECTIONS:
            r = ratios(hists, arch, direction)
            early = r[r["step"] < r["step"].max() / 2] if len(r) > 1 else r
            for name, (label, _) in METRICS.items():
                rows.append({"network": arch, "direction": direction, "metric": name,
                             "label": label, "probes": len(r),
                             "median": float(np.median(r[name])) if len(r) else np.nan,
                             "max": float(r[name].max()), "max_early": float(early[name].max()),
                             "last": float(r[name].iloc[-1]) if len(r) else np.nan})
    return pd.DataFrame(rows)


def _final_loss(h: train.History, frac: float = 0.2) -> float:
    """Mean batch loss over the last ``frac`` of the steps (inf if the run diverged)."""
    if h.diverged:
        return float("inf")
    n = max(1, int(round(len(h.train_loss) * frac)))
    return float(np.mean(h.train_loss[-n:]))


def sweep_table(cfg: Params, sweep: dict) -> pd.DataFrame:
    """One row per (network, norm, lr): initial and final loss, diverged, and whether it trains
    (final loss < ``trained_below`` x initial loss, and no divergence)."""
    rows = []
    order = lambda kv: (ARCHS.index(kv[0][0]), NORMS.index(kv[0][1]), kv[0][2])  # noqa: E731
    for (arch, norm, lr), h in sorted(sweep.items(), key=order):
        first = float(h.train_loss[0]) if h.steps_done else float("nan")
        last = _final_loss(h)
        rows.append({"network": arch, "norm": norm, "lr": lr, "initial loss": first,
                     "final loss": last, "diverged": h.diverged,
                     "trains": bool(last < cfg.trained_below * first)})
    return pd.DataFrame(rows)


def largest_lr(table: pd.DataFrame, arch: str, norm: str) -> float:
    """Largest learning rate of the sweep at which ``arch`` with ``norm`` trains (0 if none)."""
    ok = table[(table["network"] == arch) & (table["norm"] == norm) & table["trains"]]
    return float(ok["lr"].max()) if len(ok) else 0.0


def _factor_claim(claim: str, src: str, s: pd.Series, what: str) -> Claim:
    return Claim(claim, src, f"median over probed steps of standard / BN {what} > 1 "
                 "(partly: > 1 at some step)",
                 f"median x{s['median']:.2f}, max x{s['max']:.2f} over {s['probes']} steps",
                 verdict(s["median"] > 1, partly=s["max"] > 1))


def claims(cfg: Params, res: dict) -> list[Claim]:
    """The chapter's claims, each decided by a computed criterion."""
    summ = ratio_summary(res["landscape"]).set_index(["network", "direction", "metric"])
    g = lambda arch, m, d="grad": summ.loc[arch, d, m]  # noqa: E731
    src = "Santurkar et al. 2018, Sec. 3.2, Fig. 4"
    early = g("vgg", "grad_diff")["max_early"]
    dln = [g("dln", m)["median"] for m in METRICS]
    table = sweep_table(cfg, res["sweep"])
    out = [
        _factor_claim("VGG: the loss varies less along the gradient with BN", src,
                      g("vgg", "loss_range"), "loss range"),
        _factor_claim("VGG: the gradient is more predictive with BN", src,
                      g("vgg", "grad_diff"), "largest gradient change"),
        Claim("VGG: ... by close to two orders of magnitude early in training", src,
              "largest standard / BN gradient-change factor in the first half of training >= 100 "
              "(partly: >= 10)", f"x{early:.1f}", verdict(early >= 100, partly=early >= 10)),
        _factor_claim("VGG: effective beta-smoothness is lower with BN", src,
                      g("vgg", "beta_eff"), "effective beta-smoothness"),
        Claim("DLN: the smoothing effect is present in deep linear networks too",
              "Santurkar et al. 2018, Sec. 3.2, Fig. 10",
              "median standard / BN factor > 1 for all three metrics (partly: some)",
              ", ".join(f"{m} x{v:.2f}" for m, v in zip(METRICS, dln)),
              verdict(all(v > 1 for v in dln), partly=any(v > 1 for v in dln))),
    ]
    for arch in ARCHS:
        rand = [summ.loc[arch, "rand", m]["median"] for m in METRICS]
        out.append(Claim(f"{arch.upper()}: random directions behave alike",
                         "Santurkar et al. 2018, Sec. 3.2",
                         f"median standard / BN factor > 1 along random ({cfg.direction_kind}) "
                         "directions for all three metrics (partly: some)",
                         ", ".join(f"{m} x{v:.2f}" for m, v in zip(METRICS, rand)),
                         verdict(all(v > 1 for v in rand), partly=any(v > 1 for v in rand))))
    for arch, lrs in (("vgg", cfg.sweep_lrs), ("dln", cfg.dln_sweep_lrs)):
        lb, ln = largest_lr(table, arch, "bn"), largest_lr(table, arch, "none")
        out.append(Claim(f"{arch.upper()}: BN trains at larger learning rates",
                         "Santurkar et al. 2018, Sec. 3.1",
                         f"largest swept lr that trains (final loss < {cfg.trained_below:g} x "
                         "initial): BN > standard > 0 (partly: the standard network trains at "
                         "none, or both at the same)",
                         f"BN {lb:g} vs standard {ln:g} (swept {', '.join(f'{v:g}' for v in lrs)})",
                         verdict(lb > ln > 0, partly=lb > ln == 0 or lb == ln > 0)))
    return out


def numbers(cfg: Params, res: dict) -> dict[str, float | str]:
    """Every number the chapter's prose quotes, by glue key: standard / BN factors
    (``<net>_<direction>_<metric>_{med,max,early,last}``), median gradient norms at the probes
    (``<net>_gnorm_<norm>``), mean batch loss over the first half of training
    (``<net>_early_loss_<norm>``), largest trained learning rates (``<net>_lr_<norm>``) and
    the settings not in the page header."""
    out: dict[str, float | str] = {}
    for r in ratio_summary(res["landscape"]).itertuples():
        key = f"{r.network}_{r.direction}_{r.metric}"
        out.update({f"{key}_med": r.median, f"{key}_max": r.max, f"{key}_early": r.max_early,
                    f"{key}_last": r.last})
    for arch in ARCHS:
        for norm in NORMS:
            h = res["landscape"][arch, norm]
            out[f"{arch}_gnorm_{norm}"] = float(np.median(h.probes["grad"]["grad_norm0"]))
            half = h.train_loss[:max(1, h.steps_done // 2)]
            out[f"{arch}_early_loss_{norm}"] = float(np.mean(half))
    out["chance_loss"] = float(np.log(10))  # cross-entropy of a uniform guess over 10 classes
    table = sweep_table(cfg, res["sweep"])
    for arch in ARCHS:
        for norm in NORMS:
            out[f"{arch}_lr_{norm}"] = largest_lr(table, arch, norm)
    for k in ("batch_size", "dln_depth", "dln_width", "dln_points", "dln_probe_every",
              "dln_mult_min", "dln_mult_max", "dln_loss", "trained_below", "dln_sweep_steps"):
        out[k] = getattr(cfg, k)
    out["dln_sweep_lrs"] = ", ".join(f"{v:g}" for v in cfg.dln_sweep_lrs)
    s = multipliers(cfg, "vgg")
    out["vgg_step_min"], out["vgg_step_max"] = s[0] * cfg.lr, s[-1] * cfg.lr
    return out


def tally(rows: list[Claim]) -> dict[str, int]:
    """How many claims got each verdict (``n_<verdict>``, spaces as underscores) and in all."""
    out = {f"n_{v.replace(' ', '_')}": sum(c.verdict == v for c in rows)
           for v in ("reproduced", "partly", "not reproduced", "diverged")}
    out["n_claims"] = len(rows)
    return out
