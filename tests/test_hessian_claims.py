"""The Hessian chapter's criteria on synthetic per-seed numbers: each reproduces, fails, and is
inconclusive when a precondition fails (verdicts.md); the kernel row is an identity."""

import numpy as np
import pytest

from bnlib.chapters.hessian import (
    CRITERIA,
    Params,
    full_epochs,
    kappa,
    off_share,
    probe_epochs,
    rank_floor,
    widest_gap,
)

NONE = {"train": [0.90, 0.91], "val": [0.88, 0.89], "test": [0.87, 0.88]}
TH = dict(k=2.0, margin=0.003, acc_margin=0.003)


@pytest.mark.parametrize("bn, ok, expected", [
    ({"train": [0.95, 0.96], "val": [0.90, 0.91], "test": [0.90, 0.91]}, True, "reproduced"),
    ({"train": [0.85, 0.86], "val": [0.85, 0.86], "test": [0.90, 0.91]}, True, "partly"),
    ({"train": [0.85, 0.86], "val": [0.85, 0.86], "test": [0.80, 0.81]}, True, "not reproduced"),
    ({"train": [0.95, 0.96], "val": [0.90, 0.91], "test": [0.95, 0.80]}, True, "inconclusive"),  # swamped
    ({"train": [0.95, 0.96], "val": [0.90, 0.91], "test": [0.90, 0.91]}, False, "inconclusive")])
def test_accuracy(bn, ok, expected):
    row = CRITERIA["accuracy"](bn=bn, none=NONE, ok=ok, **TH)
    assert row.verdict == expected and row.measured.startswith("test: standard ") and "(mean 2 seeds" in row.measured
    assert "0.003" in row.criterion


def test_accuracy_margin_counts():  # BN ahead by less than the margin on every split
    bn = {s: [x + 0.001 for x in v] for s, v in NONE.items()}
    assert CRITERIA["accuracy"](bn=bn, none=NONE, ok=True, **TH).verdict == "not reproduced"


@pytest.mark.parametrize("t_bn, ok, expected", [
    ([1.0, 1.1], True, "reproduced"), ([3.0, 3.1], True, "not reproduced"),
    ([float("inf"), 1.0], True, "not reproduced"), ([1.0, 3.0], True, "inconclusive"),
    ([1.0, 1.1], False, "inconclusive")])
def test_wall_clock(t_bn, ok, expected):
    row = CRITERIA["wall_clock"](bn=t_bn, none=[2.0, 2.0], ok=ok, k=2.0, margin=0.05, time_margin=0.05)
    assert row.verdict == expected and "standard 2 s" in row.measured and "5%" in row.criterion


@pytest.mark.parametrize("bn, expected", [
    ([0.05, 0.051, 0.049], "reproduced"), ([0.0305, 0.0302, 0.0301], "not reproduced"),  # < 5% margin
    ([0.02, 0.021, 0.019], "not reproduced"), ([0.05, 0.01, 0.03], "inconclusive")])
def test_epoch_time_interleaved_rounds(bn, expected):
    row = CRITERIA["epoch_time"](bn=bn, none=[0.03, 0.03, 0.03], k=2.0, margin=0.05, time_margin=0.05)
    assert row.verdict == expected and "3 timing rounds" in row.measured


@pytest.mark.parametrize("name", ["lambda1", "kappa"])
@pytest.mark.parametrize("bn, bn_last, ok, expected", [
    ([1.0, 1.2], [1.0, 1.2], True, "reproduced"), ([9.0, 9.5], [1.0, 1.2], True, "partly"),
    ([9.0, 9.5], [9.0, 9.5], True, "not reproduced"), ([1.0, 12.0], [1.0, 1.2], True, "inconclusive"),
    ([1.0, 1.2], [1.0, 1.2], False, "inconclusive")])
