"""Chapter "The Hessian's pseudo-condition number" (seed 002, Reyes & Levy; Secs. 3-4).

A 784-100-10 MLP on MNIST with and without BN after the ReLU (BN before the ReLU as a
sensitivity check), Adam with l2, learning rate and l2 weight searched by validation accuracy.
Each epoch: accuracies and losses, the exact Hessian of the last layer's weights W2 (all its
eigenvalues, kappa' = lambda_1 / lambda_10) and the top eigenvalues of the full-parameter
Hessian by Lanczos, on one fixed training batch. Defaults are the quick profile.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .. import data, device, models, runs, train
from ..claims import Claim, verdict
from ..config import ChapterParams, Interval, ListOf, OneOf, as_dict, param
from ..probes import curvature

TITLE = "The Hessian's pseudo-condition number"
VARIANTS = ("none", "bn", "bn_before")  # no norm; BN after the ReLU (seed); BN before it
SEED_TABLE1 = {"none": (0.748, 0.772, 0.728), "bn": (0.795, 0.813, 0.767)}  # train/val/test
SEED_SRC = "Reyes & Levy (seed 002)"
SEED_EPOCHS = 30  # the seed's training length
SEED_LIKE = (0.70, 0.85)  # validation accuracies we call "like the seed's" in the search grid
ZERO_REL = 1e-6  # |lambda| <= ZERO_REL * lambda_1 counts as numerically zero
DEPENDS = (runs.module_path(__name__), "probes/curvature")  # code the cached runs depend on


@dataclass(frozen=True)
class Params(ChapterParams):
    dataset: str = param("mnist", OneOf(("mnist", "mnist-mini")), "data (seed: MNIST)")
    train_size: int = param(50_000, Interval(int, 1, 59_000), "training images (choice)")
    val_size: int = param(10_000, Interval(int, 1, 30_000),
                          "validation images, carved from the end of the training set (choice)")
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
    device: str = param("auto", OneOf(("auto", "cpu", "cuda", "mps")), "compute device")


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
                "search_epochs", "train_eval_size", "hessian_size", "hessian_bn_mode", "top_k",
                "lanczos_tol", "num_seeds")


@dataclass(frozen=True)
class Split:
    """Training data (as ``data.Data`` for ``train.fit``; its test set is the real test set),
    the validation set and the fixed Hessian batch."""

    train: data.Data
    X_val: torch.Tensor
    y_val: torch.Tensor


def load(cfg: Params) -> Split:
    """MNIST with the last ``val_size`` of the first ``train_size + val_size`` images held out."""
    d = data.load(cfg.dataset, device=device(cfg.device), train_size=cfg.train_size + cfg.val_size)
    n = cfg.train_size
    if len(d.X_train) < n + cfg.val_size or cfg.hessian_size > n:
        raise ValueError(f"Chapter 'hessian' needs train_size + val_size <= {len(d.X_train)} (the "
                         f"{cfg.dataset} training set) and hessian_size <= train_size; got "
                         f"train_size={n}, val_size={cfg.val_size}, "
                         f"hessian_size={cfg.hessian_size}")
    tr = data.Data(d.name, d.X_train[:n], d.y_train[:n], d.X_test, d.y_test)
    return Split(tr, d.X_train[n:], d.y_train[n:])


def model(variant: str, hidden: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    norm = "none" if variant == "none" else "bn"
    return models.mlp(norm=norm, sizes=(784, hidden, 10), norm_after_relu=variant != "bn_before")


def _tcfg(cfg: Params, lr: float, l2: float, seed: int, n: int, epochs: int) -> train.TrainConfig:
    steps = epochs * (n // cfg.batch_size)
    return train.TrainConfig(optimizer="adam", lr=lr, weight_decay=l2, batch_size=cfg.batch_size,
                             num_steps=steps, eval_every=steps, seed=seed)


def search(cfg: Params, split: Split, *, progress: bool = False) -> pd.DataFrame:
    """Validation accuracy of every (network, lr, l2): short runs on ``search_size`` images."""
    n = min(cfg.search_size, cfg.train_size)
    sub = data.Data("search", split.train.X_train[:n], split.train.y_train[:n],
                    split.X_val, split.y_val)  # fit's "test" set is the validation set here
    rows = []
    for variant in ("none", "bn"):
        for lr in cfg.lrs:
            for l2 in cfg.l2s:
                tc = _tcfg(cfg, lr, l2, cfg.seed, n, cfg.search_epochs)
                key = {"variant": variant, "hidden": cfg.hidden, "data": cfg.dataset, "n": n,
                       "val": cfg.val_size, "train": as_dict(tc)}

                def compute(variant=variant, tc=tc) -> dict:
                    h = train.fit(model(variant, cfg.hidden, cfg.seed), sub, tc, progress=progress)
                    return {"val_acc": float(h.test_acc[-1]) if not h.diverged else float("nan")}

                r = runs.cached("hessian-search", key, compute, depends=DEPENDS)
                rows.append({"network": variant, "lr": lr, "l2": l2, "val_acc": r["val_acc"]})
    return pd.DataFrame(rows)


def best(table: pd.DataFrame, variant: str = "none") -> tuple[float, float]:
    """The (lr, l2) with the highest validation accuracy for ``variant`` (seed: chosen on FC)."""
    row = table[table.network == variant].sort_values("val_acc", ascending=False).iloc[0]
    return float(row.lr), float(row.l2)


def measure(net: torch.nn.Module, cfg: Params, split: Split, *, full: bool) -> dict:
    """Accuracies and losses, the last-layer spectrum and (if ``full``) the full top-k."""
    Xh, yh = split.train.X_train[:cfg.hessian_size], split.train.y_train[:cfg.hessian_size]
    m = min(cfg.train_eval_size, cfg.train_size)
    out = {}
    for name, X, y in (("train", split.train.X_train[:m], split.train.y_train[:m]),
                       ("val", split.X_val, split.y_val),
                       ("test", split.train.X_test, split.train.y_test)):
        out[f"{name}_loss"], out[f"{name}_acc"] = train.evaluate(net, X, y)
    mode = cfg.hessian_bn_mode
    H = curvature.last_layer_hessian(net, Xh, yh, bn_mode=mode)  # (10*hidden, 10*hidden)
    out["ll_eigs"] = torch.linalg.eigvalsh(H.double()).flip(0).cpu().numpy()  # descending
    h = curvature.last_layer_input(net, Xh, bn_mode=mode)  # (N, hidden)
    out["feat_sq"] = float(h.pow(2).mean())
    out["const_units"] = int((h.amax(0) == h.amin(0)).sum())  # silent ReLUs (constant after BN)
    top = np.full(cfg.top_k, np.nan)
    hvps = 0
    if full:
        e = curvature.hessian_topk(net, Xh, yh, k=cfg.top_k, bn_mode=mode, tol=cfg.lanczos_tol)
        top[: len(e.eigenvalues)], hvps = e.eigenvalues, e.num_matvecs
    out["full_top"], out["full_hvps"] = top, hvps
    return out


def run_one(cfg: Params, variant: str, lr: float, l2: float, seed: int, split: Split, *,
            progress: bool = True) -> dict:
    """One training run with per-epoch measurements (epoch 0 = initialisation); cached."""
    tc = _tcfg(cfg, lr, l2, seed, cfg.train_size, cfg.epochs)
    spe = cfg.train_size // cfg.batch_size
    key = {"variant": variant, "cfg": {k: v for k, v in as_dict(cfg).items()
                                       if k not in ("profile", "lrs", "l2s", "num_seeds")},
           "train": as_dict(tc)}

    def compute() -> dict:
        net = model(variant, cfg.hidden, seed).to(split.train.device)

        def probe(ctx: train.StepContext) -> dict:
            return measure(ctx.model, cfg, split, full=(ctx.step // spe) % cfg.full_every == 0)

        h = train.fit(net, split.train, tc, probes=[train.Probe("epoch", probe, spe)],
                      progress=progress, desc=f"{variant} seed={seed}")
        rows = h.probes["epoch"]
        if not h.diverged:
            last = measure(net, cfg, split, full=True)
            rows = {k: np.concatenate([rows[k], [np.asarray(last[k])]]) for k in last}
        ends = h.time_s[spe - 1::spe]  # training wall time at each completed epoch's end
        return {**{k: np.asarray(v) for k, v in rows.items() if k != "step"},
                "time_s": np.concatenate([[0.0], ends]), "diverged": bool(h.diverged)}

    return runs.cached("hessian", key, compute, depends=DEPENDS)


def run(cfg: Params, split: Split, *, lr: float, l2: float, progress: bool = True) -> dict:
    """Every network and seed at (lr, l2), keyed by (variant, seed)."""
    return {(v, cfg.seed + s): run_one(cfg, v, lr, l2, cfg.seed + s, split, progress=progress)
            for v in VARIANTS for s in range(cfg.num_seeds)}


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
        last = {s: np.nanmean(per_epoch(res, v, f"{s}_acc")[:, -1])
                for s in ("train", "val", "test")}
        t = np.nanmean([np.mean(np.diff(r["time_s"])) for (w, _), r in res.items() if w == v])
        rows.append({"network": v, "source": "measured", **last, "s/epoch": t})
    for v, (a, b, c) in SEED_TABLE1.items():
        rows.append({"network": v, "source": "seed 002, Table 1", "train": a, "val": b, "test": c,
                     "s/epoch": np.nan})
    return pd.DataFrame(rows)


def time_to_reach(r: dict, target: float, key: str = "val_acc") -> float:
    """Training wall time at the first epoch end where ``key`` >= target (inf if never)."""
    hit = np.flatnonzero(np.asarray(r[key]) >= target)
    return float(r["time_s"][hit[0]]) if hit.size else float("inf")


def _mean_last(res: dict, v: str, fn) -> float:
    return float(np.nanmean(per_epoch(res, v, "", fn)[:, -1]))


def claims(cfg: Params, res: dict) -> list[Claim]:
    """The seed's claims, each decided by a computed criterion (means over seeds)."""
    k, acc = cfg.top_k, accuracy_table(res).set_index(["network", "source"])
    a = {v: acc.loc[(v, "measured")] for v in ("none", "bn")}
    runs_ = {v: [r for (w, _), r in res.items() if w == v] for v in ("none", "bn")}
    div = any(r["diverged"] for rs in runs_.values() for r in rs)
    t_fc = np.mean([r["time_s"][-1] for r in runs_["none"]])
    target = a["none"]["val"]
    t_bn = np.mean([time_to_reach(r, target) for r in runs_["bn"]])
    lam = {v: per_epoch(res, v, "", lambda r: np.asarray(r["ll_eigs"])[:, 0]).mean(0)
           for v in ("none", "bn")}
    kap = {v: per_epoch(res, v, "", lambda r: kappa(r, k=k)).mean(0) for v in ("none", "bn")}
    full1 = {v: _mean_last(res, v, lambda r: np.asarray(r["full_top"])[:, 0]) for v in lam}
    fullk = {v: _mean_last(res, v, lambda r: kappa(r, "full_top", k)) for v in lam}
    zero = max(float(np.max(np.min(np.abs(r["ll_eigs"]), 1) / r["ll_eigs"][:, 0]))
               for rs in runs_.values() for r in rs)  # worst run and epoch

    def share(x, y):  # fraction of trained epochs (1..E) with x < y
        return float(np.mean(x[1:] < y[1:]))

    s_lam, s_kap = share(lam["bn"], lam["none"]), share(kap["bn"], kap["none"])
    same = [(full1["bn"] < full1["none"]) == (lam["bn"][-1] < lam["none"][-1]),
            (fullk["bn"] < fullk["none"]) == (kap["bn"][-1] < kap["none"][-1])]
    return [
        Claim("BN gives higher accuracy (train, validation and test)", f"{SEED_SRC}, Table 1",
              "final accuracy of BN > standard on all three sets",
              f"test {a['bn']['test']:.1%} vs {a['none']['test']:.1%}; val "
              f"{a['bn']['val']:.1%} vs {a['none']['val']:.1%}; train {a['bn']['train']:.1%} "
              f"vs {a['none']['train']:.1%}",
              verdict(all(a["bn"][s] > a["none"][s] for s in ("train", "val", "test")),
                      partly=a["bn"]["test"] > a["none"]["test"], diverged=div)),
        Claim("BN converges faster in wall-clock time", f"{SEED_SRC}, Figs. 1-2",
              "training time BN needs to reach the standard net's final validation accuracy "
              "< the standard net's total training time",
              f"{t_bn:.3g} s vs {t_fc:.3g} s", verdict(t_bn < t_fc, diverged=div)),
        Claim("An epoch takes longer with BN", f"{SEED_SRC}, Sec. 4.2",
              "mean training time per epoch: BN > standard",
              f"{a['bn']['s/epoch']:.2f} s vs {a['none']['s/epoch']:.2f} s",
              verdict(a["bn"]["s/epoch"] > a["none"]["s/epoch"])),
        Claim("BN gives smaller top eigenvalues of the last-layer Hessian", f"{SEED_SRC}, Fig. 8",
              "lambda_1(BN) < lambda_1(standard) at every trained epoch (partly: at some)",
              f"at {s_lam:.0%} of epochs; final {lam['bn'][-1]:.3g} vs {lam['none'][-1]:.3g}",
              verdict(s_lam == 1, partly=s_lam > 0)),
        Claim(f"BN gives a smaller pseudo-condition number lambda_1/lambda_{k}",
              f"{SEED_SRC}, Fig. 3", "kappa'(BN) < kappa'(standard) at every trained epoch "
              "(partly: at some)",
              f"at {s_kap:.0%} of epochs; final {kap['bn'][-1]:.3g} vs {kap['none'][-1]:.3g}",
              verdict(s_kap == 1, partly=s_kap > 0)),
        Claim("The plain condition number is unusable: the last-layer Hessian is near-singular",
              f"{SEED_SRC}, Sec. 4.3", f"min |lambda| <= {ZERO_REL:g} lambda_1 in every run "
              "and epoch", f"largest min|lambda|/lambda_1: {zero:.1e}", verdict(zero <= ZERO_REL)),
        Claim("The last layer represents the whole network's curvature", f"{SEED_SRC}, Sec. 2.2",
              "the full Hessian orders BN vs standard as the last-layer block does (final "
              "lambda_1 and kappa'; partly: one of the two)",
              f"full lambda_1 {full1['bn']:.3g} vs {full1['none']:.3g}, kappa' "
              f"{fullk['bn']:.3g} vs {fullk['none']:.3g}", verdict(all(same), partly=any(same))),
    ]


