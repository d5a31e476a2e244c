"""lp normalisation (Santurkar et al. 2018, Sec. 3.3) and the LN/GN comparisons of make_norm.

Oracles are independent of the layer code: per-channel statistics recomputed in numpy from
the input, central finite differences in float64 (``torch.autograd.gradcheck``) and torch's
own ``BatchNorm`` for p = 2. Everything runs in float64 on tiny seeded tensors.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.func import functional_call

from bnlib import chapters, config, data, profiles, train
from bnlib.chapters import lp_norms
from bnlib.data import DataSpec
from bnlib.models import ModelSpec, vgg
from bnlib.norms import LpNorm, make_norm
from bnlib.probes.evaluation import Evaluation
from bnlib.probes.kurtosis import ActivationShape, activation_shape, excess_kurtosis
from bnlib.runs import Store, Trajectory

P_VALUES = {"l1": 1.0, "l2": 2.0, "linf": math.inf}
SHAPES = {"conv": (6, 4, 3, 5), "linear": (16, 4)}  # (N, C, H, W) and (N, C)


def _input(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Gaussian input with a different offset and spread per channel, so centring matters."""
    g = torch.Generator().manual_seed(seed)
    c = (1, shape[1]) + (1,) * (len(shape) - 2)
    offset = torch.randn(c, generator=g, dtype=torch.float64) * 3
    spread = torch.rand(c, generator=g, dtype=torch.float64) * 2 + 0.5
    return offset + spread * torch.randn(shape, generator=g, dtype=torch.float64)


def _by_channel(t: torch.Tensor) -> np.ndarray:
    """(N, C, ...) -> (C, N * ...): every value of a channel in one row."""
    a = t.detach().numpy()
    return np.moveaxis(a, 1, 0).reshape(a.shape[1], -1)


def _lp(rows: np.ndarray, p: float) -> np.ndarray:
    """Average lp norm of each row: (mean |z|^p)^(1/p), or max |z| for p = inf."""
    if p == math.inf:
        return np.abs(rows).max(axis=1)
    return (np.abs(rows) ** p).mean(axis=1) ** (1 / p)


def _layer(kind: str, channels: int, **lp) -> LpNorm:
    layer = make_norm(kind, channels, lp=lp).double().train()
    assert isinstance(layer, LpNorm) and layer.p == P_VALUES[kind]
    return layer


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("kind", P_VALUES)
def test_train_output_has_zero_mean_and_unit_lp_norm(kind, shape):
    x = _input(shape)
    rows = _by_channel(_layer(kind, shape[1], eps=0.0)(x))
    np.testing.assert_allclose(rows.mean(axis=1), 0, atol=1e-12)  # float64 round-off
    np.testing.assert_allclose(_lp(rows, P_VALUES[kind]), 1, rtol=1e-12)
    # With the default eps = 1e-5 the norm falls short of 1 by about eps / scale^p; here the
    # per-channel scales are >= 0.1 so the shortfall is < 1e-3 for every p.
    rows = _by_channel(_layer(kind, shape[1])(x))
    np.testing.assert_allclose(rows.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(_lp(rows, P_VALUES[kind]), 1, atol=1e-3)
    assert np.all(_lp(rows, P_VALUES[kind]) < 1)  # eps only ever shrinks the output


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("kind", P_VALUES)
def test_train_output_matches_numpy_recomputation(kind, shape):
    """Every option against the formula recomputed from the input: centring, norm of the
    centred or the raw input, no centring; eps enters as (mean|z|^p + eps)^(1/p) or max + eps."""
    x, p, eps = _input(shape, seed=1), P_VALUES[kind], 1e-3
    rows = _by_channel(x)
    mean = rows.mean(axis=1, keepdims=True)

    def scale(z: np.ndarray) -> np.ndarray:
        if p == math.inf:
            return np.abs(z).max(axis=1, keepdims=True) + eps
        return ((np.abs(z) ** p).mean(axis=1, keepdims=True) + eps) ** (1 / p)

    cases = {
        (True, "centered"): (rows - mean) / scale(rows - mean),
        (True, "raw"): (rows - mean) / scale(rows),
        (False, "centered"): rows / scale(rows),
        (False, "raw"): rows / scale(rows),  # nothing to centre: both readings coincide
    }
    for (center, norm_of), want in cases.items():
        got = _by_channel(_layer(kind, shape[1], eps=eps, center=center, norm_of=norm_of)(x))
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=f"{center} {norm_of}")


