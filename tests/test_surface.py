"""Filter-normalised directions and the surface engine against independent oracles.

* Direction norms: a per-filter Python loop over ``torch.linalg.vector_norm`` of each slice.
* Grid points: a deep copy of the model whose weights are moved in place by hand
  (``p.add_(a * d1 + b * d2)``) and evaluated by its own ``forward`` in eval or train mode,
  chunk by chunk; float64, so the two agree to ~1e-12 (rtol 1e-9 leaves room for summation
  order and the first-layer basis combination).
* Resuming: an uninterrupted surface, compared for exact equality.
All nets are tiny and float64; every generator is seeded.
"""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from bnlib import data
from bnlib.data import DataSpec
from bnlib.models import ModelSpec, build, lenet, mlp, vgg
from bnlib.probes import fused
from bnlib.probes import surface as engine
from bnlib.probes.directions import normalize_direction, random_direction
from bnlib.probes.surface import evaluate_grid, interpolate, sharpness, slice_1d, surface_2d
from bnlib.runs import Store, Trajectory
from bnlib.train import StepContext, TrainConfig, make_optimizer

RTOL = 1e-9  # float64 forward passes that differ only in summation order


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: on the shared 2-core machine, 2 OpenMP threads spin and run tiny
    float64 convs ~40x slower (measured). Restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def net(kind: str = "lenet", norm: str = "bn", n: int = 24, seed: int = 0):
    """A float64 net with non-trivial biases and BN running statistics, and a batch (X, y)."""
    torch.manual_seed(seed)  # the batch and the perturbations below; the builders seed themselves
    model = (lenet(norm=norm, seed=seed) if kind == "lenet" else mlp(norm=norm, sizes=(12, 7, 5), seed=seed)).double()
    X = torch.randn(n, 3, 32, 32, dtype=torch.float64) if kind == "lenet" else \
        torch.randn(n, 12, dtype=torch.float64)
    y = torch.randint(0, 10 if kind == "lenet" else 5, (n,))
    with torch.no_grad():
        for p in model.parameters():  # biases and BN's beta away from zero, gamma away from one
            p.add_(0.1 * torch.randn_like(p))
        for _ in range(3):            # running statistics away from (0, 1)
            model.train()(X + torch.randn_like(X))
    model.eval()  # the engine must not care which mode the model is left in
    return model, X, y


