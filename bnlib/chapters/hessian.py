"""Chapter "The Hessian's pseudo-condition number" (seed 002, Reyes & Levy; Secs. 3-4).

A 784-100-10 MLP on MNIST with and without BN after the ReLU (BN before the ReLU as a
sensitivity check), Adam with l2, learning rate and l2 weight searched by validation accuracy.
The trajectories go through the run store; at step 0 and the end of every epoch the probes of
``probes.curvature`` measure accuracies, the exact Hessian of the last layer's weights W2 and
the top of the full Hessian's spectrum (Lanczos), on one fixed training batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import models
from ..claims import Claim, Criterion, verdict
from ..config import ChapterParams, Interval, ListOf, OneOf, param
from ..data import DataSpec
from ..models import ModelSpec
from ..runs import Trajectory
from ..train import TrainConfig

TITLE = "The Hessian's pseudo-condition number"
VARIANTS = ("none", "bn", "bn_before")  # no norm; BN after the ReLU (seed); BN before it
SEED_TABLE1 = {"none": (0.748, 0.772, 0.728), "bn": (0.795, 0.813, 0.767)}  # train/val/test
SRC = "Reyes & Levy (seed 002)"
SEED_EPOCHS = 30  # the seed's training length
SEED_LIKE = (0.70, 0.85)  # validation accuracies we call "like the seed's" in the search grid
ZERO_REL = 1e-6  # |lambda| <= ZERO_REL * lambda_1 counts as numerically zero
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Params(ChapterParams):
    dataset: str = param("mnist", OneOf(("mnist", "mnist-mini")), "data (seed: MNIST)")
    train_size: int = param(50_000, Interval(int, 1, 59_000), "training images (choice)")
    val_size: int = param(10_000, Interval(int, 1, 30_000),
                          "validation images, the training images after train_size (choice)")
    hidden: int = param(100, Interval(int, 1, 4096), "hidden units (seed: 100)")
    epochs: int = param(6, Interval(int, 1, 1000), "training epochs (seed: 30; quick: 6)")
    batch_size: int = param(128, Interval(int, 2, 59_000), "examples per Adam step (choice)")
    lrs: tuple = param((1e-3, 1e-2, 1e-1), ListOf(Interval(float, 0, 10, low_open=True)),
                       "Adam learning rates searched (seed: 'a range'; values our choice)")
    l2s: tuple = param((0.0, 1e-3, 1e-2, 1e-1), ListOf(Interval(float, 0, 10)),
                       "l2 weights searched (torch weight_decay; values our choice)")
    search_epochs: int = param(1, Interval(int, 1, 100), "epochs per search run (choice)")
    search_size: int = param(20_000, Interval(int, 1, 59_000),
                             "training images used by the search runs (choice)")
    hessian_size: int = param(1000, Interval(int, 2, 59_000),
                              "fixed training batch for every Hessian (choice)")
    hessian_bn_mode: str = param("batch", OneOf(("batch", "running")),
                                 "BN statistics inside the Hessian (choice: those of training)")
    top_k: int = param(10, Interval(int, 2, 100), "eigenvalues in kappa' (seed: 10)")
    lanczos_tol: float = param(1e-3, Interval(float, 0, 1, low_open=True),
                               "relative accuracy of the full-Hessian eigenvalues (choice)")
    full_every: int = param(1, Interval(int, 1, 1000), "epochs between full-Hessian runs (choice)")
    train_eval_size: int = param(10_000, Interval(int, 1, 59_000),
                                 "training images for the per-epoch training accuracy (choice)")
    num_seeds: int = param(1, Interval(int, 1, 20), "seeds per network (choice)")


PROFILES = {
    "smoke": dict(dataset="mnist-mini", train_size=1500, val_size=500, epochs=2, batch_size=100,
                  lrs=(1e-3, 1e-1), l2s=(0.0, 1e-2), search_size=1000, hessian_size=200,
                  train_eval_size=500),
    "quick": {},
    "paper": dict(epochs=30, lrs=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1),
                  l2s=(0.0, 1e-4, 1e-3, 1e-2, 1e-1), search_epochs=5, search_size=50_000,
                  hessian_size=2000, train_eval_size=50_000, num_seeds=3),
}
KEY_SETTINGS = ("dataset", "train_size", "val_size", "epochs", "batch_size", "lrs", "l2s",
                "search_epochs", "search_size", "train_eval_size", "hessian_size", "hessian_bn_mode", "top_k",
                "lanczos_tol", "num_seeds")


def specs(cfg: Params, *, lr: float, l2: float, size: int | None = None, epochs: int | None = None
          ) -> tuple[DataSpec, ModelSpec, TrainConfig]:
    """MNIST (the first ``size`` training images, default train_size), the MLP with BN after
    the ReLU, and Adam at ``lr`` with l2 weight ``l2`` for ``epochs`` epochs."""
    if cfg.hessian_size > cfg.train_size or cfg.batch_size > cfg.train_size:
        raise ValueError(f"Chapter 'hessian' needs hessian_size and batch_size <= train_size; got hessian_size="
                         f"{cfg.hessian_size}, batch_size={cfg.batch_size}, train_size={cfg.train_size}")
    n = min(size or cfg.train_size, cfg.train_size)
    steps = (epochs or cfg.epochs) * (n // cfg.batch_size)
    return (DataSpec(cfg.dataset, train_size=n),
            ModelSpec("mlp", norm="bn", sizes=(784, cfg.hidden, 10), norm_after_relu=True),
            TrainConfig("adam", lr=lr, weight_decay=l2, batch_size=cfg.batch_size, num_steps=steps,
                        eval_every=steps, record_every=n // cfg.batch_size))  # records, checkpoints: per epoch


def search_specs(cfg: Params) -> tuple[DataSpec, ModelSpec, TrainConfig]:
    """The short search runs: the first ``search_size`` images for ``search_epochs`` epochs (a
    sweep sets lr and l2; these are the grid's first point)."""
    return specs(cfg, lr=cfg.lrs[0], l2=cfg.l2s[0], size=cfg.search_size, epochs=cfg.search_epochs)


def trajectories(data: DataSpec, mlp: ModelSpec, adam: TrainConfig, seeds: list[int]) -> dict:
    """{(variant, seed): Trajectory} for the three networks of ``VARIANTS``."""
    nets = {"none": mlp.with_(norm="none"), "bn": mlp, "bn_before": mlp.with_(norm_after_relu=False)}
    return {(v, s): Trajectory(data, nets[v], adam, s) for v in VARIANTS for s in seeds}


def epoch_ends(cfg: Params, every: int = 1) -> tuple[int, ...]:
    """Step 0 and the last step of every ``every``-th epoch (and of the last epoch)."""
    spe = cfg.train_size // cfg.batch_size
    return tuple(e * spe for e in range(cfg.epochs + 1) if e % every == 0 or e == cfg.epochs)


def reached(steps: tuple[int, ...]):
    """``steps`` a trajectory reached (a diverged run stops early): a steps function for probes."""
    return lambda h: [s for s in steps if s <= h.steps_done]


def last_step(h) -> list[int]:
    return [h.steps_done]


def search_table(grid, val: dict) -> pd.DataFrame:
    """Validation accuracy of every (network, lr, l2) of the search sweep ``grid`` from its
    ``curvature.Accuracies`` probe ``val`` (NaN for a diverged run)."""
    return pd.DataFrame([{"network": norm, "lr": lr, "l2": l2,
                          "val_acc": np.nan if grid.hist[key].diverged else float(val[key]["val_acc"][-1])}
                         for key in grid for norm, lr, l2, _ in [key]])


def best(table: pd.DataFrame, variant: str = "none") -> tuple[float, float]:
    """The (lr, l2) with the highest validation accuracy for ``variant`` (seed: chosen on FC)."""
    row = table[table.network == variant].sort_values("val_acc", ascending=False).iloc[0]
    return float(row.lr), float(row.l2)


def results(cfg: Params, nets, evals: dict, block: dict, full: dict) -> dict:
    """Per run {(variant, seed)}: per-epoch arrays (epoch 0 = initialisation) of accuracies,
    losses, last-layer eigenvalues and the full top-k (NaN where not measured), wall time."""
    spe, out = cfg.train_size // cfg.batch_size, {}
    for key, h in nets.hist.items():
        b, f = block[key], full[key]
        top, hvps = np.full((len(b["step"]), cfg.top_k), np.nan), np.zeros(len(b["step"]))
        top[f["step"] // spe], hvps[f["step"] // spe] = f["eigenvalues"], f["num_matvecs"]
        out[key] = {**{k: v for k, v in evals[key].items() if k != "step"}, "ll_eigs": b["eigenvalues"],
                    "feat_sq": b["feat_sq"], "const_units": b["const_units"], "full_top": top,
                    "full_hvps": hvps, "time_s": np.concatenate([[0.0], h.time_s[spe - 1::spe]]),
                    "diverged": h.diverged}
    return out


def per_epoch(res: dict, variant: str, key: str, fn=None) -> np.ndarray:
    """(seeds, epochs + 1) array of ``key`` (or ``fn(run)``), NaN-padded after a divergence."""
    rows = [np.asarray(fn(r) if fn else r[key], float) for (v, _), r in res.items() if v == variant]
    n = max(len(r) for r in rows)
    return np.stack([np.pad(r, (0, n - len(r)), constant_values=np.nan) for r in rows])


def kappa(r: dict, key: str = "ll_eigs", k: int = 10) -> np.ndarray:
    """kappa' = lambda_1 / lambda_k per epoch."""
    return np.asarray(r[key])[:, 0] / np.asarray(r[key])[:, k - 1]


def accuracy_table(res: dict) -> pd.DataFrame:
    """Final train / validation / test accuracy and time per epoch, mean over seeds, plus the
    seed's Table 1."""
    rows = []
    for v in VARIANTS:
        last = {s: np.nanmean(per_epoch(res, v, f"{s}_acc")[:, -1]) for s in SPLITS}
        t = np.nanmean([np.mean(np.diff(r["time_s"])) for (w, _), r in res.items() if w == v])
        rows.append({"network": v, "source": "measured", **last, "s/epoch": t})
    for v, accs in SEED_TABLE1.items():
        rows.append({"network": v, "source": "seed 002, Table 1", **dict(zip(SPLITS, accs)),
                     "s/epoch": np.nan})
    return pd.DataFrame(rows)


def time_to_reach(r: dict, target: float, key: str = "val_acc") -> float:
    """Training wall time at the first epoch end where ``key`` >= target (inf if never)."""
    hit = np.flatnonzero(np.asarray(r[key]) >= target)
    return float(r["time_s"][hit[0]]) if hit.size else float("inf")


def _runs(res: dict, v: str) -> list[dict]:
    return [r for (w, _), r in res.items() if w == v]


def _search_numbers(cfg: Params, table: pd.DataFrame) -> dict:
    out: dict = {"hidden": cfg.hidden, "val_best": float(table.val_acc.max()), "lr_max": max(cfg.lrs)}
    (out["lr"], out["l2"]), (out["bn_lr"], out["bn_l2"]) = best(table), best(table, "bn")
    for v in ("none", "bn"):
        t = table[table.network == v].set_index(["lr", "l2"]).val_acc
        out[f"search_best_{v}"], out[f"search_lrmax_{v}"] = float(t.max()), float(t.loc[max(cfg.lrs)].max())
    grid = table.pivot_table(index=["lr", "l2"], columns="network", values="val_acc")
    like = grid[grid["none"].between(*SEED_LIKE)]
    out["seed_like"] = "; ".join(f"lr {lr:g} with l2 {l2:g} ({r['none']:.1%} without, {r['bn']:.1%} "
                                 "with BatchNorm)" for (lr, l2), r in like.iterrows()) or "none"
    out["seed_like_n"], out["seed_like_bn_ahead"] = len(like), int((like.bn > like.none).sum())
    out["seed_like_lo"], out["seed_like_hi"] = SEED_LIKE
    return out


def _variant_numbers(cfg: Params, res: dict, v: str, acc: pd.Series) -> dict:
    eigs = per_epoch(res, v, "", lambda r: np.asarray(r["ll_eigs"])[-1])  # (seeds, P2)
    full = per_epoch(res, v, "", lambda r: np.asarray(r["full_top"])[-1])  # (seeds, k)
    lam1, k = eigs[:, 0], cfg.top_k
    out = {f"{s.replace('s/epoch', 'sec')}_{v}": float(acc[s]) for s in (*SPLITS, "s/epoch")}
    out |= {f"lam1_{v}": float(lam1.mean()), f"kappa_{v}": float((lam1 / eigs[:, k - 1]).mean()),
            f"zeros_{v}": float(np.mean(np.sum(np.abs(eigs) <= ZERO_REL * lam1[:, None], 1))),
            f"neg_{v}": float(np.mean(np.sum(eigs < 0, 1))),
            f"ratio_{v}": float(np.max(np.min(np.abs(eigs), 1) / lam1)),
            f"full_lam1_{v}": float(full[:, 0].mean()), f"full_kappa_{v}": float((full[:, 0] / full[:, k - 1]).mean())}
    for key, name in (("feat_sq", "feat"), ("const_units", "const"), ("full_hvps", "hvps")):
        out[f"{name}_{v}"] = float(np.nanmean(per_epoch(res, v, key)[:, -1]))
    out[f"lam1_per_feat_{v}"] = out[f"lam1_{v}"] / out[f"feat_{v}"]
    out[f"full_over_block_{v}"] = out[f"full_lam1_{v}"] / out[f"lam1_{v}"]
    return out


def numbers(cfg: Params, table: pd.DataFrame, res: dict) -> dict[str, float | str]:
    """Every number the chapter's prose quotes, by glue key (means over seeds, final epoch)."""
    out = _search_numbers(cfg, table)
    out |= {"seed_epochs": SEED_EPOCHS, "zero_rel": ZERO_REL, "seed_test_none": SEED_TABLE1["none"][2],
            "seed_test_bn": SEED_TABLE1["bn"][2],
            "n_params": sum(p.numel() for p in models.mlp(sizes=(784, cfg.hidden, 10)).parameters())}
    acc = accuracy_table(res).set_index(["network", "source"])
    for v in VARIANTS:
        out |= _variant_numbers(cfg, res, v, acc.loc[(v, "measured")])
    out["slowdown"], out["acc_gap"] = out["sec_bn"] / out["sec_none"], out["test_bn"] - out["test_none"]
    # kernel of H_W2 without BN: 1 (x) u for every u, and v (x) e_i for every silent unit i
    out["zeros_pred_none"] = cfg.hidden + (10 - 1) * out["const_none"]
    out["t_fc"] = float(np.mean([r["time_s"][-1] for r in _runs(res, "none")]))
    out["t_bn"] = float(np.mean([time_to_reach(r, out["val_none"]) for r in _runs(res, "bn")]))
    return out


# ---- the claims -------------------------------------------------------------------------------

def _accuracy(bn: dict, none: dict, diverged: bool) -> tuple[str, str]:
    text = "; ".join(f"{s} {bn[s]:.1%} vs {none[s]:.1%}" for s in ("test", "val", "train"))
    return text, verdict(all(bn[s] > none[s] for s in SPLITS), partly=bn["test"] > none["test"],
                         diverged=diverged)


def _sooner(bn: float, none: float, diverged: bool) -> tuple[str, str]:
    return f"{bn:.3g} s vs {none:.3g} s", verdict(bn < none, diverged=diverged)


def _slower(bn: float, none: float) -> tuple[str, str]:
    return f"{bn:.2f} s vs {none:.2f} s", verdict(bn > none)


def _smaller(bn: np.ndarray, none: np.ndarray) -> tuple[str, str]:
    share = float(np.mean(np.asarray(bn)[1:] < np.asarray(none)[1:]))  # trained epochs 1..E
    return (f"at {share:.0%} of epochs; final {bn[-1]:.3g} vs {none[-1]:.3g}",
            verdict(share == 1, partly=share > 0))


def _singular(zero: float, zero_rel: float) -> tuple[str, str]:
    return f"largest min|lambda|/lambda_1: {zero:.1e}", verdict(zero <= zero_rel)


def _same_order(full: dict, block: dict) -> tuple[str, str]:
    same = [(full[q]["bn"] < full[q]["none"]) == (block[q]["bn"] < block[q]["none"]) for q in ("lam1", "kappa")]
    return (f"full lambda_1 {full['lam1']['bn']:.3g} vs {full['lam1']['none']:.3g}, kappa' "
            f"{full['kappa']['bn']:.3g} vs {full['kappa']['none']:.3g}", verdict(all(same), partly=any(same)))


CRITERIA = {
    "accuracy": Criterion("BN gives higher accuracy (train, validation and test)", f"{SRC}, Table 1",
                          "final accuracy of BN > standard on all three sets (partly: on the test set)",
                          _accuracy),
    "wall_clock": Criterion("BN converges faster in wall-clock time", f"{SRC}, Figs. 1-2",
                            "training time BN needs to reach the standard net's final validation "
                            "accuracy < the standard net's total training time", _sooner),
    "epoch_time": Criterion("An epoch takes longer with BN", f"{SRC}, Sec. 4.2",
                            "mean training time per epoch: BN > standard", _slower),
    "lambda1": Criterion("BN gives smaller top eigenvalues of the last-layer Hessian", f"{SRC}, Fig. 8",
                         "lambda_1(BN) < lambda_1(standard) at every trained epoch (partly: at some)",
                         _smaller),
    "kappa": Criterion("BN gives a smaller pseudo-condition number lambda_1/lambda_k", f"{SRC}, Fig. 3",
                       "kappa' = lambda_1/lambda_{k}: BN < standard at every trained epoch (partly: at some)",
                       _smaller),
    "singular": Criterion("The plain condition number is unusable: the last-layer Hessian is "
                          "near-singular", f"{SRC}, Sec. 4.3",
                          "min |lambda| <= {zero_rel:g} lambda_1 in every run and epoch", _singular),
    "full": Criterion("The last layer represents the whole network's curvature", f"{SRC}, Sec. 2.2",
                      "the full Hessian orders BN vs standard as the last-layer block does (final "
                      "lambda_1 and kappa'; partly: one of the two)", _same_order),
}


def claims(cfg: Params, res: dict) -> list[Claim]:
    """The seed's claims, each decided by its criterion on the runs' numbers (means over seeds)."""
    k, acc = cfg.top_k, accuracy_table(res).set_index(["network", "source"])
    a = {v: acc.loc[(v, "measured")] for v in ("none", "bn")}
    div = any(r["diverged"] for v in ("none", "bn") for r in _runs(res, v))
    t_fc = float(np.mean([r["time_s"][-1] for r in _runs(res, "none")]))
    t_bn = float(np.mean([time_to_reach(r, a["none"]["val"]) for r in _runs(res, "bn")]))
    curve = {q: {v: per_epoch(res, v, "", fn).mean(0) for v in ("none", "bn")} for q, fn in
             (("lam1", lambda r: np.asarray(r["ll_eigs"])[:, 0]), ("kappa", lambda r: kappa(r, k=k)))}
    last = {q: {v: float(np.nanmean(per_epoch(res, v, "", fn)[:, -1])) for v in ("none", "bn")} for q, fn in
            (("lam1", lambda r: np.asarray(r["full_top"])[:, 0]), ("kappa", lambda r: kappa(r, "full_top", k)))}
    zero = max(float(np.max(np.min(np.abs(r["ll_eigs"]), 1) / r["ll_eigs"][:, 0]))
               for v in ("none", "bn") for r in _runs(res, v))  # worst run and epoch
    return [CRITERIA["accuracy"](bn=dict(a["bn"][list(SPLITS)]), none=dict(a["none"][list(SPLITS)]), diverged=div),
            CRITERIA["wall_clock"](bn=t_bn, none=t_fc, diverged=div),
            CRITERIA["epoch_time"](bn=a["bn"]["s/epoch"], none=a["none"]["s/epoch"]),
            CRITERIA["lambda1"](bn=curve["lam1"]["bn"], none=curve["lam1"]["none"]),
            CRITERIA["kappa"](bn=curve["kappa"]["bn"], none=curve["kappa"]["none"], k=k),
            CRITERIA["singular"](zero=zero, zero_rel=ZERO_REL),
            CRITERIA["full"](full=last, block={q: {v: c[-1] for v, c in d.items()} for q, d in curve.items()})]
