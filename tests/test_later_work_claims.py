"""The last chapter's claims on synthetic numbers (reproduced, failing, inconclusive), its answer
section on synthetic executed chapters (and without them), and its tables from synthetic runs."""

import json

import numpy as np
import pytest

from bnlib.chapters import later_work as ch
from bnlib.train import History

TH = dict(k=2.0, chance_frac=0.9, lr=0.1, lr_large=0.5, steps=1000)
LN10 = np.log(10)


def verdict(key, **inputs):
    return ch.CRITERIA[key](**inputs).verdict


# ---- matched learning rates

def test_larger_rate():
    ok = dict(none=[1.3, 1.4], bn_large=[0.9, 1.0], **TH)
    assert verdict("larger_rate", none_large=[np.inf, 2.3], **ok) == "reproduced"
    assert verdict("larger_rate", none_large=[1.2, 1.3], **ok) == "partly"  # both train, BN lower
    assert verdict("larger_rate", none_large=[0.8, 0.9], **ok) == "not reproduced"
    assert verdict("larger_rate", none_large=[np.inf, np.inf], none=[2.3, 2.2], bn_large=[0.9, 1.0],
                   **TH) == "inconclusive"  # the standard net did not train at the matched rate
    assert verdict("larger_rate", none_large=[np.inf, np.inf], none=[1.3, 1.4], bn_large=[np.inf, 2.3],
                   **TH) == "inconclusive"  # BN fails at the larger rate too


def test_most_from_rate():
    base = dict(none=[1.3, 1.4, 1.35], bn_large=[0.8, 0.9, 0.85], minority=0.5, **TH)
    assert verdict("most_from_rate", bn=[1.2, 1.3, 1.25], **base) == "reproduced"  # lead 0.1 of 0.5
    assert verdict("most_from_rate", bn=[0.9, 1.0, 0.95], **base) == "not reproduced"  # lead 0.4 of 0.5
    assert verdict("most_from_rate", bn=[1.2, 1.3, 1.25], none=[2.3, 2.3, 2.3], bn_large=[0.8, 0.9, 0.85],
                   minority=0.5, **TH) == "inconclusive"
    assert verdict("most_from_rate", bn=[1.2, 1.3, 1.25], none=[1.3, 1.4, 1.35], bn_large=[1.5, 0.9, 0.85],
                   minority=0.5, **TH) == "inconclusive"  # BN at the larger rate not ahead on every seed


def test_tuned():
    base = dict(lrs=[0.1, 0.5], sweep_steps=300, **TH)
    assert verdict("tuned", bn_best=(0.9, 0.5), none_best=(1.4, 0.1), **base) == "reproduced"
    assert verdict("tuned", bn_best=(1.5, 0.5), none_best=(1.4, 0.1), **base) == "not reproduced"
    assert verdict("tuned", bn_best=(0.9, 0.5), none_best=(2.3, 0.1), **base) == "inconclusive"


# ---- scale invariance

def test_scale_identity():
    base = dict(tol=1e-3, c=2.0, scale_tol=1e-3, fixed_loss_err=1e-6, fixed_grad_err=0.01, cos=1e-6)
    assert verdict("identity", loss_err=1e-6, grad_err=3e-5, **base) == "identity"  # fixed-eps error not judged
    assert verdict("identity", loss_err=1e-6, grad_err=0.5, **base) == "not reproduced"


@pytest.mark.parametrize("key", ["beta_raw", "beta_scaled", "grad_raw", "grad_scaled"])
def test_bn_lower(key):
    base = {**TH, "rel_step": 0.01, "steps": "300, 600", "none_loss": [1.3, 1.3, 1.4]}
    assert verdict(key, bn=[0.1, 0.2, 0.1], none=[0.5, 0.6, 0.7], **base) == "reproduced"
    assert verdict(key, bn=[0.9, 0.8, 0.9], none=[0.5, 0.6, 0.7], **base) == "not reproduced"
    assert verdict(key, bn=[0.4, 0.8, 0.6], none=[0.5, 0.6, 0.7], **base) == "inconclusive"  # swamped
    base["none_loss"] = [2.3, 1.3, 1.4]
    assert verdict(key, bn=[0.1, 0.2, 0.1], none=[0.5, 0.6, 0.7], **base) == "inconclusive"


