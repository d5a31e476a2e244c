"""Both sides of Santurkar et al.'s Sec. 4 statements and the Oxford report's eqs. 2-16 (bnlib.theory).

Oracles: a real ``torch.nn.BatchNorm1d`` in train mode followed by a random non-convex loss
that couples units; its gradients and dense Hessians come from plain autograd through that
layer (``torch.autograd.functional.hessian``), never from our closed forms, and one
curvature is checked against central finite differences. Everything is float64 and seeded.
Statements that hold get hypothesis property tests; printed forms that fail get explicit
counterexamples with hand-computed values.
Tolerance: identities hold to round-off, ~1e-15 relative in float64; we allow 1e-9 relative.
"""

import copy
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from bnlib import models
from bnlib import theory as T
from bnlib.probes import capture as P

torch.set_num_threads(1)  # tiny tensors: extra threads only spin on the shared 2-core machine
DT = torch.float64
REL = 1e-9
PROPERTY = settings(max_examples=25, deadline=None)
m_st, c_st, seed_st = st.integers(3, 10), st.integers(1, 3), st.integers(0, 2**31 - 1)
eps_st = st.sampled_from([1e-12, 1e-5, 0.5])  # PyTorch refuses eps = 0 in train mode


def close(a, b, scale=None):
    scale = (a.abs() + b.abs() + 1e-30) if scale is None else scale
    return bool(((a - b).abs() <= REL * scale).all())


