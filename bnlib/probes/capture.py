"""The tensors Santurkar et al.'s Sec. 4 statements need, taken from a real network, and both
sides of every statement measured on them (``bnlib.theory``).

``capture`` pulls out of one BatchNorm layer of a network, at one batch, its input y, the
gradient g of the rest of the network w.r.t. its output, the gradient through the real BN
module and Hessian-vector products of both losses; ``measure`` evaluates every printed and
corrected form on a capture. Probe specs for the run store: ``Statements`` (every statement
at one conv BN layer and at the BN layer after the classifier's hidden linear layer, at a
step, on that step's batch) and ``EndChecks`` (the network-level checks of Observation 4.3
and of Lemma 4.5's scale invariance). ``random_instances`` runs ``measure`` on random BN
units, float64. Plain recording hooks go through ``functional.capture``; the hooks that
*substitute* a leaf for the BN input or output (to differentiate w.r.t. it) live here.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from .. import theory
from ..functional import capture as record
from ..functional import clone_state, loss_fn, preserved_rng, probing
from ..train import StepContext

BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)
Arrays = dict[str, np.ndarray]


@dataclass
class Capture:
    """One BN layer of a real network at one batch; activations as (m, C) columns."""

    y: Tensor              # BN input
    g: Tensor              # dL/dz: downstream loss gradient at the BN output
    grad_y: Tensor         # dLhat/dy: autograd through the real BN layer
    gamma: Tensor          # (C,)
    eps: float
    hess_hat: theory.HVP   # (d^2 Lhat / dy^2) u
    hess: theory.HVP       # (d^2 L / dz^2) u
    losses: tuple[float, float, float]  # the network, Lhat(y) and L(z): one number three times
    X: Tensor | None = None       # (m, d) input of the linear layer before BN
    grad_w: Tensor | None = None  # (C, d) its weight gradient, from autograd


def _memo(hvp: theory.HVP) -> theory.HVP:
    """Reuse a product when the same direction comes back (forms share most directions)."""
    seen: list[tuple[Tensor, Tensor]] = []

    def f(u: Tensor) -> Tensor:
        for k, r in seen:
            if k.shape == u.shape and torch.equal(k, u):
                return r
        seen.append((u, hvp(u)))
        return seen[-1][1]
    return f


def capture(model: nn.Module, bn: nn.Module, X: Tensor, y: Tensor, *, loss: str = "ce",
            layer: nn.Module | None = None) -> Capture:
    """Everything the statements need at ``bn`` (train-mode BN), without changing the model.

    Three passes on cloned parameters: the network as is (recording the BN input and output
    and the input of ``layer``); Lhat as a function of the BN input (a pre-hook substitutes a
    leaf); L as a function of the BN output (a hook substitutes one). Each pass starts from
    the same RNG state, so noise layers draw the same noise.
    """
    if not isinstance(bn, BN_TYPES):
        raise ValueError(f"capture needs a BatchNorm1d/2d layer; got {type(bn).__name__}")
    if layer is not None and not isinstance(layer, nn.Linear):
        raise ValueError("weight-space quantities need an nn.Linear before BN; "
                         f"got {type(layer).__name__}")
    f = loss_fn(loss)
    params, buffers = clone_state(model)
    wname = None if layer is None else next(
        k for k, p in model.named_parameters() if p is layer.weight)
    if wname:
        params[wname].requires_grad_()

    def run(hooks: list) -> Tensor:
        handles = [getattr(mod, f"register_forward{kind}_hook")(fn) for mod, kind, fn in hooks]
        try:
            with preserved_rng(model):
                return f(functional_call(model, (params, buffers), (X,)), y)
        finally:
            for h in handles:
                h.remove()

    with probing(model, "batch"):
        with record({"bn": bn, **({"layer": layer} if layer is not None else {})}, inputs=True) as rec:
            net_loss = run([])
        grad_w = torch.autograd.grad(net_loss, params[wname])[0] if wname else None
        y0 = rec["bn.in"].clone().requires_grad_()
        loss_hat = run([(bn, "_pre", lambda m, i: (y0,))])
        (gy,) = torch.autograd.grad(loss_hat, y0, create_graph=True)
        z0 = rec["bn.out"].clone().requires_grad_()
        loss_plain = run([(bn, "", lambda m, i, o: z0)])
        (gz,) = torch.autograd.grad(loss_plain, z0, create_graph=True)

    def hvp(grad: Tensor, x: Tensor) -> theory.HVP:
        return _memo(lambda u: theory.to_units(torch.autograd.grad(
            grad, x, theory.from_units(u, x.shape), retain_graph=True)[0]))

    u = theory.to_units
    return Capture(u(rec["bn.in"]), u(gz.detach()), u(gy.detach()), bn.weight.detach().clone(),
                   bn.eps, hvp(gy, y0), hvp(gz, z0),
                   (net_loss.item(), loss_hat.item(), loss_plain.item()),
                   rec.get("layer.in"), grad_w)


def _put(out: dict, key: str, s: theory.Sides, extra: Tensor | float = 0.0) -> None:
    """Store both sides and a magnitude (for relative slack) of one form."""
    out[f"{key}/lhs"], out[f"{key}/rhs"] = s.lhs, s.rhs
    out[f"{key}/mag"] = s.lhs.abs() + s.rhs.abs() + extra


def measure(cap: Capture, *, lam: float | Tensor | None = None, per_unit: bool = False,
            coupled: bool = True) -> Arrays:
    """Both sides of every form of every statement at one captured layer.

    Theorems 4.1 and 4.4 are per unit; Theorem 4.2 and eq. 16 per unit or (default) summed
    over the layer. Weight-space statements need ``cap.X``; ``lam`` defaults to ||X||_2.
    """
    out: dict[str, Tensor] = {}
    a = (cap.y, cap.g, cap.grad_y, cap.gamma)
    for form in theory.THM_4_1_FORMS:
        s = theory.thm_4_1(*a, eps=cap.eps, form=form)
        _put(out, f"thm_4_1/{form}", s, s.terms["scale"] * s.terms["norm"])
    out.update({f"thm_4_1/terms/{k}": v for k, v in s.terms.items()})
    units = dict(per_unit=per_unit, coupled=coupled)
    hv = dict(hess_hat=cap.hess_hat, hess=cap.hess, eps=cap.eps, **units)
    # second-order magnitude that does not vanish with v (m = 2 kills v): the plain curvature
    ref = theory.quad(cap.hess, cap.gamma / theory.bn_stats(cap.y, eps=cap.eps)[1] * cap.g,
                      **units).abs()
    for form in theory.THM_4_2_FORMS:
        s = theory.thm_4_2(*a, **hv, form=form)
        _put(out, f"thm_4_2/{form}", s, ref + s.terms["hess"].abs()
             + s.terms.get("correction", s.terms.get("bn_curv")).abs())
        if form == "seed000":
            out.update({f"thm_4_2/terms/{k}": v for k, v in s.terms.items()})
    if cap.X is not None or lam is not None:
        lam = torch.linalg.matrix_norm(cap.X, ord=2) if lam is None else lam
        for form in theory.THM_4_4_FORMS:
            s = theory.thm_4_4(*a, lam=lam, eps=cap.eps, form=form)
            _put(out, f"thm_4_4/{form}", s, s.terms["scale"] * s.terms["g_plain"])
        for form in theory.EQ_16_FORMS:
            s = theory.eq_16(*a, **hv, lam=lam, form=form)
            _put(out, f"eq_16/{form}", s,
                 ref + lam**4 * (ref + s.terms["hess"].abs() + s.terms["correction"].abs()))
    if cap.X is not None:
        s = theory.weight_grad_bound(cap.X, cap.grad_y, cap.grad_w)
        _put(out, "eq_5/corrected", s)
        out["eq_3/residual"] = (s.terms["eq3"] - cap.grad_w).abs().max() / cap.grad_w.abs().max()
        _put(out, "eq_14/seed000", theory.eq_14(cap.X, cap.grad_y, hess_hat=cap.hess_hat))
    out["losses"], out["m"] = torch.tensor(cap.losses), torch.tensor(cap.y.shape[0])
    return _numpy(out)


def _numpy(d: dict) -> Arrays:
    return {k: torch.as_tensor(v).detach().cpu().numpy() for k, v in d.items()}


def rel_slack(res: dict, key: str, prefix: str = "") -> np.ndarray:
    """(rhs - lhs) / magnitude of one form measured by ``measure``, flattened; < 0 where a
    "<=" fails, ~0 where an identity holds."""
    lhs, rhs, mag = (np.asarray(res[f"{prefix}{key}/{s}"], float) for s in ("lhs", "rhs", "mag"))
    return ((rhs - lhs) / np.maximum(mag, 1e-300)).ravel()


def probe_layers(model: nn.Sequential, conv_bn: int) -> dict[str, tuple[nn.Module, nn.Module]]:
    """(weight layer, BN layer) for the ``conv_bn``-th conv BN and for the classifier's BN."""
    mods = list(model)
    pairs = [(mods[i - 1], m) for i, m in enumerate(mods) if isinstance(m, BN_TYPES)]
    convs = [p for p in pairs if isinstance(p[1], nn.BatchNorm2d)]
    fcs = [p for p in pairs if isinstance(p[0], nn.Linear)]
    if not 1 <= conv_bn <= len(convs) or not fcs:
        raise ValueError(f"conv_bn must be in [1, {len(convs)}] for this network (and it needs a "
                         f"Linear -> BatchNorm1d block); got {conv_bn}")
    return {"conv": convs[conv_bn - 1], "fc": fcs[-1]}


