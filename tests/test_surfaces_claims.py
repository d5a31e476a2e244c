"""The surfaces chapter's criteria on synthetic per-seed numbers: each reproduces, holds on one
network only (partly), fails, and is inconclusive when no pair trained or the seeds disagree."""

import pytest

from bnlib.chapters.surfaces import CRITERIA, _bn_lower

LOWER = [name for name, c in CRITERIA.items() if c.decide is _bn_lower]

OPTS = dict(k=2.0, chance_frac=0.9, archs="LeNet, VGG-16", radius=0.25, sharp_dirs=8, bn_mode="running")
BOTH = {"lenet": True, "vgg16": True}


@pytest.mark.parametrize("name", LOWER)
@pytest.mark.parametrize("bn, none, trained, expected", [
    ({"lenet": [1.0, 1.1], "vgg16": [2.0, 2.1]}, {"lenet": [3.0, 3.2], "vgg16": [4.0, 4.1]}, BOTH, "reproduced"),
    ({"lenet": [1.0, 1.1], "vgg16": [5.0, 5.1]}, {"lenet": [3.0, 3.2], "vgg16": [4.0, 4.1]}, BOTH, "partly"),
    ({"lenet": [4.0, 4.1], "vgg16": [5.0, 5.1]}, {"lenet": [3.0, 3.2], "vgg16": [4.0, 4.1]}, BOTH, "not reproduced"),
    # a pair that did not train is not decided: BN winning on the other network is only "partly"
    ({"lenet": [1.0, 1.1], "vgg16": [2.0, 2.1]}, {"lenet": [3.0, 3.2], "vgg16": [4.0, 4.1]},
     {"lenet": True, "vgg16": False}, "partly"),
    ({"lenet": [1.0, 1.1], "vgg16": [2.0, 2.1]}, {"lenet": [3.0, 3.2], "vgg16": [4.0, 4.1]},
     {"lenet": False, "vgg16": False}, "inconclusive"),
    # the seeds disagree and the spread swamps the gap on the only network
    ({"lenet": [1.0, 3.0]}, {"lenet": [2.0, 2.1]}, {"lenet": True}, "inconclusive"),
])
def test_bn_lower_on_each_network(name, bn, none, trained, expected):
    row = CRITERIA[name](bn=bn, none=none, trained=trained, **OPTS)
    assert row.verdict == expected
    assert row.measured.startswith("LeNet: BN ")
    assert ("not decided" in row.measured) == (not all(trained.values()))
    assert "2 seeds" in row.measured


def test_one_network_one_seed():
    row = CRITERIA["beta_eff"](bn={"lenet": [1.0]}, none={"lenet": [2.0]}, trained={"lenet": True},
                               **{**OPTS, "archs": "LeNet"})
    assert row.verdict == "reproduced" and "(1 seed)" in row.measured and "(LeNet)" in row.criterion


def test_sharpness_criterion_names_its_settings():
    row = CRITERIA["sharpness"](bn={"lenet": [0.1]}, none={"lenet": [0.2]}, trained={"lenet": True}, **OPTS)
    assert "radius 0.25 along 8 random directions" in row.criterion and "running" in row.criterion
    assert "2 seed spreads" in row.criterion and "0.9 ln 10" in row.criterion


def test_every_row_but_concavity_asks_bn_lower():
    assert set(CRITERIA) - set(LOWER) == {"concave share"}


@pytest.mark.parametrize("bn, none, trained, expected", [
    ({"lenet": [0.3, 0.31]}, {"lenet": [0.1, 0.12]}, {"lenet": True}, "reproduced"),
    ({"lenet": [0.1, 0.11]}, {"lenet": [0.3, 0.32]}, {"lenet": True}, "not reproduced"),
    ({"lenet": [0.3, 0.31]}, {"lenet": [0.1, 0.12]}, {"lenet": False}, "inconclusive"),
    ({"lenet": [0.3, 0.31], "vgg16": [0.1, 0.1]}, {"lenet": [0.1, 0.12], "vgg16": [0.2, 0.2]}, BOTH, "partly")])
def test_more_concave_asks_bn_higher(bn, none, trained, expected):
    row = CRITERIA["concave share"](bn=bn, none=none, trained=trained, **OPTS)
    assert row.verdict == expected and "negative definite" in row.criterion and "BN > standard" in row.criterion
    assert row.measured.startswith("LeNet: standard ")


def test_rows_say_which_line_and_which_reference():
    assert "raw gradient" in CRITERIA["beta_eff"].criterion and "raw gradient" in CRITERIA["loss variation"].criterion
    for name in ("beta_eff (Adam step)", "loss variation (Adam step)"):
        assert "Adam's update u" in CRITERIA[name].criterion and "theta + s u" in CRITERIA[name].criterion
    assert "ln 10" in CRITERIA["max / chance"].criterion and "a maximum" in CRITERIA["max / chance"].criterion


def test_readable_names_networks_and_batchnorm_in_words():
    import pandas as pd

    from bnlib.chapters import surfaces

    df = pd.DataFrame({"arch": ["lenet", "vgg16"], "norm": ["none", "bn"], "seed": [0, 0], "test acc": [0.5, 0.6]})
    got = surfaces.readable(df)
    assert list(got.columns) == ["network", "BatchNorm", "seed", "test accuracy"]
    assert got["network"].tolist() == ["LeNet", "VGG-16"] and got["BatchNorm"].tolist() == ["no", "yes"]


def test_every_surface_figure_fits_the_column_with_its_legend_outside():
    """Two networks (the paper profile): each figure is at most the column wide and no axes holds a legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from bnlib import plots
    from bnlib.plots import surfaces as figs

    g = np.linspace(-1, 1, 5)
    a, b = np.meshgrid(g, g, indexing="ij")
    steps = np.array([0, 10, 20])
    line = {"step": steps, "loss_min": np.array([2.0, 1.5, 1.2]), "loss_max": np.array([2.2, 1.7, 1.3]),
            "beta_eff": np.array([3.0, 2.0, 1.5])}
    one = {(arch, n): {"plane": {"grid": g, "loss": 1 + a**2 + b**2}, "interp": {"alphas": g, "loss": 1 + g**2},
                       "slices": {"xs": g, "loss": np.stack([1 + g**2, 1 + 2 * g**2])}, "line": line}
           for arch in ("lenet", "vgg16") for n in ("none", "bn")}
    per_seed = {(arch, n, 0): r for (arch, n), r in one.items()}
    kw = dict(archs=("lenet", "vgg16"), norms=("none", "bn"), labels={"lenet": "LeNet", "vgg16": "VGG-16"})
    made = [figs.probe_curves(per_seed, seeds=[0], key=k, ylabel="y", **kw) for k in ("range", "beta_eff")]
    made += [figs.lines(one, kind=k, **kw) for k in ("interp", "slices")]
    made += [f(one, log=log, **kw) for f in (figs.contours, figs.surfaces3d) for log in (False, True)]
    for fig in made:
        assert fig.get_size_inches()[0] <= plots.COLUMN_IN + 1e-9
        assert all(ax.get_legend() is None for ax in fig.axes)
        plt.close(fig)