def instance(m, C, seed, *, eps=1e-5, gamma=None, Q=None, wiggle=1.0):
    """y (m, C), g = dL/dz, grad_y = dLhat/dy and dense-Hessian HVPs through a real BatchNorm1d."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randn(m, C, generator=gen, dtype=DT) * 3 + torch.randn(C, generator=gen, dtype=DT)
    n = m * C
    A = torch.randn(n, n, generator=gen, dtype=DT)
    Q = (A + A.T) / 4 if Q is None else Q
    w = torch.randn(n, generator=gen, dtype=DT) * wiggle
    b = torch.randn(n, generator=gen, dtype=DT)

    def L(z):  # non-convex, couples every unit and sample
        zf = z.reshape(-1)
        return 0.5 * zf @ Q @ zf + b @ zf + (w * torch.sin(zf)).sum()

    bn = torch.nn.BatchNorm1d(C, eps=eps).double().train()
    with torch.no_grad():
        bn.weight.copy_(torch.rand(C, generator=gen, dtype=DT) * 2 + 0.05 if gamma is None
                        else torch.full((C,), gamma, dtype=DT))
        bn.bias.copy_(torch.randn(C, generator=gen, dtype=DT))

    def Lhat(yy):
        return L(bn(yy))

    yy = y.clone().requires_grad_()
    (grad_y,) = torch.autograd.grad(Lhat(yy), yy, create_graph=True)
    z = bn(y).detach().requires_grad_()
    (g,) = torch.autograd.grad(L(z), z, create_graph=True)

    def hvp(grad, x):  # double backward: the Hessian of the loss at x applied to u, (m, C)
        return lambda u: torch.autograd.grad(grad, x, u, retain_graph=True)[0]

    return dict(y=y, g=g.detach(), grad_y=grad_y.detach(), gamma=bn.weight.detach().clone(),
                eps=eps, hess_hat=hvp(grad_y, yy), hess=hvp(g, z), Lhat=Lhat)


def args(d):
    return d["y"], d["g"], d["grad_y"], d["gamma"]


# ---- the BN backward identity -----------------------------------------------------------------

@PROPERTY
@given(m_st, c_st, seed_st, eps_st)
def test_bn_input_grad_matches_autograd_through_real_batchnorm(m, C, seed, eps):
    d = instance(m, C, seed, eps=eps)
    got = T.bn_input_grad(d["y"], d["g"], d["gamma"], eps=eps)
    assert close(got, d["grad_y"], scale=d["grad_y"].abs().max())


# ---- Theorem 4.1 --------------------------------------------------------------------------------

@PROPERTY
@given(m_st, c_st, seed_st, eps_st)
def test_thm_4_1_exact_identity_and_corrected_bound_hold(m, C, seed, eps):
    d = instance(m, C, seed, eps=eps)
    ex = T.thm_4_1(*args(d), eps=eps, form="exact")
    assert close(ex.lhs, ex.rhs, scale=ex.terms["scale"] * ex.terms["norm"])
    co = T.thm_4_1(*args(d), eps=eps, form="corrected")
    # corrected = exact + the dropped eps term (>= 0), up to round-off
    assert (co.slack >= -REL * co.terms["scale"] * co.terms["norm"]).all()
    assert close(co.slack, co.terms["scale"] * co.terms["eps"],
                 scale=co.terms["scale"] * co.terms["norm"])


def test_thm_4_1_seed003_fails_on_a_two_sample_batch():
    # y = (-1, 1): mu = 0, sigma = 1, yhat = (-1, 1); BN kills every gradient when m = 2.
    y = torch.tensor([[-1.0], [1.0]], dtype=DT)
    g = torch.tensor([[0.0], [1.0]], dtype=DT)
    gamma = torch.ones(1, dtype=DT)
    grad_y = T.bn_input_grad(y, g, gamma)
    s = T.thm_4_1(y, g, grad_y, gamma, form="seed003")
    assert s.lhs.item() == pytest.approx(0.0, abs=1e-15)
    assert s.rhs.item() == pytest.approx(1 - 0.5 - 1 / math.sqrt(2))  # = -0.2071 < 0 = lhs
    assert (s.slack < -0.2).all()


@PROPERTY
@given(m_st, c_st, seed_st)
def test_thm_4_1_seed003_misses_by_exactly_the_sqrt_m_coefficient(m, C, seed):
    # rhs - lhs = -(1/sqrt(m) - 1/m - delta/m) scale <g,yhat>^2 < 0 whenever <g,yhat> != 0, m > 1
    d = instance(m, C, seed, eps=1e-12)
    s = T.thm_4_1(*args(d), eps=1e-12, form="seed003")
    _, _, yhat = T.bn_stats(d["y"], eps=1e-12)
    inner2 = ((d["g"] * yhat).sum(0)) ** 2
    expect = s.terms["scale"] * (s.terms["eps"] - inner2 * (1 / math.sqrt(m) - 1 / m))
    assert close(s.slack, expect, scale=s.terms["scale"] * s.terms["norm"])
    assert (s.slack < 0).all()


def test_thm_4_1_seed001_fails_because_its_left_side_is_not_squared():
    # same batch; Cai & Wei's lhs = ||gamma g|| = 1 but rhs = 1 - 1/2 - 1/2 = 0
    y = torch.tensor([[-1.0], [1.0]], dtype=DT)
    g = torch.tensor([[0.0], [1.0]], dtype=DT)
    gamma = torch.ones(1, dtype=DT)
    s = T.thm_4_1(y, g, T.bn_input_grad(y, g, gamma), gamma, form="seed001")
    assert s.lhs.item() == pytest.approx(1.0) and s.rhs.item() == pytest.approx(0.0, abs=1e-15)


@PROPERTY
@given(m_st, c_st, seed_st)
def test_thm_4_1_seed001_fails_for_every_small_enough_gradient(m, C, seed):
    # lhs is linear in g, rhs quadratic: scaling g by t < lhs/rhs breaks it (rhs <= 0 already does)
    d = instance(m, C, seed)
    s = T.thm_4_1(*args(d), eps=1e-5, form="seed001")
    t = 0.5 * float((s.lhs / s.rhs.clamp(min=1e-300)).min().clamp(max=2.0))
    small = T.thm_4_1(d["y"], t * d["g"], t * d["grad_y"], d["gamma"], eps=1e-5, form="seed001")
    assert (small.slack < 0).any()


def test_forms_are_validated():
    d = instance(4, 1, 0)
    with pytest.raises(ValueError, match="Unknown form 'paper' of Theorem 4.1; known: seed003"):
        T.thm_4_1(*args(d), form="paper")
    with pytest.raises(ValueError, match="needs top_eig"):
        T.eq_14(torch.eye(4, dtype=DT), d["grad_y"], hess_hat=d["hess_hat"], form="uniform")


# ---- Theorem 4.2 --------------------------------------------------------------------------------

@PROPERTY
@given(m_st, c_st, seed_st, eps_st, st.booleans())
def test_thm_4_2_exact_identity_holds_for_any_eps(m, C, seed, eps, per_unit):
    d = instance(m, C, seed, eps=eps)
    s = T.thm_4_2(*args(d), hess_hat=d["hess_hat"], hess=d["hess"], eps=eps, form="exact",
                  per_unit=per_unit)
    assert close(s.lhs, s.rhs, scale=s.terms["hess"].abs() + s.terms["bn_curv"].abs())


@PROPERTY
@given(m_st, c_st, seed_st, st.booleans())
def test_thm_4_2_seed000_form_is_an_equality_when_eps_vanishes(m, C, seed, per_unit):
    d = instance(m, C, seed, eps=1e-12)
    s = T.thm_4_2(*args(d), hess_hat=d["hess_hat"], hess=d["hess"], eps=1e-12, form="seed000",
                  per_unit=per_unit)
    assert close(s.lhs, s.rhs, scale=s.terms["hess"].abs() + s.terms["correction"].abs() + 1e-6)


def test_thm_4_2_curvature_matches_finite_differences():
    # independent oracle for lhs: central differences of autograd gradients along v, h = 1e-5
    # (truncation ~h^2 |f'''| ~ 1e-9, round-off ~1e-16/h ~ 1e-11)
    d = instance(5, 2, 3)
    v, h = d["grad_y"], 1e-5

    def grad_at(y):
        yy = y.clone().requires_grad_()
        return torch.autograd.grad(d["Lhat"](yy), yy)[0]

    fd = ((grad_at(d["y"] + h * v) - grad_at(d["y"] - h * v)) / (2 * h) * v).sum()
    s = T.thm_4_2(*args(d), hess_hat=d["hess_hat"], hess=d["hess"], eps=1e-5, form="exact",
                  per_unit=False)
    assert s.rhs.item() == pytest.approx(fd.item(), rel=1e-6)


@PROPERTY
@given(m_st, c_st, seed_st)
def test_thm_4_2_seed003_has_no_correction_and_fails_iff_g_anticorrelates(m, C, seed):
    # with ghat := grad_y (Santurkar et al.'s definition) <ghat, yhat> = 0, so rhs - lhs is the whole
    # correction gamma/(m sigma^2) <g,yhat> ||v||^2: negative exactly when <g, yhat> < 0
    eps = 1e-12
    d = instance(m, C, seed, eps=eps)
    p = T.thm_4_2(*args(d), hess_hat=d["hess_hat"], hess=d["hess"], eps=eps, form="seed003")
    q = T.thm_4_2(*args(d), hess_hat=d["hess_hat"], hess=d["hess"], eps=eps, form="seed000")
    assert close(p.terms["inner"], torch.zeros_like(p.terms["inner"]), scale=d["g"].norm() * m)
    scale = p.terms["hess"].abs() + q.terms["correction"].abs() + 1e-6
    assert close(p.slack, q.terms["correction"], scale=scale)


def test_thm_4_2_seed003_counterexample():
    for seed in range(50):  # the first instance with <g, yhat> < 0
        d = instance(4, 1, seed, eps=1e-12)
        s = T.thm_4_2(*args(d), hess_hat=d["hess_hat"], hess=d["hess"], eps=1e-12, form="seed003")
        _, _, yhat = T.bn_stats(d["y"], eps=1e-12)
        if (d["g"] * yhat).sum() < 0:
            assert s.lhs.item() > s.rhs.item() + 1e-6
            return
    pytest.fail("no instance with <g, yhat> < 0 in 50 seeds")


def test_thm_4_2_eq11_fails_even_when_H_preserves_norms():
    # H = c I preserves every relative norm (the extra assumption holds exactly); with
    # gamma >> sigma, ||v|| > ||g|| and rhs - lhs = scale c (||g||^2 - ||v||^2) < 0.
    m, c = 6, 0.01
    d = instance(m, 1, 7, eps=1e-12, gamma=40.0, Q=c * torch.eye(m, dtype=DT), wiggle=0.0)
    s = T.thm_4_2(*args(d), hess_hat=d["hess_hat"], hess=d["hess"], eps=1e-12, form="seed000_eq11")
    v2, g2 = (d["grad_y"] ** 2).sum(), (d["g"] ** 2).sum()
    assert v2 > g2
    assert close(s.slack, s.terms["scale"] * c * (g2 - v2), scale=s.terms["scale"] * c * v2)
    assert (s.slack < 0).all()


def test_thm_4_2_seed001_counterexample():
    # Cai & Wei's Thm 3.5 measures curvature along dLhat/dyhat = gamma g, which BN does not bound
    fails = []
    for seed in range(20):
        d = instance(4, 1, seed)
        s = T.thm_4_2(*args(d), hess_hat=d["hess_hat"], hess=d["hess"], eps=1e-5, form="seed001")
        fails.append(bool((s.slack < -1e-6).any()))
    assert any(fails) and not all(fails)


# ---- Observation 4.3 ----------------------------------------------------------------------------

@PROPERTY
@given(m_st, c_st, seed_st, eps_st)
def test_obs_4_3_gamma_sigma_beta_mu_reproduces_the_input_in_a_real_batchnorm(m, C, seed, eps):
    y = torch.randn(m, C, generator=torch.Generator().manual_seed(seed), dtype=DT) * 3 + 1
    s = T.obs_4_3(y, eps=eps)
    bn = torch.nn.BatchNorm1d(C, eps=eps).double().train()
    with torch.no_grad():  # the configuration the observation names, in the real layer
        bn.weight.copy_(s.terms["gamma"])
        bn.bias.copy_(s.terms["beta"])
    assert close(bn(y).detach(), y, scale=y.abs().max())
    assert close(s.rhs, s.lhs, scale=y.abs().max())


@PROPERTY
@given(m_st, c_st, seed_st, eps_st)
def test_bn_fold_is_an_affine_map_on_one_batch(m, C, seed, eps):
    gen = torch.Generator().manual_seed(seed)
    y = torch.randn(m, C, generator=gen, dtype=DT)
    gamma, beta = torch.randn(2, C, generator=gen, dtype=DT)
    s = T.bn_fold(y, gamma, beta, eps=eps)
    bn = torch.nn.BatchNorm1d(C, eps=eps).double().train()
    with torch.no_grad():
        bn.weight.copy_(gamma)
        bn.bias.copy_(beta)
    assert close(s.lhs, bn(y).detach(), scale=s.lhs.abs().max())
    assert close(s.lhs, s.rhs, scale=s.lhs.abs().max())


# ---- Theorem 4.4 and Oxford report eqs. 2-8 ----------------------------------------------------------

@PROPERTY
@given(m_st, c_st, seed_st, st.floats(0.05, 20.0))
def test_thm_4_4_corrected_holds_with_equality_as_eps_vanishes(m, C, seed, lam):
    d = instance(m, C, seed, eps=1e-12)
    s = T.thm_4_4(*args(d), lam=lam, eps=1e-12, form="corrected")
    assert close(s.lhs, s.rhs, scale=s.terms["scale"] * s.terms["g_plain"])


def test_thm_4_4_printed_forms_fail_on_a_gradient_along_yhat():
    # y = (-1, 1), g = (0, 1): ghat_j = 0 (BN kills every direction when m = 2) but with lam = 0.5
    # Santurkar et al.'s rhs = (g_j^2 - m mu_g^2 - lam^2 <g,yhat>^2) = (0.0625 - 0.5 - 0.25) = -0.6875
    # and the Oxford report's eq. 8 rhs = (0.25 - 0.125 - 0.25/sqrt(2)) = -0.0518
    y = torch.tensor([[-1.0], [1.0]], dtype=DT)
    g = torch.tensor([[0.0], [1.0]], dtype=DT)
    one = torch.ones(1, dtype=DT)
    gy = T.bn_input_grad(y, g, one)
    p = T.thm_4_4(y, g, gy, one, lam=0.5, form="seed003")
    q = T.thm_4_4(y, g, gy, one, lam=0.5, form="seed000")
    assert p.lhs.item() == pytest.approx(0.0, abs=1e-15)
    assert p.rhs.item() == pytest.approx(-0.6875)
    assert q.rhs.item() == pytest.approx(0.25 - 0.125 - 0.25 / math.sqrt(2))


def linear_bn(m, d_in, C, seed, eps=1e-5):
    """A real Linear -> BatchNorm1d -> non-convex loss; returns X, W and the loss of W."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(m, d_in, generator=gen, dtype=DT)
    W = torch.randn(C, d_in, generator=gen, dtype=DT)
    w, Q = torch.randn(m, C, generator=gen, dtype=DT), torch.randn(m, C, generator=gen, dtype=DT)
    bn = torch.nn.BatchNorm1d(C, eps=eps).double().train()

    def loss_of_y(y):
        z = bn(y)
        return (w * torch.sin(z)).sum() + 0.5 * (Q * z * z).sum()

    return X, W, loss_of_y


