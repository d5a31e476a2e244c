"""Chapter "The Hessian's pseudo-condition number" (Reyes & Levy; Secs. 3-4).

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

from .. import models, page, plots
from ..claims import Claim, Criterion, identity, left_chance, less, verdict
from ..config import ChapterParams, Interval, ListOf, OneOf, param
from ..data import DataSpec
from ..models import ModelSpec
from ..runs import Trajectory
from ..train import TrainConfig

TITLE = "The Hessian's pseudo-condition number"
VARIANTS = ("none", "bn", "bn_before")  # no norm; BN after the ReLU (seed); BN before it
SEED_TABLE1 = {"none": (0.748, 0.772, 0.728), "bn": (0.795, 0.813, 0.767)}  # train/val/test
SRC = "Reyes & Levy"
SEED_EPOCHS = 30  # the seed's training length
SEED_LIKE = (0.70, 0.85)  # validation accuracies we call "like the seed's" in the search grid
ZERO_REL = 1e-6  # |lambda| <= ZERO_REL * lambda_1 counts as numerically zero
SPLITS = ("train", "val", "test")
NAMES = {"none": "standard", "bn": "BN after the ReLU", "bn_before": "BN before the ReLU"}


@dataclass(frozen=True)
class Params(ChapterParams):
    dataset: str = param("mnist", OneOf(("mnist", "mnist-mini")), "data (seed: MNIST)")
    train_size: int = param(20_000, Interval(int, 1, 59_000),
                            "training images (seed: MNIST's; quick: the first 20,000, CPU budget; paper: 50,000)")
    val_size: int = param(10_000, Interval(int, 1, 30_000),
                          "validation images, the training images after train_size (choice)")
    hidden: int = param(100, Interval(int, 1, 4096), "hidden units (seed: 100)")
    epochs: int = param(30, Interval(int, 1, 1000), "training epochs (seed: 30)")
    batch_size: int = param(128, Interval(int, 2, 59_000), "examples per Adam step (choice)")
    lrs: tuple = param((1e-3, 1e-2, 1e-1), ListOf(Interval(float, 0, 10, low_open=True)),
                       "Adam learning rates searched (seed: 'a range'; values our choice)")
    l2s: tuple = param((0.0, 1e-3, 1e-2, 1e-1), ListOf(Interval(float, 0, 10)),
                       "l2 weights searched (torch weight_decay; values our choice)")
    search_epochs: int = param(1, Interval(int, 1, 100), "epochs per search run (choice; quick: 1, CPU budget)")
    search_size: int = param(10_000, Interval(int, 1, 59_000),
                             "training images used by the search runs (choice; quick: 10,000, CPU budget)")
    hessian_size: int = param(500, Interval(int, 2, 59_000),
                              "fixed training batch for every Hessian (choice; quick: 500, CPU budget)")
    hessian_bn_mode: str = param("batch", OneOf(("batch", "running")),
                                 "BN statistics inside the Hessian (choice: those of training)")
    top_k: int = param(10, Interval(int, 2, 100), "eigenvalues in κ′ = λ₁/λₖ (seed: 10)")
    lanczos_tol: float = param(1e-2, Interval(float, 0, 1, low_open=True),
                               "relative accuracy of the full-Hessian eigenvalues (choice; quick: 1%, CPU budget)")
    dense_epochs: int = param(1, Interval(int, 0, 1000),
                              "epochs probed one by one from the start (choice: the early epochs change most)")
    probe_every: int = param(10, Interval(int, 1, 1000),
                             "epochs between probes after dense_epochs (choice; quick: 10, CPU budget)")
    full_every: int = param(30, Interval(int, 1, 1000),
                            "epochs between full-Hessian (Lanczos) runs, besides epoch 0 and the last (choice)")
    train_eval_size: int = param(5000, Interval(int, 1, 59_000),
                                 "training images for the per-epoch training accuracy (choice)")
    num_seeds: int = param(2, Interval(int, 1, 20),
                           "seeds of the standard and BN-after-ReLU networks (choice; quick: 2)")
    before_seeds: int = param(2, Interval(int, 1, 20),
                              "seeds of the BN-before-ReLU network, paired with the first BN-after ones (choice; "
                              "quick: 2)")
    timing_rounds: int = param(12, Interval(int, 2, 1000),
                               "interleaved timing rounds, the replicates of the speed claims (choice)")
    timing_steps: int = param(40, Interval(int, 1, 10_000), "Adam steps per network per timing round (choice)")
    gap_k: float = param(2.0, Interval(float, 0, 100),
                         "a mean gap must exceed k seed spreads when seeds disagree (verdicts.md's default)")
    acc_margin: float = param(0.003, Interval(float, 0, 1),
                              "accuracy margin: twice the standard error of a 98% accuracy on 10,000 images")
    time_margin: float = param(0.05, Interval(float, 0, 10),
                               "relative time margin: 5% of the standard net's time, below which we call "
                               "two timings equal (timer and scheduling jitter)")
    chance_frac: float = param(0.9, Interval(float, 0, 1, low_open=True),
                               "a net trained if its final validation loss < frac × ln 10 (chance)")
    block_probes: int = param(10, Interval(int, 1, 10_000),
                              "random vectors per block for the block norms of the Hessian (choice; quick: 10, "
                              "CPU budget)")
    widths: tuple = param((25, 50, 100, 200), ListOf(Interval(int, 1, 4096)),
                          "hidden widths of the singularity sweep, standard net (choice; Sagun et al. vary it)")
    width_epochs: int = param(1, Interval(int, 1, 1000), "epochs per width-sweep run (choice; quick: 1, CPU budget)")
    slq_steps: int = param(80, Interval(int, 2, 1000),
                           "Lanczos steps of the spectral-density estimate in the width sweep (choice)")
    zero_band: float = param(0.01, Interval(float, 0, 1, low_open=True),
                             "an eigenvalue within 1% of λ₁ of zero is 'near zero' (our reading)")
    offdiag_max: float = param(0.1, Interval(float, 0, 1),
                               "'nearly block diagonal': the off-diagonal blocks hold < 10% of the squared "
                               "Frobenius norm (our reading)")
    rep_share: float = param(0.5, Interval(float, 0, 1),
                             "'represents': more than half of the top eigenvectors' squared length lies on W₂ "
                             "(our reading; W₂ is ~1% of the parameters)")
    outlier_tol: int = param(1, Interval(int, 0, 10),
                             "'about ten' outliers: the widest gap lies after eigenvalue 10 ± 1 (our reading)")


PROFILES = {
    "smoke": dict(dataset="mnist-mini", train_size=1500, val_size=500, epochs=2, batch_size=100,
                  lrs=(1e-3, 1e-1), l2s=(0.0, 1e-2), search_size=1000, hessian_size=200,
                  train_eval_size=500, dense_epochs=2, full_every=1, num_seeds=1, timing_rounds=3,
                  timing_steps=5, block_probes=2, widths=(10, 20), slq_steps=20),
    "quick": {},
    "paper": dict(train_size=50_000, lrs=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1), l2s=(0.0, 1e-4, 1e-3, 1e-2, 1e-1),
                  search_epochs=5, search_size=50_000, hessian_size=2000, lanczos_tol=1e-3,
                  dense_epochs=30, full_every=1, num_seeds=3, before_seeds=3, timing_rounds=30,
                  train_eval_size=50_000, block_probes=50, widths=(25, 50, 100, 200, 400), width_epochs=30),
}
KEY_SETTINGS = ("dataset", "train_size", "val_size", "epochs", "batch_size", "lrs", "l2s",
                "search_epochs", "search_size", "train_eval_size", "hessian_size", "hessian_bn_mode", "top_k",
                "lanczos_tol", "dense_epochs", "probe_every", "full_every", "num_seeds", "before_seeds",
                "timing_rounds", "timing_steps", "block_probes", "widths", "width_epochs", "slq_steps")
THRESHOLDS = ("gap_k", "acc_margin", "time_margin", "chance_frac", "zero_band", "offdiag_max", "rep_share",
              "outlier_tol")  # shown with their reasons


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


def trajectories(data: DataSpec, mlp: ModelSpec, adam: TrainConfig, seeds: list[int],
                 before_seeds: int = 1) -> dict:
    """{(variant, seed): Trajectory}: no norm and BN after the ReLU on every seed, BN before
    the ReLU (the sensitivity check) on the first ``before_seeds``."""
    nets = networks(mlp)
    return {(v, s): Trajectory(data, nets[v], adam, s) for v in VARIANTS
            for s in (seeds[:before_seeds] if v == "bn_before" else seeds)}


def width_trajectories(cfg: Params, lr: float, l2: float, seeds: list[int]) -> dict:
    """{(width, seed): Trajectory}: the standard MLP at every hidden width of ``widths``,
    trained ``width_epochs`` epochs at the chosen lr and l2 (the singularity sweep)."""
    data, mlp, adam = specs(cfg, lr=lr, l2=l2, epochs=cfg.width_epochs)
    return {(w, s): Trajectory(data, mlp.with_(norm="none", sizes=(784, w, 10)), adam, s)
            for w in cfg.widths for s in seeds}


def networks(mlp: ModelSpec) -> dict[str, ModelSpec]:
    """The three MLPs of ``VARIANTS`` from the BN-after-ReLU spec ``mlp``."""
    return {"none": mlp.with_(norm="none"), "bn": mlp, "bn_before": mlp.with_(norm_after_relu=False)}


def probe_epochs(cfg: Params) -> tuple[int, ...]:
    """Epoch 0 (the initialisation), every epoch up to ``dense_epochs``, then every
    ``probe_every``-th, and the last."""
    return tuple(e for e in range(cfg.epochs + 1)
                 if e <= cfg.dense_epochs or e % cfg.probe_every == 0 or e == cfg.epochs)


def full_epochs(cfg: Params) -> tuple[int, ...]:
    """The probed epochs of the full-Hessian Lanczos runs: 0, every ``full_every``-th, the last."""
    return tuple(e for e in probe_epochs(cfg) if e % cfg.full_every == 0 or e == cfg.epochs)


def epoch_ends(cfg: Params, epochs: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """The steps that end the probed epochs (``probe_epochs`` by default; 0 = initialisation)."""
    spe = cfg.train_size // cfg.batch_size
    return tuple(e * spe for e in (probe_epochs(cfg) if epochs is None else epochs))


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


def results(cfg: Params, nets, evals: dict, block: dict, full: dict, step_s: dict, blocks: dict) -> dict:
    """Per run {(variant, seed)}: per probed epoch (``epoch``; 0 = initialisation) arrays of
    accuracies, losses, last-layer eigenvalues and the full top-k (NaN where not measured),
    and the training time ``time_s`` = steps x the interleaved median seconds per step
    ``step_s[variant]`` (``evaluation.step_times``), not the load-dependent time of the run;
    plus the last step's ``curvature.HessianBlocks`` measurements ``blocks`` (``frob``: the
    (2, 2) squared block norms of the [W1, W2] Hessian, ``w1_lam1``, ``top``: the whole
    Hessian's largest eigenvalues, ``w2_share``: each one's eigenvector's share on W2)."""
    spe, out = cfg.train_size // cfg.batch_size, {}
    for key, h in nets.hist.items():
        b, f = block[key], full[key]
        epoch = np.asarray(b["step"]) // spe
        at = np.searchsorted(epoch, np.asarray(f["step"]) // spe)
        top, hvps = np.full((len(epoch), cfg.top_k), np.nan), np.full(len(epoch), np.nan)
        top[at], hvps[at] = f["eigenvalues"], f["num_matvecs"]
        out[key] = {**{k: v for k, v in evals[key].items() if k != "step"}, "epoch": epoch,
                    "ll_eigs": b["eigenvalues"], "feat_sq": b["feat_sq"], "const_units": b["const_units"],
                    "full_top": top, "full_hvps": hvps, "diverged": h.diverged,
                    "time_s": epoch * spe * float(np.median(step_s[key[0]])),
                    "frob": blocks[key]["frobenius_sq"][-1], "w1_lam1": float(blocks[key]["w1_lam1"][-1]),
                    "top": blocks[key]["full_top"][-1], "w2_share": blocks[key]["w2_share"][-1]}
    return out


def width_results(sweep, zero: dict) -> dict[int, dict[str, list[float]]]:
    """{width: per seed (sorted) ``share`` near zero, ``lam1``, ``params`` and the final
    ``test_loss``} of the width sweep ``sweep`` and its ``curvature.NearZeroShare`` probe."""
    out: dict = {}
    for (w, s) in sorted(sweep):
        r, h = out.setdefault(w, {"share": [], "lam1": [], "params": [], "test_loss": []}), sweep.hist[(w, s)]
        for q in ("share", "lam1", "params"):
            r[q].append(float(zero[(w, s)][q][-1]))
        r["test_loss"].append(float(h.test_loss[-1]) if len(h.test_loss) and not h.diverged else float("nan"))
    return out


def off_share(frob: np.ndarray) -> float:
    """Share of the squared Frobenius norm in the off-diagonal blocks of a (2, 2) block table."""
    return float((frob[0, 1] + frob[1, 0]) / np.sum(frob))


def widest_gap(top: np.ndarray) -> int:
    """The i (1-based) with the largest lambda_i / lambda_{i+1} among the positive top eigenvalues."""
    lam = np.asarray(top, float)
    lam = lam[np.isfinite(lam) & (lam > 0)]
    return int(np.argmax(lam[:-1] / lam[1:])) + 1


def per_epoch(res: dict, variant: str, key: str, fn=None) -> np.ndarray:
    """(seeds, probed epochs) array of ``key`` (or ``fn(run)``), NaN-padded after a divergence."""
    rows = [np.asarray(fn(r) if fn else r[key], float) for (v, _), r in res.items() if v == variant]
    n = max(len(r) for r in rows)
    return np.stack([np.pad(r, (0, n - len(r)), constant_values=np.nan) for r in rows])


def kappa(r: dict, key: str = "ll_eigs", k: int = 10) -> np.ndarray:
    """kappa' = lambda_1 / lambda_k per probed epoch."""
    return np.asarray(r[key])[:, 0] / np.asarray(r[key])[:, k - 1]


def accuracy_table(res: dict, step_s: dict, spe: int) -> pd.DataFrame:
    """Final train / validation / test accuracy (mean over seeds) and seconds per epoch
    (interleaved timing), plus the seed's Table 1; ``network`` holds the variant code, the
    other columns are named for the page."""
    rows = []
    for v in VARIANTS:
        last = {s: np.nanmean(per_epoch(res, v, f"{s}_acc")[:, -1]) for s in SPLITS}
        n = len(_runs(res, v))
        rows.append({"network": v, "source": "measured", "seeds": n, **last,
                     "s/epoch": spe * float(np.median(step_s[v]))})
    for v, accs in SEED_TABLE1.items():
        rows.append({"network": v, "source": "Reyes & Levy, Table 1", "seeds": np.nan,
                     **dict(zip(SPLITS, accs)), "s/epoch": np.nan})
    return pd.DataFrame(rows)


def shown_accuracy_table(res: dict, step_s: dict, spe: int):
    """``accuracy_table`` as the page shows it: networks and columns in words, percentages,
    seconds with their unit, blanks where the seed gives nothing."""
    df = accuracy_table(res, step_s, spe).assign(network=lambda d: d.network.map(NAMES))
    df = df.rename(columns={"train": "training", "val": "validation", "s/epoch": "time per epoch"})
    return df.style.format({"training": "{:.1%}", "validation": "{:.1%}", "test": "{:.1%}",
                            "time per epoch": "{:.2f} s", "seeds": "{:.0f}"}, na_rep="").hide(axis="index")


def time_to_reach(r: dict, target: float, key: str = "val_acc") -> float:
    """Training time at the first probed epoch where ``key`` >= target (inf if never)."""
    hit = np.flatnonzero(np.asarray(r[key]) >= target)
    return float(r["time_s"][hit[0]]) if hit.size else float("inf")


def _runs(res: dict, v: str) -> list[dict]:
    return [r for (w, _), r in sorted(res.items(), key=lambda kv: kv[0][1]) if w == v]


def _search_numbers(cfg: Params, table: pd.DataFrame) -> dict:
    out: dict = {"hidden": cfg.hidden, "val_best": float(table.val_acc.max()), "lr_max": max(cfg.lrs)}
    (out["lr"], out["l2"]), (out["bn_lr"], out["bn_l2"]) = best(table), best(table, "bn")
    for v in ("none", "bn"):
        t = table[table.network == v].set_index(["lr", "l2"]).val_acc
        out[f"search_best_{v}"], out[f"search_lrmax_{v}"] = float(t.max()), float(t.loc[max(cfg.lrs)].max())
    ahead = out["search_lrmax_bn"] > out["search_lrmax_none"]
    out["search_lrmax_text"] = f"BatchNorm {'ahead' if ahead else 'not ahead'} at this learning rate"
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
            f"full_lam1_{v}": float(full[:, 0].mean()), f"full_kappa_{v}": float((full[:, 0] / full[:, k - 1]).mean())}
    for key, name in (("feat_sq", "feat"), ("const_units", "const"), ("full_hvps", "hvps")):
        out[f"{name}_{v}"] = float(np.nanmean(per_epoch(res, v, key)[:, -1]))
    out[f"lam1_per_feat_{v}"] = out[f"lam1_{v}"] / out[f"feat_{v}"]
    out[f"full_over_block_{v}"] = out[f"full_lam1_{v}"] / out[f"lam1_{v}"]
    out[f"seeds_{v}"] = len(_runs(res, v))
    return out


