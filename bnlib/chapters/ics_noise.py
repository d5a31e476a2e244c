"""Chapter "Does BatchNorm work by controlling covariate shift?" (Santurkar et al. 2018, Sec. 2.1).

Four VGGs trained with the same steps, learning rate, seed and batches: standard, + BN,
+ "noisy" BN (BN then the time-varying noise of Algorithm 1) and standard + the same noise
without BN. An activation probe records, on one fixed batch, the distribution of chosen
layers over training (Figs. 1c, 2) and per-unit means and variances (Fig. 7), from which
``stability`` computes a step-to-step shift per layer. Defaults are the quick profile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from .. import data, device, models, runs, train
from ..claims import Claim, verdict
from ..config import ChapterParams, Interval, ListOf, OneOf, as_dict, param
from ..functional import probing
from ..norms import ActivationNoise
from ..probes.activations import activation_stats, distribution_shift

TITLE = "Does BatchNorm work by controlling covariate shift?"
NORMS = ("none", "bn", "noisy_bn", "noise")
NOISY = ("noisy_bn", "noise")  # the networks with Algorithm 1's noise layers
PAPER_CONVS = 13  # conv layers of the paper-profile VGG-16, the depth its layer numbers refer to
_LAYER = Interval(int, 1, PAPER_CONVS)


_POS = Interval(float, 0, 10, low_open=True)
_STEPS = Interval(int, 1, 1_000_000)


@dataclass(frozen=True)
class Params(ChapterParams):
    dataset: str = param("cifar10", OneOf(("cifar10", "mnist", "cifar10-mini", "mnist-mini")),
                         "training data (paper: CIFAR-10; seed 001: another data set)")
    depth: int = param(11, OneOf((11, 13, 16, 19)),
                       "VGG depth (paper: 'VGG-like'; quick 11, choice)")
    width: float = param(0.25, Interval(float, 0, 4, low_open=True),
                         "channel multiplier of the VGG (paper 1; quick 1/4, choice)")
    lr: float = param(0.1, _POS, "SGD learning rate (paper: 0.1)")
    batch_size: int = param(128, Interval(int, 2, 60_000), "examples per SGD step (paper: 128)")
    num_steps: int = param(250, Interval(int, 2, 1_000_000),
                           "SGD steps per run (paper: 15,000; quick: 250, choice)")
    eval_every: int = param(50, _STEPS, "steps between test evaluations (choice)")
    eval_size: int = param(2000, Interval(int, 1, 10_000), "test images per evaluation (choice)")
    train_size: int = param(60_000, Interval(int, 2, 60_000),
                            "training images used, at most the set's size (paper: all)")
    n_mu: float = param(0.5, Interval(float, 0, 10),
                        "half-range of the per-unit noise mean mu_j (paper: 0.5)")
    n_sigma: float = param(1.25, Interval(float, 1, 10),
                           "upper end of the per-unit noise scale sigma_j (paper: 1.25)")
    r_mu: float = param(0.1, Interval(float, 0, 10),
                        "per-sample half-range of the additive noise m (paper: 0.1)")
    r_sigma: float = param(0.1, Interval(float, 0, 10),
                           "per-sample sd of the multiplicative noise s (paper: 0.1; sd: choice)")
    layers_fig1: tuple = param((3, 11), ListOf(_LAYER),
                               "layers of Fig. 1c, numbered in a 13-conv VGG (paper)")
    layers_fig2: tuple = param((2, 9, 13), ListOf(_LAYER),
                               "layers of Fig. 2, numbered in a 13-conv VGG (paper)")
    probe_size: int = param(64, Interval(int, 2, 10_000),
                            "images in the fixed probe batch (choice)")
    probe_every: int = param(1, _STEPS, "steps between activation records (choice)")
    num_samples: int = param(1024, Interval(int, 1, 1_000_000),
                             "activations sampled per layer for the bands (choice)")
    num_units: int = param(3, Interval(int, 1, 64), "random units per layer in Fig. 7 (choice)")
    num_seeds: int = param(1, Interval(int, 1, 20), "seeds per network (choice)")
    device: str = param("auto", OneOf(("auto", "cpu", "cuda", "mps")), "compute device")


PROFILES = {
    "smoke": dict(dataset="cifar10-mini", width=0.125, num_steps=6, eval_every=3, eval_size=200,
                  train_size=2000, batch_size=32, probe_size=32, num_samples=256),
    "quick": {},
    "paper": dict(depth=16, width=1.0, num_steps=15_000, eval_every=250, eval_size=10_000,
                  probe_size=128, probe_every=10, num_seeds=3),
}
KEY_SETTINGS = ("dataset", "depth", "width", "lr", "batch_size", "num_steps", "probe_every",
                "probe_size", "num_seeds")


def n_convs(depth: int) -> int:
    """Conv layers of VGG-``depth`` (weight layers 1..n_convs are the convs)."""
    return sum(v != "M" for v in models.VGG_CONFIGS[depth])


def map_layer(layer: int, depth: int) -> int:
    """The paper's conv layer ``layer`` (of 13) at the same relative depth in VGG-``depth``."""
    return max(1, round(layer * n_convs(depth) / PAPER_CONVS))


