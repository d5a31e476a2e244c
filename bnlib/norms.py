"""Normalisation layers and the one factory that builds them.

Kinds (one vocabulary for the whole book): ``none``, ``bn`` (BatchNorm, Ioffe & Szegedy
2015), ``noisy_bn`` (BN followed by the time-varying noise of Santurkar et al. 2018,
Appendix A, Algorithm 1), ``noise`` (the same noise without BN), ``l1``/``l2``/``linf``
(lp normalisation, Santurkar et al. Sec. 3.3), ``ln`` (LayerNorm) and ``gn`` (GroupNorm).

Statistics are per channel over every other axis, like BN: for an (N, C, H, W) input the
(n, h, w) positions count as the batch.
"""

from __future__ import annotations

import math

import torch
from torch import nn

NORM_KINDS = ("none", "bn", "noisy_bn", "noise", "l1", "l2", "linf", "ln", "gn")


def _per_channel(x: torch.Tensor) -> tuple[int, ...]:
    """Axes that count as 'batch' for per-channel statistics: all but dim 1."""
    return (0,) + tuple(range(2, x.dim()))


def _channel_shape(x: torch.Tensor) -> tuple[int, ...]:
    return (1, x.shape[1]) + (1,) * (x.dim() - 2)


class ActivationNoise(nn.Module):
    """Algorithm 1 of Santurkar et al. (2018, Appendix A): time-varying noise per unit.

    Every training forward pass draws, per unit j, ``mu_j ~ U(-n_mu, n_mu)`` and
    ``sigma_j ~ U(1, n_sigma)``; then per sample i, ``m_ij ~ U(mu_j - r_mu, mu_j + r_mu)`` and
    ``s_ij ~ N(sigma_j, r_sigma)``, and returns ``s * a + m``. Conv positions (h, w) count as
    samples. Treating ``r_sigma`` as a standard deviation is our reading (the paper is silent).
    In eval mode it is the identity: the noise simulates covariate shift during training only.
    Draws come from the module's own seeded generator so runs are reproducible.
    """

    def __init__(self, channels: int, *, n_mu: float = 0.5, n_sigma: float = 1.25,
                 r_mu: float = 0.1, r_sigma: float = 0.1, seed: int = 0):
        super().__init__()
        if n_mu < 0 or n_sigma < 1 or r_mu < 0 or r_sigma < 0:
            raise ValueError(
                f"ActivationNoise needs n_mu >= 0, n_sigma >= 1, r_mu >= 0, r_sigma >= 0; got "
                f"n_mu={n_mu}, n_sigma={n_sigma}, r_mu={r_mu}, r_sigma={r_sigma}")
        self.channels = channels
        self.n_mu, self.n_sigma, self.r_mu, self.r_sigma = n_mu, n_sigma, r_mu, r_sigma
        self.seed = seed
        self.generator: torch.Generator | None = None  # created lazily on the input's device

    def _gen(self, device: torch.device) -> torch.Generator:
        if self.generator is None or self.generator.device != device:
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(self.seed)
        return self.generator

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return a
        g = self._gen(a.device)
        opts = dict(generator=g, device=a.device, dtype=a.dtype)
        c = _channel_shape(a)
        mu = (torch.rand(c, **opts) * 2 - 1) * self.n_mu            # (1, C, 1, 1)
        sigma = 1 + torch.rand(c, **opts) * (self.n_sigma - 1)      # (1, C, 1, 1)
        m = mu + (torch.rand(a.shape, **opts) * 2 - 1) * self.r_mu  # (N, C, H, W)
        s = sigma + torch.randn(a.shape, **opts) * self.r_sigma     # (N, C, H, W)
        return s * a + m

    def extra_repr(self) -> str:
        return (f"{self.channels}, n_mu={self.n_mu}, n_sigma={self.n_sigma}, "
                f"r_mu={self.r_mu}, r_sigma={self.r_sigma}, seed={self.seed}")


