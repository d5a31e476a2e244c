"""The activation-statistics probes: numbers against an explicit forward pass, no side effects,
and the probe specs run from stored checkpoints against direct calls and the always-on records.

The oracle runs the VGG's children one by one (no hooks, no functional_call) on a deep copy,
or, for the noisy networks, on the model itself right after the probe: the probe promises
that its noise draw is the one the next training forward on the same batch makes.
"""

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from bnlib import chapters, data, models, profiles, runs, train
from bnlib.claims import VERDICTS
from bnlib.models import vgg
from bnlib.norms import ActivationNoise
from bnlib.probes.activations import (
    BAND_PERCENTILES,
    ActivationBands,
    Moments,
    NoiseOnAccuracy,
    activation_stats,
    distribution_shift,
    lag_shift,
    noise_on_accuracy,
    record_batch,
    recording_site,
)

LAYERS = (1, 3, 9, 10)  # conv, conv, hidden linear, output linear of VGG-11


def tiny_vgg(norm):
    torch.manual_seed(0)
    return vgg(11, width=1 / 16, norm=norm, seed=3)


def batch():
    return torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def explicit_outputs(model, X, *, train):
    """Output of the child after each weight layer (its norm), or of the last layer itself."""
    model.train(train)
    children, h, outs, count = list(model), X, {}, 0
    with torch.no_grad():
        for k, child in enumerate(children):
            h = child(h)
            if isinstance(child, (torch.nn.Conv2d, torch.nn.Linear)):
                count += 1
                if k + 1 == len(children):
                    outs[count] = h
            elif isinstance(children[k - 1], (torch.nn.Conv2d, torch.nn.Linear)):
                outs[count] = h  # VGG puts a norm (Identity for "none") after every hidden layer
    return outs


def oracle_stats(outs, layer, *, num_samples=1024, seed=0):
    a = outs[layer].double()
    g = torch.Generator().manual_seed(seed + layer)
    idx = torch.randint(a.numel(), (num_samples,), generator=g)
    units = a.transpose(0, 1).reshape(a.shape[1], -1).numpy()  # (C, samples)
    q = np.percentile(a.flatten()[idx].numpy(), BAND_PERCENTILES)
    return q, units.mean(axis=1), units.var(axis=1)