def test_smaller_curvature(name, bn, bn_last, ok, expected):
    row = CRITERIA[name](bn=bn, none=[5.0, 5.5], bn_last=bn_last, none_last=[5.0, 5.5], ok=ok, k=2.0, top_k=7)
    assert row.verdict == expected and row.measured.startswith("median over trained epochs: BN ")


def test_kappa_criterion_names_k_and_kappa_is_a_ratio():
    assert "λ₁/λₖ (k = 7)" in CRITERIA["kappa"](bn=[1.0], none=[2.0], bn_last=[1.0], none_last=[2.0], ok=True,
                                                     k=2.0, top_k=7).criterion
    assert np.allclose(kappa({"e": np.array([[4.0, 2.0, 1.0]])}, "e", k=3), [4.0])


@pytest.mark.parametrize("fewest, expected", [(100, "identity"), (143, "identity"), (99, "not reproduced")])
def test_kernel_identity(fewest, expected):
    row = CRITERIA["singular"](fewest=fewest, hidden=100, zero_rel=1e-6)
    assert row.verdict == expected and "at least 100" in row.criterion and "1e-06" in row.criterion


@pytest.mark.parametrize("shares, ok, expected", [
    ({"none": [0.8, 0.7], "bn": [0.6, 0.9]}, True, "reproduced"),
    ({"none": [0.8, 0.7], "bn": [0.1, 0.2]}, True, "partly"),
    ({"none": [0.8, 0.3], "bn": [0.1, 0.2]}, True, "not reproduced"),
    ({"none": [0.8, 0.7], "bn": [0.6, 0.9]}, False, "inconclusive")])
def test_last_layer_represents_by_eigenvector_share(shares, ok, expected):
    row = CRITERIA["represents"](shares=shares, ok=ok, rep_share=0.5, top_k=10)
    assert row.verdict == expected and "50%" in row.criterion and "top 10" in row.criterion
    assert row.measured.startswith("standard: ") and "per seed" in row.measured


@pytest.mark.parametrize("off, ok, expected", [
    ({"none": [0.05, 0.02], "bn": [0.01, 0.09]}, True, "reproduced"),
    ({"none": [0.05, 0.02], "bn": [0.3, 0.09]}, True, "partly"),
    ({"none": [0.3, 0.02], "bn": [0.3, 0.09]}, True, "not reproduced"),
    ({"none": [0.05, 0.02], "bn": [0.01, 0.09]}, False, "inconclusive")])
def test_block_diagonal_by_off_diagonal_share(off, ok, expected):
    row = CRITERIA["block_diagonal"](off=off, ok=ok, offdiag_max=0.1)
    assert row.verdict == expected and "10%" in row.criterion and "Frobenius" in row.criterion


def test_off_share_and_widest_gap():
    assert off_share(np.array([[3.0, 1.0], [1.0, 5.0]])) == pytest.approx(0.2)
    top = np.array([10, 9, 8, 7, 6, 5, 4, 3, 2.5, 2, 0.5, 0.45, 0.4, np.nan])
    assert widest_gap(top) == 10 and widest_gap(np.array([5.0, 1.0, 0.9])) == 1


@pytest.mark.parametrize("w1, ok, expected", [
    ({"none": [1.0, 1.1], "bn": [0.1, 0.2]}, True, "reproduced"),
    ({"none": [1.0, 1.1], "bn": [9.0, 9.5]}, True, "partly"),
    ({"none": [9.0, 9.5], "bn": [9.0, 9.5]}, True, "not reproduced"),
    ({"none": [1.0, 9.0], "bn": [0.1, 0.2]}, True, "inconclusive"),  # seeds disagree, swamped
    ({"none": [1.0, 1.1], "bn": [0.1, 0.2]}, False, "inconclusive")])
def test_flat_first_layer_steep_last(w1, ok, expected):
    w2 = {"none": [5.0, 5.5], "bn": [0.5, 0.6]}
    row = CRITERIA["flat_steep"](w1=w1, w2=w2, ok=ok, k=2.0)
    assert row.verdict == expected and "W₁ block" in row.measured and "W₂ block" in row.measured


