"""Chapter "The theory, derived and checked" (Santurkar et al. 2018, Sec. 4; seed 000, Sec. 2).

Both sides of every statement (``bnlib.theory``) are measured (1) at two BN layers of the
book's shared VGG with BN (``profiles.VGG``), from its stored checkpoints: a conv layer and
the BN layer after the classifier's hidden linear layer, the paper's setting of a BN layer
right after a fully connected one (``probes.capture``); and (2) over many random instances.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import profiles, theory
from ..claims import Claim, Criterion, verdict
from ..config import Interval, param
from ..probes.capture import rel_slack
from ..train import History

TITLE = "The theory, derived and checked"
LAYERS = ("conv", "fc")
SRC, SRC0 = "Santurkar et al. 2018, Sec. 4", "seed 000, Sec. 2"


@dataclass(frozen=True)
class Params(profiles.VGGParams):
    probe_every: int = param(25, Interval(int, 1, 1_000_000), "steps between theory probes (choice)")
    conv_bn: int = param(4, Interval(int, 1, 16), "conv BN layer probed, 1-based in forward order (choice)")
    num_instances: int = param(5000, Interval(int, 10, 10_000_000), "random instances per statement (choice)")


PROFILES = {"smoke": {**profiles.VGG["smoke"], "probe_every": 2, "num_instances": 100}, "quick": {},
            "paper": {**profiles.VGG["paper"], "probe_every": 750, "num_instances": 200_000}}
KEY_SETTINGS = ("dataset", "depth", "width", "lr", "batch_size", "num_steps", "probe_every",
                "conv_bn", "num_instances")


def probe_steps(cfg: Params) -> tuple[int, ...]:
    """Where the statements are measured: step 0, then every ``probe_every`` steps."""
    return tuple(range(0, cfg.num_steps + 1, cfg.probe_every))


def last_step(h: History) -> list[int]:
    return [h.steps_done]


def network(probed: dict, ended: dict, lemma: dict, hist: History) -> dict:
    """One dict of the network's measurements: per probe step ``"step"``, ``"conv/..."`` and
    ``"fc/..."``; the end-of-training checks and Lemma 4.5 (scalars); the test accuracies."""
    return {**probed, **{k: v[0] for k, v in ended.items() if k != "step"}, **lemma, "test_acc": hist.test_acc}


TOL = {"random": 1e-9, "network": 1e-5}  # relative slack below -TOL is a failure: float64 vs
# float32 round-off (float32 sums over m ~ 1e4 terms reach ~1e-6 relative)

FORMS = [  # (key, statement, source, what the form says or changes)
    ("thm_4_1/seed003", "Thm 4.1", "seed 003 (= seed 000 eq. 1)", "1/√m on ⟨g,ŷ⟩²"),
    ("thm_4_1/seed001", "Thm 4.1", "seed 001, Thm 3.4", "left side ‖∂L̂/∂ŷ‖, not squared"),
    ("thm_4_1/corrected", "Thm 4.1", "ours", "1/m on ⟨g,ŷ⟩²; equality when ε = 0"),
    ("thm_4_2/seed003", "Thm 4.2", "seed 003", "ĝ := ∂L̂/∂y as defined, so ⟨ĝ,ŷ⟩ = 0"),
    ("thm_4_2/seed000", "Thm 4.2", "seed 000 eq. 10", "ĝ := ∂L/∂z; equality when ε = 0"),
    ("thm_4_2/seed000_eq11", "Thm 4.2", "seed 003 2nd display (= seed 000 eq. 11)",
     "vᵀHv replaced by gᵀHg"),
    ("thm_4_2/seed001", "Thm 4.2", "seed 001, Thm 3.5", "curvature along ∂L̂/∂ŷ = γg"),
    ("thm_4_2/exact", "Thm 4.2", "ours", "identity with the ε terms"),
    ("thm_4_4/seed003", "Thm 4.4", "seed 003", "g_j² (a squared squared norm), no λ², no 1/m"),
    ("thm_4_4/seed000", "Thm 4.4", "seed 000 eq. 8", "λ² on both terms, 1/√m"),
    ("thm_4_4/corrected", "Thm 4.4", "ours", "λ² and 1/m on both terms; equality when ε = 0"),
    ("eq_16/seed000", "weight-space Thm 4.2", "seed 000 eq. 16", "no λ⁴ on the plain term"),
    ("eq_16/corrected", "weight-space Thm 4.2", "ours", "λ⁴ times Thm 4.2 (seed 000 eq. 10)"),
]


def network_slack(net: dict, key: str) -> np.ndarray | None:
    """Relative slack of a form over every probe step, unit and both layers (None if absent)."""
    parts = [rel_slack(net, key, f"{layer}/") for layer in LAYERS if f"{layer}/{key}/lhs" in net]
    return np.concatenate(parts) if parts else None


def _worst(inst: dict, key: str) -> str:
    r = rel_slack(inst, key)
    i = int(np.argmin(r))
    if r[i] >= -TOL["random"]:
        return "none found"
    return f"m = {int(inst['m'][i])}: lhs {inst[key + '/lhs'][i]:.3g} > rhs {inst[key + '/rhs'][i]:.3g}"


def summary(net: dict, inst: dict) -> pd.DataFrame:
    """One row per printed or corrected form: does it hold, how often does it fail, where."""
    rows = []
    for key, stmt, src, what in FORMS:
        r, n = rel_slack(inst, key), network_slack(net, key)
        fail_r = float(np.mean(r < -TOL["random"]))
        fail_n = float(np.mean(n < -TOL["network"])) if n is not None else float("nan")
        rows.append({"key": key, "statement": stmt, "form": src, "what differs": what,
                     "holds": "holds" if fail_r == 0 and not fail_n > 0 else "fails",
                     "random instances failing": fail_r, "counterexample": _worst(inst, key),
                     "VGG: failing": fail_n,
                     "VGG: median rel. slack": float(np.median(n)) if n is not None else np.nan,
                     "VGG: min rel. slack": float(np.min(n)) if n is not None else np.nan})
    return pd.DataFrame(rows)


def _net(net: dict, key: str) -> np.ndarray:
    """One probed quantity over steps, both layers, flattened."""
    return np.concatenate([np.asarray(net[f"{lay}/{key}"], float).ravel() for lay in LAYERS])


def share(net: dict, layer: str, term: str) -> float:
    """Mean over probes of the share of ||g||^2 (summed over units) that a Thm 4.1 term removes."""
    p = f"{layer}/thm_4_1/terms/"
    return float(np.mean(np.asarray(net[p + term]).sum(1) / np.asarray(net[p + "norm"]).sum(1)))


# ---- the claims -------------------------------------------------------------------------------

def _printed(fail: float, holds: bool, reading_holds: bool = False) -> tuple[str, str]:
    return f"{fail:.1%} of random instances fail", verdict(holds, partly=reading_holds)


def _share(share: float, what: str = "of probed units") -> tuple[str, str]:
    return f"{share:.0%} {what}", verdict(share == 1, partly=share > 0)


def _never_enlarges(holds: bool, bound_share: float) -> tuple[str, str]:
    return f"{bound_share:.0%} of probed units", verdict(holds and bound_share == 1)


def _above(value: float, strong: float, weak: float, fmt: str = ".2%", text: str = "{v}") -> tuple[str, str]:
    return text.format(v=format(value, fmt)), verdict(value > strong, partly=value > weak)


def _below(value: float, limit: float, text: str = "{v}", fmt: str = ".3g") -> tuple[str, str]:
    return text.format(v=format(value, fmt)), verdict(value < limit)


def _lemma(n_pairs: int, ok: bool) -> tuple[str, str]:
    return f"{n_pairs} pairs checked", verdict(ok)


CRITERIA = {
    "thm_4_1": Criterion("Thm 4.1 holds as printed", SRC, "no random instance and no probed unit fails", _printed),
    "never_enlarges": Criterion("BN never enlarges the rescaled gradient, ‖∂L̂/∂y‖² ≤ (γ/σ)²‖g‖²", SRC,
                                "corrected Thm 4.1 holds everywhere and its right side is ≤ (γ/σ)²‖g‖²",
                                _never_enlarges),
    "mean_term": Criterion("the mean term ⟨1,g⟩²/m removes a significant part of ‖g‖²", SRC,
                           "share of ‖g‖² above 10% at one of the layers (partly: above 1%)", _above),
    "inner": Criterion("⟨g, ŷ⟩ > 0 is a mild assumption", SRC,
                       "positive for more than 90% of the probed units (partly: more than half)", _above),
    "psd": Criterion("the curvature of L along the gradient is non-negative (PSD assumption)", SRC,
                     "vᵀHv ≥ 0 at every probe of both layers", _share),
    "sigma": Criterion("σ tends to be large, so γ/σ shrinks the gradient", SRC,
                       "median (γ/σ)² over probed units < 1", _below),
    "thm_4_2": Criterion("Thm 4.2 holds as printed", SRC, "seed 003's form never fails", _printed),
    "obs_4_3": Criterion("BN with γ = σ, β = μ reproduces the plain network (Obs. 4.3)", SRC,
                         "relative logit difference < 1e-4 on the fitted batch and in eval mode", _below),
    "thm_4_4": Criterion("Thm 4.4 holds as printed", SRC, "seed 003's form never fails", _printed),
    "eq_16": Criterion("the weight-space smoothness bound (eq. 16) holds as printed", SRC0,
                       "seed 000's eq. 16 never fails", _printed),
    "lemma_4_5": Criterion("Lemma 4.5 holds when ⟨W₀, W*⟩ > 0", SRC,
                           "equality (to 1e-9) on every random pair with ⟨W₀, W*⟩ > 0", _lemma),
}


def claims(net: dict, inst: dict, table: pd.DataFrame) -> list[Claim]:
    """The claims of Sec. 4 and seed 000 Sec. 2, each decided by its criterion."""
    t = table.set_index("key")
    holds, fail = (t["holds"] == "holds"), t["random instances failing"]
    scale = _net(net, "thm_4_1/terms/scale")
    bound = _net(net, "thm_4_1/corrected/rhs") <= scale * _net(net, "thm_4_1/terms/norm") * (1 + TOL["network"])
    lem = inst["lemma_4_5/global/rhs"] - inst["lemma_4_5/global/lhs"]
    pos = inst["lemma_4_5/inner"] > 0
    printed = {k: dict(fail=fail[f"{k}/seed003"], holds=bool(holds[f"{k}/seed003"])) for k in ("thm_4_1", "thm_4_4")}
    return [
        CRITERIA["thm_4_1"](**printed["thm_4_1"]),
        CRITERIA["never_enlarges"](holds=bool(holds["thm_4_1/corrected"]), bound_share=float(np.mean(bound))),
        CRITERIA["mean_term"](value=max(share(net, lay, "mean") for lay in LAYERS), strong=0.1, weak=0.01,
                              text="largest layer average {v}"),
        CRITERIA["inner"](value=float(np.mean(_net(net, "thm_4_2/terms/inner") > 0)), strong=0.9, weak=0.5,
                          fmt=".0%", text="{v} positive"),
        CRITERIA["psd"](share=float(np.mean(_net(net, "thm_4_2/terms/hess") >= 0)), what="of probes"),
        CRITERIA["sigma"](value=float(np.median(scale)), limit=1.0, text="median {v}"),
        CRITERIA["thm_4_2"](fail=fail["thm_4_2/seed003"], holds=bool(holds["thm_4_2/seed003"]),
                            reading_holds=bool(holds["thm_4_2/seed000"])),
        CRITERIA["obs_4_3"](value=max(float(net["obs_4_3/same"]), float(net["obs_4_3/other_eval"])), limit=1e-4,
                            fmt=".1e"),
        CRITERIA["thm_4_4"](**printed["thm_4_4"]),
        CRITERIA["eq_16"](fail=fail["eq_16/seed000"], holds=bool(holds["eq_16/seed000"])),
        CRITERIA["lemma_4_5"](n_pairs=int(pos.sum()),
                              ok=bool(np.all(np.abs(lem[pos]) <= 1e-9 * inst["lemma_4_5/dist"][pos]))),
    ]


def _layer_numbers(net: dict, lay: str) -> dict[str, float]:
    t = {k: np.asarray(net[f"{lay}/{k}"], float) for k in (
        "thm_4_1/terms/scale", "thm_4_2/terms/inner", "thm_4_2/terms/hess", "thm_4_2/terms/correction", "m")}
    out = {f"inner_pos_{lay}": float(np.mean(t["thm_4_2/terms/inner"] > 0)),
           f"psd_{lay}": float(np.mean(t["thm_4_2/terms/hess"] >= 0)),
           f"scale_{lay}": float(np.median(t["thm_4_1/terms/scale"])),
           f"mean_share_{lay}": share(net, lay, "mean"), f"corr_share_{lay}": share(net, lay, "corr"),
           f"m_{lay}": int(t["m"][0]),
           f"scale_inv_{lay}": float(abs(net[f"scale_inv/{lay}/rhs"] / net[f"scale_inv/{lay}/lhs"] - 1)),
           f"corr_ratio_{lay}": float(np.median(np.abs(t["thm_4_2/terms/correction"])
                                                / np.abs(t["thm_4_2/terms/hess"])))}
    for kind in ("global", "unit"):
        out |= {f"lem_{lay}_{kind}_{s}": float(net[f"lemma_4_5/{lay}/{kind}/{s}"]) for s in ("lhs", "rhs")}
    return out


def numbers(net: dict, inst: dict, inst_eps: dict, table: pd.DataFrame) -> dict[str, float]:
    """Every number the chapter's prose quotes, by glue key."""
    out: dict[str, float] = {}
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
        out |= _layer_numbers(net, lay)
    losses = np.asarray(net["fc/losses"])
    return out | {"loss_gap": float(np.max(np.abs(losses - losses[:, :1]) / np.abs(losses[:, :1]))),
                  "eq3_residual": float(np.max(net["fc/eq_3/residual"])),
                  "obs_same": float(net["obs_4_3/same"]), "obs_other": float(net["obs_4_3/other"]),
                  "obs_eval": float(net["obs_4_3/other_eval"]), "n_inst": len(inst["m"]),
                  "n_probes": len(net["step"]), "acc_final": float(net["test_acc"][-1]),
                  "obs_rand": float(np.max(inst["obs_4_3/err"])),
                  "delta_gap": float(1 - np.max(inst_eps["delta"])),
                  "eps_gap_max": float(np.max(np.abs(rel_slack(inst_eps, "thm_4_2/seed000"))))}
