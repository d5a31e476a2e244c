"""Chapter "The theory, derived and checked" (Santurkar et al. 2018, Sec. 4; the Oxford report, Sec. 2).

Both sides of every statement (``bnlib.theory``) are measured (1) at two BN layers of the
book's shared VGG with BN (``profiles.VGG``), from its stored checkpoints: a conv layer and
the BN layer after the classifier's hidden linear layer, the paper's setting of a BN layer
right after a fully connected one (``probes.capture``); and (2) over many random instances.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import page, plots, profiles, theory
from ..claims import Claim, Criterion, identity, less, verdict
from ..config import Interval, param
from ..probes.capture import rel_slack
from ..train import History

TITLE = "The theory, derived and checked"
LAYERS = ("conv", "fc")
SRC, SRC0 = "Santurkar et al. 2018, Sec. 4", "Oxford report, Sec. 2"


@dataclass(frozen=True)
class Params(profiles.VGGParams):
    probe_every: int = param(50, Interval(int, 1, 1_000_000),
                             "steps between theory probes up to dense_until (choice: the early steps change most)")
    dense_until: int = param(100, Interval(int, 0, 1_000_000), "last step of the dense probes (choice)")
    sparse_every: int = param(700, Interval(int, 1, 1_000_000),
                              "steps between theory probes after dense_until (choice; quick: 700, CPU budget)")
    conv_bn: int = param(4, Interval(int, 1, 16), "conv BN layer probed, 1-based in forward order (choice)")
    num_instances: int = param(5000, Interval(int, 10, 10_000_000), "random instances per statement (choice)")
    tol_random: float = param(1e-9, Interval(float, 0, 1),
                              "a form fails on a float64 random instance below this relative slack "
                              "(round-off is ~1e-15; the failures shown are > 1e-3)")
    tol_network: float = param(1e-5, Interval(float, 0, 1),
                               "the same on the float32 network (float32 sums over ~1e4 terms reach ~1e-6)")
    gap_k: float = param(2.0, Interval(float, 0, 100),
                         "a mean gap must exceed k seed spreads when seeds disagree (verdicts.md's default)")
    mean_strong: float = param(0.1, Interval(float, 0, 1),
                               "'significant' share of ‖g‖² removed by the mean term: 10% (our reading)")
    mean_weak: float = param(0.01, Interval(float, 0, 1),
                             "the 'partly' share: 1%, ten times below, still more than round-off")
    inner_strong: float = param(0.9, Interval(float, 0, 1),
                                "'mild assumption' ⟨g, ŷ⟩ > 0: true for more than 90% of units (our reading)")
    inner_weak: float = param(0.5, Interval(float, 0, 1), "the 'partly' share: more often than not")
    sigma_limit: float = param(1.0, Interval(float, 0, 100),
                               "(γ/σ)² below 1 shrinks the gradient: the claim's own threshold")
    obs_limit: float = param(1e-4, Interval(float, 0, 1),
                             "relative logit difference of the BN twin: 100 × float32 round-off over the VGG")


PROFILES = {"smoke": {**profiles.VGG["smoke"], "probe_every": 2, "dense_until": 4, "sparse_every": 2,
                      "num_instances": 100},
            "quick": {},
            "paper": {**profiles.VGG["paper"], "probe_every": 250, "dense_until": 2000, "sparse_every": 750,
                      "num_instances": 200_000}}
KEY_SETTINGS = ("dataset", "depth", "width", "lr", "batch_size", "num_steps", "num_seeds", "probe_every",
                "dense_until", "sparse_every", "conv_bn", "num_instances")
THRESHOLDS = ("tol_random", "tol_network", "gap_k", "mean_strong", "mean_weak", "inner_strong", "inner_weak",
              "sigma_limit", "obs_limit")


def probe_steps(cfg: Params) -> tuple[int, ...]:
    """Where the statements are measured: every ``probe_every`` steps up to ``dense_until``,
    then every ``sparse_every``, and the last step."""
    dense = range(0, min(cfg.dense_until, cfg.num_steps) + 1, cfg.probe_every)
    sparse = range(dense[-1] + cfg.sparse_every, cfg.num_steps, cfg.sparse_every)
    return tuple(sorted({*dense, *sparse, cfg.num_steps}))


def reached(steps: tuple[int, ...]):
    """``steps`` a trajectory reached (a diverged run stops early): a steps function for probes."""
    return lambda h: [s for s in steps if s <= h.steps_done]


def last_step(h: History) -> list[int]:
    return [h.steps_done]


def network(probed: dict, ended: dict, lemma: dict, hist: History) -> dict:
    """One dict of one seed's measurements: per probe step ``"step"``, ``"conv/..."`` and
    ``"fc/..."``; the end-of-training checks and Lemma 4.5 (scalars); the test accuracies;
    ``"diverged"``."""
    return {**probed, **{k: v[0] for k, v in ended.items() if k != "step"}, **lemma,
            "test_acc": hist.test_acc, "diverged": hist.diverged}


def pool(nets: dict[int, dict]) -> dict:
    """The seeds' measurements as one: per-probe arrays stacked along the probe axis, per-seed
    scalars as one array (one entry per seed)."""
    keys = next(iter(nets.values())).keys()
    return {k: np.concatenate([np.atleast_1d(np.asarray(n[k], float)) for n in nets.values()]) for k in keys}


FORMS = [  # (key, statement, source, what the form says or changes)
    ("thm_4_1/seed003", "Thm 4.1", "Santurkar et al. (= Oxford report eq. 1)", "1/√m on ⟨g,ŷ⟩²"),
    ("thm_4_1/seed001", "Thm 4.1", "Cai & Wei, Thm 3.4", "left side ‖∂L̂/∂ŷ‖, not squared"),
    ("thm_4_1/corrected", "Thm 4.1", "ours", "1/m on ⟨g,ŷ⟩²; equality when ε = 0"),
    ("thm_4_2/seed003", "Thm 4.2", "Santurkar et al.", "ĝ := ∂L̂/∂y as defined, so ⟨ĝ,ŷ⟩ = 0"),
    ("thm_4_2/seed000", "Thm 4.2", "Oxford report eq. 10", "ĝ := ∂L/∂z; equality when ε = 0"),
    ("thm_4_2/seed000_eq11", "Thm 4.2", "Santurkar et al. 2nd display (= Oxford report eq. 11)",
     "vᵀHv replaced by gᵀHg"),
    ("thm_4_2/seed001", "Thm 4.2", "Cai & Wei, Thm 3.5", "curvature along ∂L̂/∂ŷ = γg"),
    ("thm_4_2/exact", "Thm 4.2", "ours", "identity with the ε terms"),
    ("thm_4_4/seed003", "Thm 4.4", "Santurkar et al.", "gⱼ² (a squared squared norm), no λ², no 1/m"),
    ("thm_4_4/seed000", "Thm 4.4", "Oxford report eq. 8", "λ² on both terms, 1/√m"),
    ("thm_4_4/corrected", "Thm 4.4", "ours", "λ² and 1/m on both terms; equality when ε = 0"),
    ("eq_16/seed000", "weight-space Thm 4.2", "Oxford report eq. 16", "no λ⁴ on the plain term"),
    ("eq_16/corrected", "weight-space Thm 4.2", "ours", "λ⁴ times Thm 4.2 (Oxford report eq. 10)"),
]


def network_slack(net: dict, key: str) -> np.ndarray | None:
    """Relative slack of a form over every probe step, unit and both layers (None if absent)."""
    parts = [rel_slack(net, key, f"{layer}/") for layer in LAYERS if f"{layer}/{key}/lhs" in net]
    return np.concatenate(parts) if parts else None


def _worst(inst: dict, key: str, tol: float) -> str:
    r = rel_slack(inst, key)
    i = int(np.argmin(r))
    if r[i] >= -tol:
        return "none found"
    return f"m = {int(inst['m'][i])}: lhs {inst[key + '/lhs'][i]:.3g} > rhs {inst[key + '/rhs'][i]:.3g}"


def summary(net: dict, inst: dict, cfg: Params) -> pd.DataFrame:
    """One row per printed or corrected form: does it hold (on every random instance and every
    probed unit of every seed), how often does it fail, where. ``net`` is ``pool``'s."""
    rows = []
    for key, stmt, src, what in FORMS:
        r, n = rel_slack(inst, key), network_slack(net, key)
        fail_r = float(np.mean(r < -cfg.tol_random))
        fail_n = float(np.mean(n < -cfg.tol_network)) if n is not None else float("nan")
        rows.append({"key": key, "statement": stmt, "form": src, "what differs": what,
                     "holds": "holds" if fail_r == 0 and not fail_n > 0 else "fails",
                     "random instances failing": fail_r, "counterexample": _worst(inst, key, cfg.tol_random),
                     "VGG: failing": fail_n,
                     "VGG: median rel. slack": float(np.median(n)) if n is not None else np.nan,
                     "VGG: min rel. slack": float(np.min(n)) if n is not None else np.nan})
    return pd.DataFrame(rows)