@pytest.mark.parametrize("gap_at, ok, expected", [
    ({"none": [10, 9], "bn": [11, 10]}, True, "reproduced"),
    ({"none": [10, 9], "bn": [1, 10]}, True, "partly"),
    ({"none": [2, 9], "bn": [1, 10]}, True, "not reproduced"),
    ({"none": [10, 9], "bn": [11, 10]}, False, "inconclusive")])
def test_about_ten_outliers(gap_at, ok, expected):
    row = CRITERIA["outliers"](gap_at=gap_at, ok=ok, classes=10, outlier_tol=1, n_top=21)
    assert row.verdict == expected and "10 ± 1" in row.criterion and "top 21" in row.criterion


BEFORE = {"train": [0.97], "val": [0.96], "test": [0.95]}


@pytest.mark.parametrize("after, ok, expected", [
    ({"train": [0.97], "val": [0.958], "test": [0.949]}, True, "reproduced"),  # same, within the margin
    ({"train": [0.97], "val": [0.90], "test": [0.96]}, True, "partly"),
    ({"train": [0.97], "val": [0.90], "test": [0.90]}, True, "not reproduced"),
    ({"train": [0.97], "val": [0.96], "test": [0.96]}, False, "inconclusive")])
def test_bn_after_relu_as_good_as_before(after, ok, expected):
    row = CRITERIA["after_relu"](after=after, before=BEFORE, ok=ok, k=2.0, margin=0.003, acc_margin=0.003)
    assert row.verdict == expected and "1 seed" in row.measured and "0.003" in row.criterion


@pytest.mark.parametrize("shares, ok, expected", [
    ({25: [0.80, 0.81], 50: [0.85, 0.86], 100: [0.9, 0.92]}, True, "reproduced"),
    ({25: [0.80, 0.81], 50: [0.95, 0.86], 100: [0.9, 0.92]}, True, "partly"),
    ({25: [0.80, 0.81], 50: [0.75, 0.76], 100: [0.7, 0.92]}, True, "not reproduced"),
    ({25: [0.80, 0.81], 50: [0.85, 0.86], 100: [0.9, 0.92]}, False, "inconclusive")])
def test_singularity_grows_with_width(shares, ok, expected):
    row = CRITERIA["singular_width"](shares=shares, ok=ok, width_epochs="1 epoch", zero_band=0.01,
                                     floors={25: 0.6, 50: 0.7, 100: 0.8})
    assert row.verdict == expected and row.measured.startswith("width 25: 80.0%, 81.0%")
    assert "standard net, 1 epoch per width" in row.criterion
    assert row.measured.endswith("rank bound: 60%, 70%, 80%")


def test_rank_floor_counts_parameters():
    # 784-100-10: P = 79,510; rank <= 500 x 9 + 2 x 1,010
    assert rank_floor(500, 100) == pytest.approx(1 - 6520 / 79510)
    assert rank_floor(10_000, 10) == 0.0 and rank_floor(500, 200) > rank_floor(500, 25)


def test_probe_schedule_dense_then_sparse():
    cfg = Params(epochs=30, dense_epochs=6, probe_every=5, full_every=10)
    assert probe_epochs(Params()) == (0, 1, 10, 20, 30) and full_epochs(Params()) == (0, 30)
    assert probe_epochs(cfg) == (0, 1, 2, 3, 4, 5, 6, 10, 15, 20, 25, 30)
    assert full_epochs(cfg) == (0, 10, 20, 30)


def test_wall_clock_names_the_seed_where_bn_never_reached():
    row = CRITERIA["wall_clock"](bn=[1.0, float("inf")], none=[2.0, 2.0], ok=True, k=2.0, margin=0.05,
                                 time_margin=0.05)
    assert row.verdict == "not reproduced" and "never" in row.measured and "inf" not in row.measured