@dataclass(frozen=True)
class Statements:
    """Both sides of every statement at the ``conv_bn``-th conv BN layer (``"conv/..."``) and at
    the BN layer after the classifier's hidden linear layer (``"fc/..."``, with the weight-space
    statements), on the step's own batch, BN with that batch's statistics (as in training)."""

    conv_bn: int = 4  # conv BN layer probed, 1-based in forward order

    def measure(self, ctx: StepContext) -> Arrays:
        out = {}
        for name, (layer, bn) in probe_layers(ctx.model, self.conv_bn).items():
            cap = capture(ctx.model, bn, ctx.X, ctx.y, loss=ctx.cfg.loss,
                          layer=layer if name == "fc" else None)
            out.update({f"{name}/{k}": v for k, v in measure(cap).items()})
        return out


def rescaled_loss(model: nn.Module, layer: nn.Module, X: Tensor, y: Tensor, *, scale: Tensor,
                  loss: str = "ce") -> theory.Sides:
    """Lemma 4.5's premise: with BN after ``layer``, scaling unit j's weights and bias by
    c_j > 0 leaves the train-mode loss unchanged (exactly only when eps = 0)."""
    f = loss_fn(loss)
    params, buffers = clone_state(model)
    names = {id(p): k for k, p in model.named_parameters()}
    with probing(model, "batch"), torch.no_grad():
        before = f(functional_call(model, (params, buffers), (X,)), y)
        for p in (layer.weight, layer.bias):
            if p is not None:
                k = names[id(p)]
                params[k] = params[k] * scale.view((-1,) + (1,) * (p.dim() - 1))
        after = f(functional_call(model, (params, buffers), (X,)), y)
    return theory.Sides(before, after, "==", {"scale": scale})