def recorded_layers(cfg: Params) -> list[int]:
    """Every layer the probe records: the mapped Fig. 1c and Fig. 2 layers, sorted."""
    return sorted({map_layer(i, cfg.depth) for i in (*cfg.layers_fig1, *cfg.layers_fig2)})


def load_data(cfg: Params) -> data.Data:
    """The data set on the device; MNIST's 28x28 digits are padded to the VGG's 32x32 with
    the background value (so five 2x2 poolings end at 1x1, as for CIFAR-10)."""
    d = data.load(cfg.dataset, device=device(cfg.device), train_size=cfg.train_size)
    if d.X_train.shape[-1] == 32:
        return d
    bg = float(d.X_train.min())  # a black pixel after standardisation

    def pad(X: torch.Tensor) -> torch.Tensor:
        return F.pad(X, (2, 2, 2, 2), value=bg)  # (N, 1, 28, 28) -> (N, 1, 32, 32)

    return data.Data(d.name, pad(d.X_train), d.y_train, pad(d.X_test), d.y_test)


def probe_batch(cfg: Params, d: data.Data) -> torch.Tensor:
    """The fixed probe batch: ``probe_size`` training images drawn once from ``cfg.seed``."""
    g = torch.Generator().manual_seed(cfg.seed)
    idx = torch.randperm(len(d.X_train), generator=g)[:cfg.probe_size].to(d.device)
    return d.X_train[idx]


def run_one(cfg: Params, norm: str, seed: int, d: data.Data, *, force: bool = False,
            progress: bool = True) -> train.History:
    """Train one network with the activation probe on (cached by the full config)."""
    tcfg = train.TrainConfig(optimizer="sgd", lr=cfg.lr, batch_size=cfg.batch_size,
                             num_steps=cfg.num_steps, eval_every=cfg.eval_every,
                             eval_size=cfg.eval_size, seed=seed)
    noise = dict(n_mu=cfg.n_mu, n_sigma=cfg.n_sigma, r_mu=cfg.r_mu, r_sigma=cfg.r_sigma)
    layers = recorded_layers(cfg)
    probe_cfg = dict(layers=layers, size=cfg.probe_size, every=cfg.probe_every,
                     num_samples=cfg.num_samples, bn_mode="batch", batch_seed=cfg.seed)
    key = {"model": dict(arch="vgg", depth=cfg.depth, width=cfg.width, norm=norm, seed=seed,
                         noise=noise if norm in NOISY else None),
           "data": dict(name=cfg.dataset, train_size=cfg.train_size), "train": as_dict(tcfg),
           "probe": probe_cfg}
    X_probe = probe_batch(cfg, d)

    def probe(ctx: train.StepContext) -> dict:
        return activation_stats(ctx.model, X_probe, bn_mode="batch", layers=layers,
                                num_samples=cfg.num_samples, seed=seed)

    def compute() -> dict:
        torch.manual_seed(seed)
        model = models.vgg(cfg.depth, width=cfg.width, norm=norm, seed=seed,
                           in_channels=d.X_train.shape[1], noise=noise).to(d.device)
        h = train.fit(model, d, tcfg, probes=[train.Probe("act", probe, cfg.probe_every)],
                      progress=progress, desc=f"{norm} seed={seed}")
        if norm in NOISY and not h.diverged:  # the final model, evaluated with noise kept on
            acc = noise_on_accuracy(model, d.X_test[:cfg.eval_size], d.y_test[:cfg.eval_size])
            h.probes["noise_on"] = {"step": np.array([h.steps_done]), "test_acc": np.array([acc])}
        return h.to_arrays()

    depends = (runs.module_path(__name__), "probes/activations")
    return train.History.from_arrays(runs.cached("ics_noise", key, compute, force=force,
                                                 depends=depends))


