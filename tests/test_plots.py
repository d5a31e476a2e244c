"""The column helpers: panels fill the column (stacked, never shrunk) and one legend sits outside."""

import matplotlib

matplotlib.use("Agg")

from bnlib import plots  # noqa: E402


def test_panels_stack_in_the_column_width():
    fig, axes = plots.panels(5, cols=2, height=2.0, sharex=True)
    assert len(axes) == 5 and len(fig.axes) == 5
    assert tuple(fig.get_size_inches()) == (plots.COLUMN_IN, 6.0)
    assert axes[3].xaxis.get_tick_params()["labelbottom"]  # above the removed slot: ends its column


def test_legend_outside_lists_each_label_once_and_removes_axes_legends():
    fig, axes = plots.panels(2)
    for ax in axes:
        ax.plot([0, 1], [0, 1], label="a")
        ax.plot([0, 1], [1, 0], label="b")
        ax.legend()
    plots.legend_outside(fig)
    assert all(ax.get_legend() is None for ax in axes)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["a", "b"]


def test_count_says_one_seed_and_three_seeds():
    from bnlib import page

    assert (page.count(1, "seed"), page.count(3, "seed"), page.count(0, "run")) == ("1 seed", "3 seeds", "0 runs")


def test_glued_text_comes_back_as_the_same_string_and_numbers_read_as_written():
    from ast import literal_eval

    from bnlib import page

    for s in ("0, 1, 2", "2,000", "1e-6", 'a "quoted" \\ word'):
        assert literal_eval(repr(page.Text(s))) == s  # what {glue:text} does with the record
    assert [page.number(v) for v in (1e-6, 0.1, 2.0, 1.5e20)] == ["1e-6", "0.1", "2", "1.5e20"]


def test_float_settings_read_as_written():
    from bnlib import page

    assert page._fmt(1e-6) == "1e-6" and page._fmt([0.1, 0.5]) == "0.1, 0.5"
