"""Models: shapes, layer numbering, Glorot initialisation and where the norm sits."""

import math

import pytest
import torch
from torch import nn

from bnlib import models


@pytest.mark.parametrize("make, x_shape, n_layers", [
    (lambda: models.vgg(11, width=0.25, norm="bn"), (4, 3, 32, 32), 10),
    (lambda: models.vgg(16, width=0.125, norm="none"), (4, 3, 32, 32), 15),
    (lambda: models.lenet(norm="bn", in_channels=1, image_size=28), (4, 1, 28, 28), 5),
    (lambda: models.mlp(norm="bn"), (4, 1, 28, 28), 2),
    (lambda: models.deep_linear(norm="bn"), (4, 10), 25),
])
def test_shapes_and_layer_count(make, x_shape, n_layers):
    net = make()
    out = net(torch.randn(*x_shape))
    assert out.shape == (4, 10)
    assert len(models.weight_layers(net)) == n_layers


def test_glorot_uniform_bounds_and_zero_bias():
    torch.manual_seed(0)
    net = models.vgg(11, width=0.5)
    for layer in models.weight_layers(net):
        fan_in = layer.weight[0].numel()
        fan_out = layer.weight.shape[0] * layer.weight[0, 0].numel()
        bound = math.sqrt(6 / (fan_in + fan_out))
        w = layer.weight.detach()
        assert w.abs().max() <= bound
        # U(-b, b) has variance b^2/3; the sample variance's standard error is
        # b^2 sqrt(1/5 - 1/9) / sqrt(n) ~ 0.298 b^2 / sqrt(n): allow 4 of them
        assert abs(w.var().item() - bound**2 / 3) < 4 * 0.298 * bound**2 / math.sqrt(w.numel())
        assert torch.all(layer.bias == 0)


def test_norm_before_relu_in_vgg_and_after_relu_in_mlp():
    vgg = list(models.vgg(11, width=0.25, norm="bn").children())
    assert isinstance(vgg[0], nn.Conv2d) and isinstance(vgg[1], nn.BatchNorm2d) and isinstance(vgg[2], nn.ReLU)
    mlp = list(models.mlp(norm="bn").children())
    assert isinstance(mlp[1], nn.Linear) and isinstance(mlp[2], nn.ReLU) and isinstance(mlp[3], nn.BatchNorm1d)
    before = list(models.mlp(norm="bn", norm_after_relu=False).children())
    assert isinstance(before[2], nn.BatchNorm1d)


def test_deep_linear_is_linear_and_bias_free():
    net = models.deep_linear()
    x, y = torch.randn(3, 10), torch.randn(3, 10)
    assert torch.allclose(net(x + 2 * y), net(x) + 2 * net(y), atol=1e-5)
    assert all(layer.bias is None for layer in models.weight_layers(net))


def test_bad_architecture_arguments():
    with pytest.raises(ValueError, match="depth must be one of"):
        models.vgg(12)
    with pytest.raises(ValueError, match="width multiplier must be > 0"):
        models.vgg(11, width=0)