@PROPERTY
@given(m_st, st.integers(1, 6), c_st, seed_st)
def test_weight_gradient_is_X_transpose_grad_y_and_bounded_by_the_spectral_norm(m, d_in, C, seed):
    X, W, loss_of_y = linear_bn(m, d_in, C, seed)
    Wr = W.clone().requires_grad_()
    (grad_w,) = torch.autograd.grad(loss_of_y(X @ Wr.T), Wr)  # autograd, through the layer
    y = (X @ W.T).requires_grad_()
    (grad_y,) = torch.autograd.grad(loss_of_y(y), y)
    s = T.weight_grad_bound(X, grad_y, grad_w)
    assert close(s.terms["eq3"], grad_w, scale=grad_w.abs().max())
    assert (s.slack >= -REL * s.rhs).all()


@PROPERTY
@given(st.integers(2, 10), st.integers(1, 6), seed_st, st.floats(0.1, 10.0))
def test_worst_case_input_attains_the_maximum_and_random_inputs_stay_below(m, d_in, seed, lam):
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(m, generator=gen, dtype=DT)
    Xs = T.worst_case_input(v, lam=lam, d=d_in)
    assert torch.linalg.matrix_norm(Xs, ord=2).item() == pytest.approx(lam)
    assert ((Xs.T @ v) ** 2).sum().item() == pytest.approx(lam**2 * (v**2).sum().item())
    X = torch.randn(m, d_in, generator=gen, dtype=DT)
    X = lam * X / torch.linalg.matrix_norm(X, ord=2)
    assert ((X.T @ v) ** 2).sum() <= lam**2 * (v**2).sum() * (1 + REL)


