"""The theory chapter's criteria on synthetic numbers: each can pass, fail, and say partly."""

import pytest

from bnlib.chapters.theory import CRITERIA


@pytest.mark.parametrize("name", ["thm_4_1", "thm_4_4", "eq_16"])
@pytest.mark.parametrize("fail, holds, expected", [(0.0, True, "reproduced"), (0.45, False, "not reproduced")])
def test_printed_forms(name, fail, holds, expected):
    row = CRITERIA[name](fail=fail, holds=holds)
    assert row.verdict == expected and row.measured == f"{fail:.1%} of random instances fail"


@pytest.mark.parametrize("holds, reading_holds, expected", [
    (True, True, "reproduced"), (False, True, "partly"), (False, False, "not reproduced")])
def test_thm_4_2_printed_and_its_other_reading(holds, reading_holds, expected):
    assert CRITERIA["thm_4_2"](fail=0.4, holds=holds, reading_holds=reading_holds).verdict == expected


@pytest.mark.parametrize("holds, share, expected", [
    (True, 1.0, "reproduced"), (True, 0.97, "not reproduced"), (False, 1.0, "not reproduced")])
def test_never_enlarges(holds, share, expected):
    assert CRITERIA["never_enlarges"](holds=holds, bound_share=share).verdict == expected


@pytest.mark.parametrize("value, expected, text", [
    (0.2, "reproduced", "largest layer average 20.00%"), (0.03, "partly", "largest layer average 3.00%"),
    (0.001, "not reproduced", "largest layer average 0.10%")])
def test_mean_term(value, expected, text):
    row = CRITERIA["mean_term"](value=value, strong=0.1, weak=0.01, text="largest layer average {v}")
    assert row.verdict == expected and row.measured == text


@pytest.mark.parametrize("value, expected", [(0.95, "reproduced"), (0.6, "partly"), (0.3, "not reproduced")])
def test_inner_product_positive(value, expected):
    row = CRITERIA["inner"](value=value, strong=0.9, weak=0.5, fmt=".0%", text="{v} positive")
    assert row.verdict == expected and row.measured.endswith("% positive")


@pytest.mark.parametrize("share, expected", [(1.0, "reproduced"), (0.5, "partly"), (0.0, "not reproduced")])
def test_psd(share, expected):
    row = CRITERIA["psd"](share=share, what="of probes")
    assert row.verdict == expected and row.measured == f"{share:.0%} of probes"


@pytest.mark.parametrize("median, expected", [(0.4, "reproduced"), (2.6, "not reproduced")])
def test_sigma_large(median, expected):
    row = CRITERIA["sigma"](value=median, limit=1.0, text="median {v}")
    assert row.verdict == expected and row.measured == f"median {median:.3g}"


@pytest.mark.parametrize("twin, expected", [(3.7e-7, "reproduced"), (0.05, "not reproduced")])
def test_observation_4_3(twin, expected):
    row = CRITERIA["obs_4_3"](value=twin, limit=1e-4, fmt=".1e")
    assert row.verdict == expected and row.measured == f"{twin:.1e}"


@pytest.mark.parametrize("ok, expected", [(True, "reproduced"), (False, "not reproduced")])
def test_lemma_4_5(ok, expected):
    row = CRITERIA["lemma_4_5"](n_pairs=47, ok=ok)
    assert row.verdict == expected and row.measured == "47 pairs checked"