def block_table(res: dict, k: int = 10) -> pd.DataFrame:
    """Per network, mean over seeds at the last epoch: the block measurements of the rows
    'represents', 'block diagonal', 'flat/steep' and 'outliers'."""
    rows = []
    for v in VARIANTS:
        rs = _runs(res, v)
        rows.append({"network": NAMES[v], "seeds": len(rs),
                     f"top-{k} eigenvectors' share on W₂": np.mean([np.mean(r["w2_share"][:k]) for r in rs]),
                     "λ₁ whole / W₂ block": np.mean([r["top"][0] / r["ll_eigs"][-1][0] for r in rs]),
                     "off-diagonal share of ‖H‖²": np.mean([off_share(r["frob"]) for r in rs]),
                     "λ₁ of the W₁ block": np.mean([r["w1_lam1"] for r in rs]),
                     "λ₁ of the W₂ block": np.mean([r["ll_eigs"][-1][0] for r in rs]),
                     "widest gap after i = (per seed)": ", ".join(str(widest_gap(r["top"])) for r in rs)})
    return pd.DataFrame(rows)


def shown_block_table(res: dict, k: int = 10):
    """``block_table`` as the page shows it: shares in percent, the rest to three digits."""
    df = block_table(res, k)
    return df.style.format({c: "{:.0%}" if "share" in c else "{:.3g}" for c in df.columns[2:-1]}).hide(axis="index")


