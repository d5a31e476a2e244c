"""ActivationNoise against Algorithm 1 of Santurkar et al. (2018, Appendix A), empirically.

The oracle is the algorithm's stated distributions, checked on the module's outputs (never by
replaying its generator): with a zero input the output is the additive noise m, with a large
constant input c the output / c is the multiplicative noise s up to m / c.
"""

import numpy as np
import pytest
import torch
from scipy import stats

from bnlib.norms import ActivationNoise, make_norm

N_MU, N_SIGMA, R_MU, R_SIGMA = 0.5, 1.25, 0.1, 0.1
C, N, H, W = 256, 16, 8, 8  # 1024 (n, h, w) samples per unit, 256 units


def draw(module, x):
    module.train()
    return module(x).detach().double()


def per_unit(out):
    """(N, C, H, W) or (N, C) -> (C, samples)."""
    return out.transpose(0, 1).flatten(1)


def test_additive_noise_per_unit_mean_and_range():
    m = per_unit(draw(ActivationNoise(C, seed=0), torch.zeros(N, C, H, W)))  # output = m
    # every m_ij lies in [mu_j - r_mu, mu_j + r_mu] within [-n_mu - r_mu, n_mu + r_mu]
    assert m.abs().max() <= N_MU + R_MU
    width = m.max(dim=1).values - m.min(dim=1).values
    # h, w count as batch dims: one mu_j per channel, so a channel spans at most 2 r_mu; with
    # 1024 uniform draws the span misses 2 r_mu by ~2 r_mu * 2/1025 on average (< 1e-3)
    assert width.max() <= 2 * R_MU + 1e-6
    assert width.min() >= 2 * R_MU * 0.98
    mu = m.mean(dim=1)  # estimate of mu_j: sampling sd r_mu / sqrt(3 * 1024) = 0.0018
    assert mu.abs().max() <= N_MU + 0.01
    # the 256 unit means are U(-n_mu, n_mu) (their 0.0018 jitter is negligible at this n)
    assert stats.kstest(mu.numpy(), stats.uniform(-N_MU, 2 * N_MU).cdf).pvalue > 1e-3


def test_multiplicative_noise_per_unit_scale_and_spread():
    c = 1e4
    s = per_unit(draw(ActivationNoise(C, seed=1), torch.full((N, C, H, W), c))) / c  # s + m/c
    sigma = s.mean(dim=1)  # sampling sd r_sigma / sqrt(1024) = 0.003; m / c adds < 1e-4
    assert sigma.min() >= 1 - 0.015 and sigma.max() <= N_SIGMA + 0.015
    assert stats.kstest(sigma.numpy(), stats.uniform(1, N_SIGMA - 1).cdf).pvalue > 1e-3
    sd = s.std(dim=1)  # r_sigma is a standard deviation: sd estimate has relative sd ~ 2.2%
    assert torch.allclose(sd, torch.full_like(sd, R_SIGMA), rtol=0.12)
    z = ((s - sigma[:, None]) / R_SIGMA).flatten().numpy()  # pooled standardised draws
    assert stats.kstest(z[:20000], "norm").pvalue > 1e-3


def test_linear_inputs_have_one_draw_per_unit():
    out = per_unit(draw(ActivationNoise(64, seed=2), torch.zeros(4096, 64)))
    width = out.max(dim=1).values - out.min(dim=1).values
    assert width.max() <= 2 * R_MU + 1e-6 and width.min() >= 2 * R_MU * 0.98


def test_options_are_used():
    noise = dict(n_mu=2.0, n_sigma=3.0, r_mu=0.0, r_sigma=0.0)
    module = make_norm("noise", C, spatial=True, seed=3, noise=noise)
    m = per_unit(draw(module, torch.zeros(N, C, H, W)))
    # r_mu = 0: each unit is one constant, and constants spread over U(-2, 2)
    assert torch.equal(m.min(dim=1).values, m.max(dim=1).values)
    assert m.abs().max() <= 2.0 and m.abs().max() > 1.5  # P(all 256 |mu| <= 1.5) = 0.75^256
    # r_sigma = 0 and a large constant input: out / c = sigma_j + mu_j / c, sigma_j ~ U(1, 3)
    k = per_unit(draw(make_norm("noise", C, seed=4, noise=noise), torch.full((N, C, H, W), 1e4)))
    sigma = k[:, 0] / 1e4  # mu_j / c <= 2e-4
    assert sigma.min() >= 1 - 1e-3 and sigma.max() <= 3 + 1e-3 and sigma.max() > 2.5


