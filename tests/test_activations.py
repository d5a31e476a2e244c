"""The activation-statistics probe: numbers against an explicit forward pass, and no side effects.

The oracle runs the VGG's children one by one (no hooks, no functional_call) on a deep copy,
or, for the noisy networks, on the model itself right after the probe: the probe promises
that its noise draw is the one the next training forward on the same batch makes.
"""

import copy

import numpy as np
import pytest
import torch

from bnlib import chapters
from bnlib.claims import VERDICTS
from bnlib.models import vgg
from bnlib.probes.activations import (
    BAND_PERCENTILES,
    activation_stats,
    distribution_shift,
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


def test_chapter_smoke_on_mnist_matches_the_noise_prediction():
    """The ics_noise chapter end to end on MNIST (1 channel, padded to 32x32), 4 steps.

    Oracle: Algorithm 1 alone predicts noisy BN's step-to-step shifts (Monte Carlo over the
    noise law, ``noise_only_shift``); BN's own moments barely move in 4 steps, so the measured
    shifts must be near it. Tolerance 35%: with 8-64 units and 3 step pairs per layer the
    average of |mu' - mu| / sd has a relative sampling sd of about 10-15%.
    """
    from bnlib.chapters import ics_noise as ch

    cfg = chapters.resolve("ics_noise", profile="smoke", dataset="mnist-mini", num_steps=4)
    hist = ch.run(cfg, progress=False)
    layers = ch.recorded_layers(cfg)
    assert layers == [1, 2, 6, 7, 8]  # 3, 11, 2, 9, 13 of 13 convs at 8 convs
    rec = hist[("noisy_bn", cfg.lr, cfg.seed)].probes["act"]
    assert rec["step"].tolist() == [0, 1, 2, 3]
    assert rec["layer1.q"].shape == (4, len(BAND_PERCENTILES)) and rec["layer8.mean"].shape[0] == 4
    pred = ch.noise_only_shift(cfg)
    st = ch.stability(cfg, hist).set_index(["network", "layer"])
    for i in layers:
        assert st.loc[("noisy_bn", i), "mean shift"] == pytest.approx(pred["mean_shift"], rel=0.35)
        assert st.loc[("noisy_bn", i), "var shift"] == pytest.approx(pred["var_shift"], rel=0.35)
        assert st.loc[("bn", i), "mean shift"] < pred["mean_shift"] / 5
    assert {c.verdict for c in ch.claims(cfg, hist)} <= set(VERDICTS)


def test_noise_on_accuracy_against_a_copy_and_leaves_model_alone():
    from bnlib.chapters.ics_noise import map_layer, noise_on_accuracy
    from bnlib.norms import ActivationNoise

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
    # paper layers (of 13 convs) at the same relative depth: identity for VGG-16's 13 convs
    assert [map_layer(i, 16) for i in (2, 3, 9, 11, 13)] == [2, 3, 9, 11, 13]
    assert [map_layer(i, 11) for i in (2, 3, 9, 11, 13)] == [1, 2, 6, 7, 8]
