"""Tests of the line-search probe (bnlib.probes.landscape) against independent oracles.

Oracles: closed forms for a quadratic loss 0.5 x^T Q x (with ``numpy.linalg.eigh``), central
finite differences and an explicit copy-and-recompute of the loss with plain autograd, all in
float64 on tiny seeded problems. Then the probe spec ``LineSearch`` in the run store: the same
numbers on stored checkpoints as attached during training, and a changed parameter re-probes
the checkpoints without retraining.
"""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch
from torch import nn

from bnlib import data, models, runs, train
from bnlib.data import Data
from bnlib.probes import directions, landscape
from bnlib.probes.landscape import LineSearch
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
    d = directions.random_direction(dict(model.named_parameters()), seed=1, norm="unit")
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
    return models.mlp(norm="bn", sizes=(5, 7, 6, 3), norm_after_relu=False, seed=seed).double()


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
    d = directions.random_direction(dict(model.named_parameters()), seed=3, norm="filter")
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
    model = models.vgg(11, width=1 / 16, norm=norm, seed=0).train(training)
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
    """One random_direction (probes.directions) serves the line search and the surfaces."""
    model = _bn_mlp()
    params = {k: v.detach() for k, v in model.named_parameters()}
    u = directions.random_direction(params, seed=5, norm="unit")
    assert torch.sqrt(sum(v.pow(2).sum() for v in u.values())).item() == pytest.approx(1, rel=1e-12)
    # "unit" is isotropic: the seed's raw Gaussian draw (in parameter order, on the CPU), every
    # parameter included (biases and BN's gamma/beta too), scaled by one number.
    g = torch.Generator().manual_seed(5)
    raw = {k: torch.randn(p.shape, generator=g, dtype=p.dtype) for k, p in params.items()}
    scale = {k: (u[k] / raw[k]).flatten() for k in params}
    c = scale[next(iter(params))][0]
    assert all(torch.allclose(v, c.expand_as(v), rtol=1e-12, atol=0) for v in scale.values())
    f = directions.random_direction(params, seed=5, norm="filter")
    for k, p in params.items():
        if p.dim() == 1:
            assert torch.equal(f[k], torch.zeros_like(p)), k
        else:  # each row has the norm of the matching row of the weight
            torch.testing.assert_close(f[k].norm(dim=1), p.norm(dim=1), rtol=1e-12, atol=0)
    again = directions.random_direction(params, seed=5, norm="filter")
    assert all(torch.equal(f[k], again[k]) for k in f)
    keep = directions.random_direction(params, seed=5, norm="filter", ignore_bias_bn=False)
    assert all(torch.equal(keep[k], p) for k, p in params.items() if p.dim() == 1)


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
    with pytest.raises(ValueError, match="norm must be one of"):
        directions.random_direction({"x": torch.zeros(3)}, seed=0, norm="gauss")
    with pytest.raises(ValueError, match="Unknown direction 'gauss'"):
        LineSearch((1.0,), direction="gauss")
    with pytest.raises(ValueError, match="positive numbers"):
        LineSearch((0.5, -1.0))
    with pytest.raises(ValueError, match="bn_mode"):
        LineSearch((1.0,), bn_mode="eval")


def _tiny_data(seed: int = 0) -> Data:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(48, 1, 4, 4, generator=g)  # tiny images: the MLP flattens them
    y = torch.randint(0, 10, (48,), generator=g)
    return Data("random", X, y, X[:16], y[:16])


@pytest.mark.parametrize("norm,vectorize", [("bn", True), ("noisy_bn", False)])
def test_training_trajectory_is_the_same_with_and_without_probing(norm, vectorize):
    cfg = TrainConfig(lr=0.1, batch_size=16, num_steps=4, eval_every=2)
    probes = [landscape.as_probe("grad", 1, multipliers=[0.5, 2.0], vectorize=vectorize),
              landscape.as_probe("rand", 2, multipliers=[1.0, 3.0], direction="filter",
                                 vectorize=vectorize)]
    out = []
    for ps in ([], probes):
        model = models.mlp(norm=norm, sizes=(16, 12, 8, 10), norm_after_relu=False, seed=0)
        h = fit(model, _tiny_data(), cfg, seed=3, probes=ps, progress=False)
        out.append((h, model.state_dict()))
    (h0, s0), (h1, s1) = out
    assert np.array_equal(h0.train_loss, h1.train_loss)
    assert np.array_equal(h0.test_loss, h1.test_loss)
    assert all(torch.equal(s0[k], s1[k]) for k in s0)  # weights and BN buffers, bit for bit
    assert list(h1.probes["grad"]["step"]) == [0, 1, 2, 3]
    assert list(h1.probes["rand"]["step"]) == [0, 2]
    assert h1.probes["grad"]["grad_diff"].shape == (4, 2)


