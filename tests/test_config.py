"""Chapter parameters: profiles, coercion, and the error messages promised in the README."""

import pytest

from bnlib import chapters, config


def test_quick_defaults_and_profile_overrides():
    quick = chapters.resolve("training")
    paper = chapters.resolve("training", profile="paper")
    assert (quick.profile, quick.depth, quick.width, quick.num_steps) == ("quick", 11, 0.125, 1500)
    assert (paper.depth, paper.width, paper.num_steps) == (16, 1.0, 15_000)


def test_none_means_profile_value_and_overrides_win():
    cfg = chapters.resolve("training", profile="paper", lr=None, num_steps=7)
    assert cfg.lr == 0.1 and cfg.num_steps == 7 and cfg.depth == 16


def test_int_is_coerced_to_float_where_a_float_is_meant():
    cfg = chapters.resolve("training", lr=1)  # papermill turns "-p lr 1" into the int 1
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)


@pytest.mark.parametrize("name, value, match", [
    ("lr", -0.1, r"Parameter 'lr' of chapter 'training' must be a float in \(0, 10\]; got -0.1"),
    ("lr", 0, r"'lr'.*got 0\b"),
    ("lr", "fast", r"'lr'.*got 'fast'"),
    ("num_steps", 0, r"'num_steps'.*an int in \[1, 1000000\]; got 0"),
    ("num_steps", 2.5, r"'num_steps'.*got 2.5"),
    ("batch_size", -128, r"'batch_size'.*got -128"),
    ("depth", 12, r"'depth'.*one of 11, 13, 16, 19; got 12"),
    ("num_seeds", True, r"'num_seeds'.*got True"),
])
def test_bad_values_name_parameter_value_and_allowed_range(name, value, match):
    with pytest.raises(ValueError, match=match):
        chapters.resolve("training", **{name: value})


def test_error_shows_an_example_override():
    with pytest.raises(ValueError, match=r"Example: -p lr 0.1"):
        chapters.resolve("training", lr=-1)


def test_unknown_parameter_suggests_the_closest_name():
    with pytest.raises(ValueError, match=r"Unknown parameter 'num_step' .*did you mean 'num_steps'\?.*Known:"):
        chapters.resolve("training", num_step=3)


def test_unknown_profile_and_chapter():
    with pytest.raises(ValueError, match=r"'profile'.*one of 'smoke', 'quick', 'paper'; got 'fast'"):
        chapters.resolve("training", profile="fast")
    with pytest.raises(ValueError, match=r"Unknown chapter 'trainig'; did you mean 'training'\?"):
        chapters.resolve("trainig")


def test_list_constraint():
    c = config.ListOf(config.Interval(float, 0, None, low_open=True))
    assert c.check([1, 0.5]) == (1.0, 0.5)
    for bad in ([], [0.1, -1], "0.1"):
        with pytest.raises((TypeError, ValueError)):
            c.check(bad)


def test_every_chapter_profile_resolves():
    for chapter in chapters.names():
        for profile in config.PROFILES:
            cfg = chapters.resolve(chapter, profile)
            assert cfg.profile == profile