# ---- Oxford report eqs. 12-16 -------------------------------------------------------------------------

@PROPERTY
@given(m_st, st.integers(1, 6), c_st, seed_st, st.booleans())
def test_eq_13_weight_space_curvature_matches_autograd_in_W(m, d_in, C, seed, per_unit):
    X, W, loss_of_y = linear_bn(m, d_in, C, seed)
    Wr = W.clone().requires_grad_()
    (grad_w,) = torch.autograd.grad(loss_of_y(X @ Wr.T), Wr, create_graph=True)
    D = grad_w.detach()
    rows = [torch.zeros_like(D).index_copy(0, torch.tensor([j]), D[j:j + 1]) for j in range(C)]
    dirs = rows if per_unit else [D]
    oracle = torch.stack([(u * torch.autograd.grad(grad_w, Wr, u, retain_graph=True)[0]).sum()
                          for u in dirs])
    y = (X @ W.T).requires_grad_()
    (grad_y,) = torch.autograd.grad(loss_of_y(y), y, create_graph=True)
    s = T.eq_14(X, grad_y.detach(), per_unit=per_unit,
                hess_hat=lambda u: torch.autograd.grad(grad_y, y, u, retain_graph=True)[0])
    assert close(s.lhs.reshape(-1), oracle, scale=oracle.abs().max() + 1e-12)