def shown_summary(table: pd.DataFrame):
    """``summary`` as the page shows it: one column per question a reader asks (which form, what
    differs, does it hold, how often and where it fails, how much slack it has on the VGG)."""
    df = pd.DataFrame({
        "form": table["statement"] + ", " + table["form"], "what differs": table["what differs"],
        "holds": table["holds"].map({"holds": "yes", "fails": "no"}),
        "random instances failing": table["random instances failing"],
        "worst random instance": table["counterexample"].str.replace("lhs ", "left ").str.replace("rhs ", "right "),
        "VGG units failing": table["VGG: failing"],
        "VGG slack: median, min": [f"{a:.1e}, {b:.1e}" if np.isfinite(a) else "n/a"
                                   for a, b in zip(table["VGG: median rel. slack"], table["VGG: min rel. slack"])]})
    return (df.style.format({"random instances failing": "{:.1%}", "VGG units failing": "{:.1%}"}, na_rep="n/a")
            .hide(axis="index"))


def _net(net: dict, key: str) -> np.ndarray:
    """One probed quantity over steps, both layers, flattened."""
    return np.concatenate([np.asarray(net[f"{lay}/{key}"], float).ravel() for lay in LAYERS])


def shares(net: dict, layer: str, term: str) -> np.ndarray:
    """Per probe, the share of ||g||^2 (summed over units) that a Thm 4.1 term removes."""
    p = f"{layer}/thm_4_1/terms/"
    return np.asarray(net[p + term]).sum(1) / np.asarray(net[p + "norm"]).sum(1)


