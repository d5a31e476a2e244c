"""Chapter "The theory, derived and checked" (Santurkar et al. 2018, Sec. 4; seed 000, Sec. 2).

Both sides of every statement (``bnlib.theory``) are measured (1) at two BN layers of a VGG
during a short SGD run: a conv layer and the BN layer after the classifier's hidden linear
layer, the paper's setting of a BN layer right after a fully connected one; and (2) over many
random instances. ``capture`` pulls the tensors the statements need out of a real network;
``bn_twin`` and ``rescaled_loss`` are the network-level checks of Observation 4.3 and Lemma 4.5.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.func import functional_call

from .. import data, device, models, runs, theory, train
from ..claims import Claim, verdict
from ..config import ChapterParams, Interval, OneOf, as_dict, param
from ..functional import clone_state, loss_fn, preserved_rng, probing

TITLE = "The theory, derived and checked"
BN_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d)


@dataclass(frozen=True)
class Params(ChapterParams):
    dataset: str = param("cifar10", OneOf(("cifar10", "cifar10-mini")),
                         "training data (paper: CIFAR-10)")
    train_size: int = param(10_000, Interval(int, 1, 50_000), "training images used (choice)")
    depth: int = param(11, OneOf((11, 13, 16, 19)), "VGG depth (choice)")
    width: float = param(0.125, Interval(float, 0, 4, low_open=True),
                         "VGG channel multiplier (paper 1; quick 1/8, choice)")
    lr: float = param(0.1, Interval(float, 0, 10, low_open=True), "SGD learning rate (paper: 0.1)")
    batch_size: int = param(128, Interval(int, 2, 50_000),
                            "examples per step, m of the classifier's BN layer (paper: 128)")
    num_steps: int = param(150, Interval(int, 1, 1_000_000), "SGD steps (choice)")
    probe_every: int = param(15, Interval(int, 1, 1_000_000),
                             "steps between theory probes (choice)")
    conv_bn: int = param(4, Interval(int, 1, 16),
                         "conv BN layer probed, 1-based in forward order (choice)")
    num_instances: int = param(5000, Interval(int, 10, 10_000_000),
                               "random instances per statement (choice)")
    device: str = param("auto", OneOf(("auto", "cpu", "cuda", "mps")), "compute device")


PROFILES = {
    "smoke": dict(dataset="cifar10-mini", train_size=2000, width=0.0625, batch_size=32, num_steps=4,
                  probe_every=2, num_instances=100),
    "quick": {},
    "paper": dict(train_size=50_000, depth=16, width=1.0, num_steps=3000, probe_every=150,
                  num_instances=200_000),
}
KEY_SETTINGS = ("dataset", "depth", "width", "lr", "batch_size", "num_steps", "probe_every",
                "conv_bn", "num_instances")


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

    Three passes on cloned parameters: the network as is; Lhat as a function of the BN input
    (a pre-hook substitutes a leaf); L as a function of the BN output (a hook substitutes one).
    Each pass starts from the same RNG state, so noise layers draw the same noise.
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
    rec: dict[str, Tensor] = {}

    def run(hooks: list) -> Tensor:
        handles = [getattr(mod, f"register_forward{kind}_hook")(fn) for mod, kind, fn in hooks]
        try:
            with preserved_rng(model):
                return f(functional_call(model, (params, buffers), (X,)), y)
        finally:
            for h in handles:
                h.remove()

    with probing(model, "batch"):
        hooks = [(bn, "", lambda m, i, o: rec.update(y=i[0].detach(), z=o.detach()))]
        if layer is not None:
            hooks.append((layer, "_pre", lambda m, i: rec.update(X=i[0].detach())))
        net_loss = run(hooks)
        grad_w = torch.autograd.grad(net_loss, params[wname])[0] if wname else None
        y0 = rec["y"].clone().requires_grad_()
        loss_hat = run([(bn, "_pre", lambda m, i: (y0,))])
        (gy,) = torch.autograd.grad(loss_hat, y0, create_graph=True)
        z0 = rec["z"].clone().requires_grad_()
        loss_plain = run([(bn, "", lambda m, i, o: z0)])
        (gz,) = torch.autograd.grad(loss_plain, z0, create_graph=True)

    def hvp(grad: Tensor, x: Tensor) -> theory.HVP:
        return _memo(lambda u: theory.to_units(torch.autograd.grad(
            grad, x, theory.from_units(u, x.shape), retain_graph=True)[0]))

    u = theory.to_units
    return Capture(u(rec["y"]), u(gz.detach()), u(gy.detach()), bn.weight.detach().clone(),
                   bn.eps, hvp(gy, y0), hvp(gz, z0),
                   (net_loss.item(), loss_hat.item(), loss_plain.item()),
                   rec.get("X"), grad_w)


def _put(out: dict, key: str, s: theory.Sides, extra: Tensor | float = 0.0) -> None:
    """Store both sides and a magnitude (for relative slack) of one form."""
    out[f"{key}/lhs"], out[f"{key}/rhs"] = s.lhs, s.rhs
    out[f"{key}/mag"] = s.lhs.abs() + s.rhs.abs() + extra


def measure(cap: Capture, *, lam: float | Tensor | None = None, per_unit: bool = False,
            coupled: bool = True) -> dict[str, np.ndarray]:
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
    return {k: torch.as_tensor(v).detach().cpu().numpy() for k, v in out.items()}


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


def theory_probe(layers: dict[str, tuple[nn.Module, nn.Module]]):
    """A ``train.Probe`` function measuring every statement at the given layers."""
    def fn(ctx: train.StepContext) -> dict:
        out = {}
        for name, (layer, bn) in layers.items():
            cap = capture(ctx.model, bn, ctx.X, ctx.y, layer=layer if name == "fc" else None)
            out.update({f"{name}/{k}": v for k, v in measure(cap).items()})
        return out
    return fn


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
    acts: list[Tensor] = []
    hooks = [a.register_forward_hook(lambda m, i, o: acts.append(o.detach())) for a, _ in pairs]
    try:
        with probing(plain, "running"), torch.no_grad():
            plain(X)
    finally:
        for h in hooks:
            h.remove()
    twin.load_state_dict({**twin.state_dict(), **plain.state_dict()})
    with torch.no_grad():
        for (_, bn), act in zip(pairs, acts):
            u = theory.to_units(act)
            mu, var = u.mean(0), u.var(0, unbiased=False)
            bn.weight.copy_((var + bn.eps).sqrt())
            bn.bias.copy_(mu)
            bn.running_mean.copy_(mu)
            bn.running_var.copy_(var)
    return twin


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
                     log_scale: tuple[float, float] = (-1.0, 2.0)) -> dict[str, np.ndarray]:
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


def _lemma_instances(n: int, gen: torch.Generator) -> dict[str, np.ndarray]:
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


def run(cfg: Params, *, force: bool = False, progress: bool = True) -> dict[str, np.ndarray]:
    """Train a VGG with BN, probing every statement; then Observation 4.3 and Lemma 4.5 (cached)."""
    tcfg = train.TrainConfig(optimizer="sgd", lr=cfg.lr, batch_size=cfg.batch_size,
                             num_steps=cfg.num_steps, eval_every=cfg.num_steps, eval_size=1000,
                             seed=cfg.seed)
    key = {"model": dict(arch="vgg", depth=cfg.depth, width=cfg.width, seed=cfg.seed),
           "data": dict(name=cfg.dataset, train_size=cfg.train_size), "train": as_dict(tcfg),
           "probe": dict(every=cfg.probe_every, conv_bn=cfg.conv_bn)}

    def compute() -> dict:
        dev = device(cfg.device)
        torch.manual_seed(cfg.seed)
        model = models.vgg(cfg.depth, width=cfg.width, norm="bn", seed=cfg.seed).to(dev)
        layers = probe_layers(model, cfg.conv_bn)
        W0 = {k: layer.weight.detach().clone() for k, (layer, _) in layers.items()}
        d = data.load(cfg.dataset, device=dev, train_size=cfg.train_size, test_size=1000)
        probe = train.Probe("theory", theory_probe(layers), cfg.probe_every)
        hist = train.fit(model, d, tcfg, probes=[probe], progress=progress, desc="theory")
        out = hist.to_arrays()
        X, y = d.X_train[:cfg.batch_size], d.y_train[:cfg.batch_size]
        gen = torch.Generator().manual_seed(cfg.seed)
        for k, (layer, _) in layers.items():
            for kind in ("global", "unit"):
                s = theory.lemma_4_5(W0[k], layer.weight.detach(), per_unit=kind == "unit")
                out |= {f"lemma_4_5/{k}/{kind}/lhs": s.lhs, f"lemma_4_5/{k}/{kind}/rhs": s.rhs,
                        f"lemma_4_5/{k}/inner": s.terms["inner"]}
            c = 10 ** (2 * torch.rand(layer.weight.shape[0], generator=gen) - 1)
            s = rescaled_loss(model, layer, X, y, scale=c.to(dev))
            out |= {f"scale_inv/{k}/lhs": s.lhs, f"scale_inv/{k}/rhs": s.rhs}
        out |= observation_4_3(model, cfg, X, d.X_train[cfg.batch_size:2 * cfg.batch_size])
        return {k: torch.as_tensor(v).cpu().numpy() if not isinstance(v, np.ndarray) else v
                for k, v in out.items()}

    return runs.cached("theory", key, compute, force=force,
                       depends=(runs.module_path(__name__), "theory"))


def observation_4_3(model: nn.Module, cfg: Params, X: Tensor, X_other: Tensor) -> dict[str, Tensor]:
    """Logits of a plain VGG with the trained weights vs its BN twin: on the batch the twin was
    fitted to (train mode), on another batch (train mode) and on that batch in eval mode."""
    plain = models.vgg(cfg.depth, width=cfg.width, norm="none", seed=cfg.seed).to(X.device)
    plain.load_state_dict({k: v for k, v in model.state_dict().items()
                           if k in plain.state_dict()})
    twin = bn_twin(plain, model, X)
    out = {}
    for name, batch, mode in (("same", X, "batch"), ("other", X_other, "batch"),
                              ("other_eval", X_other, "running")):
        fresh = copy.deepcopy(twin)  # a train-mode pass would move the running statistics
        with torch.no_grad(), probing(plain, "running"), probing(fresh, mode):
            a, b = plain(batch), fresh(batch)
        out[f"obs_4_3/{name}"] = (a - b).abs().max() / a.abs().max()
    return out


# ---- the summary table and the claims ---------------------------------------------------------

TOL = {"random": 1e-9, "network": 1e-5}  # relative slack below -TOL is a failure: float64 vs
# float32 round-off (float32 sums over m ~ 1e4 terms reach ~1e-6 relative)

FORMS = [  # (key, statement, source, what the form says or changes)
    ("thm_4_1/seed003", "Thm 4.1", "seed 003 (= seed 000 eq. 1)", "1/√m on ⟨g,ŷ⟩²"),
    ("thm_4_1/seed001", "Thm 4.1", "seed 001, Thm 3.4", "left side ‖∂L̂/∂ŷ‖, not squared"),
    ("thm_4_1/corrected", "Thm 4.1", "ours", "1/m on ⟨g,ŷ⟩²; equality when ε = 0"),
    ("thm_4_2/seed003", "Thm 4.2", "seed 003", "ĝ := ∂L̂/∂y as defined, so ⟨ĝ,ŷ⟩ = 0"),
    ("thm_4_2/seed000", "Thm 4.2", "seed 000 eq. 10", "ĝ := ∂L/∂z; equality when ε = 0"),
    ("thm_4_2/seed000_eq11", "Thm 4.2", "seed 003 2nd display (= seed 000 eq. 11)",
     "vᵀHv replaced by gᵀHg"),
    ("thm_4_2/seed001", "Thm 4.2", "seed 001, Thm 3.5", "curvature along ∂L̂/∂ŷ = γg"),
    ("thm_4_2/exact", "Thm 4.2", "ours", "identity with the ε terms"),
    ("thm_4_4/seed003", "Thm 4.4", "seed 003", "g_j² (a squared squared norm), no λ², no 1/m"),
    ("thm_4_4/seed000", "Thm 4.4", "seed 000 eq. 8", "λ² on both terms, 1/√m"),
    ("thm_4_4/corrected", "Thm 4.4", "ours", "λ² and 1/m on both terms; equality when ε = 0"),
    ("eq_16/seed000", "weight-space Thm 4.2", "seed 000 eq. 16", "no λ⁴ on the plain term"),
    ("eq_16/corrected", "weight-space Thm 4.2", "ours", "λ⁴ times Thm 4.2 (seed 000 eq. 10)"),
]


def rel_slack(res: dict, key: str, prefix: str = "") -> np.ndarray:
    """(rhs - lhs) / magnitude of one form, flattened; < 0 where a "<=" fails."""
    lhs, rhs, mag = (np.asarray(res[f"{prefix}{key}/{s}"], float) for s in ("lhs", "rhs", "mag"))
    return ((rhs - lhs) / np.maximum(mag, 1e-300)).ravel()


def network_slack(net: dict, key: str) -> np.ndarray | None:
    """Relative slack of a form over every probe step, unit and both layers (None if absent)."""
    parts = [rel_slack(net, key, f"probe/theory/{layer}/") for layer in ("conv", "fc")
             if f"probe/theory/{layer}/{key}/lhs" in net]
    return np.concatenate(parts) if parts else None


def _worst(inst: dict, key: str) -> str:
    r = rel_slack(inst, key)
    i = int(np.argmin(r))
    if r[i] >= -TOL["random"]:
        return "none found"
    return (f"m = {int(inst['m'][i])}: lhs {inst[key + '/lhs'][i]:.3g} > rhs "
            f"{inst[key + '/rhs'][i]:.3g}")


def summary(net: dict, inst: dict) -> pd.DataFrame:
    """One row per printed or corrected form: does it hold, how often does it fail, where."""
    rows = []
    for key, stmt, src, what in FORMS:
        r, n = rel_slack(inst, key), network_slack(net, key)
        fail_r = float(np.mean(r < -TOL["random"]))
        fail_n = float(np.mean(n < -TOL["network"])) if n is not None else float("nan")
        rows.append({"key": key, "statement": stmt, "form": src, "what differs": what,
                     "holds": "holds" if fail_r == 0 and not fail_n > 0 else "fails",
                     "random instances failing": fail_r, "counterexample": _worst(inst, key),
                     "VGG: failing": fail_n,
                     "VGG: median rel. slack": float(np.median(n)) if n is not None else np.nan,
                     "VGG: min rel. slack": float(np.min(n)) if n is not None else np.nan})
    return pd.DataFrame(rows)


def _net(net: dict, key: str) -> np.ndarray:
    """One probed quantity over steps, both layers, flattened."""
    return np.concatenate([np.asarray(net[f"probe/theory/{lay}/{key}"], float).ravel()
                           for lay in ("conv", "fc")])


def share(net: dict, layer: str, term: str) -> float:
    """Mean over probes of the share of ||g||^2 (summed over units) that a Thm 4.1 term removes."""
    p = f"probe/theory/{layer}/thm_4_1/terms/"
    return float(np.mean(np.asarray(net[p + term]).sum(1) / np.asarray(net[p + "norm"]).sum(1)))


def claims(net: dict, inst: dict, table: pd.DataFrame) -> list[Claim]:
    """The claims of Sec. 4 and seed 000 Sec. 2, each decided by a computed criterion."""
    t = table.set_index("key")
    holds, failing = t["holds"], t["random instances failing"]
    src, s0 = "Santurkar et al. 2018, Sec. 4", "seed 000, Sec. 2"
    inner, curv = _net(net, "thm_4_2/terms/inner"), _net(net, "thm_4_2/terms/hess")
    scale = _net(net, "thm_4_1/terms/scale")
    bound = _net(net, "thm_4_1/corrected/rhs") <= _net(net, "thm_4_1/terms/scale") * _net(
        net, "thm_4_1/terms/norm") * (1 + TOL["network"])
    twin = max(float(net["obs_4_3/same"]), float(net["obs_4_3/other_eval"]))
    lem = inst["lemma_4_5/global/rhs"] - inst["lemma_4_5/global/lhs"]
    pos = inst["lemma_4_5/inner"] > 0
    lem_ok = bool(np.all(np.abs(lem[pos]) <= 1e-9 * inst["lemma_4_5/dist"][pos]))
    frac_pos = float(np.mean(inner > 0))
    mean_share = max(share(net, lay, "mean") for lay in ("conv", "fc"))
    return [
        Claim("Thm 4.1 holds as printed", src, "no random instance and no probed unit fails",
              f"{failing['thm_4_1/seed003']:.1%} of random instances fail",
              verdict(holds["thm_4_1/seed003"] == "holds")),
        Claim("BN never enlarges the rescaled gradient, ‖∂L̂/∂y‖² ≤ (γ/σ)²‖g‖²", src,
              "corrected Thm 4.1 holds everywhere and its right side is ≤ (γ/σ)²‖g‖²",
              f"{np.mean(bound):.0%} of probed units", verdict(
                  holds["thm_4_1/corrected"] == "holds" and bool(bound.all()))),
        Claim("the mean term ⟨1,g⟩²/m removes a significant part of ‖g‖²", src,
              "share of ‖g‖² above 10% at one of the layers (partly: above 1%)",
              f"largest layer average {mean_share:.2%}",
              verdict(mean_share > 0.1, partly=mean_share > 0.01)),
        Claim("⟨g, ŷ⟩ > 0 is a mild assumption", src,
              "positive for more than 90% of the probed units (partly: more than half)",
              f"{frac_pos:.0%} positive", verdict(frac_pos > 0.9, partly=frac_pos > 0.5)),
        Claim("the curvature of L along the gradient is non-negative (PSD assumption)", src,
              "vᵀHv ≥ 0 at every probe of both layers", f"{np.mean(curv >= 0):.0%} of probes",
              verdict(bool(np.all(curv >= 0)), partly=bool(np.any(curv >= 0)))),
        Claim("σ tends to be large, so γ/σ shrinks the gradient", src,
              "median (γ/σ)² over probed units < 1", f"median {np.median(scale):.3g}",
              verdict(float(np.median(scale)) < 1)),
        Claim("Thm 4.2 holds as printed", src, "seed 003's form never fails",
              f"{failing['thm_4_2/seed003']:.1%} of random instances fail",
              verdict(holds["thm_4_2/seed003"] == "holds",
                      partly=holds["thm_4_2/seed000"] == "holds")),
        Claim("BN with γ = σ, β = μ reproduces the plain network (Obs. 4.3)", src,
              "relative logit difference < 1e-4 on the fitted batch and in eval mode",
              f"{twin:.1e}", verdict(twin < 1e-4)),
        Claim("Thm 4.4 holds as printed", src, "seed 003's form never fails",
              f"{failing['thm_4_4/seed003']:.1%} of random instances fail",
              verdict(holds["thm_4_4/seed003"] == "holds")),
        Claim("the weight-space smoothness bound (eq. 16) holds as printed", s0,
              "seed 000's eq. 16 never fails",
              f"{failing['eq_16/seed000']:.1%} of random instances fail",
              verdict(holds["eq_16/seed000"] == "holds")),
        Claim("Lemma 4.5 holds when ⟨W₀, W*⟩ > 0", src,
              "equality (to 1e-9) on every random pair with ⟨W₀, W*⟩ > 0",
              f"{pos.sum()} pairs checked", verdict(lem_ok)),
    ]


def two_sample_counterexample() -> dict[str, theory.Sides]:
    """m = 2, y = (-1, 1), g = (0, 1), gamma = 1, lam = 1/2: BN removes every direction of a
    two-sample batch (span{1, yhat} is all of R^2), so ||dLhat/dy|| = 0, yet the printed right
    sides of Theorems 4.1 and 4.4 are negative or the left side is positive."""
    y, g = torch.tensor([[-1.0], [1.0]]), torch.tensor([[0.0], [1.0]])
    one = torch.ones(1)
    gy = theory.bn_input_grad(y, g, one)
    out = {f"thm_4_1/{f}": theory.thm_4_1(y, g, gy, one, form=f) for f in ("seed003", "seed001")}
    out |= {f"thm_4_4/{f}": theory.thm_4_4(y, g, gy, one, lam=0.5, form=f)
            for f in ("seed003", "seed000")}
    return out


def eq_14_counterexample() -> theory.Sides:
    """A = diag(1, 0), v = (0, 1), X = 1 1^T / 2 (||X||_2 = 1): X X^T v = (1/2, 1/2) picks up
    the curved direction that v itself avoids, so eq. 14's 'maximum' lam^4 v^T A v = 0 is beaten."""
    A = torch.diag(torch.tensor([1.0, 0.0]))
    return theory.eq_14(torch.full((2, 2), 0.5), torch.tensor([[0.0], [1.0]]),
                        hess_hat=lambda u: A @ u, form="seed000")