def test_eq_14_fails_when_X_turns_the_gradient_towards_sharper_directions():
    # A = diag(1, 0), v = (0, 1): lam^4 v^T A v = 0, but X X^T v = (1/2, 1/2) for the ||X||_2 = 1
    # input below, so the weight-space form is (1/2)^2 = 0.25 > 0.
    A = torch.diag(torch.tensor([1.0, 0.0], dtype=DT))
    v = torch.tensor([[0.0], [1.0]], dtype=DT)
    X = torch.tensor([[0.5, 0.5], [0.5, 0.5]], dtype=DT)  # = 1 1^T / 2, spectral norm 1

    def hess_hat(u):
        return A @ u

    s = T.eq_14(X, v, hess_hat=hess_hat, form="seed000")
    assert s.lhs.item() == pytest.approx(0.25) and s.rhs.item() == pytest.approx(0.0)
    u = T.eq_14(X, v, hess_hat=hess_hat, form="uniform", top_eig=1.0)
    assert u.rhs.item() == pytest.approx(1.0)  # the uniform bound lam^4 ||v||^2 lambda_max holds


@PROPERTY
@given(st.integers(2, 8), st.integers(1, 8), seed_st, st.floats(0.1, 5.0))
def test_eq_14_uniform_bound_holds_for_any_input_of_bounded_norm(m, d_in, seed, lam):
    gen = torch.Generator().manual_seed(seed)
    B = torch.randn(m, m, generator=gen, dtype=DT)
    A = (B + B.T) / 2
    top = torch.linalg.eigvalsh(A)[-1].item()  # dense eigensolver, the oracle for lambda_max
    X = torch.randn(m, d_in, generator=gen, dtype=DT)
    X = lam * X / torch.linalg.matrix_norm(X, ord=2)
    v = torch.randn(m, 1, generator=gen, dtype=DT)
    s = T.eq_14(X, v, hess_hat=lambda u: A @ u, form="uniform", top_eig=top)
    assert (s.slack >= -REL * s.rhs.abs()).all()


def test_eq_16_corrected_is_the_weight_space_form_at_the_worst_case_input():
    d, lam = instance(6, 1, 11, eps=1e-12), 1.7
    v = d["grad_y"]
    Xs = T.worst_case_input(v[:, 0], lam=lam, d=3)
    at_worst = T.eq_14(Xs, v, hess_hat=d["hess_hat"], per_unit=True)
    s = T.eq_16(*args(d), hess_hat=d["hess_hat"], hess=d["hess"], lam=lam, eps=1e-12)
    assert close(at_worst.lhs, s.lhs) and close(at_worst.lhs, at_worst.rhs)
    assert close(s.lhs, s.rhs, scale=lam**4 * (s.terms["hess"].abs() + s.terms["correction"].abs()))


