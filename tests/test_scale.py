"""probes.scale: per-layer gradient norm and beta, raw and in units of the weight norm."""

import copy

import numpy as np
import pytest
import torch

from bnlib import models
from bnlib.probes.scale import bn_fed, layer_scale


def _bn_mlp():
    torch.manual_seed(0)
    m = models.mlp(sizes=(12, 10, 8, 4), norm="bn", norm_after_relu=False).double()
    X, y = torch.randn(32, 12, dtype=torch.float64), torch.randint(0, 4, (32,))
    return m, X, y


def test_bn_fed_marks_the_layers_before_a_batchnorm():
    m, _, _ = _bn_mlp()
    assert bn_fed(m).tolist() == [True, True, False]
    assert bn_fed(models.mlp(sizes=(12, 10, 4))).tolist() == [False, False]
    vgg = models.vgg(11, width=0.125, norm="bn")
    assert bn_fed(vgg).tolist() == [True] * 9 + [False]


def test_the_probe_leaves_the_model_as_it_was():
    m, X, y = _bn_mlp()
    m.eval()
    before = copy.deepcopy(m.state_dict())
    rng = torch.get_rng_state()
    layer_scale(m, X, y, rel_step=0.05)
    assert not m.training
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert torch.equal(rng, torch.get_rng_state())


def test_beta_of_a_linear_least_squares_layer_is_the_hessian_along_the_gradient():
    """L = mean_k ||W x_k + b - y_k||^2 is quadratic in W: the gradient change per distance along
    u = g / ||g|| is exactly ||H u|| = ||(2/n) u X^T X||, whatever the step."""
    torch.manual_seed(1)
    m = models.mlp(sizes=(5, 3)).double()
    X, y = torch.randn(20, 5, dtype=torch.float64), torch.randn(20, 3, dtype=torch.float64)
    r = layer_scale(m, X, y, loss="mse", rel_step=0.3)
    W, b = m[1].weight.detach(), m[1].bias.detach()
    g = 2 / len(X) * (X @ W.T + b - y).T @ X
    hu = 2 / len(X) * (g / g.norm()) @ X.T @ X
    assert r["grad_norm"][0] == pytest.approx(float(g.norm()), rel=1e-10)
    assert r["weight_norm"][0] == pytest.approx(float(W.norm()), rel=1e-12)
    assert r["beta"][0] == pytest.approx(float(hu.norm()), rel=1e-8)
    assert r["cos"][0] == pytest.approx(float((W * g).sum() / (W.norm() * g.norm())), rel=1e-8)


def test_scaling_a_bn_fed_layer_scales_raw_quantities_and_leaves_the_products():
    m, X, y = _bn_mlp()
    c = 3.0
    scaled = copy.deepcopy(m)
    with torch.no_grad():
        scaled[1].weight.mul_(c)  # feeds the first BatchNorm
    a, b = layer_scale(m, X, y, rel_step=0.02), layer_scale(scaled, X, y, rel_step=0.02)
    assert b["grad_norm"][0] == pytest.approx(a["grad_norm"][0] / c, rel=1e-5)
    assert b["beta"][0] == pytest.approx(a["beta"][0] / c**2, rel=1e-4)
    for q in (lambda r: r["grad_norm"] * r["weight_norm"], lambda r: r["beta"] * r["weight_norm"] ** 2):
        assert np.allclose(q(a), q(b), rtol=1e-4)
    # gradient orthogonal to W, up to BN's epsilon (1e-5 against the channel variances)
    assert abs(a["cos"][0]) < 1e-4 and abs(a["cos"][1]) < 1e-4 and abs(a["cos"][2]) > 1e-3
    # exact with BN's epsilon scaled by 1 / c^2; with it fixed, off by about eps / var
    assert float(a["scaled_loss_err"]) < 1e-12
    assert np.nanmax(a["scaled_grad_err"]) < 1e-10 and np.isnan(a["scaled_grad_err"][2])
    assert 1e-10 < np.nanmax(a["fixed_eps_grad_err"]) < 1e-3


def test_the_standard_net_is_not_scale_invariant():
    torch.manual_seed(0)
    m = models.mlp(sizes=(12, 10, 4)).double()
    X, y = torch.randn(32, 12, dtype=torch.float64), torch.randint(0, 4, (32,))
    r = layer_scale(m, X, y)
    assert np.all(np.isnan(r["scaled_grad_err"])) and not r["bn_fed"].any()


def test_bad_arguments_raise():
    m, X, y = _bn_mlp()
    with pytest.raises(ValueError, match="rel_step"):
        layer_scale(m, X, y, rel_step=0)


def test_beta_matches_the_hessian_along_the_layerwise_step_for_a_small_step():
    """Finite differences: for a small step, beta_i -> ||(H D)_i|| / ||W_i||, D_j = ||W_j|| g_j / ||g_j||."""
    m, X, y = _bn_mlp()
    r = layer_scale(m, X, y, rel_step=1e-5)
    ws = [m[1].weight, m[4].weight, m[7].weight]
    loss = torch.nn.functional.cross_entropy(m.train()(X), y)
    gs = torch.autograd.grad(loss, ws, create_graph=True)
    D = [w.norm() * g / g.norm() for w, g in zip(ws, gs)]
    hd = torch.autograd.grad(sum((g * d.detach()).sum() for g, d in zip(gs, D)), ws)
    expected = [float(h.norm() / w.norm()) for h, w in zip(hd, ws)]
    assert np.allclose(r["beta"], expected, rtol=1e-3)