def test_as_probe_measures_the_batch_before_the_update():
    """At step 0 the probe must equal a direct line search at the initial weights on batch 0."""
    cfg = TrainConfig(lr=0.05, batch_size=16, num_steps=1, eval_every=1)
    d = _tiny_data(1)
    model = models.mlp(norm="bn", sizes=(16, 12, 10), seed=0)
    init = copy.deepcopy(model)
    h = fit(model, d, cfg, seed=1, probes=[landscape.as_probe("grad", 1, multipliers=MULTS)],
            progress=False)
    idx = torch.randperm(48, generator=torch.Generator().manual_seed(1))[:16]  # fit's first batch
    ref = landscape.line_search(init, d.X_train[idx], d.y_train[idx], loss="ce", lr=0.05,
                                multipliers=MULTS)
    np.testing.assert_allclose(h.probes["grad"]["loss"][0], ref["loss"], rtol=1e-6)
    np.testing.assert_allclose(h.probes["grad"]["beta_eff"][0], ref["beta_eff"], rtol=1e-5)
    with pytest.raises(ValueError, match="Unknown direction 'sideways'"):
        landscape.as_probe("x", 1, lr=0.1, multipliers=[1.0], direction="sideways")


# ---------------------------------------------------------------- the probe spec in the run store

DLN = runs.Trajectory(data.DataSpec("linear", train_size=32, dim=4, seed=1, dtype="float64"),
                      models.ModelSpec("dln", norm="bn", depth=4, width=4),
                      TrainConfig(lr=1e-3, batch_size=None, num_steps=8, loss="mse_sum", eval_every=4,
                                  record_every=4, record_size=32), seed=2)
VGG = runs.Trajectory(data.DataSpec("cifar10-mini", train_size=128, test_size=32),
                      models.ModelSpec("vgg", norm="bn", depth=11, width=1 / 16),
                      TrainConfig(lr=0.1, batch_size=16, num_steps=5, eval_every=5, record_every=5,
                                  record_size=16), seed=3)


def _attached(traj: runs.Trajectory, spec: LineSearch) -> dict:
    """The probe attached during a fresh training run of ``traj`` (no store), every step."""
    d = data.get(traj.data)
    model = models.build(traj.model, traj.seed).to(dtype=d.X_train.dtype)
    h = fit(model, d, traj.train, seed=traj.seed, probes=[train.Probe("line", spec.measure, 1)], progress=False)
    return h.probes["line"]


@pytest.mark.parametrize("traj, spec", [
    (DLN, LineSearch.geometric(0.01, 30, 4)),                                   # vmap path
    (DLN, LineSearch((0.5, 2.0), direction="filter", seed=7)),
    (VGG, LineSearch.geometric(0.5, 4, 3)),                                     # loop path (conv, CPU)
    (VGG, LineSearch((1.0, 3.0), direction="unit", seed=7, vectorize=True))])
def test_probe_on_checkpoints_equals_probe_attached_during_training(tmp_path, traj, spec):
    """The engine's "same numbers either way": stored checkpoints (some steps replayed) vs attached."""
    steps = [0, 1, 3, traj.train.num_steps - 1]
    store = runs.Store(tmp_path, progress=False)
    store.history(traj, checkpoints=(1,))  # step 3 has no checkpoint: it is replayed from step 1
    with runs.train_threads(torch.device("cpu")):  # the store trains on one CPU thread; probe on it too
        stored = store.probe(traj, spec, steps)
        attached = _attached(traj, spec)
    assert list(stored["step"]) == steps
    assert set(stored) == set(attached)
    for k, v in stored.items():
        np.testing.assert_array_equal(v, attached[k][steps], err_msg=k)  # bit for bit


def test_a_changed_probe_parameter_reprobes_the_store_without_retraining(tmp_path):
    first = runs.Store(tmp_path, progress=False)
    steps = [0, 2, 4, 6]
    three = first.probe(DLN, LineSearch.geometric(0.01, 30, 3), steps)
    assert first.trained == [DLN.key()]
    again = runs.Store(tmp_path, progress=False)  # e.g. the notebook re-run with num_mults=5
    t0 = time.perf_counter()
    five = again.probe(DLN, LineSearch.geometric(0.01, 30, 5), steps)
    reprobe_s = time.perf_counter() - t0
    assert again.trained == []  # re-probed from the checkpoints, nothing trained
    assert three["grad_diff"].shape == (4, 3) and five["grad_diff"].shape == (4, 5)
    np.testing.assert_array_equal(three["loss0"], five["loss0"])  # the same stored states
    print(f"re-probe of 4 stored steps with 5 multipliers: {reprobe_s * 1e3:.0f} ms")
    t0 = time.perf_counter()
    cached = again.probe(DLN, LineSearch.geometric(0.01, 30, 5), steps)  # now a cache hit
    assert time.perf_counter() - t0 < reprobe_s and again.trained == []
    np.testing.assert_array_equal(cached["grad_diff"], five["grad_diff"])