def test_draws_change_every_step():
    module = ActivationNoise(C, seed=5)
    x = torch.zeros(N, C, H, W)
    mus = [per_unit(draw(module, x)).mean(dim=1) for _ in range(3)]
    for a, b in zip(mus[:-1], mus[1:], strict=True):
        # same-step estimates differ by ~0.0025; fresh U(-.5, .5) draws by ~0.33 on average
        assert (a - b).abs().gt(0.02).float().mean() > 0.9
        assert abs(np.corrcoef(a.numpy(), b.numpy())[0, 1]) < 0.25  # independent draws


def test_reproducible_from_seed():
    x = torch.randn(N, 8, H, W, generator=torch.Generator().manual_seed(0))
    a, b, other = (ActivationNoise(8, seed=s) for s in (7, 7, 8))
    for _ in range(3):
        out_a = draw(a, x)
        assert torch.equal(out_a, draw(b, x))
        assert not torch.equal(out_a, draw(other, x))


def test_eval_mode_is_identity_and_draws_nothing():
    module = ActivationNoise(8, seed=9)
    x = torch.randn(N, 8, H, W)
    draw(module, x)  # create the generator
    state = module.generator.get_state()
    module.eval()
    assert torch.equal(module(x), x)
    assert torch.equal(module.generator.get_state(), state)


def test_noisy_bn_is_bn_then_noise():
    torch.manual_seed(0)
    x = 3 + 5 * torch.randn(N, C, H, W)
    noisy, bn = make_norm("noisy_bn", C, seed=0), make_norm("bn", C)
    out = per_unit(draw(noisy, x))
    # BN output has mean 0, variance 1 per unit; s * a + m then has mean ~ mu_j in
    # [-n_mu, n_mu] and sd sqrt(E s^2 + var m) in [1, sqrt(1.25^2 + 0.01 + 0.0033)] (+ sampling)
    assert out.mean(dim=1).abs().max() <= N_MU + 0.1
    sd = out.std(dim=1)
    assert sd.min() >= 0.95 and sd.max() <= (N_SIGMA**2 + R_SIGMA**2 + R_MU**2 / 3) ** 0.5 + 0.05
    draw(bn, x)  # the same running-statistics update noisy's BN just made
    noisy.eval(), bn.eval()
    assert torch.equal(noisy(x), bn(x))  # eval: BN on running stats, the noise is off


def test_bad_options_raise():
    with pytest.raises(ValueError, match="n_sigma >= 1"):
        ActivationNoise(4, n_sigma=0.5)
    with pytest.raises(ValueError, match="r_mu=-0.1"):
        ActivationNoise(4, r_mu=-0.1)


def test_model_spec_noise_reaches_every_layer_and_both_noisy_nets_draw_alike():
    """``ModelSpec(noise=...)`` sets Algorithm 1's options in every noise module; layer k's stream is
    seeded seed + k, so the noisy-BN and the noise-only nets (same seed) get the same draws."""
    from bnlib.models import ModelSpec, build

    opts = dict(n_mu=2.0, n_sigma=3.0, r_mu=0.2, r_sigma=0.3)
    nets = {n: build(ModelSpec("vgg", norm=n, depth=11, width=1 / 16, noise=opts), seed=5)
            for n in ("noisy_bn", "noise")}
    layers = {n: [m for m in net.modules() if isinstance(m, ActivationNoise)] for n, net in nets.items()}
    assert len(layers["noise"]) == len(layers["noisy_bn"]) == 9  # 8 convs + the hidden linear layer
    for a, b in zip(layers["noisy_bn"], layers["noise"], strict=True):
        assert (a.n_mu, a.n_sigma, a.r_mu, a.r_sigma) == (2.0, 3.0, 0.2, 0.3) and a.seed == b.seed
    assert [m.seed for m in layers["noise"]] == list(range(5, 14))
    x = torch.zeros(N, layers["noise"][0].channels, H, W)
    assert torch.equal(draw(layers["noisy_bn"][0], x), draw(layers["noise"][0], x))