def share(net: dict, layer: str, term: str) -> float:
    """Median over probes of ``shares``."""
    return float(np.median(shares(net, layer, term)))


# ---- the claims -------------------------------------------------------------------------------
# Printed bounds: reproduced only if no random instance and no probed unit (all seeds) fails.
# Network measurements: one value per seed, compared with the threshold by ``claims.less``.

def _printed(fail: float, vgg_fail: float, holds: bool) -> tuple[str, str]:
    return f"{fail:.1%} of random instances and {vgg_fail:.1%} of probed VGG units (all seeds) fail", verdict(holds)


def _identity(text: str, ok: bool) -> tuple[str, str]:
    return text, identity(ok)


def _above(values: list, strong: float, weak: float, k: float, ok: bool, fmt: str = "{:.1%}") -> tuple[str, str]:
    g, w = less([strong] * len(values), values, k=k), less([weak] * len(values), values, k=k)
    text = "per seed " + ", ".join(fmt.format(v) for v in values) + f" ({g.seeds()})"
    return text, g.verdict(precondition=ok, partly=w.holds)


def _below(values: list, limit: float, k: float, ok: bool) -> tuple[str, str]:
    g = less(values, [limit] * len(values), k=k)
    return "per seed " + ", ".join(f"{v:.3g}" for v in values) + f" ({g.seeds()})", g.verdict(precondition=ok)


def _psd(conv: list, fc: list, ok: bool) -> tuple[str, str]:
    text = (f"conv layer {', '.join(f'{x:.0%}' for x in conv)}; classifier layer "
            f"{', '.join(f'{x:.0%}' for x in fc)} of probes, per seed")
    return text, verdict(min(conv + fc) == 1, partly=min(fc) == 1, precondition=ok)