def test_line_search_spec_fields_and_multipliers():
    spec = LineSearch.geometric(0.5, 4, 4, direction="unit", seed=3)
    assert spec.multipliers == pytest.approx((0.5, 1.0, 2.0, 4.0)) and isinstance(spec.multipliers, tuple)
    assert spec == LineSearch((0.5, 1.0, 2.0, 4.0), direction="unit", seed=3)  # hashable, comparable
    with pytest.raises(ValueError, match="low < high"):
        LineSearch.geometric(4, 0.5, 3)


def test_vmap_is_used_where_it_pays():
    """Loop for conv nets on the CPU (grouped convolutions are slower there), vmap otherwise."""
    X = torch.zeros(2, 3, 32, 32)
    assert not landscape.vmap_pays(models.vgg(11, width=1 / 16), X)
    assert landscape.vmap_pays(models.deep_linear(depth=3, width=4, norm="bn"), X)


def test_activation_grads_match_autograd_at_each_layer_output():
    from bnlib.probes.landscape import ActivationGrads, activation_grads
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    X, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    out = activation_grads(model, X, y, loss="ce")
    h1 = model[0](X)
    h1.retain_grad()
    h2 = model[3](model[2](model[1](h1)))
    h2.retain_grad()
    nn.functional.cross_entropy(h2, y).backward()
    assert out["act"] == pytest.approx([h1.grad.norm().item(), h2.grad.norm().item()], rel=1e-5)
    assert out["weight"] == pytest.approx([model[0].weight.grad.norm().item(), model[3].weight.grad.norm().item()],
                                          rel=1e-5)
    assert ActivationGrads().bn_mode == "batch"


def test_activation_grads_leave_buffers_untouched():
    from bnlib.probes.landscape import activation_grads
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    activation_grads(model, torch.randn(8, 4), torch.randint(0, 3, (8,)), loss="ce")
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())


def test_figures_fit_the_column_with_their_legend_off_the_data():
    """Every figure of ``plots.landscape`` is at most the column wide, stacks or pairs its panels,
    and keeps its legend outside the axes; log axes of under three decades get plain labelled ticks."""
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from bnlib import plots
    from bnlib.plots import landscape as figs

    k, s = 5, 4
    steps, mults = np.arange(0, 50, 10), np.geomspace(0.5, 4, s)

    def probe(scale):
        lo = np.linspace(1.0, 0.5, k)
        return {"step": steps, "loss_min": lo, "loss_max": lo * (1 + scale), "grad_diff_min": np.full(k, 0.1 * scale),
                "grad_diff_max": np.full(k, scale), "beta_eff": np.full(k, 2 * scale),
                "multipliers": np.tile(mults, (k, 1)), "grad_diff": np.outer(np.ones(k), mults * scale)}

    probes = {"none": probe(3.0), "bn": probe(1.0)}
    sweep = pd.DataFrame([{"network": net, "norm": n, "lr": lr, "initial loss": 2.3, "tail loss": 1.0 + (n == "none")}
                          for net in ("vgg", "dln") for n in ("none", "bn") for lr in (0.01, 0.1, 1.0)])
    made = [figs.landscape_panels(probes), figs.lr_robustness(probes, lr=0.1),
            figs.ratio_curves({"along the gradient": [probes], "random": [probes, probes]}),
            figs.lr_sweep(sweep, bars={"vgg": 2.0, "dln": 0.9}, networks={"vgg": "VGG", "dln": "DLN"}),
            figs.gradient_norms({"act": {"none": np.ones((2, 4)), "bn": np.full((2, 4), 0.5)}},
                                {"act": ("at the output", "gradient norm")})]
    for fig in made:
        fig.canvas.draw()
        assert fig.get_size_inches()[0] <= plots.COLUMN_IN
        assert all(ax.get_legend() is None for ax in fig.axes)
    assert made[0].axes[1].get_yscale() == "log" and made[0].axes[1].get_title(loc="left").startswith("(b)")
    labels = [t.get_text() for t in made[1].axes[0].get_xticklabels() if t.get_text()]
    assert labels and all("times" not in t and "^" not in t for t in labels)  # plain numbers on a short log axis