def plain_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every BatchNorm replaced by an Identity: the "identical
    network without BN" carrying the same weights."""
    plain = copy.deepcopy(model)
    for name, m in list(plain.named_modules()):
        if isinstance(m, BN_TYPES):
            parent, _, child = name.rpartition(".")
            setattr(plain.get_submodule(parent) if parent else plain, child, nn.Identity())
    return plain


def bn_twin(plain: nn.Module, bn_net: nn.Module, X: Tensor) -> nn.Module:
    """Observation 4.3 made concrete: a copy of ``bn_net`` that computes what ``plain`` computes.

    Weights are copied from ``plain`` (same architecture, Identity where ``bn_net`` has BN);
    every BN gets gamma = sigma and beta = mu of the plain network's pre-activations on X, and
    the same running statistics, so eval mode agrees on any input too.
    """
    twin = copy.deepcopy(bn_net)
    pairs = [(a, b) for a, b in zip(plain.modules(), twin.modules()) if isinstance(b, BN_TYPES)]
    if not pairs or any(not isinstance(a, nn.Identity) for a, _ in pairs):
        raise ValueError("bn_twin needs the same architecture with nn.Identity where BN sits")
    slots = {str(i): a for i, (a, _) in enumerate(pairs)}
    with probing(plain, "running"), torch.no_grad(), record(slots) as rec:
        plain(X)
    twin.load_state_dict({**twin.state_dict(), **plain.state_dict()})
    with torch.no_grad():
        for i, (_, bn) in enumerate(pairs):
            u = theory.to_units(rec[f"{i}.out"])
            mu, var = u.mean(0), u.var(0, unbiased=False)
            bn.weight.copy_((var + bn.eps).sqrt())
            bn.bias.copy_(mu)
            bn.running_mean.copy_(mu)
            bn.running_var.copy_(var)
    return twin