def _res(norm, w, g, beta, fed):
    n = len(fed)
    return {"weight_norm": np.full((2, n), w), "grad_norm": np.full((2, n), g), "beta": np.full((2, n), beta),
            "bn_fed": np.array([fed, fed]), "cos": np.zeros((2, n))}


def test_scale_values_multiply_by_the_weight_norm_on_bn_fed_layers_only():
    fed = [True, True, False]
    res = {("none", 0): _res("none", 1.0, 1.0, 10.0, [False] * 3), ("bn", 0): _res("bn", 10.0, 0.1, 0.1, fed)}
    v = ch.scale_values(res, [0])
    assert v["beta"]["bn"] == [pytest.approx(-1.0)] and v["beta_w2"]["bn"] == [pytest.approx(1.0)]
    assert v["grad"]["none"] == [pytest.approx(0.0)] and v["grad_w"]["bn"] == [pytest.approx(0.0)]


# ---- sharpness against 2/eta

EDGE = dict(eos_low=0.8, eos_high=1.25, late_pct="50%", eos_loss_floor=0.1, final_loss=[1.0] * 4,
            diverged=[False] * 4, k=2.0, chance_frac=0.9)


def test_edge():
    base = dict(n_window=[4] * 4, min_probes=3, **EDGE)
    assert verdict("edge", ratio_window=[1.0, 1.1, 0.9, 1.05], **base) == "reproduced"
    assert verdict("edge", ratio_window=[1.0, 1.1, 0.9, 0.7], **base) == "partly"
    assert verdict("edge", ratio_window=[1.0, 1.1, 0.6, 0.7], **base) == "not reproduced"
    assert verdict("edge", ratio_window=[1.0] * 4, **{**base, "n_window": [4, 4, 2, 4]}) == "inconclusive"
    assert verdict("edge", ratio_window=[1.0] * 4, **{**base, "diverged": [True] + [False] * 3}) == "inconclusive"


def test_edge_late():
    assert verdict("edge_late", ratio_late=[1.0, 1.1, 0.9, 1.05], ratio_first=[0.2] * 4, **EDGE) == "reproduced"
    assert verdict("edge_late", ratio_late=[1.0, 1.1, 0.9, 0.7], ratio_first=[0.2] * 4, **EDGE) == "partly"
    assert verdict("edge_late", ratio_late=[1.0, 1.1, 0.6, 0.7], ratio_first=[2.0] * 4, **EDGE) == "not reproduced"
    assert verdict("edge_late", ratio_late=[1.0] * 4, ratio_first=[0.2] * 4,
                   **{**EDGE, "final_loss": [2.3] + [1.0] * 3}) == "inconclusive"


def test_floor_step_is_the_first_step_below_the_floor():
    assert ch.floor_step([2.0, 0.5, 0.09, 0.2, 0.05], 0.1) == 2
    assert ch.floor_step([2.0, 0.5], 0.1) == 2  # never: the run's length


def test_edge_window_opens_at_the_edge_and_closes_at_the_loss_floor():
    step = np.array([0, 20, 40, 60, 80])
    ratio = np.array([0.3, 0.9, 1.0, 0.4, 0.2])
    assert ch.edge_window(step, ratio, end=70, eos_low=0.8).tolist() == [False, True, True, True, False]
    assert ch.edge_window(step, ratio, end=100, eos_low=0.8).tolist() == [False, True, True, True, True]
    never = np.array([0.3, 0.5, 0.6, 0.4, 0.2])  # never reaches the edge: every probe before the floor
    assert ch.edge_window(step, never, end=50, eos_low=0.8).tolist() == [True, True, True, False, False]