def check(result, outs):
    for i in LAYERS:
        q, mean, var = oracle_stats(outs, i)
        # float64 on both sides; the forward itself ran in float32 in both: identical inputs
        np.testing.assert_allclose(result[f"layer{i}.q"], q, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(result[f"layer{i}.mean"], mean, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(result[f"layer{i}.var"], var, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("norm", ["none", "bn"])
@pytest.mark.parametrize("bn_mode", ["batch", "running"])
def test_matches_explicit_forward(norm, bn_mode):
    model, X = tiny_vgg(norm), batch()
    result = activation_stats(model, X, bn_mode=bn_mode, layers=LAYERS)
    check(result, explicit_outputs(copy.deepcopy(model), X, train=bn_mode == "batch"))


@pytest.mark.parametrize("norm", ["noisy_bn", "noise"])
def test_noisy_draw_is_the_next_training_draw(norm):
    model, X = tiny_vgg(norm), batch()
    model.train()
    model(X)  # one training step's forward: generators exist and have moved
    result = activation_stats(model, X, bn_mode="batch", layers=LAYERS)
    check(result, explicit_outputs(model, X, train=True))


def test_running_mode_switches_noise_off():
    model, X = tiny_vgg("noisy_bn"), batch()
    model.train()
    model(X)  # running statistics move away from their initial values
    result = activation_stats(model, X, bn_mode="running", layers=LAYERS)
    check(result, explicit_outputs(model, X, train=False))  # eval: BN on running stats only


def snapshot(model):
    return ([t.clone() for t in model.state_dict().values()],
            [m.training for m in model.modules()],
            [None if getattr(m, "generator", None) is None else m.generator.get_state()
             for m in model.modules()],
            torch.get_rng_state())


def equal(x, y):
    return x is y if x is None or y is None else torch.equal(x, y)


def same(a, b):
    """Every tensor, flag, generator state and the global RNG state bit-identical."""
    (tensors_a, flags_a, gens_a, rng_a), (tensors_b, flags_b, gens_b, rng_b) = a, b
    return (all(map(equal, tensors_a, tensors_b)) and flags_a == flags_b
            and all(map(equal, gens_a, gens_b)) and equal(rng_a, rng_b)
            and len(tensors_a) == len(tensors_b) and len(gens_a) == len(gens_b))


@pytest.mark.parametrize("norm", ["bn", "noisy_bn", "noise"])
@pytest.mark.parametrize("bn_mode", ["batch", "running"])
def test_leaves_model_and_rng_untouched(norm, bn_mode):
    model, X = tiny_vgg(norm), batch()
    model.train()
    model(X)  # generators born, running stats moved
    model[1].eval()  # a mixed set of mode flags must come back as it was
    before = snapshot(model)
    activation_stats(model, X, bn_mode=bn_mode, layers=LAYERS)
    assert same(before, snapshot(model))


def test_probe_before_first_step_does_not_shift_training_noise():
    model, twin, X = tiny_vgg("noisy_bn"), tiny_vgg("noisy_bn"), batch()
    activation_stats(model, X, bn_mode="batch", layers=(1,))  # generators do not exist yet
    assert all(getattr(m, "generator", 0) is None for m in model.modules()
               if hasattr(m, "generator"))
    model.train(), twin.train()
    assert torch.equal(model(X), twin(X))


def test_fixed_batch_gives_identical_records():
    model, X = tiny_vgg("noisy_bn"), batch()
    a = activation_stats(model, X, bn_mode="batch", layers=LAYERS)
    b = activation_stats(model, X, bn_mode="batch", layers=LAYERS)
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_recording_sites():
    model = tiny_vgg("noisy_bn")
    assert recording_site(model, 1) is model[1]  # the noisy-BN Sequential after conv 1
    assert recording_site(model, 10) is model[-1]  # the output layer: nothing after it
    with pytest.raises(ValueError, match=r"layer must be in 1\.\.10"):
        recording_site(model, 11)
    with pytest.raises(ValueError, match="bn_mode"):
        activation_stats(model, batch(), bn_mode="train", layers=(1,))
    with pytest.raises(ValueError, match="num_samples"):
        activation_stats(model, batch(), bn_mode="batch", layers=(1,), num_samples=0)


def test_distribution_shift_by_hand():
    mean = np.array([[0.0, 1.0], [0.5, 1.0], [0.5, -1.0]])
    var = np.array([[1.0, 4.0], [4.0, 4.0], [1.0, 1.0]])
    # |dmean| / sd: (0.5/1, 0/2), (0/2, 2/2) -> mean 0.375; |dlog var|: (log4, 0), (log4, log4)
    got = distribution_shift(mean, var, eps=0.0)
    assert got["mean_shift"] == pytest.approx(0.375, rel=1e-12)
    assert got["var_shift"] == pytest.approx(3 * np.log(4) / 4, rel=1e-12)
    with pytest.raises(ValueError, match="T >= 2"):
        distribution_shift(mean[:1], var[:1])


# ---------------------------------------------------------------- the probe specs, from the store

CIFAR = data.DataSpec("cifar10-mini", train_size=256, test_size=64)
SGD = train.TrainConfig(lr=0.1, batch_size=32, num_steps=4, eval_every=2, eval_size=48, record_every=2,
                        record_size=16)
NOISE = dict(n_mu=0.5, n_sigma=1.25, r_mu=0.1, r_sigma=0.1)


def traj(norm, seed=3):
    vgg = models.ModelSpec("vgg", norm=norm, depth=11, width=1 / 16, noise=NOISE if "noise" in norm else None)
    return runs.Trajectory(CIFAR, vgg, SGD, seed=seed)


def test_record_batch_is_the_trainers_record_batch():
    d = data.get(CIFAR)
    trainer = train.Trainer(models.build(traj("bn").model, 3), d, SGD, seed=3)
    assert torch.equal(record_batch(d, SGD.record_size, 3), trainer.X_rec)


@pytest.mark.parametrize("norm", ["none", "noisy_bn"])
def test_bands_probe_from_checkpoints_matches_the_records_and_a_direct_call(norm, tmp_path):
    """From the store at the record steps: the percentiles equal ``activation_stats`` on the
    checkpointed network and the record batch, and the moments of the very same activations equal
    the always-on records ``post{i}`` (float32 moments there, float64 here: rtol 1e-5)."""
    store, t = runs.Store(tmp_path, progress=False), traj(norm)
    hist = store.history(t, checkpoints=(0, 2))
    probe = ActivationBands(layers=[1, 5, 9], num_samples=64, batch_seed=3)
    got = store.probe(t, probe, hist.records["step"])
    assert got["step"].tolist() == [0, 2]
    assert set(got) == {"step", *(f"layer{i}.{s}q" for i in (1, 5, 9) for s in ("", "pre."))}
    X = record_batch(data.get(CIFAR), SGD.record_size, 3)
    for k, step in enumerate(got["step"]):
        model = store.model_at(t, int(step))
        ref = activation_stats(model, X, bn_mode="batch", layers=(1, 5, 9), num_samples=64, seed=3)
        for i in (1, 5, 9):
            np.testing.assert_array_equal(got[f"layer{i}.q"][k], ref[f"layer{i}.q"])
            np.testing.assert_array_equal(got[f"layer{i}.pre.q"][k], ref[f"layer{i}.pre.q"])
            for m in ("mean", "var"):
                for site, pre in (("post", ""), ("pre", "pre.")):
                    np.testing.assert_allclose(hist.records[f"{site}{i}.{m}"][k], ref[f"layer{i}.{pre}{m}"],
                                               rtol=1e-5, atol=1e-6)


def test_noise_on_probe_at_the_end_equals_the_function_on_the_final_network(tmp_path):
    store, t = runs.Store(tmp_path, progress=False), traj("noise")
    got = store.probe(t, NoiseOnAccuracy(), [SGD.num_steps])
    d = data.get(CIFAR)
    acc = noise_on_accuracy(store.model_at(t), d.X_test[:SGD.eval_size], d.y_test[:SGD.eval_size])
    assert got["test_acc"].tolist() == [acc]
    assert store.probe(t, NoiseOnAccuracy(size=10), [SGD.num_steps])["test_acc"][0] * 10 % 1 == 0


def test_noise_on_accuracy_against_a_copy_and_leaves_model_alone():
    model, X = tiny_vgg("noisy_bn"), batch()
    model.train()
    model(X)  # generators born, running statistics moved
    y = torch.arange(6) % 10
    twin = copy.deepcopy(model)  # same weights, statistics and generator states
    before = snapshot(model)
    acc = noise_on_accuracy(model, X, y)
    assert same(before, snapshot(model))
    twin.eval()
    for m in twin.modules():
        if isinstance(m, ActivationNoise):
            m.train()
    with torch.no_grad():
        assert acc == (twin(X).argmax(dim=1) == y).float().mean().item()


def test_chapter_runs_on_mnist_and_noisy_bn_shifts_match_the_noise_prediction(tmp_path):
    """The ics_noise chapter's runs on MNIST (1 channel, padded to 32x32), 8 smoke steps.

    Oracle: Algorithm 1 alone predicts noisy BN's shifts between records (Monte Carlo over the
    noise law, ``noise_only_shift``; the noise is redrawn every step, so the record spacing does
    not matter); BN's own moments barely move in 8 steps, so the measured shifts must be near it.
    Tolerance 35%: with 8-64 units and 3 record pairs per layer the average of |mu' - mu| / sd
    has a relative sampling sd of about 10-15%.
    """
    from bnlib.chapters import ics_noise as ch

    cfg = chapters.resolve("ics_noise", profile="smoke", dataset="mnist-mini", num_steps=8, variant_steps=8)
    store = runs.Store(tmp_path, progress=False)
    mnist, vgg, sgd = profiles.vgg_specs(cfg)
    assert mnist.pad_to == 32 and vgg.in_channels == 1
    nets = store.sweep(mnist, vgg, sgd, norm=["none", "bn"], lr=[cfg.lr], seeds=[cfg.seed])
    noisy = store.sweep(mnist, vgg.with_(noise=ch.noise(cfg)), sgd, norm=["noisy_bn", "noise"], lr=[cfg.lr],
                        seeds=[cfg.seed])
    hist = nets.hist | noisy.hist
    layers = ch.recorded_layers(cfg)
    assert layers == [1, 2, 6, 7, 8]  # 3, 11, 2, 9, 13 of 13 convs at 8 convs
    rec = hist[("noisy_bn", cfg.lr, cfg.seed)].records
    assert rec["step"].tolist() == list(ch.record_steps(cfg)) == [0, 2, 4, 6]
    assert rec["post1.mean"].shape == (4, 8) and rec["post8.var"].shape == (4, 64)  # width 1/8 of 64, 512
    pred = ch.noise_only_shift(cfg)
    shifts = ch.shifts_per_seed(cfg, hist)
    st = ch.stability(shifts).set_index(["network", "site", "layer"])
    for i in layers:
        assert st.loc[("noisy_bn", "post", i), "mean shift"] == pytest.approx(pred["mean_shift"], rel=0.35)
        assert st.loc[("noisy_bn", "post", i), "var shift"] == pytest.approx(pred["var_shift"], rel=0.35)
        assert st.loc[("bn", "post", i), "mean shift"] < pred["mean_shift"] / 5
    noise_on = noisy.probe(NoiseOnAccuracy(), ch.at_end)
    moments = (nets.probe(Moments(batch_seed=cfg.seed), lambda h: ch.lag_steps(cfg, h))
               | noisy.probe(Moments(batch_seed=cfg.seed), lambda h: ch.lag_steps(cfg, h)))
    assert ch.bn_identity_errors(moments)["var"] < 1e-4  # BN's output moments: beta, gamma^2 (identity)
    mnist = store.sweep(*ch.mnist_specs(cfg), norm=list(ch.MNIST_NORMS), lr=[cfg.lr], seeds=[cfg.seed]).hist
    rows = ch.claims(cfg, hist, noise_on, shifts, ch.lag_table(cfg, hist, moments), moments, mnist)
    assert {c.verdict for c in rows} <= set(VERDICTS) and rows[4].verdict == "identity"


@pytest.mark.parametrize("norm", ["none", "bn", "noisy_bn"])
def test_pre_site_is_the_weight_layers_own_output(norm):
    """Oracle: the children run one by one on a copy (same weights, statistics and noise state);
    the pre site of layer i is the output of conv/linear i, the output layer's both sites its output."""
    model, X = tiny_vgg(norm), batch()
    model.train()
    model(X)  # noise generators born
    twin = copy.deepcopy(model)
    result = activation_stats(model, X, bn_mode="batch", layers=LAYERS)
    raw, h, count = {}, X, 0
    with torch.no_grad():
        for child in twin:
            h = child(h)
            if isinstance(child, (torch.nn.Conv2d, torch.nn.Linear)):
                count += 1
                raw[count] = h.clone()
    for i in LAYERS:
        q, mean, var = oracle_stats(raw, i)
        np.testing.assert_allclose(result[f"layer{i}.pre.q"], q, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(result[f"layer{i}.pre.mean"], mean, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(result[f"layer{i}.pre.var"], var, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(result["layer10.pre.q"], result["layer10.q"])


@pytest.mark.parametrize("norm", ["bn", "noisy_bn"])
def test_moments_probe_between_records_equals_records_taken_at_every_step(norm, tmp_path):
    """The probe at steps between the records (replayed from checkpoints) equals the always-on
    records of the same trajectory trained with a record at every step: replay is exact and the
    batch is the trajectory's record batch (up to float32 rounding: the probe's forward may run on
    another thread count than training's). Plus BN's gamma and beta per slot."""
    store, t = runs.Store(tmp_path, progress=False), traj(norm)
    got = store.probe(t, Moments(batch_seed=3), [0, 1, 2, 3, 4])
    every = runs.Trajectory(t.data, t.model, replace(SGD, record_every=1), seed=3)
    rec = store.history(every).records
    assert got["step"].tolist() == [0, 1, 2, 3, 4] and rec["step"].tolist() == [0, 1, 2, 3]
    for k in rec:
        if k not in ("step", "grad_norm"):
            np.testing.assert_allclose(got[k][:4], rec[k], rtol=1e-4, atol=1e-5)
    model = store.model_at(t, 4)
    np.testing.assert_array_equal(got["gamma1"][-1], model[1].weight.detach().numpy() if norm == "bn"
                                  else model[1][0].weight.detach().numpy())
    assert got["beta9"].shape == got["post9.mean"].shape and float(got["eps1"][0]) == 1e-5


def test_moments_probe_has_no_bn_parameters_without_bn(tmp_path):
    store, t = runs.Store(tmp_path, progress=False), traj("none")
    got = store.probe(t, Moments(batch_seed=3), [1])
    assert not any(k.startswith(("gamma", "beta", "eps")) for k in got) and "pre1.mean" in got


def test_lag_shift_pairs_each_anchor_with_its_lag():
    steps = [0, 1, 10, 11]
    mean = np.array([[0.0], [1.0], [0.0], [3.0]])
    var = np.full((4, 1), 1.0)
    assert lag_shift(steps, mean, var, [0, 10], 1) == {"mean_shift": pytest.approx(2.0), "var_shift": 0.0}
    assert lag_shift(steps, mean, var, [0], 10) == {"mean_shift": 0.0, "var_shift": 0.0}
    with pytest.raises(ValueError, match="missing for \\[10\\]"):
        lag_shift(steps, mean, var, [0, 10], 10)


def test_distribution_figures_fit_the_column_with_their_legend_off_the_data():
    """``plots.distributions``: every figure at most the column wide, networks as rows of the band
    figure, one legend outside the axes."""
    import matplotlib

    matplotlib.use("Agg")
    import pandas as pd

    from bnlib import plots
    from bnlib.plots import distributions as figs
    from bnlib.train import History

    norms, layers, steps = ("none", "bn", "noisy_bn"), [1, 2, 3], np.arange(0, 50, 10)
    q = np.sort(np.random.default_rng(0).normal(size=(len(steps), 9)), axis=1)
    bands = {(n, 0.1, 0): {"step": steps, **{f"layer{i}.q": q for i in layers}} for n in norms}
    rec = {"step": steps, **{f"post{i}.{m}": np.ones((len(steps), 4)) for i in layers for m in ("mean", "var")}}
    hist = {(n, 0.1, 0): History(np.ones(50), np.zeros(50), np.zeros(50), np.array([0]), np.zeros(1), np.zeros(1),
                                 records=rec) for n in norms}
    shift = pd.DataFrame([{"network": n, "site": s, "layer": i, "seed": 0, "lag": lag, "mean shift": 0.1 * lag,
                           "var shift": 0.05} for n in norms for s in ("pre", "post") for i in layers
                          for lag in (1, 10)])
    made = [figs.bands(bands, norms=norms, layers=layers, lr=0.1, seed=0, paper_layers=[2, 9, 13]),
            figs.unit_traces(hist, norms=norms, layers=layers, lr=0.1, seed=0, num_units=2),
            figs.shifts(shift[shift["lag"] == 1], norms=norms), figs.lags(shift, norms=norms)]
    for fig in made:
        fig.canvas.draw()
        assert fig.get_size_inches()[0] <= plots.COLUMN_IN
        assert all(ax.get_legend() is None for ax in fig.axes)
    assert [sf._suptitle.get_text() for sf in made[0].subfigs] == [
        f"{plots.label(n)}, after the normaliser" for n in norms]
    assert all(len(fig.legends) == 1 for fig in made[1:])