def observation_4_3(model: nn.Module, X: Tensor, X_other: Tensor) -> dict[str, Tensor]:
    """Logits of the plain copy of ``model`` vs its BN twin fitted on X: on X (train mode), on
    another batch (train mode) and on that batch in eval mode; relative max differences."""
    plain = plain_copy(model)
    twin = bn_twin(plain, model, X)
    out = {}
    for name, batch, mode in (("same", X, "batch"), ("other", X_other, "batch"),
                              ("other_eval", X_other, "running")):
        fresh = copy.deepcopy(twin)  # a train-mode pass would move the running statistics
        with torch.no_grad(), probing(plain, "running"), probing(fresh, mode):
            a, b = plain(batch), fresh(batch)
        out[f"obs_4_3/{name}"] = (a - b).abs().max() / a.abs().max()
    return out


@dataclass(frozen=True)
class EndChecks:
    """On the first two batches of training images (batch size of the step): the scale
    invariance behind Lemma 4.5 at both probed layers (unit scales log-uniform in [0.1, 10],
    drawn from ``seed``) and Observation 4.3 (``observation_4_3``)."""

    conv_bn: int = 4
    seed: int = 0

    def measure(self, ctx: StepContext) -> Arrays:
        m, d = len(ctx.X), ctx.data
        X, y = d.X_train[:m], d.y_train[:m]
        gen = torch.Generator().manual_seed(self.seed)
        out: dict[str, Tensor] = {}
        for k, (layer, _) in probe_layers(ctx.model, self.conv_bn).items():
            c = 10 ** (2 * torch.rand(layer.weight.shape[0], generator=gen) - 1)
            s = rescaled_loss(ctx.model, layer, X, y, scale=c.to(X.device, X.dtype), loss=ctx.cfg.loss)
            out |= {f"scale_inv/{k}/lhs": s.lhs, f"scale_inv/{k}/rhs": s.rhs}
        return _numpy(out | observation_4_3(ctx.model, X, d.X_train[m:2 * m]))


def lemma_4_5_layers(start: nn.Module, end: nn.Module, conv_bn: int) -> Arrays:
    """Lemma 4.5 at both probed layers with W0 the weights of ``start`` (the initialisation)
    and W* those of ``end`` (the trained network), one scale for the layer or one per unit."""
    out = {}
    ends = probe_layers(end, conv_bn)
    for k, (layer, _) in probe_layers(start, conv_bn).items():
        W0, Ws = layer.weight.detach(), ends[k][0].weight.detach()
        for kind in ("global", "unit"):
            s = theory.lemma_4_5(W0, Ws, per_unit=kind == "unit")
            out |= {f"lemma_4_5/{k}/{kind}/lhs": s.lhs, f"lemma_4_5/{k}/{kind}/rhs": s.rhs,
                    f"lemma_4_5/{k}/inner": s.terms["inner"]}
    return _numpy(out)


# ---- random instances ---------------------------------------------------------------------------