def _synthetic_runs(epochs=(0, 1, 10), p=40, k=10, n_top=21):
    """Two seeds of the three networks with the arrays ``spectra`` draws."""
    rng, res = np.random.default_rng(0), {}
    for v in ("none", "bn", "bn_before"):
        for s in (0, 1):
            e = len(epochs)
            eigs = -np.sort(-rng.uniform(1e-3, 2.0, (e, p)), axis=1)
            res[(v, s)] = {"epoch": np.array(epochs), "time_s": 2.0 * np.array(epochs),
                           **{f"{sp}_{m}": rng.uniform(0.1, 0.9, e)
                              for sp in ("train", "val") for m in ("loss", "acc")},
                           "ll_eigs": eigs, "full_top": eigs[:, :k] * 1.5, "top": -np.sort(-rng.uniform(0.1, 5, n_top))}
    return res


def test_figures_fit_the_column_and_label_their_axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from bnlib import plots
    from bnlib.chapters.hessian import VARIANTS
    from bnlib.plots import spectra

    res = _synthetic_runs()
    grid = pd.DataFrame([{"network": n, "lr": lr, "l2": l2, "val_acc": 0.5} for n in ("none", "bn")
                         for lr in (1e-3, 1e-2) for l2 in (0.0, 1e-3, 1e-2)])
    widths = {w: {"share": [0.9, 0.91]} for w in (25, 50)}
    figs = [spectra.search_grid(grid), spectra.epoch_curves(res, VARIANTS),
            spectra.epoch_curves(res, VARIANTS, x="time"),
            spectra.top_eigenvalues(res, VARIANTS), spectra.kappas(res, VARIANTS), spectra.spectrum(res, VARIANTS),
            spectra.outliers(res, ("none", "bn")), spectra.width_sweep(widths, {25: 0.7, 50: 0.8})]
    for fig in figs:
        fig.canvas.draw()
        assert fig.get_size_inches()[0] <= plots.COLUMN_IN
        for ax in fig.axes:
            if ax.get_label() != "<colorbar>" and ax.get_ylabel():  # every labelled axis has tick labels
                assert any(t.get_text() for t in ax.get_yticklabels()), ax.get_ylabel()
        plt.close(fig)
    # the search grid names its l2 weights (issue 15: they were lost to a shadowed loop variable)
    assert [t.get_text() for t in figs[0].axes[0].get_yticklabels()] == ["0", "0.001", "0.01"]


@pytest.mark.parametrize("bn_acc, expected", [
    ([[0.1, 0.95, 0.96], [0.1, 0.95, 0.96]], "after 10 s of training on average"),
    ([[0.1, 0.5, 0.6], [0.1, 0.5, 0.6]], "never, within its 20 s of training, on all 2 seeds"),
    ([[0.1, 0.95, 0.96], [0.1, 0.5, 0.6]], "after 10 s on 1 seed of 2, and never (within its 20 s of training) "
                                           "on the other 1")])
def test_reach_text_says_never_in_words(bn_acc, expected):
    from bnlib.chapters.hessian import reach_text

    res = {}
    for s in (0, 1):
        res[("none", s)] = {"val_acc": np.array([0.1, 0.9, 0.9]), "time_s": np.array([0.0, 8.0, 16.0])}
        res[("bn", s)] = {"val_acc": np.array(bn_acc[s]), "time_s": np.array([0.0, 10.0, 20.0])}
    text = reach_text(res)
    assert text == expected and "inf" not in text and "nan" not in text


def test_counts_say_the_seeds_that_ran():
    from bnlib.chapters.hessian import _counts

    c = _counts(Params(num_seeds=1, before_seeds=2, search_epochs=1, width_epochs=3))
    assert (c["num_seeds_n"], c["before_seeds_n"], c["search_epochs_n"], c["width_epochs_n"]) == (
        "1 seed", "1 seed", "1 epoch", "3 epochs")