def rank_floor(n: int, hidden: int, classes: int = 10, inputs: int = 784) -> float:
    """Least share of exactly zero eigenvalues of the standard MLP's Hessian on ``n`` images:
    rank <= n (classes - 1) (Gauss-Newton part) + 2 (W2 and b2 entries) (the logits' second
    derivatives pair W2 with the first layer only, ReLU being piecewise linear), out of P."""
    p2 = classes * (hidden + 1)
    return max(0.0, 1 - (n * (classes - 1) + 2 * p2) / ((inputs + 1) * hidden + p2))


def _width_numbers(cfg: Params, widths: dict) -> dict:
    ws = sorted(widths)
    return {"width_shares": "; ".join(f"{w} units: {np.mean(widths[w]['share']):.1%}" for w in ws),
            "width_floors": "; ".join(f"{w} units: {rank_floor(cfg.hessian_size, w):.1%}" for w in ws),
            "width_params": _and(f"{int(widths[w]['params'][0]):,}" for w in ws), "widths_text": _and(ws)}


def numbers(cfg: Params, table: pd.DataFrame, res: dict, step_s: dict, widths: dict) -> dict[str, float | str]:
    """Every number the chapter's prose quotes, by glue key (means over seeds, final epoch)."""
    spe = cfg.train_size // cfg.batch_size
    out = _search_numbers(cfg, table) | _width_numbers(cfg, widths)
    for q, d in block_values(res, cfg.top_k).items():
        out |= {f"{q}_{v}": float(np.mean(x)) for v, x in d.items()}
    out["n_top"] = len(next(iter(res.values()))["top"])
    out["zero_band"] = cfg.zero_band
    out["w2_frac"] = 10 * cfg.hidden / (785 * cfg.hidden + 10 * (cfg.hidden + 1))
    out |= {"seed_epochs": SEED_EPOCHS, "zero_rel": ZERO_REL, "seed_test_none": SEED_TABLE1["none"][2],
            "seed_test_bn": SEED_TABLE1["bn"][2], "probe_epochs": _and(probe_epochs(cfg)),
            "full_epochs": _and(full_epochs(cfg)),
            "n_params": sum(p.numel() for p in models.mlp(sizes=(784, cfg.hidden, 10)).parameters())}
    acc = accuracy_table(res, step_s, spe).set_index(["network", "source"])
    for v in VARIANTS:
        out |= _variant_numbers(cfg, res, v, acc.loc[(v, "measured")])
    out["slowdown"], out["acc_gap"] = out["sec_bn"] / out["sec_none"], out["test_bn"] - out["test_none"]
    # kernel of H_W2 without BN: 1 (x) u for every u, and v (x) e_i for every silent unit i
    out["zeros_pred_none"] = cfg.hidden + (10 - 1) * out["const_none"]
    out["t_fc"], out["reach_text"] = float(np.mean(_reach_times(res)[0])), reach_text(res)
    out |= _counts(cfg)
    seeds = sorted({s for (_, s) in res})
    out["seed_caption"] = plots.seed_caption(seeds) + (
        " BatchNorm before the ReLU: one seed." if out["seeds_bn_before"] == 1 < len(seeds) else "")
    return out