def test_eq_16_printed_fails_as_lam_grows():
    # lhs scales as lam^4 but the printed g^T H g term does not: a large lam breaks it whenever
    # the activation-space form v^T A v is positive
    for seed in range(20):
        d = instance(5, 1, seed, eps=1e-12)
        s1 = T.eq_16(*args(d), hess_hat=d["hess_hat"], hess=d["hess"], lam=1.0, eps=1e-12,
                     form="seed000")
        if s1.lhs.item() > 0:
            lam = 2 * (abs(s1.terms["plain_hess"].item()) / s1.lhs.item()) ** 0.25 + 2
            s = T.eq_16(*args(d), hess_hat=d["hess_hat"], hess=d["hess"], lam=lam, eps=1e-12,
                        form="seed000")
            assert s.lhs.item() > s.rhs.item()
            return
    pytest.fail("no instance with a positive curvature along the gradient in 20 seeds")


# ---- Lemma 4.5 -----------------------------------------------------------------------------------

@PROPERTY
@given(st.integers(1, 5), st.integers(1, 6), seed_st)
def test_lemma_4_5_is_an_equality_on_the_ray_and_per_unit_scaling_is_closer(C, fan_in, seed):
    gen = torch.Generator().manual_seed(seed)
    Ws = torch.randn(C, fan_in, generator=gen, dtype=DT)
    W0 = Ws + torch.randn(C, fan_in, generator=gen, dtype=DT)  # <W0, W*> > 0 not guaranteed
    s = T.lemma_4_5(W0, Ws)
    if s.terms["inner"] > 0:
        assert close(s.lhs, s.rhs, scale=s.terms["dist_plain"])
    assert T.lemma_4_5(W0, Ws, per_unit=True).lhs <= s.lhs * (1 + REL)


def test_lemma_4_5_needs_a_positive_inner_product():
    # W0 = -W*: the closest BN optimum on the ray is c -> 0, at distance ||W0||^2 = 1, but the
    # printed right side is ||2 W*||^2 - (1 + 1)^2 / 1 = 0
    Ws = torch.tensor([[1.0]], dtype=DT)
    s = T.lemma_4_5(-Ws, Ws)
    assert s.lhs.item() == pytest.approx(1.0) and s.rhs.item() == pytest.approx(0.0)


def test_units_round_trip_for_conv_activations():
    t = torch.arange(2 * 3 * 4 * 5, dtype=DT).reshape(2, 3, 4, 5)
    u = T.to_units(t)
    assert u.shape == (2 * 4 * 5, 3)
    assert torch.equal(u[:, 1].sort().values, t[:, 1].reshape(-1).sort().values)
    assert torch.equal(T.from_units(u, t.shape), t)


# ---- bnlib.probes.capture: the statements on a real network ------------------------------------

def tiny_net(norm="bn", seed=0, n=12):
    """Linear(5, 4) -> BN -> ReLU -> Linear(4, 3), float64, with moved running statistics."""
    torch.manual_seed(seed)
    model = models.mlp(norm=norm, sizes=(5, 4, 3), norm_after_relu=False, seed=seed).double()
    X = torch.randn(n, 5, dtype=DT)
    y = torch.randint(0, 3, (n,))
    with torch.no_grad():
        model(X + 1)  # running statistics away from (0, 1)
    model.eval()  # capture must not care which mode the model is left in
    return model, X, y


def snapshot(model):
    return ([p.detach().clone() for p in model.parameters()],
            [b.detach().clone() for b in model.buffers()],
            [m.training for m in model.modules()], torch.get_rng_state())


def test_capture_leaves_the_model_untouched():
    model, X, y = tiny_net()
    before = snapshot(model)
    cap = P.capture(model, model[2], X, y, layer=model[1])
    cap.hess_hat(cap.grad_y)
    after = snapshot(model)
    assert all(torch.equal(a, b) for a, b in zip(before[0] + before[1], after[0] + after[1]))
    assert before[2] == after[2] and torch.equal(before[3], after[3])


def test_capture_matches_plain_backprop_and_finite_differences():
    model, X, y = tiny_net()
    bn, lin = model[2], model[1]
    cap = P.capture(model, bn, X, y, layer=lin)
    assert max(cap.losses) - min(cap.losses) <= 1e-12  # the same function, three ways

    # oracle: ordinary backward on a train-mode copy, and the BN input recorded by a hook
    ref = copy.deepcopy(model).train()
    nn.functional.cross_entropy(ref(X), y).backward()
    assert torch.allclose(cap.grad_w, ref[1].weight.grad, rtol=1e-10, atol=1e-14)
    assert close(cap.grad_y, T.bn_input_grad(cap.y, cap.g, cap.gamma, eps=cap.eps),
                 scale=cap.grad_y.abs().max())

    def grad_at(yy):  # dLhat/dy at the BN input yy, by plain backward with an input hook
        net = copy.deepcopy(model).train()
        leaf = yy.clone().requires_grad_()
        net[2].register_forward_pre_hook(lambda m, i: (leaf,))
        nn.functional.cross_entropy(net(X), y).backward()
        return leaf.grad

    u, h = cap.grad_y, 1e-5  # central differences, as in test_thm_4_2_curvature_matches_...
    fd = (grad_at(cap.y + h * u) - grad_at(cap.y - h * u)) / (2 * h)
    assert torch.allclose(cap.hess_hat(u), fd, rtol=1e-5, atol=1e-9)