CRITERIA = {
    "thm_4_1": Criterion("Thm 4.1 holds as printed", SRC,
                         "no random instance and no probed unit of any seed fails (slack < -{tol_random:g} "
                         "random, -{tol_network:g} VGG)", _printed),
    "never_enlarges": Criterion("BN never enlarges the rescaled gradient, ‖∂L̂/∂y‖² ≤ (γ/σ)²‖g‖²", SRC,
                                "identity (a projection): corrected Thm 4.1 holds everywhere and its right "
                                "side is ≤ (γ/σ)²‖g‖² at every probed unit", _identity),
    "mean_term": Criterion("the mean term ⟨1,g⟩²/m removes a significant part of ‖g‖²", SRC,
                           "per seed, median over probes and both layers of the share of ‖g‖² > {mean_strong:.0%} "
                           "(partly: > {mean_weak:.0%}), over the seeds", _above),
    "inner": Criterion("⟨g, ŷ⟩ > 0 is a mild assumption", SRC,
                       "per seed, share of probed units (both layers) with ⟨g, ŷ⟩ > 0 above {inner_strong:.0%} "
                       "(partly: above {inner_weak:.0%}), over the seeds", _above),
    "psd": Criterion("the curvature of L along the gradient is non-negative (PSD assumption)", SRC,
                     "vᵀHv ≥ 0 at every probe of both layers on every seed (partly: at every probe of the "
                     "classifier layer, where the piecewise-linear argument covers it)", _psd),
    "sigma": Criterion("σ tends to be large, so γ/σ shrinks the gradient", SRC,
                       "per seed, median (γ/σ)² over probed units and steps < {sigma_limit:g}, over the seeds",
                       _below),
    "thm_4_2": Criterion("Thm 4.2 holds as printed", SRC, "Santurkar et al.'s form never fails", _printed),
    "thm_4_2_reading": Criterion("Thm 4.2 with ĝ read as ∂L/∂z (Oxford report eq. 10)", SRC0,
                                 "identity (the chain rule, ε = 0): equality on every random instance and probed "
                                 "unit, to the tolerances above", _identity),
    "obs_4_3": Criterion("BN with γ = σ, β = μ reproduces the plain network (Obs. 4.3)", SRC,
                         "identity (z = y): relative logit difference < {obs_limit:g} on the fitted batch and in "
                         "eval mode, every seed", _identity),
    "thm_4_4": Criterion("Thm 4.4 holds as printed", SRC, "Santurkar et al.'s form never fails", _printed),
    "eq_16": Criterion("the weight-space smoothness bound (eq. 16) holds as printed", SRC0,
                       "the Oxford report's eq. 16 never fails", _printed),
    "lemma_4_5": Criterion("Lemma 4.5 holds when ⟨W₀, W*⟩ > 0", SRC,
                           "identity (expanding a square): equality to 1e-9 on every random pair with "
                           "⟨W₀, W*⟩ > 0", _identity),
}


def _seeds(nets: dict) -> str:
    return f"{len(nets)} seed{'s' * (len(nets) > 1)}"


def _per_seed(nets: dict, fn) -> list[float]:
    return [float(fn(n)) for _, n in sorted(nets.items())]