def _and(items) -> str:
    """"a, b and c": a list in words (a bare "a, b, c" would reach the page as a Python tuple, since
    myst-nb evaluates glued text that parses as a literal)."""
    items = [str(x) for x in items]
    return " and ".join([", ".join(items[:-1]), items[-1]] if len(items) > 1 else items)


def reach_text(res: dict) -> str:
    """When BN reached the standard net's final validation accuracy, in words for the prose: a
    mean time over the seeds that did, "never, within its N s of training" for those that did not
    (a mean with inf in it would print "inf")."""
    t_bn = _reach_times(res)[1]
    total = float(np.mean([r["time_s"][-1] for r in _runs(res, "bn")]))
    hit = [t for t in t_bn if np.isfinite(t)]
    never = f"never, within its {total:.3g} s of training"
    if len(hit) == len(t_bn):
        return f"after {np.mean(hit):.3g} s of training" + (" on average" if len(hit) > 1 else "")
    if not hit:
        return never + ("" if len(t_bn) == 1 else f", on all {page.count(len(t_bn), 'seed')}")
    return (f"after {np.mean(hit):.3g} s on {page.count(len(hit), 'seed')} of {len(t_bn)}, and never (within its "
            f"{total:.3g} s of training) on the other {len(t_bn) - len(hit)}")