def numbers(cfg: Params, table: pd.DataFrame, res: dict) -> dict[str, float | str]:
    """Every number the chapter's prose quotes, by glue key (means over seeds, final epoch)."""
    lr, l2 = best(table)
    out: dict[str, float | str] = {"lr": lr, "l2": l2, "hidden": cfg.hidden,
                                   "val_best": float(table.val_acc.max())}
    out["bn_lr"], out["bn_l2"] = best(table, "bn")
    lr_max = max(cfg.lrs)
    out["lr_max"] = lr_max
    for v in ("none", "bn"):
        t = table[table.network == v].set_index(["lr", "l2"]).val_acc
        out[f"search_best_{v}"] = float(t.max())
        out[f"search_lrmax_{v}"] = float(t.loc[lr_max].max())  # best l2 at the largest lr
    grid = table.pivot_table(index=["lr", "l2"], columns="network", values="val_acc")
    like = grid[grid["none"].between(*SEED_LIKE)]
    out["seed_like"] = "; ".join(f"lr {lr_:g} with l2 {l2_:g} ({r['none']:.1%} without, "
                                 f"{r['bn']:.1%} with BatchNorm)"
                                 for (lr_, l2_), r in like.iterrows()) or "none"
    out["seed_like_n"], out["seed_like_bn_ahead"] = len(like), int((like.bn > like.none).sum())
    out["seed_like_lo"], out["seed_like_hi"] = SEED_LIKE
    out["seed_epochs"], out["zero_rel"] = SEED_EPOCHS, ZERO_REL
    out["seed_test_none"], out["seed_test_bn"] = SEED_TABLE1["none"][2], SEED_TABLE1["bn"][2]
    out["n_params"] = sum(p.numel() for p in model("none", cfg.hidden, 0).parameters())
    acc = accuracy_table(res).set_index(["network", "source"])
    for v in VARIANTS:
        row = acc.loc[(v, "measured")]
        for s in ("train", "val", "test", "s/epoch"):
            out[f"{s.replace('s/epoch', 'sec')}_{v}"] = float(row[s])
        last = lambda key, v=v: per_epoch(res, v, key)[:, -1]  # noqa: E731
        eigs = per_epoch(res, v, "", lambda r: np.asarray(r["ll_eigs"])[-1])  # (seeds, P2)
        lam1 = eigs[:, 0]
        out[f"lam1_{v}"] = float(lam1.mean())
        out[f"kappa_{v}"] = float((lam1 / eigs[:, cfg.top_k - 1]).mean())
        out[f"zeros_{v}"] = float(np.mean(np.sum(np.abs(eigs) <= ZERO_REL * lam1[:, None], 1)))
        out[f"neg_{v}"] = float(np.mean(np.sum(eigs < 0, 1)))
        out[f"ratio_{v}"] = float(np.max(np.min(np.abs(eigs), 1) / lam1))
        out[f"feat_{v}"] = float(np.nanmean(last("feat_sq")))
        out[f"const_{v}"] = float(np.nanmean(last("const_units")))
        out[f"lam1_per_feat_{v}"] = out[f"lam1_{v}"] / out[f"feat_{v}"]
        full = per_epoch(res, v, "", lambda r: np.asarray(r["full_top"])[-1])  # (seeds, k)
        out[f"full_lam1_{v}"] = float(full[:, 0].mean())
        out[f"full_kappa_{v}"] = float((full[:, 0] / full[:, cfg.top_k - 1]).mean())
        out[f"hvps_{v}"] = float(np.nanmean(last("full_hvps")))
        out[f"full_over_block_{v}"] = out[f"full_lam1_{v}"] / out[f"lam1_{v}"]
    out["slowdown"] = out["sec_bn"] / out["sec_none"]
    out["acc_gap"] = out["test_bn"] - out["test_none"]
    # kernel of H_W2 without BN: 1 (x) u for every u, and v (x) e_i for every silent unit i
    out["zeros_pred_none"] = cfg.hidden + (10 - 1) * out["const_none"]
    runs_ = {v: [r for (w, _), r in res.items() if w == v] for v in ("none", "bn")}
    out["t_fc"] = float(np.mean([r["time_s"][-1] for r in runs_["none"]]))
    out["t_bn"] = float(np.mean([time_to_reach(r, out["val_none"]) for r in runs_["bn"]]))
    return out