def test_measure_on_a_real_network_corrected_forms_hold_and_printed_thm_4_1_fails():
    model, X, y = tiny_net(n=16)
    cap = P.capture(model, model[2], X, y, layer=model[1])
    res = P.measure(cap)
    for key in ("thm_4_1/exact", "thm_4_2/exact"):  # identities with the eps terms
        assert np.abs(P.rel_slack(res, key)).max() < 1e-10, key
    for key in ("thm_4_1/corrected", "thm_4_4/corrected"):  # bounds: slack = the eps term >= 0
        assert P.rel_slack(res, key).min() > -1e-12, key
    # eps-free identities: off by O(delta), delta = eps / sigma^2 ~ 1e-5 here
    assert np.abs(P.rel_slack(res, "eq_16/corrected")).max() < 1e-4
    assert (P.rel_slack(res, "eq_5/corrected") >= 0).all()
    assert (P.rel_slack(res, "thm_4_1/seed003") < 0).any()


def test_conv_layers_are_captured_per_channel():
    torch.manual_seed(0)
    model = models.lenet(norm="bn", image_size=32).double()
    X, y = torch.randn(3, 3, 32, 32, dtype=DT), torch.randint(0, 10, (3,))
    cap = P.capture(model, model[1], X, y)
    assert cap.y.shape == (3 * 28 * 28, 6)
    s = T.thm_4_1(cap.y, cap.g, cap.grad_y, cap.gamma, eps=cap.eps, form="exact")
    assert close(s.lhs, s.rhs, scale=s.terms["scale"] * s.terms["norm"])


def test_bn_twin_reproduces_the_plain_network_on_its_batch_and_in_eval_mode():
    plain, X, _ = tiny_net(norm="none", seed=1)
    bn_net, _, _ = tiny_net(norm="bn", seed=2)
    twin = P.bn_twin(plain, bn_net, X)
    X2 = torch.randn(9, 5, dtype=DT)
    with torch.no_grad():
        out = plain(X)
        assert torch.allclose(copy.deepcopy(twin).train()(X), out, atol=1e-12)
        assert torch.allclose(twin.eval()(X2), plain(X2), atol=1e-12)
        assert not torch.allclose(copy.deepcopy(twin).train()(X2), plain(X2), atol=1e-3)
    with pytest.raises(ValueError, match="nn.Identity where BN sits"):
        P.bn_twin(bn_net, bn_net, X)


def test_rescaled_loss_is_scale_invariant_up_to_eps():
    model, X, y = tiny_net()
    c = torch.tensor([0.1, 3.0, 10.0, 0.5], dtype=DT)
    s = P.rescaled_loss(model, model[1], X, y, scale=c)
    # the train-mode loss moves only through eps = 1e-5 against variances ~ 1
    assert s.lhs.item() == pytest.approx(s.rhs.item(), rel=1e-4)
    model[2].eps = 1e-30
    s = P.rescaled_loss(model, model[1], X, y, scale=c)
    assert s.lhs.item() == pytest.approx(s.rhs.item(), rel=1e-12)


def test_layer_choices_are_validated():
    model = models.vgg(11, width=0.125, norm="bn")
    with pytest.raises(ValueError, match=r"conv_bn must be in \[1, 8\]"):
        P.probe_layers(model, 9)
    with pytest.raises(ValueError, match="needs a BatchNorm1d/2d layer; got ReLU"):
        P.capture(model, model[2], torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))


def test_random_instances_reproduce_the_summary():
    inst = P.random_instances(60, seed=3)
    assert np.mean(P.rel_slack(inst, "thm_4_1/seed003") < -1e-9) > 0.9
    for key in ("thm_4_1/corrected", "thm_4_2/seed000", "thm_4_2/exact", "thm_4_4/corrected",
                "eq_16/corrected"):
        assert P.rel_slack(inst, key).min() > -1e-9, key
    assert inst["obs_4_3/err"].max() < 1e-12