@pytest.mark.parametrize("kind", P_VALUES)
def test_raw_norm_gives_the_raw_input_unit_norm(kind):
    """norm_of="raw": the output is centred, and x / scale (the uncentred input) has lp norm 1."""
    x, p = _input(SHAPES["conv"], seed=2), P_VALUES[kind]
    layer = _layer(kind, 4, eps=0.0, norm_of="raw")
    out = _by_channel(layer(x))
    np.testing.assert_allclose(out.mean(axis=1), 0, atol=1e-12)
    rows = _by_channel(x)
    shift = rows.mean(axis=1, keepdims=True) / _lp(rows, p)[:, None]  # the mean, rescaled
    np.testing.assert_allclose(_lp(out + shift, p), 1, rtol=1e-12)
    # the raw norm is larger than the centred one for p = 2 (E x^2 = var + mean^2), so the
    # output's own lp norm is below 1 when the channel has a non-zero mean
    if p == 2:
        assert np.all(_lp(out, p) < 1)


@pytest.mark.parametrize("kind", P_VALUES)
def test_no_centring_keeps_the_mean(kind):
    x, p = _input(SHAPES["conv"], seed=3), P_VALUES[kind]
    out = _by_channel(_layer(kind, 4, eps=0.0, center=False)(x))
    np.testing.assert_allclose(_lp(out, p), 1, rtol=1e-12)
    rows = _by_channel(x)
    np.testing.assert_allclose(out.mean(axis=1), rows.mean(axis=1) / _lp(rows, p), rtol=1e-12)
    assert np.all(np.abs(out.mean(axis=1)) > 1e-3)  # the offsets are not removed