@torch.no_grad()
def noise_on_accuracy(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *,
                      chunk: int = 1000) -> float:
    """Test accuracy with BN on running statistics but the noise layers active (fresh draws
    per chunk), the network as it was trained; model and generators are left unchanged."""
    with probing(model, "running"):
        for m in model.modules():
            if isinstance(m, ActivationNoise):
                m.train()
        correct = sum((model(Xc).argmax(dim=1) == yc).sum().item()
                      for Xc, yc in zip(X.split(chunk), y.split(chunk), strict=True))
    return correct / len(X)


def run(cfg: Params, *, force: bool = False,
        progress: bool = True) -> dict[tuple[str, float, int], train.History]:
    """All runs, keyed (norm, lr, seed) like the training chapter; the data is loaded once."""
    d = load_data(cfg)
    return {(n, cfg.lr, s): run_one(cfg, n, s, d, force=force, progress=progress)
            for n in NORMS for s in seeds(cfg)}


def seeds(cfg: Params) -> list[int]:
    """The seeds of every network: ``seed, seed + 1, ...``."""
    return [cfg.seed + s for s in range(cfg.num_seeds)]


def _tail(x: np.ndarray, frac: float = 0.1) -> float:
    """Mean over the last ``frac`` of a per-step series."""
    return float(np.mean(x[-max(1, int(len(x) * frac)):]))


def summary(cfg: Params, hist: dict) -> pd.DataFrame:
    """One row per network: training loss and accuracy over the last 10% of the steps, final
    test accuracy (eval mode: running statistics, noise off) and, for the networks with
    noise, the final test accuracy with the noise kept on (seed means; a diverged run counts
    as infinite loss, nan accuracy)."""
    rows = []
    for norm in NORMS:
        hs = [hist[(norm, cfg.lr, s)] for s in seeds(cfg)]
        rows.append({
            "network": norm, "diverged runs": sum(h.diverged for h in hs),
            "final train loss": np.mean([np.inf if h.diverged else _tail(h.train_loss)
                                         for h in hs]),
            "final train acc": np.mean([np.nan if h.diverged else _tail(h.train_acc)
                                        for h in hs]),
            "final test acc": np.mean([np.nan if h.diverged else h.test_acc[-1] for h in hs]),
            "final test acc, noise on": np.mean([h.probes["noise_on"]["test_acc"][-1]
                                                 if "noise_on" in h.probes else np.nan
                                                 for h in hs])})
    return pd.DataFrame(rows)


def stability(cfg: Params, hist: dict) -> pd.DataFrame:
    """Per (network, layer): the mean shift of per-unit means and log-variances between
    consecutive records (``probe_every`` steps apart), averaged over seeds."""
    rows = []
    for norm in NORMS:
        for i in recorded_layers(cfg):
            recs = [hist[(norm, cfg.lr, s)].probes["act"] for s in seeds(cfg)]
            shifts = [distribution_shift(r[f"layer{i}.mean"], r[f"layer{i}.var"]) for r in recs]
            rows.append({"network": norm, "layer": i,
                         "mean shift": np.mean([x["mean_shift"] for x in shifts]),
                         "var shift": np.mean([x["var_shift"] for x in shifts])})
    return pd.DataFrame(rows)