def test_plain_copy_keeps_the_weights_and_replaces_every_bn():
    model = models.lenet(norm="bn", seed=0).double()
    plain = P.plain_copy(model)
    assert not any(isinstance(m, P.BN_TYPES) for m in plain.modules())
    assert any(isinstance(m, P.BN_TYPES) for m in model.modules())  # the original is untouched
    ref = models.lenet(norm="none", seed=0).double()  # oracle: the builder's plain network
    ref.load_state_dict({k: v for k, v in model.state_dict().items() if k in ref.state_dict()})
    X = torch.randn(4, 3, 32, 32, dtype=DT, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(plain.eval()(X), ref.eval()(X))


def test_observation_4_3_on_a_network():
    model, X, _ = tiny_net(n=16)
    X2 = torch.randn(16, 5, dtype=DT, generator=torch.Generator().manual_seed(5))
    before = snapshot(model)
    obs = P.observation_4_3(model, X, X2)
    assert obs["obs_4_3/same"] < 1e-12 and obs["obs_4_3/other_eval"] < 1e-12  # float64 round-off
    assert obs["obs_4_3/other"] > 1e-3  # another batch has other statistics
    after = snapshot(model)
    assert all(torch.equal(a, b) for a, b in zip(before[0] + before[1], after[0] + after[1]))


# ---- the probe specs on stored checkpoints -----------------------------------------------------

def lenet_trajectory(steps=4):
    """LeNet with BN (two conv BN, two Linear -> BN1d) on 64 CIFAR-10 images, 16 per step."""
    from bnlib.data import DataSpec
    from bnlib.models import ModelSpec
    from bnlib.runs import Trajectory
    from bnlib.train import TrainConfig

    return Trajectory(DataSpec("cifar10-mini", train_size=64, test_size=32), ModelSpec("lenet", norm="bn"),
                      TrainConfig("sgd", lr=0.05, batch_size=16, num_steps=steps, eval_every=steps,
                                  record_every=2, record_size=16), seed=0)


def test_statements_on_a_checkpoint_equal_a_direct_capture_and_leave_it_untouched(tmp_path):
    from bnlib import runs

    store, traj = runs.Store(tmp_path, progress=False), lenet_trajectory()
    res = store.probe(traj, P.Statements(conv_bn=2), steps=(0, 2))
    assert list(res["step"]) == [0, 2]
    tr = next(store.states(traj, (2,)))  # oracle: the same step's model and batch, by hand
    X, y = tr.batch(2)
    before = snapshot(tr.model)
    layers = P.probe_layers(tr.model, 2)
    for name, (layer, bn) in layers.items():
        direct = P.measure(P.capture(tr.model, bn, X, y, layer=layer if name == "fc" else None))
        for k, v in direct.items():
            np.testing.assert_array_equal(res[f"{name}/{k}"][1], v, err_msg=k)
    P.Statements(conv_bn=2).measure(tr.context())
    after = snapshot(tr.model)
    assert all(torch.equal(a, b) for a, b in zip(before[0] + before[1], after[0] + after[1]))
    assert before[2] == after[2] and torch.equal(before[3], after[3])
    # the statements that are identities hold on the network to float32 round-off
    for key in ("thm_4_1/exact", "thm_4_2/exact"):
        assert np.abs(P.rel_slack(res, key, "fc/")).max() < 1e-4, key
    other = store.probe(traj, P.Statements(conv_bn=1), steps=(2,))  # a new parameter re-probes
    assert not np.array_equal(other["conv/m"], res["conv/m"][1:]) and store.trained == [traj.key()]


def test_end_checks_and_lemma_on_a_stored_trajectory(tmp_path):
    from bnlib import runs

    store, traj = runs.Store(tmp_path, progress=False), lenet_trajectory()
    end = store.probe(traj, P.EndChecks(conv_bn=1, seed=3), steps=(4,))
    assert end["obs_4_3/same"][0] < 1e-4 and end["obs_4_3/other_eval"][0] < 1e-4  # float32
    for k in ("conv", "fc"):  # BN's scale invariance: only eps moves the loss
        assert end[f"scale_inv/{k}/rhs"][0] == pytest.approx(end[f"scale_inv/{k}/lhs"][0], rel=1e-3)
    lem = P.lemma_4_5_layers(store.model_at(traj, 0), store.model_at(traj), conv_bn=1)
    # W0 is the initialisation: the checkpoint of step 0 is what the builder makes from the seed
    assert torch.equal(store.model_at(traj, 0)[0].weight, models.build(traj.model, traj.seed)[0].weight)
    for k in ("conv", "fc"):  # <W0, W*> > 0 after 4 small steps, so the lemma is an equality
        assert lem[f"lemma_4_5/{k}/inner"] > 0
        assert lem[f"lemma_4_5/{k}/global/lhs"] == pytest.approx(lem[f"lemma_4_5/{k}/global/rhs"], rel=1e-4)
        assert lem[f"lemma_4_5/{k}/unit/lhs"] <= lem[f"lemma_4_5/{k}/global/lhs"] * (1 + 1e-6)