def claims(cfg: Params, nets: dict, inst: dict, table: pd.DataFrame) -> list[Claim]:
    """The claims of Sec. 4 and the Oxford report Sec. 2, each decided by its criterion; ``nets`` holds
    one ``network`` dict per seed. Precondition of the network rows: no probed run diverged."""
    t, net, ok = table.set_index("key"), pool(nets), not any(n["diverged"] for n in nets.values())
    th = {name: getattr(cfg, name) for name in THRESHOLDS} | {"k": cfg.gap_k, "ok": ok}
    printed = {k.split("/")[0]: dict(fail=t.loc[k, "random instances failing"],
                                     vgg_fail=np.nan_to_num(t.loc[k, "VGG: failing"]),
                                     holds=bool(t.loc[k, "holds"] == "holds"))
               for k in ("thm_4_1/seed003", "thm_4_2/seed003", "thm_4_4/seed003", "eq_16/seed000")}
    scale = _net(net, "thm_4_1/terms/scale")
    bound = _net(net, "thm_4_1/corrected/rhs") <= scale * _net(net, "thm_4_1/terms/norm") * (1 + cfg.tol_network)
    lem, pos = inst["lemma_4_5/global/rhs"] - inst["lemma_4_5/global/lhs"], inst["lemma_4_5/inner"] > 0
    obs = max(float(np.max(net["obs_4_3/same"])), float(np.max(net["obs_4_3/other_eval"])))
    return [
        CRITERIA["thm_4_1"](**printed["thm_4_1"], **th),
        CRITERIA["never_enlarges"](text=f"{np.mean(bound):.0%} of probed units ({_seeds(nets)})",
                                   ok=bool(t.loc["thm_4_1/corrected", "holds"] == "holds") and bool(np.all(bound))),
        CRITERIA["mean_term"](values=_per_seed(nets, lambda n: np.median(np.concatenate(
            [shares(n, lay, "mean") for lay in LAYERS]))), strong=cfg.mean_strong, weak=cfg.mean_weak, **th),
        CRITERIA["inner"](values=_per_seed(nets, lambda n: np.mean(_net(n, "thm_4_2/terms/inner") > 0)),
                          strong=cfg.inner_strong, weak=cfg.inner_weak, fmt="{:.0%}", **th),
        CRITERIA["psd"](conv=_per_seed(nets, lambda n: np.mean(np.asarray(n["conv/thm_4_2/terms/hess"]) >= 0)),
                        fc=_per_seed(nets, lambda n: np.mean(np.asarray(n["fc/thm_4_2/terms/hess"]) >= 0)), ok=ok),
        CRITERIA["sigma"](values=_per_seed(nets, lambda n: np.median(_net(n, "thm_4_1/terms/scale"))),
                          limit=cfg.sigma_limit, **th),
        CRITERIA["thm_4_2"](**printed["thm_4_2"]),
        CRITERIA["thm_4_2_reading"](text=f"{t.loc['thm_4_2/seed000', 'random instances failing']:.1%} of random "
                                    f"instances, {np.nan_to_num(t.loc['thm_4_2/seed000', 'VGG: failing']):.1%} of "
                                    "probed units fail", ok=bool(t.loc["thm_4_2/seed000", "holds"] == "holds")),
        CRITERIA["obs_4_3"](text=f"largest over seeds {obs:.1e}", ok=obs < cfg.obs_limit, obs_limit=cfg.obs_limit),
        CRITERIA["thm_4_4"](**printed["thm_4_4"]),
        CRITERIA["eq_16"](**printed["eq_16"]),
        CRITERIA["lemma_4_5"](text=f"{int(pos.sum())} pairs checked",
                              ok=bool(np.all(np.abs(lem[pos]) <= 1e-9 * inst["lemma_4_5/dist"][pos]))),
    ]


def _layer_numbers(net: dict, first: dict, lay: str) -> dict[str, float]:
    t = {k: np.asarray(net[f"{lay}/{k}"], float) for k in (
        "thm_4_1/terms/scale", "thm_4_2/terms/inner", "thm_4_2/terms/hess", "thm_4_2/terms/correction", "m")}
    out = {f"inner_pos_{lay}": float(np.mean(t["thm_4_2/terms/inner"] > 0)),
           f"psd_{lay}": float(np.mean(t["thm_4_2/terms/hess"] >= 0)),
           f"scale_{lay}": float(np.median(t["thm_4_1/terms/scale"])),
           f"mean_share_{lay}": share(net, lay, "mean"), f"corr_share_{lay}": share(net, lay, "corr"),
           f"m_{lay}": int(t["m"][0]),
           f"scale_inv_{lay}": float(np.max(np.abs(net[f"scale_inv/{lay}/rhs"] / net[f"scale_inv/{lay}/lhs"] - 1))),
           f"corr_ratio_{lay}": float(np.median(np.abs(t["thm_4_2/terms/correction"])
                                                / np.abs(t["thm_4_2/terms/hess"])))}
    for kind in ("global", "unit"):
        out |= {f"lem_{lay}_{kind}_{s}": float(first[f"lemma_4_5/{lay}/{kind}/{s}"]) for s in ("lhs", "rhs")}
    return out