@pytest.mark.parametrize("kind", P_VALUES)
def test_affine_and_no_affine(kind):
    x, p = _input(SHAPES["conv"], seed=4), P_VALUES[kind]
    bare = _layer(kind, 4, eps=0.0, affine=False)
    assert list(bare.parameters()) == []
    layer = _layer(kind, 4, eps=0.0)
    assert [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        layer.weight.copy_(torch.rand(4, generator=g, dtype=torch.float64) + 0.5)
        layer.bias.copy_(torch.randn(4, generator=g, dtype=torch.float64))
    out = _by_channel(layer(x))
    gamma, beta = layer.weight.detach().numpy(), layer.bias.detach().numpy()
    np.testing.assert_allclose(out.mean(axis=1), beta, atol=1e-12)
    np.testing.assert_allclose(_lp((out - beta[:, None]) / gamma[:, None], p), 1, rtol=1e-12)
    np.testing.assert_allclose(out, gamma[:, None] * _by_channel(bare(x)) + beta[:, None],
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", P_VALUES)
def test_eval_uses_running_statistics(kind):
    """Running mean and scale are exponential averages (momentum 0.1) of the batch values;
    eval mode normalises with them, so an eval output does not depend on the rest of the batch."""
    p, momentum = P_VALUES[kind], 0.1
    layer = _layer(kind, 4, eps=1e-3, momentum=momentum)
    run_mean, run_scale = np.zeros(4), np.ones(4)
    for seed in range(3):
        x = _input(SHAPES["conv"], seed=10 + seed)
        layer(x)
        rows = _by_channel(x)
        mean = rows.mean(axis=1)
        centred = rows - mean[:, None]
        scale = (np.abs(centred).max(axis=1) + 1e-3 if p == math.inf
                 else ((np.abs(centred) ** p).mean(axis=1) + 1e-3) ** (1 / p))
        run_mean += momentum * (mean - run_mean)
        run_scale += momentum * (scale - run_scale)
    np.testing.assert_allclose(layer.running_mean.numpy(), run_mean, rtol=1e-12)
    np.testing.assert_allclose(layer.running_scale.numpy(), run_scale, rtol=1e-12)
    layer.eval()
    x = _input(SHAPES["conv"], seed=20)
    want = (_by_channel(x) - run_mean[:, None]) / run_scale[:, None]
    np.testing.assert_allclose(_by_channel(layer(x)), want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layer(x[:1]), layer(x)[:1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("options", [{}, {"norm_of": "raw"}, {"center": False},
                                     {"affine": False}], ids=str)
@pytest.mark.parametrize("shape", [(3, 2, 2, 2), (5, 3)], ids=["conv", "linear"])
@pytest.mark.parametrize("kind", P_VALUES)
def test_gradients_match_finite_differences(kind, shape, options):
    """The full Jacobian w.r.t. the input and gamma/beta against central differences
    (gradcheck, float64). Random inputs have no ties and no zeros, where |.| and max are smooth."""
    layer = _layer(kind, shape[1], **options)
    g = torch.Generator().manual_seed(6)
    params = {k: (v.detach() + 0.3 * torch.randn(v.shape, generator=g, dtype=torch.float64))
              for k, v in layer.named_parameters()}

    def f(x: torch.Tensor, *ps: torch.Tensor) -> torch.Tensor:
        return functional_call(layer, dict(zip(params, ps)), (x,))

    inputs = (_input(shape, seed=7),) + tuple(params.values())
    inputs = tuple(t.clone().requires_grad_() for t in inputs)
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_l2_with_centring_is_batchnorm_in_train_mode(shape):
    """p = 2 with the norm of the centred input is (x - mean) / (mean y^2 + eps)^(1/2): BN's
    formula with the biased variance, which is what BN uses for the batch itself."""
    c = shape[1]
    bn = (nn.BatchNorm2d if len(shape) == 4 else nn.BatchNorm1d)(c).double().train()
    lp = _layer("l2", c)
    g = torch.Generator().manual_seed(8)
    gamma = torch.rand(c, generator=g, dtype=torch.float64) + 0.5
    beta = torch.randn(c, generator=g, dtype=torch.float64)
    with torch.no_grad():
        for m in (bn, lp):
            m.weight.copy_(gamma)
            m.bias.copy_(beta)
    x = _input(shape, seed=9).requires_grad_()
    w = torch.randn(shape, generator=g, dtype=torch.float64)
    (gx_bn,) = torch.autograd.grad((bn(x) * w).sum(), x)
    (gx_lp,) = torch.autograd.grad((lp(x) * w).sum(), x)
    torch.testing.assert_close(lp(x), bn(x), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gx_lp, gx_bn, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(lp.running_mean, bn.running_mean, rtol=1e-12, atol=0)


def test_l2_eval_differs_from_batchnorm_only_by_the_variance_convention():
    """Eval mode. BN's running_var averages the UNBIASED batch variance, var * n / (n - 1)
    (n = N*H*W values per channel), and adds eps when used: (x - m) / sqrt(running_var + eps).
    LpNorm's running_scale averages the batch scale itself, sqrt(biased var + eps). With
    momentum 1 (the running values are the last batch's) they agree once BN's running_var is
    multiplied by (n - 1) / n; without that correction they differ by about sqrt(n / (n - 1)).
    With momentum < 1 they also differ by Jensen: an average of square roots is not the square
    root of an average. This is documented, not fixed: the chapter's eval numbers use LpNorm's
    convention."""
    shape, c = SHAPES["conv"], SHAPES["conv"][1]
    n = shape[0] * shape[2] * shape[3]
    bn = nn.BatchNorm2d(c, momentum=1.0).double().train()
    lp = _layer("l2", c, momentum=1.0)
    x_train, x_test = _input(shape, seed=11), _input(shape, seed=12)
    bn(x_train), lp(x_train)
    var_biased = _by_channel(x_train).var(axis=1)  # numpy's default ddof=0
    np.testing.assert_allclose(bn.running_var.numpy(), var_biased * n / (n - 1), rtol=1e-12)
    np.testing.assert_allclose(lp.running_scale.numpy(), np.sqrt(var_biased + 1e-5), rtol=1e-12)
    bn.eval(), lp.eval()
    ratio = (bn(x_test) - bn.bias.view(1, c, 1, 1)) / (lp(x_test) - lp.bias.view(1, c, 1, 1))
    torch.testing.assert_close(ratio.mean(), torch.tensor(math.sqrt((n - 1) / n),
                                                          dtype=torch.float64), rtol=1e-4, atol=0)
    with torch.no_grad():
        bn.running_var.mul_((n - 1) / n)
    torch.testing.assert_close(lp(x_test), bn(x_test), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_layernorm_normalises_each_sample(shape):
    """kind "ln" = GroupNorm with one group: each sample's (C, H, W) values get mean 0 and
    biased variance 1 (up to eps), in train and eval mode alike, and never see other samples."""
    layer = make_norm("ln", shape[1], spatial=len(shape) == 4).double()
    x = _input(shape, seed=13)
    for training in (True, False):
        out = layer.train(training)(x).detach().numpy().reshape(shape[0], -1)
        np.testing.assert_allclose(out.mean(axis=1), 0, atol=1e-12)
        # eps = 1e-5 against per-sample variances >= ~0.25: relative error < 1e-4
        np.testing.assert_allclose(out.var(axis=1), 1, rtol=1e-4)
    torch.testing.assert_close(layer(x[:2]), layer(x)[:2])


def test_groupnorm_normalises_each_group():
    """kind "gn": ``groups`` is reduced to gcd(groups, C), each (sample, group) block gets mean 0
    and variance 1; for the DLN's width 10 and the default 8 groups that is 2 groups of 5."""
    assert make_norm("gn", 10, spatial=False).num_groups == 2
    assert make_norm("gn", 12, groups=8).num_groups == 4
    shape = (3, 12, 2, 2)
    layer = make_norm("gn", 12, groups=8).double()
    out = layer(_input(shape, seed=14))
    groups = out.detach().numpy().reshape(3, 4, -1)  # (N, G, C/G * H * W)
    np.testing.assert_allclose(groups.mean(axis=2), 0, atol=1e-12)
    np.testing.assert_allclose(groups.var(axis=2), 1, rtol=1e-4)
    # a channel's own mean is NOT zero: the group is normalised, not the channel
    assert np.abs(_by_channel(out).mean(axis=1)).max() > 0.1


def test_factory_passes_lp_options_and_rejects_bad_ones():
    layer = make_norm("linf", 5, lp={"eps": 0.0, "center": False, "norm_of": "raw",
                                     "affine": False, "momentum": 0.5})
    assert (layer.p, layer.eps, layer.center, layer.norm_of, layer.momentum) == (
        math.inf, 0.0, False, "raw", 0.5)
    assert layer.weight is None
    with pytest.raises(ValueError, match=r"p >= 1 or p = inf; got p=0.5"):
        LpNorm(3, 0.5)
    with pytest.raises(ValueError, match=r"norm_of must be 'centered' or 'raw'; got 'after'"):
        make_norm("l1", 3, lp={"norm_of": "after"})
    with pytest.raises(ValueError, match=r"Unknown norm kind 'l3'"):
        make_norm("l3", 3)


# --- the activations' shape (bnlib.probes.kurtosis) --------------------------------------------


def test_excess_kurtosis_against_closed_forms():
    a = np.array([[-2.0, 0.0, 1.0, 5.0], [1.0, 1.0, 1.0, 3.0]])
    c = a - a.mean(axis=1, keepdims=True)
    want = (c**4).mean(axis=1) / (c**2).mean(axis=1) ** 2 - 3  # population moments
    np.testing.assert_allclose(excess_kurtosis(a, axis=1), want, rtol=1e-12)
    rng = np.random.default_rng(0)
    # sampling error of the kurtosis is about sqrt(24 / n) = 0.005 for n = 1e6; allow 4 sigma
    assert abs(excess_kurtosis(rng.standard_normal(10**6))) < 0.02
    assert abs(excess_kurtosis(rng.uniform(size=10**6)) - (-1.2)) < 0.02  # uniform: -6/5


def test_activation_shape_matches_an_explicit_forward_and_leaves_the_model_alone():
    """Oracle: the VGG's children run one by one on a deep copy in train mode; the layer-3
    record is the output of the norm after the third conv. The model itself must come out
    bit-identical (parameters, running statistics, mode, RNG)."""
    import copy

    model = vgg(11, width=1 / 16, norm="l1", seed=0).eval()
    X = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    before = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    got = activation_shape(model, X, layers=(3,), num_samples=64)
    assert not model.training and torch.equal(torch.get_rng_state(), rng)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    twin, h, convs = copy.deepcopy(model).train(), X, 0
    with torch.no_grad():
        for child in twin:
            h = child(h)
            convs += isinstance(child, nn.Conv2d)
            if convs == 3 and isinstance(child, LpNorm):
                break
    units = _by_channel(h.double())  # (C, N*H*W)
    np.testing.assert_allclose(got["layer3/var_channel"], units.var(axis=1), rtol=1e-6)
    k = (units - units.mean(axis=1, keepdims=True))
    want = (k**4).mean(axis=1) / (k**2).mean(axis=1) ** 2 - 3
    np.testing.assert_allclose(got["layer3/kurtosis_channel"], want, rtol=1e-6)  # float32 net
    assert got["layer3/sample"].shape == (64,)
    assert set(got["layer3/sample"]) <= set(units.ravel().astype(np.float64))


def test_chapter_parameters_are_validated():

    cfg = chapters.resolve("lp_norms", profile="smoke")
    assert cfg.lp_norm_of == "raw" and cfg.lp_center and cfg.lp_affine
    with pytest.raises(ValueError, match=r"'lp_norm_of' of chapter 'lp_norms' must be one of"):
        chapters.resolve("lp_norms", lp_norm_of="after")
    with pytest.raises(ValueError, match=r"'lp_momentum' of chapter 'lp_norms' must be a float in \(0, 1\]"):
        chapters.resolve("lp_norms", lp_momentum=0)


def test_end_of_training_probes_on_a_stored_trajectory():
    """The probe specs on the run store equal the functions called on ``store.model_at``; the
    batch-statistics evaluation is ``train.evaluate`` with ``bn_mode="batch"``."""
    store = Store(progress=False)
    traj = Trajectory(DataSpec("cifar10-mini", train_size=64), ModelSpec("vgg", norm="l1", depth=11, width=1 / 16,
                                                                          lp=dict(norm_of="raw")),
                      train.TrainConfig(lr=0.1, batch_size=16, num_steps=2, eval_every=2, eval_size=40,
                                        record_every=1, record_size=16), seed=1)
    end = [store.history(traj).steps_done]
    model, d = store.model_at(traj), data.get(traj.data)
    got = store.probe(traj, ActivationShape((3,), num_samples=32, size=20), end)
    want = activation_shape(model, d.X_train[:20], layers=(3,), num_samples=32)
    assert all(np.array_equal(got[k][0], v) for k, v in want.items())
    acc = store.probe(traj, Evaluation(bn_mode="batch", size=30, chunk=10), end)
    assert float(acc["test_acc"][0]) == train.evaluate(model, d.X_test[:30], d.y_test[:30], bn_mode="batch",
                                                       chunk=10)[1]
    assert float(store.probe(traj, Evaluation(), end)["test_acc"][0]) == train.evaluate(
        model, d.X_test[:40], d.y_test[:40], bn_mode="batch")[1]  # size None: the trajectory's eval_size


def test_none_and_bn_are_the_shared_trajectories_and_lp_options_reach_only_lp_nets():
    cfg = chapters.resolve("lp_norms", profile="smoke", lp_norm_of="centered", gn_groups=4)
    _, vgg_spec, _ = profiles.vgg_specs(cfg)
    for norm in ("none", "bn", "ln"):  # the same spec the training chapter asks for
        assert vgg_spec.with_(**lp_norms.variant(cfg, norm)) == vgg_spec.with_(norm=norm)
    l1 = vgg_spec.with_(**lp_norms.variant(cfg, "l1"))
    assert dict(l1.lp)["norm_of"] == "centered" and l1.groups is None
    gn = vgg_spec.with_(**lp_norms.variant(cfg, "gn"))
    assert gn.groups == 4 and gn.lp is None


def test_quick_plan_pairs_variants_with_the_shared_core_runs_at_one_step():
    """Quick: none and BN are the shared 3-seed runs (their specs are exactly ``profiles.vgg_specs``),
    the other normalisers run ``variant_steps`` on the first ``variant_seeds`` (1) seeds, and every VGG
    number is taken at ``horizon`` = ``variant_steps``; the DLN trains l1 besides none and BN."""
    cfg = chapters.resolve("lp_norms", profile="quick")
    assert lp_norms.seeds(cfg, "bn") == profiles.seeds(cfg)
    assert lp_norms.paired(cfg) == profiles.seeds(cfg)[:1]
    assert lp_norms.horizon(cfg, "vgg") == cfg.variant_steps < cfg.num_steps
    assert lp_norms.horizon(cfg, "dln") == cfg.dln_steps
    assert lp_norms.norms(cfg, "dln") == ("none", "bn", "l1", "l1c")
    assert lp_norms.norms(cfg, "vgg") == ("none", "bn", "l1", "linf", "ln", "gn", "l1c")  # l2 cut: CPU budget
    assert max(lp_norms.probe_steps(cfg, "vgg")) < cfg.variant_steps
    paper = chapters.resolve("lp_norms", profile="paper")
    assert lp_norms.norms(paper, "dln") == ("none", "bn", "l1", "l2", "linf", "l1c", "l2c", "linfc")
    assert paper.variant_seeds == 3 and len(lp_norms.norms(paper, "vgg")) == 10


def test_centred_names_are_their_lp_layer_with_the_centred_norm():
    cfg = chapters.resolve("lp_norms", profile="smoke")
    _, vgg_spec, _ = profiles.vgg_specs(cfg)
    raw, cen = (vgg_spec.with_(**lp_norms.variant(cfg, n)) for n in ("l1", "l1c"))
    assert raw.norm == cen.norm == "l1" and dict(raw.lp)["norm_of"] == "raw" and dict(cen.lp)["norm_of"] == "centered"
    assert {k: v for k, v in dict(raw.lp).items() if k != "norm_of"} == {
        k: v for k, v in dict(cen.lp).items() if k != "norm_of"}


def test_shifts_read_each_site_from_its_own_records():
    """The pre and post columns come from the pre and post records; records after ``end`` are ignored."""
    cfg = chapters.resolve("lp_norms", profile="smoke", act_layers=(1,))
    steps = np.array([0, 10, 20, 30])
    steady, moving = np.ones((4, 2)), np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [100.0, 100.0]])
    rec = {"step": steps, "pre1.mean": moving, "pre1.var": np.ones((4, 2)),
           "post1.mean": steady * 0.5, "post1.var": steady}
    got = lp_norms.shifts(cfg, rec, end=20)
    assert got["mean shift (post)"] == 0 and got["var shift (post)"] == 0 and got["var shift (pre)"] == 0
    assert got["mean shift (pre)"] == pytest.approx(1.0)  # one standard deviation per record, step 30 left out


def test_the_centred_dln_runs_train_a_prefix_at_quick_and_every_step_at_paper():
    """Quick cuts the centred-norm DLN runs to their first ``dln_centred_steps`` (CPU budget); the raw
    runs and the paper profile keep every step, and the DLN spec differs from the full run's only in length."""
    quick, paper = (chapters.resolve("lp_norms", profile=p) for p in ("quick", "paper"))
    assert lp_norms.dln_horizon(quick, "l1c") == quick.dln_centred_steps == 1000 < quick.dln_steps
    assert lp_norms.dln_horizon(quick, "l1") == lp_norms.dln_horizon(quick, "bn") == quick.dln_steps
    assert all(lp_norms.dln_horizon(paper, n) == paper.dln_steps for n in ("l1c", "l2c", "linfc", "l1"))
    smoke = chapters.resolve("lp_norms", profile="smoke")
    assert lp_norms.dln_horizon(smoke, "l1c") == smoke.dln_steps  # never longer than the run


def test_prefix_cuts_the_reference_runs_to_the_shorter_runs_steps():
    """``prefix`` reads the first ``end`` losses: their mean, and the mean of their last 10%."""
    cfg = chapters.resolve("lp_norms", profile="quick")
    hist = lambda loss, diverged=False, done=100: SimpleNamespace(  # noqa: E731
        train_loss=np.asarray(loss, float), diverged=diverged, steps_done=done)
    res = {("dln", "bn", s): {"hist": hist(np.arange(100.0) + s)} for s in lp_norms.seeds(cfg, "bn")}
    got = lp_norms.prefix(cfg, res, "bn", 20)
    assert list(got.index) == lp_norms.seeds(cfg, "bn")
    assert got.loc[0, "mean train loss"] == pytest.approx(9.5) and got.loc[0, "final train loss"] == pytest.approx(18.5)
    assert got.loc[1, "mean train loss"] == pytest.approx(10.5)
    res["dln", "bn", 0]["hist"] = hist(np.arange(100.0), diverged=True, done=15)
    assert lp_norms.prefix(cfg, res, "bn", 20).loc[0, "mean train loss"] == np.inf
    res["dln", "bn", 0]["hist"] = hist(np.arange(100.0), diverged=True, done=60)  # diverged after the prefix
    assert lp_norms.prefix(cfg, res, "bn", 20).loc[0, "mean train loss"] == pytest.approx(9.5)


def test_tables_split_the_summary_into_narrow_tables_with_words():
    cfg = chapters.resolve("lp_norms", profile="quick")
    cols = ["seeds", "final train loss", "mean train loss", "test acc", "test acc (batch stats)", "loss range",
            "grad-diff max", "beta_eff", "mean shift (pre)", "var shift (pre)", "mean shift (post)", "var shift (post)"]
    cols += [f"{k}kurtosis L{i}" for i in cfg.act_layers for k in ("", "channel |")]
    cols = [c.replace("channel |kurtosis", "channel |kurtosis|") for c in cols]
    summary = pd.DataFrame(np.ones((3, len(cols))), index=pd.Index(["none", "bn", "l1c"], name="norm"), columns=cols)
    got = lp_norms.tables(cfg, summary)
    assert list(got) == ["training", "landscape", "shift", "shape"]
    assert all(len(t.columns) <= 6 for t in got.values())
    assert list(got["training"].index) == ["standard", "BN", "l1 (centred norm)"]
    assert "test accuracy, batch statistics" in got["training"] and "per channel, layer 7" in got["shape"]
    dln = lp_norms.tables(cfg, summary[cols[:3] + ["loss range", "grad-diff max", "beta_eff"]])
    assert list(dln) == ["training", "landscape"]


def test_every_normaliser_figure_fits_the_column_with_its_legend_outside():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bnlib import plots
    from bnlib.plots import normalisers as figs

    rng = np.random.default_rng(0)
    norms = ("none", "bn", "l1", "linf", "ln", "gn", "l1c")
    hist = SimpleNamespace(train_loss=np.linspace(2, 1, 50), eval_step=np.array([0, 25, 50]),
                           test_acc=np.array([0.1, 0.4, 0.5]))
    line = {"step": np.array([0, 20, 40]), "loss_min": np.ones(3), "loss_max": np.full(3, 2.0),
            "grad_diff_max": np.array([1.0, 2.0, 3.0]), "beta_eff": np.array([3.0, 2.0, 1.0])}
    shape = {f"layer{i}/{k}": v for i in (3, 7) for k, v in (
        ("sample", rng.normal(size=500)), ("kurtosis", 0.5), ("kurtosis_channel", rng.normal(size=16)))}
    res = {("vgg", n, 0): {"hist": hist, "line": line, "shape": shape} for n in norms}
    seeds_of = {n: [0] for n in norms}
    per_seed = pd.DataFrame([{"mean shift (pre)": 0.1 + i, "var shift (pre)": 0.2, "mean shift (post)": 0.3,
                              "var shift (post)": 0.4, "final train loss": 1.0} for i, _ in enumerate(norms)],
                            index=pd.MultiIndex.from_tuples([(n, 0) for n in norms], names=("norm", "seed")))
    made = [figs.training_curves(res, "vgg", seeds_of=seeds_of, metric=m, upto=50) for m in ("train_loss", "test_acc")]
    made += [figs.landscape(res, "vgg", seeds_of=seeds_of),
             figs.histograms(res, norms=norms, layers=(3, 7), seed=0),
             figs.channel_kurtosis(res, norms=norms, layers=(3, 7), seed=0),
             figs.shift_vs_loss(per_seed, norms=norms, sites=lp_norms.SITES)]
    for fig in made:
        assert fig.get_size_inches()[0] <= plots.COLUMN_IN + 1e-9
        assert all(ax.get_legend() is None for ax in fig.axes)
        plt.close(fig)


def test_the_cuts_listed_follow_the_parameters():
    """Each sentence of ``cuts`` comes from a setting short of the paper's; a profile that trains
    every layer on all seeds, probes every step and runs the centred norms to the end has none."""
    quick = config.resolve(lp_norms.Params, "quick")
    said = lp_norms.cuts(quick)
    assert any("l2 and l-inf are not trained, so the DLN's smoothing row rests on l1" in s for s in said)
    assert any("l2 is not trained" in s and f"step {lp_norms.horizon(quick, 'vgg'):,}" in s for s in said)
    full = config.resolve(lp_norms.Params, "quick", vgg_norms=("l1", "l2", "linf", "ln", "gn"),
                          dln_norms=("l1", "l2", "linf"), dln_probe_every=1, variant_seeds=3,
                          dln_centred_steps=quick.dln_steps)
    assert lp_norms.cuts(full) == []