def _counts(cfg: Params) -> dict[str, str]:
    """Counts the prose says with their nouns ("1 epoch", "2 epochs"), and the Hessian's BN mode in
    words."""
    mode = {"batch": "the batch's own statistics, as in training",
            "running": "the running statistics of evaluation mode, not those of training"}
    return {"search_epochs_n": page.count(cfg.search_epochs, "epoch"),
            "width_epochs_n": page.count(cfg.width_epochs, "epoch"),
            "num_seeds_n": page.count(cfg.num_seeds, "seed"),
            "before_seeds_n": page.count(min(cfg.before_seeds, cfg.num_seeds), "seed"),  # as ``trajectories``
            "bn_mode_text": mode[cfg.hessian_bn_mode], "paper_text": paper_text()}


def paper_text() -> str:
    """The ``paper`` profile's scale in words, from ``PROFILES``."""
    p = Params(**PROFILES["paper"])
    probed = ("every epoch probed" if p.dense_epochs >= p.epochs
              else f"every epoch up to {p.dense_epochs}, then every {p.probe_every}-th, probed")
    return (f"{p.train_size:,} training images, {page.count(p.num_seeds, 'seed')} of every network, {probed}, a "
            f"{p.search_epochs}-epoch search, {p.block_probes} random vectors per block, a {len(p.widths)}-width "
            f"sweep of {p.width_epochs} epochs on a {p.hessian_size:,}-image Hessian batch")


def _reach_times(res: dict) -> tuple[list[float], list[float]]:
    """Per seed: the standard net's total training time, and the time BN needs to reach the
    standard net's final validation accuracy (same seed)."""
    none, bn = _runs(res, "none"), _runs(res, "bn")
    return ([float(r["time_s"][-1]) for r in none],
            [time_to_reach(b, float(n["val_acc"][-1])) for b, n in zip(bn, none, strict=True)])


