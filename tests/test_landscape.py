"""Tests of the line-search probe (bnlib.probes.landscape) against independent oracles.

Oracles: closed forms for a quadratic loss 0.5 x^T Q x (with ``numpy.linalg.eigh``), central
finite differences and an explicit copy-and-recompute of the loss with plain autograd, all in
float64 on tiny seeded problems.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from bnlib import models
from bnlib.data import Data
from bnlib.probes import landscape
from bnlib.train import TrainConfig, fit

MULTS = [0.5, 1.0, 2.0, 4.0]


class Quadratic(nn.Module):
    """One parameter vector x; the 'output' is x itself and the loss is 0.5 x^T Q x."""

    def __init__(self, x: np.ndarray):
        super().__init__()
        self.x = nn.Parameter(torch.tensor(x))

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        return self.x


@pytest.fixture
def quad():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((6, 6))
    Q = A @ A.T + 0.1 * np.eye(6)  # symmetric positive definite
    x = rng.standard_normal(6)
    Qt = torch.tensor(Q)
    return Q, x, Quadratic(x), (lambda out, y: 0.5 * out @ Qt @ out)


def test_quadratic_along_gradient_matches_closed_form(quad):
    Q, x, model, loss = quad
    lr = 0.05
    r = landscape.line_search(model, torch.zeros(1), torch.zeros(1), loss=loss, lr=lr,
                              multipliers=MULTS, vectorize=True)
    g = Q @ x
    t = np.array(MULTS) * lr
    pts = x[None] - t[:, None] * g[None]                                  # (S, 6)
    np.testing.assert_allclose(r["loss"], 0.5 * np.einsum("si,ij,sj->s", pts, Q, pts), rtol=1e-12)
    # grad(x - t g) - grad(x) = -t Q g, so the gradient change is linear in t with slope ||Qg||.
    np.testing.assert_allclose(r["grad_diff"], t * np.linalg.norm(Q @ g), rtol=1e-12)
    np.testing.assert_allclose(r["distance"], t * np.linalg.norm(g), rtol=1e-12)
    np.testing.assert_allclose(r["beta_eff"], np.linalg.norm(Q @ g) / np.linalg.norm(g), rtol=1e-12)
    # Lipschitz constant of the loss on the probed points = the largest gradient norm there.
    lip = max(np.linalg.norm(Q @ pts.T, axis=0).max(), np.linalg.norm(g))
    np.testing.assert_allclose(r["lipschitz"], lip, rtol=1e-12)
    assert r["loss_min"] == r["loss"].min() and r["grad_diff_max"] == r["grad_diff"].max()


def test_quadratic_top_eigenvector_recovers_smoothness_constant(quad):
    Q, x, model, loss = quad
    lam, V = np.linalg.eigh(Q)  # independent oracle for beta = lambda_max(Q)
    for vec, expected in [(V[:, -1], lam[-1]), (V[:, 0], lam[0])]:
        r = landscape.line_search(model, torch.zeros(1), torch.zeros(1), loss=loss, lr=0.1,
                                  multipliers=MULTS, direction={"x": torch.tensor(vec)})
        np.testing.assert_allclose(r["grad_diff"] / r["distance"], expected, rtol=1e-10)
    # Any direction gives beta_eff <= lambda_max (Q's largest eigenvalue bounds ||Qd|| / ||d||).
    d = landscape.random_direction(model, generator=torch.Generator().manual_seed(1))
    r = landscape.line_search(model, torch.zeros(1), torch.zeros(1), loss=loss, lr=0.1,
                              multipliers=MULTS, direction=d)
    assert r["beta_eff"] <= lam[-1] * (1 + 1e-12)


def test_quadratic_linear_loss_lipschitz_constant():
    """A linear loss c^T x is ||c||-Lipschitz: every gradient norm on the line equals ||c||."""
    c = torch.tensor([3.0, -4.0, 12.0], dtype=torch.float64)  # ||c|| = 13
    model = Quadratic(np.ones(3))
    r = landscape.line_search(model, torch.zeros(1), torch.zeros(1), loss=lambda o, y: c @ o,
                              lr=0.1, multipliers=MULTS)
    assert r["lipschitz"] == pytest.approx(13.0, rel=1e-14)
    # The loss drops by exactly t ||c||^2 = distance * 13: slope 13 along the line.
    np.testing.assert_allclose((r["loss0"] - r["loss"]) / r["distance"], 13.0, rtol=1e-12)
    np.testing.assert_allclose(r["grad_diff"], 0.0, atol=1e-14)


def _bn_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return models.mlp(norm="bn", sizes=(5, 7, 6, 3), norm_after_relu=False).double()


def _data(seed: int = 0, n: int = 16):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 5, generator=g, dtype=torch.float64),
            torch.randint(0, 3, (n,), generator=g))


def _oracle_loss(model: nn.Module, X, y, theta: dict) -> torch.Tensor:
    """Copy-and-recompute: a deep copy with ``theta`` written in, plain train-mode forward."""
    m = copy.deepcopy(model).train()
    with torch.no_grad():
        for k, p in m.named_parameters():
            p.copy_(theta[k])
    return nn.functional.cross_entropy(m(X), y), m


@pytest.mark.parametrize("vectorize", [True, False])
def test_bn_network_against_copy_recompute_and_finite_differences(vectorize):
    model = _bn_mlp()
    X, y = _data()
    lr = 0.3
    r = landscape.line_search(model, X, y, loss="ce", lr=lr, multipliers=MULTS,
                              vectorize=vectorize)
    theta = {k: v.detach().clone() for k, v in model.named_parameters()}
    l0, m = _oracle_loss(model, X, y, theta)
    l0.backward()  # plain autograd gradient of the oracle copy (not torch.func)
    g = {k: p.grad.clone() for k, p in m.named_parameters()}
    u = {k: torch.randn(v.shape, generator=torch.Generator().manual_seed(7), dtype=v.dtype)
         for k, v in theta.items()}
    diffs = []
    h = 1e-5  # central differences in float64: error ~ h^2 * |L'''| + eps / h, about 1e-10
    for i, s in enumerate(MULTS):
        pt = {k: theta[k] - s * lr * g[k] for k in theta}
        li, mi = _oracle_loss(model, X, y, pt)
        assert r["loss"][i] == pytest.approx(li.item(), rel=1e-12)
        li.backward()
        gi = {k: p.grad for k, p in mi.named_parameters()}
        diff = torch.sqrt(sum((gi[k] - g[k]).pow(2).sum() for k in g)).item()
        assert r["grad_diff"][i] == pytest.approx(diff, rel=1e-10)
        diffs.append(diff)
        # Finite-difference directional derivative along u at the probed point: <grad, u>.
        fp = _oracle_loss(model, X, y, {k: pt[k] + h * u[k] for k in pt})[0].item()
        fm = _oracle_loss(model, X, y, {k: pt[k] - h * u[k] for k in pt})[0].item()
        gnorm = torch.sqrt(sum(v.pow(2).sum() for v in gi.values())).item()
        assert r["grad_norm"][i] == pytest.approx(gnorm, rel=1e-10)
        dd = sum((gi[k] * u[k]).sum() for k in g).item()
        assert (fp - fm) / (2 * h) == pytest.approx(dd, rel=1e-6, abs=1e-8)
    gn = torch.sqrt(sum(v.pow(2).sum() for v in g.values())).item()
    np.testing.assert_allclose(r["distance"], np.array(MULTS) * lr * gn, rtol=1e-12)
    ratios = np.array(diffs) / r["distance"]
    assert ratios.max() > 1.01 * ratios.min()  # the ratio varies along the line here...
    assert r["beta_eff"] == pytest.approx(ratios.max(), rel=1e-10)  # ...and beta_eff is its max


def test_vectorized_and_loop_agree_along_random_direction():
    model = _bn_mlp(1)
    X, y = _data(1)
    d = landscape.random_direction(model, generator=torch.Generator().manual_seed(3), kind="filter")
    a, b = (landscape.line_search(model, X, y, loss="ce", lr=0.5, multipliers=MULTS, direction=d,
                                  match_grad_norm=True, vectorize=v) for v in (True, False))
    for k in ("loss", "grad_diff", "grad_norm", "distance"):
        np.testing.assert_allclose(a[k], b[k], rtol=1e-12)
    # match_grad_norm: the direction is rescaled to ||g||, so distance = s * lr * ||g||.
    np.testing.assert_allclose(a["distance"], np.array(MULTS) * 0.5 * a["grad_norm0"], rtol=1e-12)


def _snapshot(model: nn.Module):
    gens = [m.generator.get_state().clone() for m in model.modules()
            if isinstance(getattr(m, "generator", None), torch.Generator)]
    return ({k: v.detach().clone() for k, v in model.state_dict().items()},
            [m.training for m in model.modules()], torch.get_rng_state().clone(), gens)


@pytest.mark.parametrize("norm,vectorize,training", [("bn", True, True), ("bn", True, False),
                                                     ("noisy_bn", False, True)])
def test_probe_leaves_model_bit_identical(norm, vectorize, training):
    torch.manual_seed(0)
    model = models.vgg(11, width=1 / 16, norm=norm).train(training)
    X = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.arange(8) % 10
    model(X)  # a training-mode pass creates the noise generators and moves running statistics
    model.train(training)
    before = _snapshot(model)
    landscape.line_search(model, X, y, loss="ce", lr=0.1, multipliers=[0.5, 2.0],
                          vectorize=vectorize)
    after = _snapshot(model)
    assert before[0].keys() == after[0].keys()
    for k in before[0]:
        assert torch.equal(before[0][k], after[0][k]), k
    assert before[1] == after[1]
    assert torch.equal(before[2], after[2])
    assert len(before[3]) == len(after[3]) and all(torch.equal(a, b)
                                                   for a, b in zip(before[3], after[3]))
    assert all(p.grad is None for p in model.parameters())


def test_random_directions_unit_and_filter():
    model = _bn_mlp()
    gen = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    u = landscape.random_direction(model, generator=gen(), kind="unit")
    assert torch.sqrt(sum(v.pow(2).sum() for v in u.values())).item() == pytest.approx(1, rel=1e-12)
    f = landscape.random_direction(model, generator=gen(), kind="filter")
    for k, p in model.named_parameters():
        if p.dim() == 1:
            assert torch.equal(f[k], torch.zeros_like(p)), k
        else:  # each row has the norm of the matching row of the weight
            torch.testing.assert_close(f[k].norm(dim=1), p.detach().norm(dim=1), rtol=1e-12, atol=0)
    again = landscape.random_direction(model, generator=gen(), kind="filter")
    assert all(torch.equal(f[k], again[k]) for k in f)
    keep = landscape.random_direction(model, generator=gen(), kind="filter", ignore_bias_bn=False)
    assert all(torch.equal(keep[k], p) for k, p in model.named_parameters() if p.dim() == 1)


def test_bad_arguments_raise_clear_errors(quad):
    _, _, model, loss = quad
    z = torch.zeros(1)
    with pytest.raises(ValueError, match="positive numbers"):
        landscape.line_search(model, z, z, loss=loss, lr=0.1, multipliers=[0.0, 1.0])
    with pytest.raises(ValueError, match="lr must be > 0"):
        landscape.line_search(model, z, z, loss=loss, lr=-1.0, multipliers=[1.0])
    with pytest.raises(ValueError, match="bn_mode"):
        landscape.line_search(model, z, z, loss=loss, lr=0.1, multipliers=[1.0], bn_mode="eval")
    with pytest.raises(ValueError, match=r"missing \['x'\]"):
        landscape.line_search(model, z, z, loss=loss, lr=0.1, multipliers=[1.0],
                              direction={"w": torch.zeros(6)})
    with pytest.raises(ValueError, match=r"direction\['x'\] has shape \(3,\)"):
        landscape.line_search(model, z, z, loss=loss, lr=0.1, multipliers=[1.0],
                              direction={"x": torch.zeros(3)})
    with pytest.raises(ValueError, match="Unknown direction kind 'gauss'"):
        landscape.random_direction(model, generator=torch.Generator(), kind="gauss")


def _tiny_data(seed: int = 0) -> Data:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(48, 1, 4, 4, generator=g)  # tiny images: the MLP flattens them
    y = torch.randint(0, 10, (48,), generator=g)
    return Data("random", X, y, X[:16], y[:16])


@pytest.mark.parametrize("norm,vectorize", [("bn", True), ("noisy_bn", False)])
def test_training_trajectory_is_the_same_with_and_without_probing(norm, vectorize):
    cfg = TrainConfig(lr=0.1, batch_size=16, num_steps=4, eval_every=2, seed=3)
    probes = [landscape.as_probe("grad", 1, lr=None, multipliers=[0.5, 2.0], vectorize=vectorize),
              landscape.as_probe("rand", 2, lr=None, multipliers=[1.0, 3.0], direction="filter",
                                 vectorize=vectorize)]
    runs = []
    for ps in ([], probes):
        torch.manual_seed(0)  # same initial weights (and global RNG) for both runs
        model = models.mlp(norm=norm, sizes=(16, 12, 8, 10), norm_after_relu=False)
        h = fit(model, _tiny_data(), cfg, probes=ps, progress=False)
        runs.append((h, model.state_dict()))
    (h0, s0), (h1, s1) = runs
    assert np.array_equal(h0.train_loss, h1.train_loss)
    assert np.array_equal(h0.test_loss, h1.test_loss)
    assert all(torch.equal(s0[k], s1[k]) for k in s0)  # weights and BN buffers, bit for bit
    assert list(h1.probes["grad"]["step"]) == [0, 1, 2, 3]
    assert list(h1.probes["rand"]["step"]) == [0, 2]
    assert h1.probes["grad"]["grad_diff"].shape == (4, 2)


def test_as_probe_measures_the_batch_before_the_update():
    """At step 0 the probe must equal a direct line search at the initial weights on batch 0."""
    cfg = TrainConfig(lr=0.05, batch_size=16, num_steps=1, eval_every=1, seed=1)
    d = _tiny_data(1)
    torch.manual_seed(0)
    model = models.mlp(norm="bn", sizes=(16, 12, 10))
    init = copy.deepcopy(model)
    h = fit(model, d, cfg, probes=[landscape.as_probe("grad", 1, lr=None, multipliers=MULTS)],
            progress=False)
    idx = torch.randperm(48, generator=torch.Generator().manual_seed(1))[:16]  # fit's first batch
    ref = landscape.line_search(init, d.X_train[idx], d.y_train[idx], loss="ce", lr=0.05,
                                multipliers=MULTS)
    np.testing.assert_allclose(h.probes["grad"]["loss"][0], ref["loss"], rtol=1e-6)
    np.testing.assert_allclose(h.probes["grad"]["beta_eff"][0], ref["beta_eff"], rtol=1e-5)
    with pytest.raises(ValueError, match="Unknown direction 'sideways'"):
        landscape.as_probe("x", 1, lr=0.1, multipliers=[1.0], direction="sideways")


def test_vmap_is_used_where_it_pays():
    """Loop for conv nets on the CPU (grouped convolutions are slower there), vmap otherwise."""
    X = torch.zeros(2, 3, 32, 32)
    assert not landscape.vmap_pays(models.vgg(11, width=1 / 16), X)
    assert landscape.vmap_pays(models.deep_linear(depth=3, width=4, norm="bn"), X)