def numbers(net: dict, inst: dict, inst_eps: dict, table: pd.DataFrame) -> dict[str, float]:
    """Every number the chapter's prose quotes, by glue key."""
    out: dict[str, float] = {}
    cols = {"fail": "random instances failing", "vgg_fail": "VGG: failing",
            "vgg_med": "VGG: median rel. slack", "vgg_min": "VGG: min rel. slack"}
    for _, r in table.iterrows():
        k = r["key"].replace("/", "_")
        out |= {f"{k}_{name}": float(r[c]) for name, c in cols.items()}
        out[f"{k}_vgg_absmax"] = float(np.max(np.abs(network_slack(net, r["key"]))))
    for k, s in two_sample_counterexample().items():
        k = k.replace("/", "_")
        out |= {f"cx_{k}_lhs": float(s.lhs), f"cx_{k}_rhs": float(s.rhs)}
    cx = eq_14_counterexample()
    out |= {"cx_eq_14_lhs": float(cx.lhs), "cx_eq_14_rhs": float(cx.rhs)}
    for lay in ("conv", "fc"):
        p = f"probe/theory/{lay}/"
        t = {k: np.asarray(net[p + k], float) for k in (
            "thm_4_1/terms/scale", "thm_4_2/terms/inner", "thm_4_2/terms/hess", "m")}
        inv = net[f"scale_inv/{lay}/rhs"] / net[f"scale_inv/{lay}/lhs"] - 1
        out |= {f"inner_pos_{lay}": float(np.mean(t["thm_4_2/terms/inner"] > 0)),
                f"psd_{lay}": float(np.mean(t["thm_4_2/terms/hess"] >= 0)),
                f"scale_{lay}": float(np.median(t["thm_4_1/terms/scale"])),
                f"mean_share_{lay}": share(net, lay, "mean"),
                f"corr_share_{lay}": share(net, lay, "corr"),
                f"m_{lay}": int(t["m"][0]), f"scale_inv_{lay}": float(abs(inv)),
                f"corr_ratio_{lay}": float(np.median(np.abs(net[p + "thm_4_2/terms/correction"])
                                                     / np.abs(t["thm_4_2/terms/hess"])))}
        for kind in ("global", "unit"):
            out |= {f"lem_{lay}_{kind}_{s}": float(net[f"lemma_4_5/{lay}/{kind}/{s}"])
                    for s in ("lhs", "rhs")}
    losses = np.asarray(net["probe/theory/fc/losses"])
    out |= {"loss_gap": float(np.max(np.abs(losses - losses[:, :1]) / np.abs(losses[:, :1]))),
            "eq3_residual": float(np.max(net["probe/theory/fc/eq_3/residual"])),
            "obs_same": float(net["obs_4_3/same"]), "obs_other": float(net["obs_4_3/other"]),
            "obs_eval": float(net["obs_4_3/other_eval"]), "n_inst": len(inst["m"]),
            "n_probes": len(net["probe/theory/step"]), "acc_final": float(net["test_acc"][-1]),
            "obs_rand": float(np.max(inst["obs_4_3/err"])),
            "delta_gap": float(1 - np.max(inst_eps["delta"])),
            "eps_gap_max": float(np.max(np.abs(rel_slack(inst_eps, "thm_4_2/seed000"))))}
    return out