# ---- the claims -------------------------------------------------------------------------------
# Each decide() takes paired per-seed values (lists, seeds in the same order for both nets) and
# ``ok``: the preconditions (no run the comparison needs diverged; the standard net left chance).

def _accuracy(bn: dict, none: dict, ok: bool, k: float, margin: float) -> tuple[str, str]:
    gaps = {s: less(none[s], bn[s], k=k, margin=margin) for s in SPLITS}
    text = "; ".join(f"{s}: " + gaps[s].text(("standard", "BN"), "{:.2%}") for s in ("test", "val", "train"))
    if not ok or gaps["test"].swamped:
        return text, "inconclusive"
    return text, verdict(all(g.holds for g in gaps.values()), partly=gaps["test"].holds)


def _sooner(bn: list, none: list, ok: bool, k: float, margin: float) -> tuple[str, str]:
    g = less(bn, none, k=k, margin=margin * float(np.mean(none)))
    never = sum(not np.isfinite(b) for b in bn)
    if never:  # a mean with inf in it says nothing: give the seeds instead
        times = ", ".join("never" if not np.isfinite(b) else f"{b:.3g} s" for b in bn)
        text = (f"BN per seed: {times}, vs standard {', '.join(f'{x:.3g} s' for x in none)}; BN never reached the "
                f"standard net's final validation accuracy on {never} of {len(bn)} seeds")
        return text, g.verdict(precondition=ok)
    return g.text(("BN", "standard"), "{:.3g} s"), g.verdict(precondition=ok)


def _slower(bn: list, none: list, k: float, margin: float) -> tuple[str, str]:
    g = less(none, bn, k=k, margin=margin * float(np.median(none)))
    return g.text(("standard", "BN"), "{:.3g} s/step").replace("seeds", "timing rounds"), g.verdict()


def _smaller(bn: list, none: list, bn_last: list, none_last: list, ok: bool, k: float) -> tuple[str, str]:
    g, last = less(bn, none, k=k), less(bn_last, none_last, k=k)
    return (f"median over trained epochs: {g.text(('BN', 'standard'), '{:.3g}')}; last epoch: "
            f"{last.text(('BN', 'standard'), '{:.3g}')}", g.verdict(precondition=ok, partly=last.holds))


def _kernel(fewest: int, hidden: int) -> tuple[str, str]:
    return f"fewest numerically zero eigenvalues over runs and epochs: {fewest}", identity(fewest >= hidden)


def _both(vals: dict, holds, fmt: str) -> tuple[str, bool, bool]:
    """Per network (standard, BN) per-seed values, whether ``holds(value)`` on every seed of
    both networks, and of at least one."""
    text = "; ".join(f"{name}: " + ", ".join(fmt.format(x) for x in vals[v])
                     for v, name in (("none", "standard"), ("bn", "BN")))
    each = [all(holds(x) for x in vals[v]) for v in ("none", "bn")]
    return f"{text} (per seed)", all(each), any(each)


def _represents(shares: dict, ok: bool, rep_share: float) -> tuple[str, str]:
    text, both, one = _both(shares, lambda x: x > rep_share, "{:.0%}")
    return text, verdict(both, partly=one, precondition=ok)


def _block_diagonal(off: dict, ok: bool, offdiag_max: float) -> tuple[str, str]:
    text, both, one = _both(off, lambda x: x < offdiag_max, "{:.0%}")
    return text, verdict(both, partly=one, precondition=ok)


def _outliers(gap_at: dict, ok: bool, classes: int, outlier_tol: int) -> tuple[str, str]:
    text, both, one = _both(gap_at, lambda i: abs(i - classes) <= outlier_tol, "{:d}")
    return "widest gap λᵢ/λᵢ₊₁ at i = " + text, verdict(both, partly=one, precondition=ok)


def _flat_steep(w1: dict, w2: dict, ok: bool, k: float) -> tuple[str, str]:
    gaps = {v: less(w1[v], w2[v], k=k) for v in ("none", "bn")}
    text = "; ".join(f"{name}: " + gaps[v].text(("W₁ block", "W₂ block"), "{:.3g}")
                     for v, name in (("none", "standard"), ("bn", "BN")))
    held = [g.holds for g in gaps.values()]
    swamped = any(g.swamped for g in gaps.values())
    return text, verdict(all(held), partly=any(held), precondition=ok and not swamped)


def _after_relu(after: dict, before: dict, ok: bool, k: float, margin: float) -> tuple[str, str]:
    gaps = {s: less(before[s], after[s], k=k, margin=-margin) for s in ("test", "val")}
    text = "; ".join(f"{s}: " + gaps[s].text(("BN before", "BN after"), "{:.2%}") for s in gaps)
    if not ok or gaps["test"].swamped:
        return text, "inconclusive"
    return text, verdict(all(g.holds for g in gaps.values()), partly=gaps["test"].holds)


