"""The ICS probe (Definition 2.1) against an explicit copy-update-recompute oracle, and the same
probe on stored checkpoints against the probe attached during training."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch
from torch import nn

from bnlib import runs, train
from bnlib.data import DataSpec, get
from bnlib.models import ModelSpec, build, deep_linear, lenet
from bnlib.norms import make_norm
from bnlib.probes.ics import ICS, ics, layer_of_params, optimizer_update
from bnlib.train import TrainConfig

OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.1),
    "sgd_momentum_wd": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-2,
                                                 nesterov=True),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=1e-2, momentum=0.5),
}


def three_layer(norm: str) -> nn.Sequential:
    """4 -> 5 -> 5 -> 3, ``norm`` after the two hidden linear layers (module indices 0..6)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), make_norm(norm, 5, spatial=False, seed=1), nn.ReLU(),
                         nn.Linear(5, 5), make_norm(norm, 5, spatial=False, seed=2), nn.ReLU(),
                         nn.Linear(5, 3)).double()


# Modules before weight layer i, written out by hand: layer 1 = {0, 1}, layer 2 = {3, 4}.
BEFORE = {1: [], 2: [0, 1], 3: [0, 1, 3, 4]}
WEIGHT = {1: 0, 2: 3, 3: 6}


def batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (16,),
                                                                               generator=g)


def train_steps(model: nn.Module, opt: torch.optim.Optimizer, k: int) -> None:
    """k real steps, so momentum / Adam state is not trivial when the probe runs."""
    model.train()
    for s in range(k):
        X, y = batch(100 + s)
        opt.zero_grad()
        nn.functional.cross_entropy(model(X), y).backward()
        opt.step()


def oracle(model: nn.Module, opt: torch.optim.Optimizer, X, y) -> tuple[dict, dict]:
    """G_i and G'_i by hand: deep-copy (model, optimizer), take the real step on the copy,
    then for each layer i copy the stepped modules before i into a fresh copy and backprop."""
    def grads(m: nn.Module) -> dict[int, torch.Tensor]:
        m.train()
        m.zero_grad()
        nn.functional.cross_entropy(m(X), y).backward()
        return {i: m[j].weight.grad.clone() for i, j in WEIGHT.items()}

    G = grads(copy.deepcopy(model))
    stepped, stepped_opt = copy.deepcopy((model, opt))  # one memo: the state follows the params
    stepped_opt.zero_grad()
    stepped.train()
    nn.functional.cross_entropy(stepped(X), y).backward()
    stepped_opt.step()
    Gp = {}
    for i in WEIGHT:
        m = copy.deepcopy(model)
        with torch.no_grad():
            for j in BEFORE[i]:
                for p, q in zip(m[j].parameters(), stepped[j].parameters(), strict=True):
                    p.copy_(q)
        Gp[i] = grads(m)[i]
    return G, Gp


@pytest.mark.parametrize(("norm", "opt_name", "method"),
                         [(n, o, "vmap") for n in ("none", "bn", "noisy_bn") for o in OPTIMIZERS]
                         + [("bn", "sgd_momentum_wd", "loop"), ("noisy_bn", "adam", "loop"),
                            ("none", "rmsprop", "loop")])
def test_probe_equals_copy_update_recompute(norm, opt_name, method):
    """The oracle deep-copies the model (noise generators included), so every forward pass of
    it draws the same noise, as the probe must."""
    model = three_layer(norm)
    opt = OPTIMIZERS[opt_name](model.parameters())
    train_steps(model, opt, 2)
    X, y = batch()
    out = ics(model, X, y, optimizer=opt, loss="ce", bn_mode="batch", method=method)
    G, Gp = oracle(model, opt, X, y)
    l2 = [(G[i] - Gp[i]).norm().item() for i in WEIGHT]
    cos = [nn.functional.cosine_similarity(G[i].flatten(), Gp[i].flatten(), dim=0).item()
           for i in WEIGHT]
    assert np.array_equal(out["layer"], [1, 2, 3])
    assert l2[0] == 0 and out["l2"][0] == 0  # nothing precedes layer 1
    assert min(l2[1:]) > 1e-6  # the oracle sees real ICS, so the comparison has teeth
    # float64 throughout; the two paths differ only in summation order (~1e-16 relative)
    np.testing.assert_allclose(out["l2"], l2, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(out["cos"], cos, rtol=1e-9)
    np.testing.assert_allclose(out["g_norm"], [G[i].norm().item() for i in WEIGHT], rtol=1e-12)


@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
def test_optimizer_update_matches_real_step_and_leaves_state(opt_name):
    model = three_layer("bn")
    opt = OPTIMIZERS[opt_name](model.parameters())
    train_steps(model, opt, 2)
    before = copy.deepcopy(opt.state_dict())
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: torch.randn_like(p) for n, p in params.items()}
    new = optimizer_update(model, opt, params, grads)
    assert_same_opt(before, opt.state_dict())  # the throwaway step shares no state
    for n, p in model.named_parameters():
        assert torch.equal(p.detach(), params[n]), n  # nor parameters
        p.grad = grads[n].clone()
    opt.step()
    for n, p in model.named_parameters():
        assert torch.equal(new[n], p.detach()), n