def params_of(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def hand_moved_loss(model, X, y, moves, *, train: bool, batch_size: int) -> float:
    """Mean cross-entropy of a copy whose weights were moved in place by ``sum_k a_k d_k``."""
    m = copy.deepcopy(model).train(train)
    with torch.no_grad():
        for name, p in m.named_parameters():
            for a, d in moves:
                p.add_(a * d[name])
        total = sum(nn.functional.cross_entropy(m(Xc), yc, reduction="sum").item()
                    for Xc, yc in zip(X.split(batch_size), y.split(batch_size)))
    return total / len(X)


# ---------------------------------------------------------------- directions

@pytest.mark.parametrize("kind,filters", [("lenet", 6 + 16 + 120 + 84 + 10), ("mlp", 7 + 5)])
def test_each_filter_has_the_norm_of_its_weight_filter(kind, filters):
    model, _, _ = net(kind)
    params = params_of(model)
    d = random_direction(params, seed=3)
    checked = 0
    for name, w in params.items():
        if w.dim() <= 1:
            continue
        for i in range(w.shape[0]):  # filter i: output channel of a conv, row of a linear
            dn = torch.linalg.vector_norm(d[name][i]).item()
            wn = torch.linalg.vector_norm(w[i]).item()
            assert dn == pytest.approx(wn, rel=1e-12), (name, i)
            checked += 1
    assert checked == filters  # every conv output channel and linear row was checked


def test_bias_and_bn_parameters_get_zero_direction_by_default():
    model, _, _ = net("lenet")
    params = params_of(model)
    d = random_direction(params, seed=3)
    one_dim = [k for k, v in params.items() if v.dim() <= 1]
    assert any(".bias" in k for k in one_dim) and len(one_dim) >= 10  # conv/linear biases + BN
    for k in one_dim:
        assert torch.count_nonzero(d[k]) == 0, k
    # with the option off the direction is the parameter itself (Li et al.'s code)
    d_all = random_direction(params, seed=3, ignore_bias_bn=False)
    for k in one_dim:
        assert torch.equal(d_all[k], params[k]), k
    assert all(torch.equal(d_all[k], d[k]) for k in params if k not in one_dim)


def test_layer_and_none_normalisations():
    model, _, _ = net("mlp")
    params = params_of(model)
    raw = {k: torch.randn(v.shape, generator=torch.Generator().manual_seed(7), dtype=v.dtype)
           for k, v in params.items()}
    layer = normalize_direction(raw, params, norm="layer", ignore_bias_bn=False)
    none = normalize_direction(raw, params, norm="none", ignore_bias_bn=False)
    for k, w in params.items():
        if w.dim() <= 1:  # copied from the parameter whatever the normalisation
            assert torch.equal(layer[k], w) and torch.equal(none[k], w)
            continue
        assert layer[k].norm().item() == pytest.approx(w.norm().item(), rel=1e-12)
        torch.testing.assert_close(layer[k] / layer[k].norm(), raw[k] / raw[k].norm())
        assert torch.equal(none[k], raw[k])
    with pytest.raises(ValueError, match="norm must be one of"):
        normalize_direction(raw, params, norm="weight")


def test_same_seed_same_direction_and_different_seeds_differ():
    params = params_of(net("mlp")[0])
    a, b, c = (random_direction(params, seed=s) for s in (1, 1, 2))
    assert all(torch.equal(a[k], b[k]) for k in params)
    assert not torch.equal(a["1.weight"], c["1.weight"])


# ---------------------------------------------------------------- the engine

@pytest.mark.parametrize("kind", ["lenet", "mlp"])
@pytest.mark.parametrize("bn_mode", ["running", "batch"])
@pytest.mark.parametrize("points_per_call,reuse", [(1, True), (4, True), (3, False)])
def test_grid_point_equals_model_moved_by_hand(kind, bn_mode, points_per_call, reuse):
    model, X, y = net(kind)
    params = params_of(model)
    # d2 also moves biases and BN parameters, so the first-layer basis must carry the bias
    d1 = random_direction(params, seed=1)
    d2 = random_direction(params, seed=2, ignore_bias_bn=False)
    xs, ys = np.array([-0.5, 0.0, 0.25]), np.array([-0.2, 0.4])
    s = surface_2d(model, X, y, directions=(d1, d2), xs=xs, ys=ys, bn_mode=bn_mode,
                   batch_size=10, points_per_call=points_per_call, reuse_first_layer=reuse)
    assert s.loss.shape == (3, 2) and s.acc.shape == (3, 2)
    for i, a in enumerate(xs):
        for j, b in enumerate(ys):
            want = hand_moved_loss(model, X, y, [(a, d1), (b, d2)], train=bn_mode == "batch",
                                   batch_size=10)
            assert s.loss[i, j] == pytest.approx(want, rel=RTOL), (a, b)
    assert len(np.unique(s.loss)) == 6  # the directions do move the loss


@pytest.mark.parametrize("bn_mode", ["batch", "running"])
def test_engine_leaves_the_model_untouched(bn_mode):
    model, X, y = net("lenet")
    model.train()
    before = copy.deepcopy(model.state_dict())
    rng = torch.get_rng_state()
    params = params_of(model)
    slice_1d(model, X, y, direction=random_direction(params, seed=1), xs=np.linspace(-1, 1, 5),
             bn_mode=bn_mode, points_per_call=2)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # incl. running stats
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(rng, torch.get_rng_state())


def test_interpolation_endpoints_are_the_two_parameter_sets():
    start_model, X, y = net("mlp", seed=0)
    end_model, _, _ = net("mlp", seed=1)
    start, end = params_of(start_model), params_of(end_model)
    s = interpolate(end_model, X, y, start=start, end=end, alphas=[0.0, 0.5, 1.0], bn_mode="batch")
    for alpha, got in zip([0.0, 0.5, 1.0], s.loss):
        m = copy.deepcopy(end_model)
        with torch.no_grad():
            for k, p in m.named_parameters():
                p.copy_((1 - alpha) * start[k] + alpha * end[k])
        want = nn.functional.cross_entropy(m.train()(X), y).item()
        assert got == pytest.approx(want, rel=RTOL)


def test_sharpness_is_the_mean_rise_along_both_signs():
    model, X, y = net("mlp")
    params = params_of(model)
    r = 0.3
    got = sharpness(model, X, y, radius=r, num_directions=2, seed=5)
    centre = hand_moved_loss(model, X, y, [], train=False, batch_size=len(X))
    rises = [hand_moved_loss(model, X, y, [(s * r, random_direction(params, seed=5 + k))],
                             train=False, batch_size=len(X)) - centre
             for k in range(2) for s in (1, -1)]
    assert got["loss"] == pytest.approx(centre, rel=RTOL)
    assert got["rise"] == pytest.approx(np.mean(rises), rel=1e-7)  # a difference of ~1 numbers
    assert got["rise_std"] == pytest.approx(np.std(rises), rel=1e-6)
    assert sharpness(model, X, y, radius=0.0, num_directions=1)["rise"] == 0.0


def test_bad_arguments_are_named():
    model, X, y = net("mlp")
    d = random_direction(params_of(model), seed=1)
    with pytest.raises(ValueError, match="coords has 2 columns but 1 directions"):
        evaluate_grid(model, X, y, directions=[d], coords=np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"not parameters of the model"):
        evaluate_grid(model, X, y, directions=[{"nope.weight": torch.zeros(1)}], coords=[0.0])
    with pytest.raises(ValueError, match="bn_mode"):
        evaluate_grid(model, X, y, directions=[d], coords=[0.0], bn_mode="train")


# ---------------------------------------------------------------- the fused path (running BN)

def float32_net(kind: str):
    """A float32 book net with BN whose gamma, beta, biases and running statistics are away
    from their initial values, and a batch."""
    torch.manual_seed(0)
    model = {"lenet": lambda: lenet(norm="bn", seed=0), "vgg": lambda: vgg(11, width=0.125, norm="bn", seed=0),
             "mlp": lambda: mlp(norm="bn", sizes=(12, 9, 7, 5), seed=0)}[kind]()
    X = torch.randn(20, 12) if kind == "mlp" else torch.randn(20, 3, 32, 32)
    y = torch.randint(0, 5 if kind == "mlp" else 10, (20,))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
        model.train()(X + torch.randn_like(X))  # running statistics away from (0, 1)
    return model.eval(), X, y


@pytest.mark.parametrize("kind", ["lenet", "vgg", "mlp"])
@pytest.mark.parametrize("reuse", [True, False])
def test_fused_path_equals_functional_call_path(kind, reuse):
    """Oracle: the plain ``functional_call`` path (``fuse=False``) at the same grid points, with
    a direction that moves BN's gamma and beta (folded per point) and one that does not (the
    first BN folded into the basis once)."""
    model, X, y = float32_net(kind)
    params = params_of(model)
    dirs = (random_direction(params, seed=1), random_direction(params, seed=2, ignore_bias_bn=False))
    coords = np.array([[0.0, 0.0], [0.5, -0.3], [-0.8, 0.6], [0.2, 0.9], [1.0, 0.0]])
    for d in ([dirs[0]], dirs):  # BN fixed / moved along the second direction
        c = coords[:, : len(d)]
        opts = dict(directions=d, coords=c, batch_size=8, reuse_first_layer=reuse)
        plain, plain_acc = evaluate_grid(model, X, y, fuse=False, **opts)
        fast, fast_acc = evaluate_grid(model, X, y, **opts)
        np.testing.assert_allclose(fast, plain, rtol=1e-5)
        assert np.array_equal(fast_acc, plain_acc)
        assert len(np.unique(plain)) == len(c)  # the points differ


@pytest.mark.parametrize("kind", ["lenet", "vgg", "mlp"])
def test_plan_logits_equal_the_model_in_eval_mode(kind):
    model, X, y = float32_net(kind)
    plan = fused.compile_plan(model)
    params, buffers = dict(model.named_parameters()), dict(model.named_buffers())
    with torch.no_grad():
        got = plan.forward(plan.weights(params, buffers), X)
        want = model(X)
    assert (got - want).abs().max() <= 1e-5 * want.abs().max()  # float32 rounding (both ~1e-6 off float64)
    affine = [s for s in plan.steps if isinstance(s, fused.Affine)]
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert len(bns) > 1 and sum(s.bn is not None for s in affine) == len(bns)  # every BN is in a step
    if kind != "mlp":  # conv/linear then BN: each BN folded into its layer, and pools before ReLUs
        assert all(s.layer is not None for s in affine)
        assert [type(s).__name__ for s in plan.steps[:3]] == ["Affine", "MaxPool", "ReLU"]
    assert plan.pools_first() == (kind != "mlp")  # the basis is then combined and pooled by phases


@pytest.mark.parametrize("shape,pool", [((3, 5, 8, 6), nn.MaxPool2d(2)), ((3, 5, 7, 9), nn.MaxPool2d(2)),
                                        ((3, 5, 8, 8), nn.MaxPool2d(3, 2, 1)), ((2, 4, 6, 6), nn.MaxPool2d((2, 2)))])
@pytest.mark.parametrize("channels_last", [True, False])
def test_max_pool_step_equals_max_pool2d_exactly(shape, pool, channels_last):
    x = torch.randn(shape)
    x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
    assert torch.equal(fused.MaxPool(pool)((), x), pool(x))


@pytest.mark.parametrize("size,padding", [(8, 0), (9, 1), (10, 2)])
def test_conv_phases_are_the_strided_views_of_its_output(size, padding):
    """Oracle: the conv's full output, sliced at each 2x2 window position and cropped to the
    pool's size; their maximum is the pool."""
    conv = nn.Conv2d(3, 4, 3, padding=padding).double()
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    params = [dict(conv.named_parameters()), {k: torch.randn_like(v) for k, v in conv.named_parameters()}]
    phases = fused.phases(conv, "", [{f".{k}": v for k, v in p.items()} for p in params], x)
    for t, p in enumerate(params):
        out = nn.functional.conv2d(x, p["weight"], p["bias"], padding=padding)
        h = out.shape[-1] // 2
        for (i, j), got in zip([(0, 0), (0, 1), (1, 0), (1, 1)], phases):
            torch.testing.assert_close(got[t], out[..., i:2 * h:2, j:2 * h:2], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(torch.stack([ph[t] for ph in phases]).amax(0),
                                   nn.functional.max_pool2d(out, 2), rtol=1e-12, atol=1e-12)


def test_unknown_layers_and_batch_mode_take_the_plain_path(monkeypatch):
    calls = []
    plain = engine._plain_forward
    monkeypatch.setattr(engine, "_plain_forward", lambda *a, **kw: calls.append(1) or plain(*a, **kw))
    model, X, y = net("lenet")
    d = random_direction(params_of(model), seed=1)
    slice_1d(model, X, y, direction=d, xs=[0.0, 0.5], bn_mode="batch")
    assert calls  # batch-mode BN is not an affine map: the model runs as it is
    calls.clear()
    slice_1d(model, X, y, direction=d, xs=[0.0, 0.5])
    assert not calls  # running BN: the fused plan
    ln = lenet(norm="ln", seed=0).double()
    assert fused.compile_plan(ln) is None
    got = slice_1d(ln, X, y, direction=random_direction(params_of(ln), seed=1), xs=[0.5]).loss
    assert calls and got[0] == pytest.approx(hand_moved_loss(
        ln, X, y, [(0.5, random_direction(params_of(ln), seed=1))], train=False, batch_size=250), rel=RTOL)


# ---------------------------------------------------------------- resuming

class Interrupt(Exception):
    pass


SCORES = engine._scores


def count_groups(monkeypatch, stop_after: int | None = None) -> list[int]:
    """Count the groups of grid points the engine evaluates; raise ``Interrupt`` in the group
    after ``stop_after``."""
    calls = [0]

    def counted(*args, **kw):
        calls[0] += 1
        if stop_after is not None and calls[0] > stop_after:
            raise Interrupt
        return SCORES(*args, **kw)
    monkeypatch.setattr(engine, "_scores", counted)
    return calls


@pytest.mark.parametrize("fuse", [True, False])
def test_interrupted_and_resumed_surface_equals_uninterrupted(tmp_path, monkeypatch, fuse):
    model, X, y = net("lenet")
    params = params_of(model)
    dirs = (random_direction(params, seed=1), random_direction(params, seed=2))
    grid = dict(directions=dirs, xs=np.linspace(-1, 1, 4), ys=np.linspace(-1, 1, 4),
                batch_size=8, points_per_call=2, fuse=fuse)
    group = engine.FUSED_GROUP if fuse else 2  # 16 points: 4 groups of 4 or 8 groups of 2
    full = surface_2d(model, X, y, **grid)

    path = tmp_path / "surface.npz"
    count_groups(monkeypatch, stop_after=2)  # groups 1-2 finish, group 3 dies
    with pytest.raises(Interrupt):
        surface_2d(model, X, y, path=path, **grid)
    with np.load(path) as partial:
        assert partial["done"].tolist() == [True] * (2 * group) + [False] * (16 - 2 * group)
        assert not (tmp_path / "surface.npz.tmp.npz").exists()

    calls = count_groups(monkeypatch)
    resumed = surface_2d(model, X, y, path=path, **grid)
    assert calls[0] == 16 // group - 2  # only the unfinished groups ran
    assert np.array_equal(resumed.loss, full.loss) and np.array_equal(resumed.acc, full.acc)

    calls = count_groups(monkeypatch)
    again = surface_2d(model, X, y, path=path, **grid)  # complete: nothing is recomputed
    assert calls[0] == 0 and np.array_equal(again.loss, full.loss)


def test_resume_refuses_a_file_from_other_inputs(tmp_path):
    model, X, y = net("mlp")
    d = random_direction(params_of(model), seed=1)
    path = tmp_path / "line.npz"
    slice_1d(model, X, y, direction=d, xs=np.linspace(-1, 1, 4), path=path)
    with pytest.raises(ValueError, match="other inputs"):
        slice_1d(model, X, y, direction=d, xs=np.linspace(-1, 1, 5), path=path)


def test_first_layer_reuse_is_skipped_when_it_would_not_fit(monkeypatch):
    from bnlib.probes import surface

    model, X, y = net("mlp")
    grid = dict(direction=random_direction(params_of(model), seed=1), xs=[-0.7, 0.3, 0.9])
    plain = slice_1d(model, X, y, reuse_first_layer=False, **grid).loss
    calls = []
    basis = surface._first_layer_basis
    monkeypatch.setattr(surface, "_first_layer_basis", lambda *a: calls.append(1) or basis(*a))
    np.testing.assert_allclose(slice_1d(model, X, y, **grid).loss, plain, rtol=RTOL)
    assert calls  # the basis was used
    calls.clear()
    monkeypatch.setattr(surface, "BASIS_BYTES", 0)
    assert np.array_equal(slice_1d(model, X, y, **grid).loss, plain) and not calls  # fell back


# ---------------------------------------------------------------- probe specs on the run store

def test_probe_specs_on_a_stored_trajectory_equal_the_engine_on_its_weights(tmp_path):
    """Oracle: the engine's functions called by hand on ``store.model_at`` (the trained net) and,
    for the interpolation, the step-0 checkpoint's net run in train mode at alpha = 0."""
    store = Store(tmp_path / "runs", progress=False)
    traj = Trajectory(DataSpec("cifar10-mini", train_size=64), ModelSpec("lenet", norm="bn"),
                      TrainConfig("adam", lr=0.01, batch_size=16, num_steps=3, eval_every=3, eval_size=32,
                                  record_every=2, record_size=16), seed=3)
    end = [store.history(traj).steps_done]
    model = store.model_at(traj)
    d = data.get(traj.data)
    X, y = d.X_train[:16], d.y_train[:16]
    params = params_of(model)
    d1, d2 = random_direction(params, seed=1), random_direction(params, seed=2)
    grid = np.linspace(-1, 1, 3)

    plane = store.probe(traj, engine.Plane(size=16, points=3, seeds=(1, 2)), end)
    want = surface_2d(model, X, y, directions=(d1, d2), xs=grid, ys=grid).loss
    assert np.array_equal(plane["loss"][0], want) and np.array_equal(plane["grid"][0], grid)
    assert not list((tmp_path / "runs" / "partial").glob("*"))  # the finished grid lives in the store

    slices = store.probe(traj, engine.Slices(size=16, points=3, seeds=(1, 2)), end)
    for got, direction in zip(slices["loss"][0], (d1, d2)):
        assert np.array_equal(got, slice_1d(model, X, y, direction=direction, xs=grid).loss)

    sharp = store.probe(traj, engine.Sharpness(size=16, radius=0.1, directions=2, seed=5, bn_mode="batch"), end)
    assert float(sharp["rise"][0]) == sharpness(model, X, y, radius=0.1, num_directions=2, seed=5,
                                                bn_mode="batch")["rise"]

    line = store.probe(traj, engine.Interpolation(traj.model, traj.seed, size=16, points=3, lo=0.0, hi=1.0), end)
    with torch.no_grad():
        at_init = nn.functional.cross_entropy(store.model_at(traj, 0).train()(X), y).item()
        at_end = nn.functional.cross_entropy(copy.deepcopy(model).train()(X), y).item()
    assert line["loss"][0, 0] == pytest.approx(at_init, rel=1e-5)  # float32 net
    assert line["loss"][0, -1] == pytest.approx(at_end, rel=1e-5)
    assert line["loss"][0, 0] != pytest.approx(line["loss"][0, -1], rel=1e-3)  # training moved it


def test_quick_plan_trains_lenet_for_six_epochs():
    """Quick drops VGG-16 (without BN it does not train under Adam in a CPU budget) and trains
    LeNet for 6 of the seed's 20 epochs (the book's CPU budget); the paper profile keeps both
    networks, 20 epochs and three seeds."""
    from bnlib import chapters
    from bnlib.chapters import surfaces as ch

    cfg = chapters.resolve("surfaces", profile="quick")
    assert cfg.archs == ("lenet",) and cfg.lenet_steps == 2340 and ch.adam(cfg, "lenet").num_steps == 2340
    assert ch.probe_steps(cfg, "lenet")[-1] < 2340 and cfg.probe_every == 780  # pays for the Adam line
    paper = chapters.resolve("surfaces", profile="paper")
    assert paper.archs == ch.ARCHS and paper.num_seeds == 3 and paper.vgg_steps == paper.lenet_steps == 7800


def test_update_line_follows_the_step_adam_takes_and_leaves_the_trainer_alone():
    """Oracle: the next real Adam step from the same state. s = 1 of the line is that step, and
    the probe changes neither the weights nor the optimiser's moments (which a plain
    ``load_state_dict`` would share)."""
    torch.manual_seed(0)
    model = build(ModelSpec("lenet", norm="bn"), 0)
    cfg = TrainConfig("adam", lr=0.01, batch_size=8, num_steps=3)
    opt = make_optimizer(model, cfg)
    X, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
    ctx = StepContext(2, model, X, y, nn.functional.cross_entropy, opt, cfg)
    u = engine.optimizer_update(ctx)
    line = engine.UpdateLine((0.5, 1.0)).measure(ctx)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt.zero_grad()
    nn.functional.cross_entropy(model(X), y).backward()
    opt.step()
    for k, v in model.named_parameters():
        assert torch.allclose(v.detach() - before[k], u[k], atol=1e-7)
    norm = float(torch.sqrt(sum(t.pow(2).sum() for t in u.values())))
    assert line["update_norm"] == pytest.approx(norm, rel=1e-5)
    assert line["distance"] == pytest.approx([0.5 * norm, norm], rel=1e-5)


@pytest.mark.parametrize("sign_a, sign_b, concave, convex", [
    (-1, -1, 1.0, 0.0), (1, 1, 0.0, 1.0), (1, -1, 0.0, 0.0)])  # cap, bowl, saddle
def test_definite_shares_of_quadratic_surfaces(sign_a, sign_b, concave, convex):
    a, b = np.meshgrid(np.linspace(-1, 1, 7), np.linspace(-1, 1, 7), indexing="ij")
    got = engine.definite_shares(sign_a * a ** 2 + sign_b * b ** 2 + 0.3 * a * b)
    assert got == {"concave": concave, "convex": convex}