def random_capture(m: int, C: int, gen: torch.Generator, *, eps: float,
                   log_scale: tuple[float, float] = (-1.0, 2.0)) -> Capture:
    """C independent random instances of one BN unit with m samples, as one real BatchNorm1d.

    y_j = a_j + s_j N(0, 1) with log10 s_j uniform in ``log_scale``; gamma_j log-uniform in
    [0.1, 10]; unit j's downstream loss 1/2 sum_r d_jr <u_jr, z_j>^2 + <b_j, z_j>
    + <w_j, sin z_j> (indefinite, non-convex, couples the m samples, not the units).
    """
    def rnd(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    def uni(lo, hi):
        return lo + (hi - lo) * torch.rand(C, generator=gen, dtype=torch.float64)

    y = rnd(C) * 3 + 10 ** uni(*log_scale) * rnd(m, C)  # (m, C)
    U, d, b, w = rnd(C, 3, m) / m**0.5, rnd(C, 3), rnd(m, C), 0.5 * rnd(m, C)
    bn = nn.BatchNorm1d(C, eps=eps).double().train()
    with torch.no_grad():
        bn.weight.copy_(10 ** uni(-1, 1))
        bn.bias.copy_(rnd(C))

    def L(z: Tensor) -> Tensor:
        proj = torch.einsum("crm,mc->cr", U, z)  # (C, 3)
        return 0.5 * (d * proj**2).sum() + (b * z).sum() + (w * torch.sin(z)).sum()

    y0 = y.clone().requires_grad_()
    (gy,) = torch.autograd.grad(L(bn(y0)), y0, create_graph=True)
    z0 = bn(y).detach().requires_grad_()
    (gz,) = torch.autograd.grad(L(z0), z0, create_graph=True)

    def hvp(grad, x):
        return _memo(lambda u: torch.autograd.grad(grad, x, u, retain_graph=True)[0])

    return Capture(y, gz.detach(), gy.detach(), bn.weight.detach().clone(), eps,
                   hvp(gy, y0), hvp(gz, z0), (0.0, 0.0, 0.0))


def random_instances(n: int, *, seed: int = 0, eps: float = 1e-30,
                     m_values: tuple[int, ...] = (2, 4, 16, 64, 256),
                     log_scale: tuple[float, float] = (-1.0, 2.0)) -> Arrays:
    """Every statement on about n random instances (float64), spread over batch sizes m.

    Per-unit forms throughout; lam of the weight-space statements is log-uniform in [0.1, 10].
    ``eps`` defaults to 1e-30: the printed statements assume 0, which PyTorch refuses in
    training mode, and 1e-30 leaves delta = eps / sigma^2 far below round-off.
    """
    gen = torch.Generator().manual_seed(seed)
    parts = []
    for m in m_values:
        C = max(1, n // len(m_values))
        cap = random_capture(m, C, gen, eps=eps, log_scale=log_scale)
        lam = 10 ** (2 * torch.rand(C, generator=gen, dtype=torch.float64) - 1)
        res = measure(cap, lam=lam, per_unit=True, coupled=False)
        obs = theory.obs_4_3(cap.y, eps=eps)
        res["obs_4_3/err"] = ((obs.lhs - obs.rhs).abs().amax(0) / cap.y.abs().amax(0)).numpy()
        res["m"], res["lam"] = np.full(C, m), lam.numpy()
        res["delta"] = (eps / theory.bn_stats(cap.y, eps=eps)[1] ** 2).numpy()
        parts.append({k: v for k, v in res.items() if k != "losses"})
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    out.update(_lemma_instances(min(n, 2000), gen))
    return out


def _lemma_instances(n: int, gen: torch.Generator) -> Arrays:
    """Lemma 4.5 on random (W0, W*) pairs, 4 units x 8 inputs, of either sign of <W0, W*>."""
    rows = []
    for _ in range(n):
        Ws = torch.randn(4, 8, generator=gen, dtype=torch.float64)
        W0 = torch.randn(4, 8, generator=gen, dtype=torch.float64)
        W0 = W0 + Ws * torch.randn(1, generator=gen, dtype=torch.float64)
        g, u = theory.lemma_4_5(W0, Ws), theory.lemma_4_5(W0, Ws, per_unit=True)
        rows.append([g.lhs, g.rhs, u.lhs, g.terms["inner"], g.terms["dist_plain"]])
    a = torch.tensor(rows).numpy()
    return {"lemma_4_5/global/lhs": a[:, 0], "lemma_4_5/global/rhs": a[:, 1],
            "lemma_4_5/unit/lhs": a[:, 2], "lemma_4_5/inner": a[:, 3], "lemma_4_5/dist": a[:, 4]}