def assert_same_opt(a: dict, b: dict) -> None:
    assert a["param_groups"] == b["param_groups"]
    assert a["state"].keys() == b["state"].keys()
    for k, st in a["state"].items():
        assert st.keys() == b["state"][k].keys()
        for name, v in st.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(b["state"][k][name])), name


def snapshot(model: nn.Module, opt: torch.optim.Optimizer) -> dict:
    gens = {i: m.generator.get_state() for i, m in enumerate(model.modules())
            if getattr(m, "generator", None) is not None}
    return {"params": {k: v.clone() for k, v in model.state_dict().items()},
            "training": [m.training for m in model.modules()],
            "opt": copy.deepcopy(opt.state_dict()), "rng": torch.get_rng_state(), "gens": gens}


def assert_same(a: dict, b: dict) -> None:
    assert a["params"].keys() == b["params"].keys()
    for k in a["params"]:
        assert torch.equal(a["params"][k], b["params"][k]), k
    assert a["training"] == b["training"]
    assert torch.equal(a["rng"], b["rng"])
    assert a["gens"].keys() == b["gens"].keys()
    for k in a["gens"]:
        assert torch.equal(a["gens"][k], b["gens"][k])
    assert_same_opt(a["opt"], b["opt"])


@pytest.mark.parametrize("method", ["vmap", "loop"])
def test_probe_leaves_model_optimizer_and_rng_bit_identical(method):
    torch.manual_seed(0)
    model = deep_linear(depth=4, width=5, norm="noisy_bn")
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    X, y = torch.randn(32, 5), torch.randn(32, 5)
    twin = copy.deepcopy((model, opt))
    for step in range(2):  # step 0: noise generators not created yet (lazy), step 1: created
        model.eval()  # a mode the probe must restore, not the one it measures in
        before = snapshot(model, opt)
        ics(model, X, y, optimizer=opt, loss="mse", bn_mode="batch", method=method)
        assert_same(before, snapshot(model, opt))
        for m, o in (model, opt), twin:  # a real step, probed model and unprobed twin
            m.train()
            o.zero_grad()
            (m(X) - y).pow(2).sum(1).mean().backward()
            o.step()
        for p, q in zip(model.parameters(), twin[0].parameters(), strict=True):
            assert torch.equal(p, q), step


def test_cosine_and_l2_are_consistent_on_a_conv_net():
    torch.manual_seed(0)
    model = lenet(norm="bn", in_channels=1, image_size=16)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    X, y = torch.randn(8, 1, 16, 16), torch.randint(0, 10, (8,))
    out = ics(model, X, y, optimizer=opt, bn_mode="batch", method="vmap")
    a, b, c = out["g_norm"], out["g_prime_norm"], out["cos"]
    rhs = a**2 + b**2 - 2 * a * b * c
    assert out["l2"][1:].min() > 1e-3 * a[1:].min()  # real shift, not round-off
    # l2 and the norms are float64 reductions of float32 gradients: agreement to ~1e-6
    np.testing.assert_allclose(out["l2"] ** 2, rhs, rtol=1e-6, atol=1e-9 * (a**2).max())
    loop = ics(model, X, y, optimizer=opt, bn_mode="batch", method="loop")
    # vmap (batched conv) vs the prefix loop's unbatched kernels in float32: ~1e-5 relative
    np.testing.assert_allclose(out["l2"], loop["l2"], rtol=1e-4, atol=1e-7)


def test_layer_ownership_and_errors():
    model = three_layer("bn")
    owner = layer_of_params(model)
    assert owner == {"0.weight": 1, "0.bias": 1, "1.weight": 1, "1.bias": 1, "3.weight": 2,
                     "3.bias": 2, "4.weight": 2, "4.bias": 2, "6.weight": 3, "6.bias": 3}
    X, y = batch()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"layers must be in 1\.\.3 for this model; got \[4\]"):
        ics(model, X, y, optimizer=opt, layers=[2, 4])
    foreign = torch.optim.SGD([nn.Parameter(torch.zeros(2, 2))], lr=0.1)
    with pytest.raises(ValueError, match="not parameters of the model"):
        ics(model, X, y, optimizer=foreign)
    with pytest.raises(ValueError, match="bn_mode must be one of"):
        ics(model, X, y, optimizer=opt, bn_mode="train")


class Wrapped(nn.Module):
    """Not an nn.Sequential: the loop method cannot split it into a prefix and a suffix."""

    def __init__(self):
        super().__init__()
        self.body = three_layer("none")

    def forward(self, x):
        return self.body(x)