def noise_only_shift(cfg: Params, *, n: int = 200_000) -> dict[str, float]:
    """The shifts Algorithm 1 alone gives a unit whose BN output is fixed (gamma 1, beta 0):
    mean mu_j, variance sigma_j^2 + r_sigma^2 + r_mu^2 / 3, redrawn each step (Monte Carlo)."""
    rng = np.random.default_rng(cfg.seed)
    mu = rng.uniform(-cfg.n_mu, cfg.n_mu, (n, 1))            # (steps, 1 unit)
    sigma = rng.uniform(1, cfg.n_sigma, (n, 1))
    return distribution_shift(mu, sigma**2 + cfg.r_sigma**2 + cfg.r_mu**2 / 3)


def claims(cfg: Params, hist: dict) -> list[Claim]:
    """The four claims of Sec. 2.1, each decided by a computed criterion."""
    s = summary(cfg, hist).set_index("network")
    loss, acc, dv = s["final train loss"], s["final test acc"], s["diverged runs"]
    st = stability(cfg, hist).set_index(["network", "layer"])
    src = "Santurkar et al. 2018, Sec. 2.1, Fig. 2"
    gap_std, gap_noisy = loss["none"] - loss["bn"], loss["noisy_bn"] - loss["bn"]
    beats = [loss[n] < loss["none"] and acc[n] > acc["none"] for n in ("bn", "noisy_bn")]
    layers = recorded_layers(cfg)
    less_stable = [all(st.loc[("noisy_bn", i), c] > st.loc[("none", i), c]
                       for c in ("mean shift", "var shift")) for i in layers]
    chance = 1 / 10
    stalled = bool(dv["noise"]) or acc["noise"] < chance + 0.05
    return [
        Claim("Noisy BN nearly matches BN", src,
              "final training loss: noisy BN's excess over BN is at most 1/4 of the standard "
              "net's excess over BN (partly: noisy BN still below standard)",
              f"excess {gap_noisy:.3f} vs {gap_std:.3f} (test accuracy "
              f"{acc['noisy_bn']:.1%} vs {acc['bn']:.1%})",
              verdict(gap_std > 0 and gap_noisy <= gap_std / 4,
                      partly=bool(loss["noisy_bn"] < loss["none"]),
                      diverged=bool(dv["bn"] or dv["noisy_bn"]))),
        Claim("BN and noisy BN both beat the standard net", src,
              "lower final training loss and higher final test accuracy than standard, for "
              "both (partly: for one of them)",
              f"loss {loss['bn']:.3f} / {loss['noisy_bn']:.3f} vs {loss['none']:.3f}; test "
              f"accuracy {acc['bn']:.1%} / {acc['noisy_bn']:.1%} vs {acc['none']:.1%}",
              verdict(all(beats), partly=any(beats), diverged=bool(dv["none"]))),
        Claim("Noisy BN's distributions are less stable than even the standard net's", src,
              "mean shift and variance shift of noisy BN above the standard net's, in every "
              "recorded layer (partly: in some)",
              f"{sum(less_stable)} of {len(layers)} layers",
              verdict(all(less_stable), partly=any(less_stable),
                      diverged=bool(dv["none"] or dv["noisy_bn"]))),
        Claim("The same noise without BN prevents training", "Santurkar et al. 2018, Sec. 2.1",
              f"the noise-only net diverges or ends within 5 points of chance ({chance:.0%}) "
              "test accuracy (partly: it trains, but worse than standard)",
              "diverged" if dv["noise"] else
              f"test accuracy {acc['noise']:.1%} (standard {acc['none']:.1%})",
              verdict(stalled, partly=bool(loss["noise"] > loss["none"]))),
    ]