def test_bn_flatter():
    base = dict(final_loss=[1.0] * 6, diverged=[False] * 6, k=2.0, chance_frac=0.9, late_pct="50%")
    assert verdict("bn_flatter", bn=[0.3, 0.4, 0.5], none=[1.0, 1.1, 0.9], **base) == "reproduced"
    assert verdict("bn_flatter", bn=[1.3, 1.4, 1.5], none=[1.0, 1.1, 0.9], **base) == "not reproduced"
    base["final_loss"] = [2.3] + [1.0] * 5
    assert verdict("bn_flatter", bn=[0.3, 0.4, 0.5], none=[1.0, 1.1, 0.9], **base) == "inconclusive"


def _hist(losses, diverged=False):
    losses = np.asarray(losses, float)
    z = np.zeros(0)
    return History(losses, losses * 0, np.arange(len(losses), dtype=float), z, z, z, diverged=diverged)


def test_sharpness_judges_the_window_and_the_late_probes():
    cfg = ch.Params(gd_lrs=(0.1,), gd_steps=100, late_frac=0.5, eos_low=0.8, eos_loss_floor=0.1)
    runs = {("none", 0.1, 0): _hist([2.0] * 70 + [0.05] * 30)}  # the loss falls below 0.1 at step 70
    top = {("none", 0.1, 0): {"step": np.arange(0, 100, 20), "eigenvalues": np.array([[5.], [10.], [17.], [20.],
                                                                                        [8.]])}}
    row = ch.sharpness(cfg, runs, top).iloc[0]
    assert row["floor step"] == 70 and row["window from"] == 40 and row["window probes"] == 2
    # the window: the probes at steps 40 and 60 (from the first x eta/2 >= 0.8, before step 70)
    assert row.lam_window == 18.5 and row.ratio_window_last == pytest.approx(1.0)
    assert row.lam_late == 14.0  # the median of the probes at steps 60 and 80 (from step 50 on)
    assert row.ratio_late == pytest.approx(0.7) and row.ratio_first == pytest.approx(0.25)
    assert set(ch.sharpness_table(ch.sharpness(cfg, runs, top))) >= {"x eta/2, window", "x eta/2, late"}


def test_matched_cuts_the_core_runs_to_the_variant_length():
    cfg = ch.Params(variant_seeds=1, variant_steps=10, tail_frac=0.1)
    hist = {(n, lr, 0): _hist(list(range(20, 0, -1)) if lr == 0.1 else [1.0] * 10)
            for n in ch.NORMS for lr in (0.1, 0.5)}
    m = ch.matched(cfg, hist)
    assert m["none"] == [11.0] and m["bn_large"] == [1.0]  # step 10 of the 20-step run: loss 11


def _markdown() -> str:
    from bnlib import book

    nb = json.loads((book.NOTEBOOKS / "later_work.ipynb").read_text())
    return "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")


def test_cross_page_glue_names_a_format():
    """MyST-NB splits ``page.ipynb::key`` at its last colon: without a format the key is lost."""
    import re

    refs = re.findall(r"\{glue:text\}`([^`]*::[^`]*)`", _markdown())
    assert refs and all(re.search(r"::[a-z_0-9]+:[^:]+$", r) for r in refs), refs


def test_every_glued_setting_is_glued_by_the_settings_header():
    import re

    used = set(re.findall(r"\{glue:text\}`cfg_([a-z_0-9]+)", _markdown()))
    assert used <= {"seed", *ch.KEY_SETTINGS, *ch.THRESHOLDS}, used - {*ch.KEY_SETTINGS, *ch.THRESHOLDS}


def test_paper_text_is_written_from_the_paper_profile():
    from bnlib import config

    p, text = config.resolve(ch.Params, "paper"), ch.paper_text()
    assert f"{p.num_steps:,} steps" in text and f"{p.gd_steps:,} steps" in text and f"{p.gd_size:,} images" in text
