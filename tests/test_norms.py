"""The norm factory and BatchNorm's defining property (noise and lp layers: test_noise, test_lp)."""

import pytest
import torch
from torch import nn

from bnlib.norms import NORM_KINDS, make_norm


@pytest.mark.parametrize("kind", NORM_KINDS)
@pytest.mark.parametrize("spatial", [True, False])
def test_every_kind_builds_and_keeps_the_shape(kind, spatial):
    x = torch.randn(8, 6, 5, 5) if spatial else torch.randn(8, 6)
    layer = make_norm(kind, 6, spatial=spatial)
    assert layer(x).shape == x.shape


def test_bn_train_mode_gives_zero_mean_unit_variance_per_channel():
    x = 3 + 5 * torch.randn(64, 4, 6, 6, dtype=torch.float64)
    out = make_norm("bn", 4).double().train()(x)
    mean, var = out.mean(dim=(0, 2, 3)), out.var(dim=(0, 2, 3), unbiased=False)
    assert torch.allclose(mean, torch.zeros(4, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(var, torch.ones(4, dtype=torch.float64), atol=1e-3)  # eps=1e-5 / var~25


def test_none_is_identity_and_unknown_kind_raises():
    assert isinstance(make_norm("none", 3), nn.Identity)
    with pytest.raises(ValueError, match=r"Unknown norm kind 'batchnorm'; known: none, bn"):
        make_norm("batchnorm", 3)
