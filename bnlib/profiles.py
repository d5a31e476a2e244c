"""The shared trajectory settings of each profile, defined once for every chapter.

Several chapters train the same networks (the VGG pair of Fig. 1, the deep linear network);
the store trains each trajectory once only if every chapter asks for exactly the same specs.
So the settings those trajectories share live here, per profile, and the chapters take
their ``Params`` defaults and ``PROFILES`` from these dicts instead of repeating numbers.
``vgg_specs``/``dln_specs`` turn a chapter's resolved parameters into the three specs.

The always-on records (test evaluations, gradient norms, moments before/after every
normaliser) are profile settings, not chapter parameters, so no chapter can split a shared
trajectory by asking for a different record schedule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config import ChapterParams, Interval, OneOf, param
from .data import DataSpec
from .models import ModelSpec
from .train import TrainConfig

# The VGG runs of Santurkar et al. Sec. 2-3: CIFAR-10, plain SGD, batch 128 (paper).
VGG: dict[str, dict[str, Any]] = {
    "smoke": dict(dataset="cifar10-mini", train_size=2000, depth=11, width=0.125, batch_size=32,
                  num_steps=6, eval_every=3, eval_size=200, num_seeds=1, variant_steps=6, variant_seeds=1),
    # quick: the standard net leaves its plateau near step 300 (shared/spec/experiments.md), so
    # the core pair runs 1,500 steps on 3 seeds and the variants 1,000 steps on 2.
    "quick": dict(dataset="cifar10", train_size=50_000, depth=11, width=0.125, batch_size=128,
                  num_steps=1500, eval_every=100, eval_size=2000, num_seeds=3, variant_steps=1000,
                  variant_seeds=2),
    "paper": dict(dataset="cifar10", train_size=50_000, depth=16, width=1.0, batch_size=128,
                  num_steps=15_000, eval_every=250, eval_size=10_000, num_seeds=3, variant_steps=15_000,
                  variant_seeds=3),
}
VGG_RECORDS = {"smoke": dict(record_every=2, record_size=32), "quick": dict(record_every=25, record_size=64),
               "paper": dict(record_every=50, record_size=128)}

# The deep linear network of Santurkar et al. Sec. 2.2: 25 layers of 10 x 10, 1000 points,
# full-batch gradient descent, summed squared error, lr 1e-6, 10,000 steps (paper).
DLN: dict[str, dict[str, Any]] = {
    "smoke": dict(dln_depth=6, dln_width=10, dln_points=64, dln_steps=30, dln_lr=1e-6),
    "quick": dict(dln_depth=25, dln_width=10, dln_points=1000, dln_steps=10_000, dln_lr=1e-6),
    "paper": dict(dln_depth=25, dln_width=10, dln_points=1000, dln_steps=10_000, dln_lr=1e-6),
}
DLN_RECORDS = {"smoke": dict(eval_every=10, record_every=5), "quick": dict(eval_every=100, record_every=100),
               "paper": dict(eval_every=100, record_every=50)}


_STEPS = Interval(int, 1, 1_000_000)
_V, _D = VGG["quick"], DLN["quick"]


@dataclass(frozen=True)
class VGGParams(ChapterParams):
    """The shared VGG settings: every chapter that trains the book's VGG takes these fields,
    with these defaults (the quick profile), so they all ask for the same trajectories."""

    dataset: str = param(_V["dataset"], OneOf(("cifar10", "cifar10-mini")), "VGG training data (paper: CIFAR-10)")
    train_size: int = param(_V["train_size"], Interval(int, 2, 60_000), "training images used (paper: all 50,000)")
    depth: int = param(_V["depth"], OneOf((11, 13, 16, 19)), "VGG depth (paper: 'VGG-like'; quick: 11, choice)")
    width: float = param(_V["width"], Interval(float, 0, 4, low_open=True),
                         "VGG channel multiplier (paper 1; quick 1/8, choice)")
    lr: float = param(0.1, Interval(float, 0, 10, low_open=True), "VGG SGD learning rate (paper: 0.1)")
    batch_size: int = param(_V["batch_size"], Interval(int, 2, 60_000), "VGG examples per SGD step (paper: 128)")
    num_steps: int = param(_V["num_steps"], _STEPS, "VGG SGD steps of the core pair, standard and BN at lr 0.1 "
                           "(paper: 15,000; quick: 1,500, past the standard net's plateau, choice)")
    eval_every: int = param(_V["eval_every"], _STEPS, "VGG steps between test evaluations (choice)")
    eval_size: int = param(_V["eval_size"], Interval(int, 1, 10_000), "test images per evaluation (choice)")
    num_seeds: int = param(_V["num_seeds"], Interval(int, 1, 20), "seeds of the core runs (VGG and DLN pairs): "
                           "seed, seed + 1, ... (choice)")
    variant_steps: int = param(_V["variant_steps"], _STEPS, "VGG SGD steps of the other variants (lr 0.5, other "
                               "normalisers; quick: 1,000, choice)")
    variant_seeds: int = param(_V["variant_seeds"], Interval(int, 1, 20), "seeds of the variants a claim compares "
                               "with the core runs (choice)")


@dataclass(frozen=True)
class DLNParams(ChapterParams):
    """The shared deep-linear-network settings (see ``VGGParams``)."""

    dln_depth: int = param(_D["dln_depth"], Interval(int, 2, 200), "DLN layers (paper: 25)")
    dln_width: int = param(_D["dln_width"], Interval(int, 1, 1000), "DLN width and input dimension (paper: 10)")
    dln_points: int = param(_D["dln_points"], Interval(int, 2, 1_000_000), "DLN data points, all in every step "
                            "(paper: 1000)")
    dln_lr: float = param(_D["dln_lr"], Interval(float, 0, 1, low_open=True),
                          "DLN gradient-descent learning rate (paper: 1e-6)")
    dln_steps: int = param(_D["dln_steps"], _STEPS, "DLN full-batch steps (paper and quick: 10,000)")


def seeds(cfg: Any, field: str = "num_seeds") -> list[int]:
    """The seeds of a setting: ``seed, seed + 1, ..., seed + n - 1``, n = ``cfg.<field>``
    (``num_seeds`` for the core runs, ``variant_seeds`` for the variants; 1 if absent)."""
    return [cfg.seed + s for s in range(getattr(cfg, field, 1))]


def vgg_specs(cfg: Any, *, variant: bool = False, **model: Any) -> tuple[DataSpec, ModelSpec, TrainConfig]:
    """CIFAR-10 (or ``cfg.dataset``), VGG-``cfg.depth`` at ``cfg.width`` and plain SGD at
    ``cfg.lr``, from a chapter's resolved parameters; ``model`` sets more ModelSpec fields.
    ``variant`` runs ``cfg.variant_steps`` instead of the core pair's ``cfg.num_steps``."""
    d = DataSpec(cfg.dataset, train_size=cfg.train_size, pad_to=32 if "mnist" in cfg.dataset else None)
    m = ModelSpec("vgg", depth=cfg.depth, width=cfg.width,
                  in_channels=1 if "mnist" in cfg.dataset else None, **model)
    t = TrainConfig("sgd", lr=cfg.lr, batch_size=cfg.batch_size,
                    num_steps=cfg.variant_steps if variant else cfg.num_steps,
                    eval_every=cfg.eval_every, eval_size=cfg.eval_size, **VGG_RECORDS[cfg.profile])
    return d, m, t


def dln_specs(cfg: Any, **model: Any) -> tuple[DataSpec, ModelSpec, TrainConfig]:
    """The deep linear network's regression task, network and full-batch gradient descent
    (float64: its summed loss at lr 1e-6 needs the precision), from a chapter's parameters."""
    d = DataSpec("linear", train_size=cfg.dln_points, dim=cfg.dln_width, seed=cfg.seed, dtype="float64")
    m = ModelSpec("dln", depth=cfg.dln_depth, width=cfg.dln_width, **model)
    t = TrainConfig("sgd", lr=cfg.dln_lr, batch_size=None, num_steps=cfg.dln_steps, loss="mse_sum",
                    record_size=cfg.dln_points, **DLN_RECORDS[cfg.profile])
    return d, m, t
