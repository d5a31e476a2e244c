"""Chapter "Is BatchNorm the only way to smooth the landscape?" (Santurkar et al. 2018, Sec. 3.3).

The VGG and the deep linear network (DLN) with no normalisation, BatchNorm, lp normalisation
(p = 1, 2, inf; ``norms.LpNorm``), LayerNorm and GroupNorm. None and BN are the book's shared
core trajectories (``profiles``: 3 seeds); the other normalisers run ``variant_steps`` on the VGG
and ``dln_steps`` on the DLN with ``variant_seeds`` seeds
(quick: 1). Every VGG comparison is made at the same
step (``horizon``), the first ``variant_steps`` of the longer core runs. Probed from the store:
the smoothness chapter's line search, and at the horizon the activations' shape and the test
accuracy with batch statistics. Everything the paper leaves open about lp is a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from .. import config, profiles
from ..claims import Claim, Criterion, Gap, left_chance, less, verdict
from ..config import Interval, ListOf, OneOf, param
from ..probes import activations, evaluation, kurtosis, landscape
from ..runs import Runs, Store, Trajectory

TITLE = "Is BatchNorm the only way to smooth the landscape? lp normalisation"
NORMS = ("none", "bn", "l1", "l2", "linf", "ln", "gn")  # plotting order
CORE = ("none", "bn")
LP = ("l1", "l2", "linf")
CENTRED = {"l1c": "l1", "l2c": "l2", "linfc": "linf"}  # lp layers with the norm of the centred input
LANDSCAPE = ("loss range", "grad-diff max", "beta_eff")  # the three panels of the paper's Fig. 4
SRC = "Santurkar et al. 2018, Sec. 3.3"
NAMES = {"none": "standard", "bn": "BN", "l1": "l1", "l2": "l2", "linf": "l-inf", "ln": "LayerNorm", "gn": "GroupNorm",
         "l1c": "l1 (centred norm)", "l2c": "l2 (centred norm)", "linfc": "l-inf (centred norm)"}  # short, in prose
_POS = dict(low_open=True)
_STEPS = Interval(int, 1, 1_000_000)
_VARIANTS = ListOf(OneOf(NORMS[2:]))


@dataclass(frozen=True)
class Params(profiles.VGGParams, profiles.DLNParams):
    vgg_norms: tuple = param(NORMS[2:], _VARIANTS, "normalisers trained on the VGG besides none and BN "
                             "(paper: l1, l2, linf; LN, GN: choice)")
    dln_norms: tuple = param(("l1",), _VARIANTS, "normalisers trained on the DLN besides none and BN (paper: "
                             "l1, l2, linf; quick: l1 only, the one the paper's DLN claim needs, CPU budget)")
    lp_norm_of: str = param("raw", OneOf(("raw", "centered")),
                            "lp norm of the raw or the centred input (paper: 'before shifting the mean')")
    centred_norms: tuple = param(("l1",), ListOf(OneOf(LP)), "lp layers also trained with the norm of the centred "
                                 "input, on the VGG and the DLN, beside the main reading (the other reading of 'before "
                                 "shifting the mean'; quick: l1, the one both DLN and VGG rows need; l2 centred is BN)")
    lp_center: bool = param(True, OneOf((True, False)), "lp layers subtract the batch mean (paper: yes)")
    lp_eps: float = param(1e-5, Interval(float, 0, 1), "added to mean(abs(x)^p) (choice: BN's 1e-5)")
    lp_affine: bool = param(True, OneOf((True, False)), "learnable gamma, beta after lp layers (choice: as BN)")
    lp_momentum: float = param(0.1, Interval(float, 0, 1, **_POS),
                               "running-average momentum of the eval statistics (choice: BN's 0.1)")
    gn_groups: int = param(8, Interval(int, 1, 512), "GroupNorm groups, reduced to divide C (choice)")
    probe_every: int = param(200, _STEPS, "VGG steps between landscape probes (paper: every step; quick: 200, "
                             "CPU budget)")
    multipliers: tuple = param((0.5, 1.0, 2.0, 4.0), ListOf(Interval(float, 0, 1e3, **_POS)),
                               "VGG steps along the gradient, in units of lr (paper: [1/2, 4])")
    act_layers: tuple = param((3, 7), ListOf(Interval(int, 1, 20)), "VGG layers whose activations are studied (choice)")
    probe_size: int = param(256, Interval(int, 2, 10_000), "fixed images for the activation histograms (choice)")
    hist_samples: int = param(4096, Interval(int, 16, 1_000_000), "activations kept per histogram (choice)")
    dln_loss: str = param("mse_sum", OneOf(("mse_sum", "mse")), "DLN loss summed or averaged over points (choice)")
    dln_probe_every: int = param(2000, _STEPS, "DLN steps between landscape probes (paper: every step; quick: "
                                 "2,000, CPU budget, pays for the centred runs; a multiple of the checkpoints' 200)")
    dln_multipliers: tuple = param((0.01, 0.1, 1.0, 10.0, 30.0), ListOf(Interval(float, 0, 1e4, **_POS)),
                                   "DLN steps along the gradient, in units of dln_lr (paper: [1/100, 30])")
    dln_centred_steps: int = param(10_000, _STEPS, "DLN steps of the centred-norm lp runs, the first of dln_steps "
                                   "(paper: all; quick: 1,000, CPU budget: on the DLN, with no biases and inputs "
                                   "of zero mean, the two norms nearly agree, and the raw-norm runs train all steps)")
    margin: float = param(0.05, Interval(float, 0, 1), "'comparable to BN': accuracy within this; 5 points is "
                          "about three standard errors of a difference of two accuracies on 2,000 test images")
    ln_gn_margin: float = param(0.05, Interval(float, 0, 1), "LayerNorm and GroupNorm 'comparable to BN': accuracy "
                                "within this; as margin, three standard errors of a difference at 2,000 test images")
    similar_factor: float = param(3.0, Interval(float, 1, 1e3), "'smooths like BN': within this factor of BN; "
                                  "these quantities differ by orders of magnitude between networks")
    k: float = param(2.0, Interval(float, 0, 100), "a gap that does not hold on every seed must exceed k seed "
                     "spreads (sample std of the per-seed gaps): about a 95% two-sided margin")
    chance_frac: float = param(0.9, Interval(float, 0, 1, **_POS), "precondition 'left chance': tail loss < "
                               "this x ln 10, so a net still on its initial plateau is not compared")


PROFILES = {
    "smoke": {**profiles.VGG["smoke"], **profiles.DLN["smoke"], "probe_every": 2, "multipliers": (1.0, 4.0),
              "probe_size": 16, "hist_samples": 256, "dln_probe_every": 10, "dln_multipliers": (1.0, 30.0),
              "dln_norms": LP},
    # the lp/LN/GN runs: one seed, 700 steps and no l2 on the VGG fit the CPU budget with the centred runs
    "quick": {"variant_seeds": 1, "variant_steps": 700, "vgg_norms": ("l1", "linf", "ln", "gn"),
              "dln_centred_steps": 1000},
    "paper": {**profiles.VGG["paper"], **profiles.DLN["paper"], "probe_every": 250, "act_layers": (3, 11),
              "dln_norms": LP, "dln_probe_every": 200, "centred_norms": LP},
}
KEY_SETTINGS = ("dataset", "depth", "width", "lr", "num_steps", "variant_steps", "num_seeds", "variant_seeds",
                "vgg_norms", "dln_norms", "lp_norm_of", "centred_norms", "lp_center", "lp_eps", "lp_affine",
                "lp_momentum", "dln_lr", "dln_loss", "dln_steps", "dln_centred_steps", "probe_every", "dln_probe_every")
THRESHOLDS = ("margin", "ln_gn_margin", "similar_factor", "k", "chance_frac")


def variant(cfg: Params, norm: str) -> dict:
    """The ModelSpec fields of normaliser ``norm``: the lp options for l1, l2, linf only, the
    group count for gn only, nothing else (so none and BN are the other chapters' nets); a
    ``CENTRED`` name is its lp layer with the norm of the centred input."""
    if norm in LP or norm in CENTRED:
        return {"norm": CENTRED.get(norm, norm), "lp": dict(
            norm_of="centered" if norm in CENTRED else cfg.lp_norm_of, center=cfg.lp_center, eps=cfg.lp_eps,
            affine=cfg.lp_affine, momentum=cfg.lp_momentum)}
    return {"norm": norm, "groups": cfg.gn_groups} if norm == "gn" else {"norm": norm}


def norms(cfg: Params, arch: str) -> tuple[str, ...]:
    """The normalisers trained on ``arch``, in plotting order, then the centred-norm lp layers."""
    extra = cfg.vgg_norms if arch == "vgg" else cfg.dln_norms
    return tuple(n for n in NORMS if n in CORE or n in extra) + centred(cfg)


def centred(cfg: Params) -> tuple[str, ...]:
    """The ``CENTRED`` names of ``cfg.centred_norms``."""
    return tuple(c for c, n in CENTRED.items() if n in cfg.centred_norms)


def seeds(cfg: Params, norm: str) -> list[int]:
    """The seeds of ``norm``: the core seeds for none and BN, the ``variant_seeds`` (a prefix) otherwise."""
    return profiles.seeds(cfg, "num_seeds" if norm in CORE else "variant_seeds")


def paired(cfg: Params) -> list[int]:
    """The seeds every normaliser has: the ones the claims pair."""
    return seeds(cfg, "l1")


def horizon(cfg: Params, arch: str) -> int:
    """The step at which every run of ``arch`` is compared: the variants' length on the VGG
    (the core runs' first ``variant_steps``), the whole run on the DLN."""
    return min(cfg.variant_steps, cfg.num_steps) if arch == "vgg" else cfg.dln_steps


def dln_horizon(cfg: Params, norm: str) -> int:
    """The DLN steps ``norm`` trains: ``dln_centred_steps`` (at most ``dln_steps``) for a centred-norm
    lp layer, ``dln_steps`` for every other."""
    return min(cfg.dln_centred_steps, cfg.dln_steps) if norm in CENTRED else cfg.dln_steps


def _names(ns) -> str:
    """Display names joined as prose: "l2", "l2 and l-inf", "l1, l2 and l-inf"."""
    words = [NAMES[n] for n in ns]
    return " and ".join([", ".join(words[:-1]), words[-1]] if len(words) > 1 else words)


def cuts(cfg: Params) -> list[str]:
    """What this profile leaves out of the paper's experiment or shortens, one sentence each."""
    dln_cut = [n for n in LP if n not in cfg.dln_norms]
    vgg_cut = [n for n in LP if n not in cfg.vgg_norms]
    centred_dln = [c for c in centred(cfg) if c in norms(cfg, "dln")]
    out = []
    if dln_cut:
        kept = [n for n in LP if n not in dln_cut]
        out.append(f"On the DLN, {_names(dln_cut)} {'is' if len(dln_cut) == 1 else 'are'} not trained, so the "
                   f"DLN's smoothing row rests on {_names(kept) if kept else 'no lp layer'}.")
    if vgg_cut:
        out.append(f"On the VGG, {_names(vgg_cut)} {'is' if len(vgg_cut) == 1 else 'are'} not trained (to pay for "
                   f"the centred-norm runs), and every VGG number is taken at step {horizon(cfg, 'vgg'):,}.")
    if cfg.dln_probe_every > 1:
        out.append(f"The DLN's landscape is probed every {cfg.dln_probe_every:,} steps (the paper: every step).")
    if centred_dln and dln_horizon(cfg, centred_dln[0]) < cfg.dln_steps:
        out.append(f"The centred-norm runs on the DLN ({', '.join(centred_dln)}) train the first "
                   f"{dln_horizon(cfg, centred_dln[0]):,} of its {cfg.dln_steps:,} steps, and their row compares "
                   "them with BN over those steps. With no biases and inputs of zero mean the two norms nearly "
                   "agree on the DLN, and the raw-norm runs train every step.")
    if cfg.variant_seeds == 1:
        out.append("The normalisers other than the standard network and BN have one seed, so their rows say "
                   f"'1 seed' and cannot show a seed spread; the `paper` profile trains "
                   f"{config.resolve(Params, 'paper').variant_seeds} seeds of each.")
    return out


def nets(store: Store, cfg: Params) -> dict[str, Runs]:
    """Every normaliser of ``norms`` and its ``seeds`` on both architectures: ``{arch: Runs}`` keyed
    ``(norm, seed)``. The VGG core pair is the shared 1,500-step run, the others ``variant_steps``;
    the DLN's loss is ``cfg.dln_loss`` (default: the shared one), its length ``dln_horizon``."""
    out = {}
    for arch in ("vgg", "dln"):
        trajs = {}
        for n in norms(cfg, arch):
            if arch == "vgg":
                d, m, t = profiles.vgg_specs(cfg, variant=n not in CORE)
            else:
                d, m, t = profiles.dln_specs(cfg)
                t = replace(t, loss=cfg.dln_loss, num_steps=dln_horizon(cfg, n))
            trajs.update({(n, s): Trajectory(d, m.with_(**variant(cfg, n)), t, s) for s in seeds(cfg, n)})
        out[arch] = Runs(store, trajs, checkpoints=tuple(probe_steps(cfg, arch)))
    return out


def probe_steps(cfg: Params, arch: str) -> list[int]:
    """The training steps probed along the gradient: 0, probe_every, ... below the ``horizon``
    (before each update; multiples of the stored checkpoints' spacing cost no replay)."""
    return list(range(0, horizon(cfg, arch), cfg.probe_every if arch == "vgg" else cfg.dln_probe_every))


def line_search(cfg: Params, arch: str, norm: str) -> landscape.LineSearch:
    """The smoothness chapter's probe with this chapter's multipliers (no vmap for LN/GN on the
    VGG: torch's group_norm has no vmap rule for 4-d inputs)."""
    vgg = arch == "vgg"
    return landscape.LineSearch(cfg.multipliers if vgg else cfg.dln_multipliers,
                                vectorize=False if vgg and norm in ("ln", "gn") else None)


def at_end(cfg: Params) -> dict:
    """The probes of a VGG at the horizon: its activations' shape, its test accuracy with batch statistics."""
    return {"shape": kurtosis.ActivationShape(cfg.act_layers, num_samples=cfg.hist_samples, size=cfg.probe_size),
            "batch_acc": evaluation.Evaluation(bn_mode="batch", size=cfg.eval_size)}


def measure(cfg: Params, trained: dict[str, Runs]) -> dict[tuple, dict]:
    """Every probe from the store: ``res[arch, norm, seed]`` holds the History (``"hist"``), the
    line search below the horizon (``"line"``), the horizon (``"end"``) and, for a VGG that had not
    diverged by then, ``at_end``'s results."""
    res = {}
    for arch, runs_ in trained.items():
        for (norm, seed), traj in runs_.items():
            h, probe = runs_.hist[norm, seed], runs_.store.probe
            end = min(horizon(cfg, arch), h.steps_done)
            steps = [s for s in probe_steps(cfg, arch) if s <= end]
            line = probe(traj, line_search(cfg, arch, norm), steps)
            r = res[arch, norm, seed] = {"hist": h, "end": end, "line": line}
            if arch == "vgg" and not _diverged(r):
                got = {k: probe(traj, p, [end]) for k, p in at_end(cfg).items()}
                r.update({k: {q: v[0] for q, v in e.items()} for k, e in got.items()})
    return res


def _diverged(r: dict) -> bool:
    """Did the run stop on a non-finite loss before (or at) the horizon?"""
    return bool(r["hist"].diverged and r["hist"].steps_done <= r["end"])


def _row(cfg: Params, arch: str, r: dict) -> dict:
    """One run's numbers at its horizon: performance, landscape (medians over the probed steps),
    activation shift (records up to the horizon) and shape."""
    h, ls, end, bad = r["hist"], r["line"], r["end"], _diverged(r)
    row = {"diverged": bad, **losses(h, end, bad)}
    row.update({k: float(np.median(f(ls))) if len(ls["step"]) else np.nan
                for k, (_, f) in zip(LANDSCAPE, landscape.QUANTITIES.values())})
    if arch == "dln":
        return row
    acc = h.test_acc[h.eval_step <= end]
    row["test acc"] = np.nan if bad or not len(acc) else float(acc[-1])
    row["test acc (batch stats)"] = float(r["batch_acc"]["test_acc"]) if "batch_acc" in r else np.nan
    row.update(shifts(cfg, h.records, end))
    shape = r.get("shape", {})
    for i in cfg.act_layers:
        row[f"kurtosis L{i}"] = float(shape.get(f"layer{i}/kurtosis", np.nan))
        per_channel = np.abs(shape[f"layer{i}/kurtosis_channel"]) if shape else np.full(1, np.nan)
        row[f"channel |kurtosis| L{i}"] = float(np.median(per_channel))
    row["|kurtosis| median"] = float(np.median([abs(row[f"kurtosis L{i}"]) for i in cfg.act_layers]))
    row["channel |kurtosis| median"] = float(np.median([row[f"channel |kurtosis| L{i}"] for i in cfg.act_layers]))
    return row


def losses(h, end: int, diverged: bool = False) -> dict[str, float]:
    """The training loss of History ``h`` over its first ``end`` steps: the mean over the last 10% of
    them and over all of them (inf for a diverged run)."""
    loss = h.train_loss[:end]
    return {"final train loss": np.inf if diverged else float(np.mean(loss[-max(1, len(loss) // 10):])),
            "mean train loss": np.inf if diverged else float(np.mean(loss))}


def prefix(cfg: Params, res: dict, norm: str, end: int) -> pd.DataFrame:
    """``losses`` of every DLN run of ``norm`` over its first ``end`` steps, indexed by seed: the
    reference nets cut to a shorter run's length (a run that diverged only after ``end`` counts)."""
    hists = {s: res["dln", norm, s]["hist"] for s in seeds(cfg, norm)}
    return pd.DataFrame.from_dict({s: losses(h, end, bool(h.diverged and h.steps_done <= end))
                                   for s, h in hists.items()}, orient="index")


_COLUMNS = {  # summary column -> (table, the column's name for a reader)
    "seeds": ("training", "seeds"), "final train loss": ("training", "final training loss"),
    "mean train loss": ("training", "mean training loss"), "test acc": ("training", "test accuracy"),
    "test acc (batch stats)": ("training", "test accuracy, batch statistics"),
    "loss range": ("landscape", "loss range"), "grad-diff max": ("landscape", "largest gradient change"),
    "beta_eff": ("landscape", "effective beta-smoothness"),
    "mean shift (pre)": ("shift", "mean shift, before"), "var shift (pre)": ("shift", "variance shift, before"),
    "mean shift (post)": ("shift", "mean shift, after"), "var shift (post)": ("shift", "variance shift, after"),
}


TABLE_TITLES = {
    "training": "Training: training loss (last 10% of the steps, and all of them) and test accuracy",
    "landscape": "The landscape along the gradient: medians over the probed steps",
    "shift": "Step-to-step shift of the activations, before and after the normaliser",
    "shape": "Excess kurtosis of the activations: all channels pooled, and per channel (median of its absolute value)",
}


def tables(cfg: Params, summary_: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """``summary``'s columns split into narrow tables for a reader ("training", "landscape",
    "shift", "shape"), indexed by the normaliser's name (``NAMES``), columns named in words."""
    named = summary_.rename(index=NAMES).rename_axis("normaliser")
    out: dict[str, dict[str, pd.Series]] = {}
    for col, (table, name) in _COLUMNS.items():
        if col in named:
            out.setdefault(table, {})[name] = named[col]
    for i in cfg.act_layers if f"kurtosis L{cfg.act_layers[0]}" in named else ():
        out.setdefault("shape", {})[f"pooled, layer {i}"] = named[f"kurtosis L{i}"]
        out["shape"][f"per channel, layer {i}"] = named[f"channel |kurtosis| L{i}"]
    return {t: pd.DataFrame(cols) for t, cols in out.items()}


SITES = {"pre": "before the normaliser (its input)", "post": "after the normaliser (its output)"}


def shifts(cfg: Params, rec: dict, end: int) -> dict[str, float]:
    """Mean and variance shift (``activations.distribution_shift``, averaged over ``act_layers``)
    from the always-on records up to step ``end``, at both ``SITES``: ``"mean shift (pre)"``, ..."""
    keep = np.asarray(rec.get("step", ())) <= end
    out = {}
    for site in SITES:
        got = [activations.distribution_shift(rec[f"{site}{i}.mean"][keep], rec[f"{site}{i}.var"][keep])
               for i in cfg.act_layers] if keep.sum() > 1 else []
        for k in ("mean", "var"):
            out[f"{k} shift ({site})"] = float(np.mean([g[f"{k}_shift"] for g in got])) if got else np.nan
    return out


def per_seed(cfg: Params, res: dict, arch: str) -> pd.DataFrame:
    """``_row`` of every run of ``arch``, indexed by (norm, seed)."""
    idx = [(n, s) for n in norms(cfg, arch) for s in seeds(cfg, n)]
    return pd.DataFrame([_row(cfg, arch, res[arch, n, s]) for n, s in idx],
                        index=pd.MultiIndex.from_tuples(idx, names=("norm", "seed")))


def summary(cfg: Params, res: dict, arch: str) -> pd.DataFrame:
    """One row per normaliser at the horizon: means over its seeds (column ``seeds``) of the
    final and mean training loss, test accuracy, the landscape medians, shift and kurtosis."""
    df = per_seed(cfg, res, arch)
    out = df.drop(columns="diverged").groupby(level="norm", sort=False).mean()
    out.insert(0, "seeds", df.groupby(level="norm", sort=False).size())
    out.insert(1, "diverged", df["diverged"].groupby(level="norm", sort=False).any())
    return out



# ---------------------------------------------------------------- criteria (pure functions)

def _lp(values: dict) -> list[str]:
    """The normalisers compared with the reference nets: every key but none and BN."""
    return [n for n in values if n not in CORE]


def _seeds(gaps: dict[str, Gap]) -> str:
    """"1 seed" or "l1: 3 seeds: holds on 3/3, ...; l2: ..."."""
    g = next(iter(gaps.values()))
    return "1 seed" if g.n == 1 else "; ".join(f"{n}: {x.seeds()}" for n, x in gaps.items())


def _decide(holds: list[bool], swamped: bool, precondition: bool, partly: bool) -> str:
    """Inconclusive on a failed precondition or when a failing gap is swamped by the seed spread."""
    return verdict(all(holds), partly=partly, precondition=precondition and not (swamped and not all(holds)))


def _all_but_one(holds: list[bool]) -> bool:
    return len(holds) >= 2 and sum(holds) >= len(holds) - 1


def _mean(x) -> float:
    return float(np.mean(x))


def _comparable(acc: dict, k: float, margin: float, precondition: bool) -> tuple[str, str]:
    gaps = {n: less(acc["bn"], acc[n], k=k, margin=-margin) for n in _lp(acc)}
    holds = [g.holds for g in gaps.values()]
    text = (f"BN {_mean(acc['bn']):.1%}; " + ", ".join(f"{n} {_mean(acc[n]):.1%}" for n in gaps)
            + f"; within the margin: {sum(holds)} of {len(holds)} ({_seeds(gaps)})")
    return text, _decide(holds, any(g.swamped for g in gaps.values()), precondition, _all_but_one(holds))


def _smooth(q: dict, k: float, similar_factor: float, precondition: bool) -> tuple[str, str]:
    below = {n: [less(q[n][x], q["none"][x], k=k) for x in LANDSCAPE] for n in _lp(q)}
    near = {n: [less(q[n][x], [similar_factor * v for v in q["bn"][x]], k=k) for x in LANDSCAPE] for n in _lp(q)}
    holds = [all(g.holds for g in below[n] + near[n]) for n in below]
    partly = all(g.holds for n in below for g in below[n])
    swamped = any(g.swamped for n in below for g in below[n] + near[n])
    beta = ", ".join(f"{n} {_mean(q[n]['beta_eff']):.3g}" for n in ("none", "bn", *below))
    count = lambda gaps: ", ".join(f"{n} {sum(g.holds for g in gaps[n])}/3" for n in gaps)  # noqa: E731
    text = (f"beta_eff: {beta}; below the standard net: {count(below)}; within x{similar_factor:g} of BN: "
            f"{count(near)} ({_seeds({n: below[n][-1] for n in below})})")
    return text, _decide(holds, swamped, precondition, partly)


def _shift(mean_shift: dict, var_shift: dict, loss: dict, k: float, precondition: bool) -> tuple[str, str]:
    lp = _lp(loss)
    gm = {n: less(mean_shift["none"], mean_shift[n], k=k) for n in lp}
    gv = {n: less(var_shift["none"], var_shift[n], k=k) for n in lp}
    gl = {n: less(loss[n], loss["none"], k=k) for n in lp}
    holds = [gm[n].holds and gv[n].holds and gl[n].holds for n in lp]
    partly = all(gv[n].holds and gl[n].holds for n in lp)
    swamped = any(g.swamped for d in (gm, gv, gl) for g in d.values())
    fmt = lambda d: ", ".join(f"{n} {_mean(d[n]):.3f}" for n in ("none", *lp))  # noqa: E731
    return (f"mean shift: {fmt(mean_shift)}; var shift: {fmt(var_shift)}; loss: {fmt(loss)} ({_seeds(gl)})",
            _decide(holds, swamped, precondition, partly))


def _non_gaussian(kurt: dict, k: float, precondition: bool) -> tuple[str, str]:
    gaps = {n: less(kurt["bn"], kurt[n], k=k) for n in _lp(kurt)}
    holds = [g.holds for g in gaps.values()]
    text = ", ".join(f"{n} {_mean(kurt[n]):.2f}" for n in ("bn", *gaps)) + f" ({_seeds(gaps)})"
    return text, _decide(holds, any(g.swamped for g in gaps.values()), precondition, _all_but_one(holds))


def _l1_beats_bn(mean: dict, final: dict, k: float, precondition: bool, bn_spread: float = 0.0) -> tuple[str, str]:
    """The l1 net (the key of ``mean`` that is not "bn": l1 or l1c) against BN. With one paired
    seed the gap must also exceed ``k`` x ``bn_spread`` (the std of BN's mean loss over all its
    seeds), else the seed-to-seed variation could explain it: inconclusive."""
    l1 = next(n for n in mean if n != "bn")
    auc, end = less(mean[l1], mean["bn"], k=k), less(final[l1], final["bn"], k=k)
    noisy = auc.n == 1 and abs(auc.mean) <= k * bn_spread
    text = (f"mean: {auc.text((l1, 'BN'), '{:.4g}')}; final: {end.text((l1, 'BN'), '{:.4g}')}; "
            f"BN's seed spread (std of its mean loss): {bn_spread:.4g}")
    return text, auc.verdict(precondition=precondition and not noisy, partly=end.holds)


_PRE_TRAINED = "Precondition: the standard VGG left chance (tail loss < {chance_frac:g} ln 10) and no run diverged. "
_PAIRED = "Paired seeds; a gap holds on every seed or by more than {k:g} seed spreads. "
_SMOOTH = ("For each lp net, each of loss range, largest gradient change and effective beta-smoothness (medians "
           "over the probed steps before step {%s}) is below the standard net's and <= {similar_factor:g} x "
           "BN's. Partly: every lp net is below the standard net on all three, but not all within the factor of BN.")
CRITERIA = {
    "comparable": Criterion(
        "All lp schemes reach performance comparable to BatchNorm (VGG)", SRC + ", Fig. 13",
        "Test accuracy at step {horizon} of each lp net > BN's - {margin:.0%}. Partly: for all but one of them. "
        "Precondition: BN left chance (tail loss < {chance_frac:g} ln 10), no run diverged. " + _PAIRED,
        _comparable),
    "smooth_vgg": Criterion("lp schemes smooth the landscape like BatchNorm (VGG)", SRC + ", Fig. 12",
                            _SMOOTH % "horizon" + " " + _PRE_TRAINED + _PAIRED, _smooth),
    "smooth_dln": Criterion("lp schemes smooth the landscape like BatchNorm (DLN)", SRC + ", Fig. 12",
                            _SMOOTH % "dln_steps" + " Precondition: no run diverged. " + _PAIRED, _smooth),
    "shift": Criterion(
        "lp activations shift more than the standard network's, yet lp nets train better", SRC + ", Fig. 14",
        "Site: before the normaliser (its input; the output's batch mean is pinned at beta by the centring). "
        "For each lp net: mean shift and variance shift (record to record up to step {horizon}, layers {layers}) "
        "> the standard net's, and training loss at step {horizon} < the standard net's. Partly: every lp net "
        "has the larger variance shift and the lower loss (mean shift not). " + _PRE_TRAINED + _PAIRED, _shift),
    "non_gaussian": Criterion(
        "lp activations are no longer Gaussian-like (VGG)", SRC + ", Fig. 14",
        "Per channel: median over layers {layers} of the median over channels of |excess kurtosis| (step "
        "{horizon}) of each lp net > BN's. Site: the same before and after a BN or lp layer (a per-channel affine "
        "map with the probe batch's statistics leaves the kurtosis alone). Partly: for all but one of them. "
        "Precondition: no run diverged. " + _PAIRED, _non_gaussian),
    "l1_dln": Criterion(
        "On the deep linear network, l1 normalisation beats BatchNorm", SRC + ", Fig. 13",
        "DLN mean training loss over the {dln_steps} steps (area under the curve): l1 < BN. Partly: only the "
        "final loss (last 10% of steps) is lower. Precondition: neither run diverged; with one paired seed, the gap "
        "exceeds {k:g} x BN's seed spread (std of its mean loss over all its seeds). " + _PAIRED, _l1_beats_bn),
    "ln_gn": Criterion(
        "LayerNorm and GroupNorm improve training comparably to BatchNorm (VGG)",
        "Santurkar et al. 2018, Sec. 5 (citing Ba et al.; Wu & He)",
        "Test accuracy at step {horizon} of LN and of GN > BN's - {ln_gn_margin:.0%}. Partly: for one of the two. "
        "Precondition: BN left chance (tail loss < {chance_frac:g} ln 10), no run diverged. " + _PAIRED,
        _comparable),
    "comparable_centred": Criterion(
        "All lp schemes reach performance comparable to BatchNorm (VGG), with the centred-norm reading",
        SRC + ", Fig. 13",
        "As the first row, for the lp nets whose norm is that of the centred input ({centred}): test accuracy at "
        "step {horizon} > BN's - {margin:.0%}. Partly: for all but one of them (needs two or more). Precondition: "
        "BN left chance, no run diverged. " + _PAIRED, _comparable),
    "l1_dln_centred": Criterion(
        "On the deep linear network, l1 normalisation beats BatchNorm, with the centred-norm reading",
        SRC + ", Fig. 13",
        "As the l1 row above, for the l1 net whose norm is that of the centred input (l1c), over its {centred_steps} "
        "steps: DLN mean training loss over those steps l1c < BN's over the same first steps. Partly: only the final "
        "loss (last 10% of them) is lower. Precondition: neither run diverged; with one paired seed, the gap exceeds "
        "{k:g} x BN's seed spread (over the same steps). " + _PAIRED, _l1_beats_bn),
}


def _values(df: pd.DataFrame, col: str, norms_: tuple, pair: list[int]) -> dict[str, list[float]]:
    return {n: [float(df.loc[(n, s), col]) for s in pair] for n in norms_}


def _spread(x: pd.Series) -> float:
    """Sample std of ``x`` over its seeds (0 with one seed)."""
    x = x.to_numpy(float)
    return float(np.std(x, ddof=1)) if len(x) > 1 else 0.0


def claims(cfg: Params, res: dict) -> list[Claim]:
    """The chapter's claims (Santurkar et al. 2018, Sec. 3.3), each decided by its criterion on
    the paired seeds at the horizon."""
    pair = paired(cfg)
    v, d = per_seed(cfg, res, "vgg"), per_seed(cfg, res, "dln")
    vn, dn = tuple(n for n in norms(cfg, "vgg") if n in (*CORE, *LP)), tuple(n for n in norms(cfg, "dln")
                                                                               if n in (*CORE, *LP))
    ok = lambda df, ns: not any(df.loc[(n, s), "diverged"] for n in ns for s in pair)  # noqa: E731
    left = lambda n: left_chance(_values(v, "final train loss", (n,), pair)[n], frac=cfg.chance_frac)  # noqa: E731
    q = {a: {n: {x: _values(df, x, ns, pair)[n] for x in LANDSCAPE} for n in ns} for a, df, ns in
         (("vgg", v, vn), ("dln", d, dn))}
    common = dict(k=cfg.k, chance_frac=cfg.chance_frac, horizon=horizon(cfg, "vgg"), dln_steps=cfg.dln_steps,
                  layers=", ".join(map(str, cfg.act_layers)), similar_factor=cfg.similar_factor)
    rows = [CRITERIA["comparable"](acc=_values(v, "test acc", vn[1:], pair), margin=cfg.margin,
                                   precondition=ok(v, vn[1:]) and left("bn"), **common),
            CRITERIA["smooth_vgg"](q=q["vgg"], precondition=ok(v, vn) and left("none"), **common),
            CRITERIA["smooth_dln"](q=q["dln"], precondition=ok(d, dn), **common),
            CRITERIA["shift"](mean_shift=_values(v, "mean shift (pre)", vn, pair),
                              var_shift=_values(v, "var shift (pre)", vn, pair),
                              loss=_values(v, "final train loss", vn, pair),
                              precondition=ok(v, (vn[0], *vn[2:])) and left("none"), **common),
            CRITERIA["non_gaussian"](kurt=_values(v, "channel |kurtosis| median", vn[1:], pair),
                                     precondition=ok(v, vn[1:]), **common)]
    for l1, key in (("l1", "l1_dln"), ("l1c", "l1_dln_centred")):
        if l1 in norms(cfg, "dln"):
            end = dln_horizon(cfg, l1)
            cut = {n: prefix(cfg, res, n, end) for n in (l1, "bn")}  # every run over l1's steps
            rows.append(CRITERIA[key](**{k: {n: [float(cut[n].loc[s, f"{k} train loss"]) for s in pair] for n in cut}
                                         for k in ("mean", "final")},
                                      precondition=ok(d, (l1, "bn")), bn_spread=_spread(cut["bn"]["mean train loss"]),
                                      centred_steps=end, **common))
    extra = [n for n in ("ln", "gn") if n in norms(cfg, "vgg")]
    if extra:
        rows.append(CRITERIA["ln_gn"](acc=_values(v, "test acc", ("bn", *extra), pair), margin=cfg.ln_gn_margin,
                                      ln_gn_margin=cfg.ln_gn_margin, precondition=ok(v, ("bn", *extra)) and left("bn"),
                                      **common))
    if centred(cfg):
        rows.append(CRITERIA["comparable_centred"](
            acc=_values(v, "test acc", ("bn", *centred(cfg)), pair), margin=cfg.margin,
            centred=", ".join(centred(cfg)), precondition=ok(v, ("bn", *centred(cfg))) and left("bn"), **common))
    return rows