class LpNorm(nn.Module):
    """lp normalisation (Santurkar et al. 2018, Sec. 3.3), per channel like BN.

    Train mode: ``y = x - mean`` (if ``center``), then ``y / scale`` with
    ``scale = (mean |z|^p + eps)^(1/p)`` for finite p and ``max |z| + eps`` for p = inf, where
    ``z`` is ``y`` (``norm_of="centered"``) or ``x`` (``norm_of="raw"``, the norm taken
    before the mean is shifted). With p = 2 and centred input this is BN exactly. Eval mode
    uses running averages of the mean and the scale, as BN does.
    """

    def __init__(self, channels: int, p: float, *, eps: float = 1e-5, center: bool = True,
                 norm_of: str = "centered", affine: bool = True, momentum: float = 0.1):
        super().__init__()
        if not (p == math.inf or p >= 1):
            raise ValueError(f"LpNorm needs p >= 1 or p = inf; got p={p}")
        if norm_of not in ("centered", "raw"):
            raise ValueError(f"LpNorm norm_of must be 'centered' or 'raw'; got {norm_of!r}")
        self.channels, self.p, self.eps = channels, p, eps
        self.center, self.norm_of, self.momentum = center, norm_of, momentum
        self.weight = nn.Parameter(torch.ones(channels)) if affine else None
        self.bias = nn.Parameter(torch.zeros(channels)) if affine else None
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_scale", torch.ones(channels))

    def _scale(self, z: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
        if self.p == math.inf:
            return z.abs().amax(dim=dims) + self.eps
        return (z.abs().pow(self.p).mean(dim=dims) + self.eps).pow(1 / self.p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dims, c = _per_channel(x), _channel_shape(x)
        if self.training:
            mean = x.mean(dim=dims) if self.center else x.new_zeros(x.shape[1])
            y = x - mean.view(c)
            scale = self._scale(y if self.norm_of == "centered" else x, dims)
            with torch.no_grad():  # mul_/add_, not lerp_: lerp_ has no vmap batching rule
                m = self.momentum
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_scale.mul_(1 - m).add_(scale.detach(), alpha=m)
        else:
            y, scale = x - self.running_mean.view(c), self.running_scale
        out = y / scale.view(c)
        if self.weight is not None:
            out = out * self.weight.view(c) + self.bias.view(c)
        return out

    def extra_repr(self) -> str:
        return f"{self.channels}, p={self.p}, eps={self.eps}, center={self.center}, norm_of={self.norm_of!r}"


def _batchnorm(channels: int, spatial: bool, **kw) -> nn.Module:
    return (nn.BatchNorm2d if spatial else nn.BatchNorm1d)(channels, **kw)


def make_norm(kind: str, channels: int, *, spatial: bool = True, seed: int = 0,
              noise: dict | None = None, lp: dict | None = None, groups: int = 8) -> nn.Module:
    """Build the normalisation layer ``kind`` for ``channels`` channels.

    ``spatial`` picks 2d (conv, (N, C, H, W)) or 1d (linear, (N, C)) inputs; ``seed`` seeds the
    noise of ``noisy_bn``/``noise``; ``noise`` and ``lp`` pass options to ActivationNoise and
    LpNorm; ``groups`` is the GroupNorm group count (gcd(groups, channels) is used).
    """
    if kind not in NORM_KINDS:
        raise ValueError(f"Unknown norm kind {kind!r}; known: {', '.join(NORM_KINDS)}")
    if kind == "none":
        return nn.Identity()
    if kind == "bn":
        return _batchnorm(channels, spatial)
    if kind == "noisy_bn":
        return nn.Sequential(_batchnorm(channels, spatial),
                             ActivationNoise(channels, seed=seed, **(noise or {})))
    if kind == "noise":
        return ActivationNoise(channels, seed=seed, **(noise or {}))
    if kind in ("l1", "l2", "linf"):
        p = {"l1": 1.0, "l2": 2.0, "linf": math.inf}[kind]
        return LpNorm(channels, p, **(lp or {}))
    if kind == "ln":
        return nn.GroupNorm(1, channels)  # LayerNorm over (C, H, W) with per-channel affine
    g = math.gcd(groups, channels)
    return nn.GroupNorm(g, channels)