def _wider(shares: dict, ok: bool, floors: dict) -> tuple[str, str]:
    ws = sorted(shares)
    per_seed = np.array([shares[w] for w in ws]).T  # (seeds, widths)
    text = "; ".join(f"width {w}: " + ", ".join(f"{x:.1%}" for x in shares[w]) for w in ws) + " (per seed)"
    text += "; exact zeros forced by the rank bound: " + ", ".join(f"{floors[w]:.0%}" for w in ws)
    mono = bool(np.all(np.diff(per_seed, axis=1) > 0))
    ends = bool(np.all(per_seed[:, -1] > per_seed[:, 0]))
    return text, verdict(mono, partly=ends, precondition=ok)


CRITERIA = {
    "accuracy": Criterion("BN gives higher accuracy (train, validation and test)", f"{SRC}, Table 1",
                          "final accuracy BN > standard + {acc_margin:g} on all three sets, over the "
                          "paired seeds (partly: on the test set); inconclusive if a run diverged or the "
                          "standard net stayed at chance", _accuracy),
    "wall_clock": Criterion("BN converges faster in wall-clock time", f"{SRC}, Figs. 1-2",
                            "per seed: epochs BN needs to reach the standard net's final validation "
                            "accuracy × BN's s/epoch < the standard net's epochs × its s/epoch, by "
                            "{time_margin:.0%} (s/epoch: interleaved timing)", _sooner),
    "epoch_time": Criterion("An epoch takes longer with BN", f"{SRC}, Sec. 4.2",
                            "per-step time, paired timing rounds run interleaved in one process: BN > "
                            "standard by {time_margin:.0%}; inconclusive when the rounds disagree and "
                            "their spread swamps the gap", _slower),
    "lambda1": Criterion("BN gives smaller top eigenvalues of the last-layer Hessian", f"{SRC}, Fig. 8",
                         "per seed, median over trained probed epochs: λ₁(BN) < λ₁(standard) "
                         "(partly: at the last epoch only)", _smaller),
    "kappa": Criterion("BN gives a smaller pseudo-condition number λ₁/λₖ", f"{SRC}, Fig. 3",
                       "per seed, median over trained probed epochs: κ′ = λ₁/λₖ (k = {top_k}) BN < "
                       "standard (partly: at the last epoch only)", _smaller),
    "singular": Criterion("The plain condition number is unusable: the last-layer Hessian is "
                          "singular", f"{SRC}, Sec. 4.3",
                          "identity: the kernel holds 1 ⊗ u for every u, so at least {hidden} eigenvalues "
                          "are zero (|λ| ≤ {zero_rel:g} λ₁) in every run and probed epoch",
                          _kernel),
    "represents": Criterion("The last layer represents the whole network's curvature", f"{SRC}, Sec. 2.2",
                            "whole Hessian's top {top_k} eigenvectors (last epoch): their mean share of "
                            "squared length on W₂ > {rep_share:.0%} on every seed of both networks (partly: "
                            "of one); inconclusive if a run did not train", _represents),
    "block_diagonal": Criterion("The Hessian is nearly block diagonal (W₁, W₂ blocks)",
                                f"{SRC}, Sec. 2.2, after its ref. [1]",
                                "Hessian w.r.t. [W1, W2] at the last epoch, block norms from Hessian-vector "
                                "products with random vectors: off-diagonal share of the squared Frobenius norm "
                                "< {offdiag_max:.0%} on every seed of both networks (partly: of one)",
                                _block_diagonal),
    "flat_steep": Criterion("Curvature is flat in the first layer and steep in the last",
                            f"{SRC}, Sec. 2.2, after its ref. [5]",
                            "λ₁ of the W₁ block < λ₁ of the W₂ block at the last epoch, paired over "
                            "seeds, for both networks (partly: for one)", _flat_steep),
    "outliers": Criterion("About ten (the number of classes) outlier eigenvalues", f"{SRC}, Sec. 5",
                          "whole Hessian, last epoch: the largest ratio λᵢ/λᵢ₊₁ among the top "
                          "{n_top} lies at i = {classes} ± {outlier_tol} on every seed of both networks "
                          "(partly: of one)", _outliers),
    "after_relu": Criterion("BN after the ReLU does as well as or better than before it", f"{SRC}, Sec. 3.2",
                            "final accuracy BN after > BN before - {acc_margin:g} on the test and validation "
                            "sets, paired seeds (partly: test set only); inconclusive if a run diverged or "
                            "stayed at chance", _after_relu),
    "singular_width": Criterion("The Hessian's singularity grows with the hidden width", f"{SRC}, Sec. 5 "
                                "(after Sagun et al.)",
                                "standard net, {width_epochs} per width: the share of the whole "
                                "Hessian's spectrum within {zero_band:g} λ₁ of zero (stochastic Lanczos "
                                "quadrature) rises from each width to the next on every seed (partly: widest > "
                                "narrowest on every seed); inconclusive if a sweep net stayed at chance",
                                _wider),
}


def _trained(cfg: Params, res: dict) -> bool:
    """Preconditions: no standard or BN run diverged, and every standard run left chance."""
    runs = [r for v in ("none", "bn") for r in _runs(res, v)]
    return (not any(r["diverged"] for r in runs)
            and left_chance([float(r["val_loss"][-1]) for r in _runs(res, "none")], frac=cfg.chance_frac))