def numbers(cfg: Params, nets: dict, inst: dict, inst_eps: dict, table: pd.DataFrame) -> dict[str, float | str]:
    """Every number the chapter's prose quotes, by glue key (pooled over seeds unless a key says
    "first seed" in the prose)."""
    out: dict[str, float | str] = {}
    net, first = pool(nets), nets[min(nets)]
    cols = {"fail": "random instances failing", "vgg_fail": "VGG: failing",
            "vgg_med": "VGG: median rel. slack", "vgg_min": "VGG: min rel. slack"}
    for _, r in table.iterrows():
        k = r["key"].replace("/", "_")
        out |= {f"{k}_{name}": float(r[c]) for name, c in cols.items()}
        out[f"{k}_vgg_absmax"] = float(np.max(np.abs(network_slack(net, r["key"]))))
    for k, s in theory.two_sample_counterexample().items():
        out |= {f"cx_{k.replace('/', '_')}_lhs": float(s.lhs), f"cx_{k.replace('/', '_')}_rhs": float(s.rhs)}
    cx = theory.eq_14_counterexample()
    out |= {"cx_eq_14_lhs": float(cx.lhs), "cx_eq_14_rhs": float(cx.rhs)}
    for lay in LAYERS:
        out |= _layer_numbers(net, first, lay)
    losses = np.asarray(net["fc/losses"])
    gap = float(np.max(np.abs(losses - losses[:, :1]) / np.abs(losses[:, :1])))
    return out | {"loss_gap": gap, "loss_gap_text": f"agree to a relative {gap:.1e}" if gap else "agree exactly",
                  "eq3_residual": float(np.max(net["fc/eq_3/residual"])),
                  "obs_same": float(np.max(net["obs_4_3/same"])), "obs_other": float(np.median(net["obs_4_3/other"])),
                  "obs_eval": float(np.max(net["obs_4_3/other_eval"])), "n_inst": len(inst["m"]),
                  "n_probes": len(first["step"]), "n_seeds": len(nets),
                  "probe_steps": _and([str(int(x)) for x in first["step"]]),
                  "acc_final": float(np.mean([n["test_acc"][-1] for n in nets.values()])),
                  "obs_rand": float(np.max(inst["obs_4_3/err"])),
                  "delta_gap": float(1 - np.max(inst_eps["delta"])),
                  "eps_gap_max": float(np.max(np.abs(rel_slack(inst_eps, "thm_4_2/seed000")))),
                  "seed_caption": plots.seed_caption(sorted(nets)),
                  "seeds_n": page.count(len(nets), "seed"), "probes_n": page.count(len(first["step"]), "probe"),
                  "tol_random": _minus(cfg.tol_random), "tol_network": _minus(cfg.tol_network),
                  "paper_text": paper_text()}


def _and(items: list[str]) -> str:
    """"a, b and c" (a bare "a, b, c" would reach the page as a Python tuple: myst-nb evaluates glued
    text that parses as a literal)."""
    return " and ".join([", ".join(items[:-1]), items[-1]] if len(items) > 1 else items)


def _minus(tol: float) -> str:
    """``-tol`` as the prose prints it: "−1e-9"."""
    if tol == 0 or tol >= 1e-3:
        return f"−{tol:g}" if tol else "0"
    m, e = f"{tol:.0e}".split("e")
    return f"−{m}e{int(e)}"


def paper_text() -> str:
    """The ``paper`` profile's VGG and probes in words, from ``PROFILES``."""
    p = Params(**PROFILES["paper"])
    width = "full width" if p.width == 1 else f"width {p.width:g}"
    return (f"the VGG-{p.depth} at {width} for {p.num_steps:,} steps on {page.count(p.num_seeds, 'seed')}, probed "
            f"every {p.probe_every} steps up to step {p.dense_until:,} and every {p.sparse_every} after it")
