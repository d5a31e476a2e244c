"""The surfaces chapter's criteria on synthetic numbers: each can pass, pass on one network
(partly), fail, say diverged, and leaves a network pair at chance level out."""

import pytest

from bnlib.chapters.surfaces import CRITERIA

OPTS = dict(radius=0.25, sharp_dirs=8, bn_mode="running")
FREE = {"lenet": False, "vgg16": False}


@pytest.mark.parametrize("name", CRITERIA)
@pytest.mark.parametrize("bn, none, stuck, diverged, expected", [
    ({"lenet": 1.0, "vgg16": 2.0}, {"lenet": 3.0, "vgg16": 4.0}, FREE, False, "reproduced"),
    ({"lenet": 1.0, "vgg16": 5.0}, {"lenet": 3.0, "vgg16": 4.0}, FREE, False, "partly"),
    ({"lenet": 4.0, "vgg16": 5.0}, {"lenet": 3.0, "vgg16": 4.0}, FREE, False, "not reproduced"),
    ({"lenet": 1.0, "vgg16": 2.0}, {"lenet": 3.0, "vgg16": 4.0}, FREE, True, "diverged"),
    # a pair with a net at chance level is not compared: BN winning on the other one is "partly"
    ({"lenet": 1.0, "vgg16": 2.0}, {"lenet": 3.0, "vgg16": 4.0}, {"lenet": False, "vgg16": True}, False, "partly"),
    ({"lenet": 1.0, "vgg16": 2.0}, {"lenet": 3.0, "vgg16": 4.0}, {"lenet": True, "vgg16": True}, False,
     "not reproduced"),
])
def test_bn_lower_on_both_networks(name, bn, none, stuck, diverged, expected):
    row = CRITERIA[name](bn=bn, none=none, stuck=stuck, diverged=diverged, **OPTS)
    assert row.verdict == expected
    assert row.measured.startswith(f"LeNet: BN {bn['lenet']:.3g} vs standard {none['lenet']:.3g}")
    assert ("not compared" in row.measured) == any(stuck.values())


def test_sharpness_criterion_names_its_settings():
    row = CRITERIA["sharpness"](bn={"lenet": 0.1}, none={"lenet": 0.2}, stuck={"lenet": False}, diverged=False,
                                **OPTS)
    assert "radius 0.25 along 8 random directions" in row.criterion and "running" in row.criterion
