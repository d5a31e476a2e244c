"""Both sides of every statement of Santurkar et al. (2018, Sec. 4) and of the Oxford report's Sec. 2.

Each function returns a ``Sides``: the left and right side of one statement, per unit, the
relation the statement claims (``"<="`` or ``"=="``) and the named terms of the right side.
Printed variants are selected with ``form=``; ``"corrected"``/``"exact"`` are the forms the
book proves. Nothing here returns a bare boolean: compare ``lhs`` and ``rhs`` yourself.

Conventions (the paper's, made explicit). One BN unit j sees a batch ``y_j`` of m numbers;
tensors are (m, C), one column per unit (a conv channel has m = N*H*W). ``sigma`` is what BN
divides by, sqrt(biased variance + eps); ``yhat = (y - mu) / sigma``; ``z = gamma*yhat + beta``.
``g = dL/dz`` is the gradient of the downstream loss L (the "identical non-BN network"),
evaluated at z, and ``grad_y = dLhat/dy`` the gradient through BN, from autograd. Inner
products and norms are sums over the batch, never means. With eps = 0, ||yhat||^2 = m and the
corrected statements are identities; eps > 0 adds terms in ``delta = eps / sigma^2``.
Second-order statements take Hessian-vector products as callables on (m, C) tensors:
``hess_hat(u)`` = (d^2 Lhat / dy^2) u and ``hess(u)`` = (d^2 L / dz^2) u.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

HVP = Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Sides:
    """The two sides of one statement ``lhs <relation> rhs``, per unit (or summed)."""

    lhs: Tensor
    rhs: Tensor
    relation: str  # "<=" or "=="
    terms: dict[str, Tensor] = field(default_factory=dict)

    @property
    def slack(self) -> Tensor:
        """rhs - lhs: >= 0 where a "<=" holds, ~0 where an "==" holds."""
        return self.rhs - self.lhs


def _check_form(form: str, forms: tuple[str, ...], name: str) -> None:
    if form not in forms:
        raise ValueError(f"Unknown form {form!r} of {name}; known: {', '.join(forms)}")


def bn_stats(y: Tensor, *, eps: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    """Batch mean (C,), sigma = sqrt(biased var + eps) (C,) and yhat (m, C), as BN computes them."""
    mu = y.mean(0)
    sigma = (y.var(0, unbiased=False) + eps).sqrt()
    return mu, sigma, (y - mu) / sigma


def bn_forward(y: Tensor, gamma: Tensor, beta: Tensor, *, eps: float = 0.0) -> Tensor:
    """Train-mode BN of (m, C) inputs: gamma * yhat + beta."""
    return gamma * bn_stats(y, eps=eps)[2] + beta


def bn_input_grad(y: Tensor, g: Tensor, gamma: Tensor, *, eps: float = 0.0) -> Tensor:
    """dLhat/dy = (gamma/sigma) (g - mean(g) - yhat mean(g yhat)), exact for any eps.

    The Jacobian dz/dy is symmetric, so this is also J u for any direction u (pass u as g).
    """
    _, sigma, yhat = bn_stats(y, eps=eps)
    return gamma / sigma * (g - g.mean(0) - yhat * (g * yhat).mean(0))  # (m, C)


def _sq(t: Tensor) -> Tensor:
    return (t * t).sum(0)


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(0)


THM_4_1_FORMS = ("seed003", "seed001", "corrected", "exact")


def thm_4_1(y: Tensor, g: Tensor, grad_y: Tensor, gamma: Tensor, *, eps: float = 0.0,
            form: str = "corrected") -> Sides:
    """Theorem 4.1, Lipschitzness w.r.t. activations, per unit.

    ``seed003``: ||grad_y||^2 <= gamma^2/sigma^2 (||g||^2 - <1,g>^2/m - <g,yhat>^2/sqrt(m)), as
    printed by Santurkar et al. (and the Oxford report, eq. 1). ``seed001``: Cai & Wei's Theorem 3.4, whose left
    side is ||dLhat/dyhat|| = ||gamma g||, not squared, with 1/m on the last term.
    ``corrected``: squared left side, 1/m on both terms. ``exact``: the identity with eps,
    ||grad_y||^2 = gamma^2/sigma^2 (||g||^2 - <1,g>^2/m - (1 + delta) <g,yhat>^2/m).
    """
    _check_form(form, THM_4_1_FORMS, "Theorem 4.1")
    m = y.shape[0]
    _, sigma, yhat = bn_stats(y, eps=eps)
    terms = {"scale": gamma**2 / sigma**2, "norm": _sq(g), "mean": g.sum(0) ** 2 / m,
             "corr": _dot(g, yhat) ** 2 / m, "eps": eps / sigma**2 * _dot(g, yhat) ** 2 / m}
    corr, lhs, relation = terms["corr"], _sq(grad_y), "<="
    if form == "seed003":
        corr = _dot(g, yhat) ** 2 / math.sqrt(m)
    elif form == "seed001":
        lhs = _sq(gamma * g).sqrt()
    elif form == "exact":
        corr, relation = corr + terms["eps"], "=="
    rhs = terms["scale"] * (terms["norm"] - terms["mean"] - corr)
    return Sides(lhs, rhs, relation, terms)


def _masked(u: Tensor, j: int) -> Tensor:
    out = torch.zeros_like(u)
    out[:, j] = u[:, j]
    return out


def quad(hvp: HVP, u: Tensor, *, per_unit: bool = True, coupled: bool = True) -> Tensor:
    """u^T H u per unit (C,), each unit's block alone, or for the whole layer (scalar).

    ``coupled=False`` promises that H couples no two units (block diagonal), so one product
    gives every unit's form; otherwise each unit costs one product.
    """
    if not per_unit:
        return (u * hvp(u)).sum()
    if not coupled:
        return (u * hvp(u)).sum(0)
    return torch.stack([(_masked(u, j) * hvp(_masked(u, j))).sum() for j in range(u.shape[1])])


def _bn_second_order(y: Tensor, g: Tensor, v: Tensor, gamma: Tensor, eps: float) -> Tensor:
    """sum_k g_k v^T (d^2 z_k / dy^2) v per unit: the curvature BN itself adds along v.

    From d^2/dt^2 gamma <g, (u + t v) / s(t)> at t = 0, u = y - mu, v centred,
    s(t)^2 = ||u + t v||^2 / m + eps. With eps = 0 it is -gamma <g,yhat> ||v||^2 / (m sigma^2).
    """
    m = y.shape[0]
    u = y - y.mean(0)
    s = (_sq(u) / m + eps).sqrt()
    uv = _dot(u, v)
    return gamma * (_dot(g, u) * (3 * uv**2 / (m**2 * s**5) - _sq(v) / (m * s**3))
                    - 2 * _dot(g, v) * uv / (m * s**3))


THM_4_2_FORMS = ("seed003", "seed000", "seed000_eq11", "seed001", "exact")


def thm_4_2(y: Tensor, g: Tensor, grad_y: Tensor, gamma: Tensor, *, hess_hat: HVP, hess: HVP,
            eps: float = 0.0, form: str = "seed000", per_unit: bool = True,
            coupled: bool = True) -> Sides:
    """Theorem 4.2, the Hessian quadratic form along the gradient v = grad_y.

    lhs = v^T (d^2 Lhat/dy^2) v. First form: rhs = gamma^2/sigma^2 v^T H v
    - gamma/(m sigma^2) <ghat, yhat> ||v||^2, with ghat = grad_y as Santurkar et al. define it
    (``seed003``; then <ghat, yhat> = 0) or ghat = g as seeds 000 (eq. 10) and 001 read it
    (``seed000``). ``seed000_eq11``: the second display (Oxford report eq. 11), v^T H v replaced by
    g^T H g (with ghat = grad_y the second display is the first one again). ``seed001``: its
    Theorem 3.5, left side along dLhat/dyhat = gamma g and ||gamma g||^2 in the last term.
    ``exact``: the identity for any eps,
    lhs = (J v)^T H (J v) + sum_k g_k v^T (d^2 z_k/dy^2) v. ``per_unit=False`` sums the units
    (cross-unit Hessian blocks included, where the same forms hold); ``coupled`` as in ``quad``.
    """
    _check_form(form, THM_4_2_FORMS, "Theorem 4.2")
    m = y.shape[0]
    _, sigma, yhat = bn_stats(y, eps=eps)
    v = grad_y

    def total(t: Tensor) -> Tensor:
        return t if per_unit else t.sum()

    ghat = v if form == "seed003" else g
    terms = {"scale": gamma**2 / sigma**2, "inner": _dot(ghat, yhat), "grad_sq": _sq(v)}
    if form == "exact":
        lhs = quad(hess_hat, v, per_unit=per_unit, coupled=coupled)
        terms["bn_curv"] = total(_bn_second_order(y, g, v, gamma, eps))
        terms["hess"] = quad(hess, bn_input_grad(y, v, gamma, eps=eps), per_unit=per_unit,
                             coupled=coupled)
        return Sides(lhs, terms["hess"] + terms["bn_curv"], "==", terms)
    direction, norm_sq = v, terms["grad_sq"]
    if form == "seed001":
        direction, norm_sq = gamma * g, _sq(gamma * g)
    lhs = quad(hess_hat, direction, per_unit=per_unit, coupled=coupled)
    along = g if form == "seed000_eq11" else v
    terms["hess"] = quad(hess, gamma / sigma * along, per_unit=per_unit, coupled=coupled)
    terms["correction"] = total(gamma / (m * sigma**2) * terms["inner"] * norm_sq)
    return Sides(lhs, terms["hess"] - terms["correction"], "<=", terms)


def obs_4_3(y: Tensor, *, eps: float = 0.0) -> Sides:
    """Observation 4.3: with gamma = sigma and beta = mu, BN returns its input (m, C) unchanged."""
    mu, sigma, _ = bn_stats(y, eps=eps)
    return Sides(y, bn_forward(y, sigma, mu, eps=eps), "==", {"gamma": sigma, "beta": mu})


def bn_fold(y: Tensor, gamma: Tensor, beta: Tensor, *, eps: float = 0.0) -> Sides:
    """On one batch BN is the affine map a*y + b (a = gamma/sigma, b = beta - a mu): a plain layer
    with rows scaled by a and bias shifted by b computes the same (why minima are kept)."""
    mu, sigma, _ = bn_stats(y, eps=eps)
    a = gamma / sigma
    b = beta - a * mu
    return Sides(bn_forward(y, gamma, beta, eps=eps), a * y + b, "==", {"a": a, "b": b})


THM_4_4_FORMS = ("seed003", "seed000", "corrected")


def thm_4_4(y: Tensor, g: Tensor, grad_y: Tensor, gamma: Tensor, *, lam: float | Tensor,
            eps: float = 0.0, form: str = "corrected") -> Sides:
    """Theorem 4.4, worst-case weight-gradient norms over inputs ||X||_2 <= lam, per unit.

    With the activation gradients held fixed, max ||X^T u||^2 = lam^2 ||u||^2, so
    lhs = ghat_j = lam^2 ||grad_y||^2 and g_j = lam^2 ||g||^2. ``seed003`` (as printed):
    rhs = gamma^2/sigma^2 (g_j^2 - m mu_g^2 - lam^2 <g,yhat>^2), mu_g the batch mean of g.
    ``seed000`` (its eq. 8): gamma^2/sigma^2 (g_j - lam^2 <1,g>^2/m - lam^2 <g,yhat>^2/sqrt(m)).
    ``corrected``: 1/m on the last term, equality when eps = 0.
    """
    _check_form(form, THM_4_4_FORMS, "Theorem 4.4")
    m = y.shape[0]
    _, sigma, yhat = bn_stats(y, eps=eps)
    lam2 = torch.as_tensor(lam, dtype=y.dtype) ** 2
    terms = {"scale": gamma**2 / sigma**2, "g_plain": lam2 * _sq(g),
             "mean": lam2 * g.sum(0) ** 2 / m, "corr": lam2 * _dot(g, yhat) ** 2 / m}
    if form == "seed003":
        rhs = terms["scale"] * (terms["g_plain"] ** 2 - m * g.mean(0) ** 2
                                - lam2 * _dot(g, yhat) ** 2)
    else:
        corr = terms["corr"] * (math.sqrt(m) if form == "seed000" else 1.0)
        rhs = terms["scale"] * (terms["g_plain"] - terms["mean"] - corr)
    return Sides(lam2 * _sq(grad_y), rhs, "<=", terms)


def weight_grad_bound(X: Tensor, grad_y: Tensor, grad_w: Tensor) -> Sides:
    """Oxford report eqs. 3-5 for a linear layer y = X W^T (+ b): per unit j,
    ||grad_w_j||^2 (autograd's, rows of the (C, d) weight gradient) <= ||X||_2^2 ||grad_y_j||^2.
    ``terms["eq3"]`` is X^T grad_y, the weight gradient eq. 3 predicts, (C, d)."""
    lam2 = torch.linalg.matrix_norm(X, ord=2) ** 2
    return Sides((grad_w * grad_w).sum(1), lam2 * _sq(grad_y), "<=",
                 {"eq3": grad_y.T @ X, "lam": lam2.sqrt()})


def worst_case_input(v: Tensor, *, lam: float, d: int) -> Tensor:
    """An input X (m, d) with ||X||_2 = lam that attains max ||X^T v||^2 = lam^2 ||v||^2 (rank one;
    the Oxford report's X X^T = lam^2 I is impossible when d < m)."""
    X = torch.zeros(v.shape[0], d, dtype=v.dtype)
    X[:, 0] = lam * v / v.norm()
    return X


EQ_14_FORMS = ("seed000", "uniform")


def eq_14(X: Tensor, grad_y: Tensor, *, hess_hat: HVP, lam: float | None = None,
          top_eig: float | None = None, form: str = "seed000", per_unit: bool = False) -> Sides:
    """Oxford report eqs. 12-14: the weight-space quadratic form along the weight gradient.

    y = X W^T is linear in W, so d^2 Lhat/dW^2 = X^T A X with A = d^2 Lhat/dy^2 (eq. 12) and
    lhs = (X X^T v)^T A (X X^T v) at this X (eq. 13). ``seed000`` (eq. 14): rhs = lam^4 v^T A v,
    claimed to be the max over ||X||_2 <= lam. ``uniform``: rhs = lam^4 ||v||^2 max(top_eig, 0),
    top_eig the largest eigenvalue of A (which the caller computes).
    """
    _check_form(form, EQ_14_FORMS, "Oxford report eq. 14")
    lam = float(torch.linalg.matrix_norm(X, ord=2)) if lam is None else lam
    v = grad_y
    lhs = quad(hess_hat, X @ (X.T @ v), per_unit=per_unit)
    if form == "uniform":
        if top_eig is None:
            raise ValueError("eq_14(form='uniform') needs top_eig, the largest eigenvalue of "
                             "d^2 Lhat/dy^2 (e.g. from torch.linalg.eigvalsh or Lanczos)")
        sq = _sq(v) if per_unit else _sq(v).sum()
        return Sides(lhs, lam**4 * sq * max(top_eig, 0.0), "<=", {"lam": torch.tensor(lam)})
    return Sides(lhs, lam**4 * quad(hess_hat, v, per_unit=per_unit), "<=",
                 {"lam": torch.tensor(lam)})


EQ_16_FORMS = ("seed000", "corrected")


def eq_16(y: Tensor, g: Tensor, grad_y: Tensor, gamma: Tensor, *, hess_hat: HVP, hess: HVP,
          lam: float | Tensor, eps: float = 0.0, form: str = "corrected", per_unit: bool = True,
          coupled: bool = True) -> Sides:
    """Oxford report eqs. 15-16: the worst case over ||X||_2 <= lam of the weight-space quadratic form,
    taken at the inputs that maximise the gradient norm (X X^T v = lam^2 v): lhs = lam^4 v^T A v.

    ``seed000`` (as printed): rhs = gamma^2/sigma^2 (g^T H g - lam^4/(m gamma) <g,yhat> ||v||^2).
    ``corrected``: lam^4 times Theorem 4.2's identity, lam^4 (gamma^2/sigma^2 v^T H v
    - gamma/(m sigma^2) <g,yhat> ||v||^2).
    """
    _check_form(form, EQ_16_FORMS, "Oxford report eq. 16")
    s = thm_4_2(y, g, grad_y, gamma, hess_hat=hess_hat, hess=hess, eps=eps, form="seed000",
                per_unit=per_unit, coupled=coupled)
    if form == "corrected":
        return Sides(lam**4 * s.lhs, lam**4 * s.rhs, "<=", s.terms)
    _, sigma, _ = bn_stats(y, eps=eps)
    plain = quad(hess, gamma / sigma * g, per_unit=per_unit, coupled=coupled)
    return Sides(lam**4 * s.lhs, plain - lam**4 * s.terms["correction"], "<=",
                 {**s.terms, "plain_hess": plain})


def lemma_4_5(W0: Tensor, W_star: Tensor, *, per_unit: bool = False) -> Sides:
    """Lemma 4.5: BN makes the loss invariant to positive scalings of W, so c W* is a BN optimum
    whenever W* is. lhs = ||W0 - c W*||^2 at the best c >= 0 (one c, or one per row/unit if
    ``per_unit``), an upper bound on the distance to the closest BN optimum; rhs = the printed
    ||W0 - W*||^2 - (||W*||^2 - <W*, W0>)^2 / ||W*||^2 (which assumes <W0, W*> > 0).
    """
    W0, Ws = W0.reshape(W0.shape[0], -1), W_star.reshape(W_star.shape[0], -1)  # (C, fan_in)
    if per_unit:
        c = ((W0 * Ws).sum(1) / (Ws * Ws).sum(1)).clamp(min=0)[:, None]
    else:
        c = ((W0 * Ws).sum() / (Ws * Ws).sum()).clamp(min=0)
    inner, norm2 = (W0 * Ws).sum(), (Ws * Ws).sum()
    dist = ((W0 - Ws) ** 2).sum()
    return Sides(((W0 - c * Ws) ** 2).sum(), dist - (norm2 - inner) ** 2 / norm2, "<=",
                 {"c": c.squeeze(), "inner": inner, "dist_plain": dist})


def to_units(t: Tensor) -> Tensor:
    """(N, C) or (N, C, H, W) activations as (m, C) columns, m = N or N*H*W."""
    return t if t.dim() == 2 else t.transpose(0, 1).reshape(t.shape[1], -1).T


def from_units(u: Tensor, shape: torch.Size) -> Tensor:
    """Inverse of ``to_units`` for a tensor of the given (N, C[, H, W]) shape."""
    if len(shape) == 2:
        return u
    n, c, *rest = shape
    return u.T.reshape(c, n, *rest).transpose(0, 1)


def two_sample_counterexample() -> dict[str, Sides]:
    """m = 2, y = (-1, 1), g = (0, 1), gamma = 1, lam = 1/2: BN removes every direction of a
    two-sample batch (span{1, yhat} is all of R^2), so ||dLhat/dy|| = 0, yet the printed right
    sides of Theorems 4.1 and 4.4 are negative or the left side is positive."""
    y, g = torch.tensor([[-1.0], [1.0]]), torch.tensor([[0.0], [1.0]])
    one = torch.ones(1)
    gy = bn_input_grad(y, g, one)
    out = {f"thm_4_1/{f}": thm_4_1(y, g, gy, one, form=f) for f in ("seed003", "seed001")}
    out |= {f"thm_4_4/{f}": thm_4_4(y, g, gy, one, lam=0.5, form=f) for f in ("seed003", "seed000")}
    return out


def eq_14_counterexample() -> Sides:
    """A = diag(1, 0), v = (0, 1), X = 1 1^T / 2 (||X||_2 = 1): X X^T v = (1/2, 1/2) picks up
    the curved direction that v itself avoids, so eq. 14's 'maximum' lam^4 v^T A v = 0 is beaten."""
    A = torch.diag(torch.tensor([1.0, 0.0]))
    return eq_14(torch.full((2, 2), 0.5), torch.tensor([[0.0], [1.0]]), hess_hat=lambda u: A @ u,
                 form="seed000")