def test_method_errors():
    X, y = batch()
    model = three_layer("none")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="method must be one of"):
        ics(model, X, y, optimizer=opt, method="fast")
    wrapped = Wrapped()
    with pytest.raises(ValueError, match="needs an nn.Sequential"):
        ics(wrapped, X, y, optimizer=torch.optim.SGD(wrapped.parameters(), lr=0.1), method="loop")
    drop = nn.Sequential(*three_layer("none")[:3], nn.Dropout(0.5), *three_layer("none")[3:])
    with pytest.raises(ValueError, match="dropout"):
        ics(drop, X, y, optimizer=torch.optim.SGD(drop.parameters(), lr=0.1), method="loop")


CASES = {  # a noisy-BN DLN under SGD with momentum (optimiser state and noise streams to restore)
    "dln": (DataSpec("linear", train_size=32, dim=5, seed=3, dtype="float64"),
            ModelSpec("dln", norm="noisy_bn", depth=4, width=5),
            TrainConfig("sgd", lr=1e-2, momentum=0.9, batch_size=8, num_steps=6, loss="mse", eval_every=3,
                        record_every=2, record_size=8)),
    # the smoke VGG with BN on CIFAR-10 images, in float32
    "vgg": (DataSpec("cifar10-mini", train_size=64, test_size=32), ModelSpec("vgg", norm="bn", depth=11, width=0.125),
            TrainConfig("sgd", lr=0.1, batch_size=16, num_steps=5, eval_every=5, eval_size=32, record_every=2,
                        record_size=16)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_probe_on_stored_checkpoints_equals_probe_attached_during_training(case, tmp_path, monkeypatch):
    """The engine's promise: a probe run later on stored checkpoints (or on steps replayed from
    the nearest earlier one) gives the numbers it gives when attached to training."""
    monkeypatch.setenv("BNLIB_DATA", os.environ.get("BNLIB_DATA", "../shared/data"))
    d, m, t = CASES[case]
    store = runs.Store(tmp_path, device="cpu", progress=False)
    traj = runs.Trajectory(d, m, t, seed=1)
    store.history(traj, checkpoints=(0, 2, 4))
    data = get(d, "cpu")
    model = build(m, 1).to(dtype=data.X_train.dtype)
    with runs.train_threads(torch.device("cpu")):  # the store trains on one CPU thread; probe on it too
        stored = store.probe(traj, ICS(), [0, 2, 3, 4])  # step 3 has no checkpoint: replayed from 2
        attached = train.fit(model, data, t, seed=1, probes=[train.Probe("ics", ICS().measure, 1)],
                             progress=False).probes["ics"]
    assert store.checkpoint_steps(traj) == [0, 2, 3, 4, t.num_steps]
    rows = np.searchsorted(attached["step"], stored["step"])
    assert np.array_equal(attached["step"][rows], [0, 2, 3, 4])
    assert stored["l2"][1:, 1:].min() > 0  # real shift after step 0, so equality has teeth
    for k in ("l2", "cos", "g_norm", "g_prime_norm"):
        # the same computation on the same restored state: equal up to 1e-12 relative (in fact bit-equal)
        np.testing.assert_allclose(stored[k], attached[k][rows], rtol=1e-12, atol=0, err_msg=k)
    again = store.probe(traj, ICS(), [0, 2, 3, 4])  # cached now
    assert all(np.array_equal(again[k], stored[k], equal_nan=True) for k in stored)


def test_figures_fit_the_column_with_their_legend_off_the_data():
    """``plots.ics``: the loss-and-ICS grid and the heat maps are at most the column wide, the
    heat maps two to a row, and the one legend sits outside the axes."""
    import matplotlib

    matplotlib.use("Agg")
    from bnlib import plots
    from bnlib.plots import ics as figs
    from bnlib.train import History

    n, k, steps = 30, 4, np.arange(0, 30, 5)
    res = {"step": steps, "l2": np.full((len(steps), k), 0.1), "cos": np.full((len(steps), k), 0.9),
           "g_norm": np.ones((len(steps), k))}
    hist = {(norm, lr, 0): History(np.linspace(2.3, 1.0, n), np.zeros(n), np.zeros(n), np.array([0, n]),
                                   np.zeros(2), np.zeros(2)) for norm in ("none", "bn") for lr in (0.1, 0.01)}
    ics = {key: res for key in hist}
    grid = figs.curves(hist, ics, norms=("none", "bn"), seeds={0.1: [0], 0.01: [0]}, layers=[2, 3])
    heat = figs.heatmap([(f"panel {i}", res) for i in range(4)], metric="rel_l2")
    for fig in (grid, heat):
        fig.canvas.draw()
        assert fig.get_size_inches()[0] <= plots.COLUMN_IN
        assert all(ax.get_legend() is None for ax in fig.axes)
    assert len(grid.legends) == 1 and grid.axes[0].get_title() == "learning rate 0.1, 1 seed"
    assert len([ax for ax in heat.axes if ax.get_images()]) == 4 and heat.get_size_inches()[1] > 5  # 2 x 2