def _curves(res: dict, fn) -> dict[str, list[list[float]]]:
    """{"median"/"last": [BN per seed, standard per seed]} of ``fn(run)`` over trained epochs."""
    vals = {v: [np.asarray(fn(r), float)[1:] for r in _runs(res, v)] for v in ("bn", "none")}
    return {"median": [[float(np.nanmedian(x)) for x in vals[v]] for v in ("bn", "none")],
            "last": [[float(x[-1]) for x in vals[v]] for v in ("bn", "none")]}


def claims(cfg: Params, res: dict, step_s: dict, widths: dict) -> list[Claim]:
    """The seed's claims, each decided by its criterion over the paired seeds."""
    k, ok = cfg.top_k, _trained(cfg, res)
    acc = {v: {s: [float(r[f"{s}_acc"][-1]) for r in _runs(res, v)] for s in SPLITS} for v in ("bn", "none")}
    t_fc, t_bn = _reach_times(res)
    lam1, kap = _curves(res, lambda r: np.asarray(r["ll_eigs"])[:, 0]), _curves(res, lambda r: kappa(r, k=k))
    zeros = [int(np.sum(np.abs(e) <= ZERO_REL * e[0])) for r in res.values() for e in np.asarray(r["ll_eigs"])]
    th = dict(k=cfg.gap_k, time_margin=cfg.time_margin)
    return [CRITERIA["accuracy"](bn=acc["bn"], none=acc["none"], ok=ok, k=cfg.gap_k, margin=cfg.acc_margin,
                                 acc_margin=cfg.acc_margin),
            CRITERIA["wall_clock"](bn=t_bn, none=t_fc, ok=ok, margin=cfg.time_margin, **th),
            CRITERIA["epoch_time"](bn=list(step_s["bn"]), none=list(step_s["none"]), margin=cfg.time_margin, **th),
            CRITERIA["lambda1"](bn=lam1["median"][0], none=lam1["median"][1], bn_last=lam1["last"][0],
                                none_last=lam1["last"][1], ok=ok, k=cfg.gap_k),
            CRITERIA["kappa"](bn=kap["median"][0], none=kap["median"][1], bn_last=kap["last"][0],
                              none_last=kap["last"][1], ok=ok, k=cfg.gap_k, top_k=k),
            CRITERIA["singular"](fewest=min(zeros), hidden=cfg.hidden, zero_rel=ZERO_REL),
            *_block_claims(cfg, res, ok), _after_relu_claim(cfg, res), _width_claim(cfg, widths)]


def block_values(res: dict, k: int = 10) -> dict[str, dict[str, list]]:
    """Per quantity, per network (standard, BN): the per-seed last-epoch block measurements
    (``share``: the mean share of the top ``k`` eigenvectors on W2)."""
    fns = {"share": lambda r: float(np.mean(r["w2_share"][:k])), "off": lambda r: off_share(r["frob"]),
           "gap_at": lambda r: widest_gap(r["top"]), "w1": lambda r: r["w1_lam1"],
           "w2": lambda r: float(r["ll_eigs"][-1][0])}
    return {q: {v: [fn(r) for r in _runs(res, v)] for v in ("none", "bn")} for q, fn in fns.items()}


def _block_claims(cfg: Params, res: dict, ok: bool) -> list[Claim]:
    b = block_values(res, cfg.top_k)
    n_top = len(next(iter(res.values()))["top"])
    return [CRITERIA["represents"](shares=b["share"], ok=ok, rep_share=cfg.rep_share, top_k=cfg.top_k),
            CRITERIA["block_diagonal"](off=b["off"], ok=ok, offdiag_max=cfg.offdiag_max),
            CRITERIA["flat_steep"](w1=b["w1"], w2=b["w2"], ok=ok, k=cfg.gap_k),
            CRITERIA["outliers"](gap_at=b["gap_at"], ok=ok, classes=10, outlier_tol=cfg.outlier_tol, n_top=n_top)]


def _after_relu_claim(cfg: Params, res: dict) -> Claim:
    before, after = _runs(res, "bn_before"), _runs(res, "bn")[:cfg.before_seeds]
    ok = (not any(r["diverged"] for r in before + after)
          and left_chance([float(r["val_loss"][-1]) for r in before + after], frac=cfg.chance_frac))
    acc = {name: {s: [float(r[f"{s}_acc"][-1]) for r in rs] for s in SPLITS} for name, rs in
           (("after", after), ("before", before))}
    return CRITERIA["after_relu"](after=acc["after"], before=acc["before"], ok=ok, k=cfg.gap_k,
                                  margin=cfg.acc_margin, acc_margin=cfg.acc_margin)


def _width_claim(cfg: Params, widths: dict) -> Claim:
    ok = left_chance([x for w in widths.values() for x in w["test_loss"]], frac=cfg.chance_frac)
    return CRITERIA["singular_width"](shares={w: r["share"] for w, r in widths.items()}, ok=ok,
                                      floors={w: rank_floor(cfg.hessian_size, w) for w in widths},
                                      width_epochs=page.count(cfg.width_epochs, "epoch"), zero_band=cfg.zero_band)
