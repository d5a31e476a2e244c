"""The training loop: determinism, probes that cannot steer it, divergence as a result."""

import numpy as np
import pytest
import torch

from bnlib import data, models, train
from bnlib.functional import clone_state, functional_loss, probing


def tiny_data():
    return data.load("cifar10-mini", train_size=256, test_size=64)


SPEC = models.ModelSpec("vgg", depth=11, width=0.0625, norm="noisy_bn")


def tiny_run(probes=(), lr=0.05, steps=6, **kw):
    model = models.build(SPEC, 0)
    cfg = train.TrainConfig(lr=lr, batch_size=32, num_steps=steps, eval_every=3, record_every=2, record_size=16, **kw)
    return model, train.fit(model, tiny_data(), cfg, seed=1, probes=probes, progress=False)


def assert_same_history(a: train.History, b: train.History):
    for k, v in a.to_arrays().items():
        np.testing.assert_array_equal(v, b.to_arrays()[k]) if "time" not in k else None


def test_same_config_and_seed_give_identical_histories():
    (m1, h1), (m2, h2) = tiny_run(), tiny_run()
    assert_same_history(h1, h2)
    for (k, p), q in zip(m1.state_dict().items(), m2.state_dict().values()):
        assert torch.equal(p, q), k


def meddling_probe(ctx: train.StepContext) -> dict:
    """A probe that does everything a probe may: global RNG draws, train-mode forward passes,
    gradients. Through the functional path none of it may reach the model or the batches."""
    torch.rand(100)
    params, buffers = clone_state(ctx.model)
    params = {k: v.requires_grad_() for k, v in params.items()}
    with probing(ctx.model, "batch"):
        loss = functional_loss(ctx.model, ctx.loss, ctx.X, ctx.y, buffers)(params)
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return {"loss": loss.item(), "grad_norm": sum(g.norm() ** 2 for g in grads if g is not None).item()}


def test_a_probe_cannot_change_the_training_trajectory():
    _, plain = tiny_run()
    _, probed = tiny_run(probes=[train.Probe("meddle", meddling_probe, every=2)])
    assert_same_history(
        train.History(**{**probed.__dict__, "probes": {}}), plain)
    rec = probed.probes["meddle"]
    assert rec["step"].tolist() == [0, 2, 4]
    # the probe saw the same loss the training step computed on that batch (BN in train mode;
    # the noise layers draw the same noise because their generators are restored)
    np.testing.assert_allclose(rec["loss"], plain.train_loss[[0, 2, 4]], rtol=1e-5)


def test_divergence_is_recorded_not_raised():
    torch.manual_seed(0)
    d = data.linear_regression(n=64)
    model = models.deep_linear(depth=10)
    h = train.fit(model, d, train.TrainConfig(lr=10.0, batch_size=None, num_steps=200, loss="mse",
                                              eval_every=50), progress=False)
    assert h.diverged and 0 < h.steps_done < 200
    assert np.all(np.isfinite(h.train_loss))  # the history stops before the non-finite loss


def test_full_batch_mode_is_gradient_descent():
    torch.manual_seed(0)
    d = data.linear_regression(n=32, dim=3)
    model = torch.nn.Linear(3, 3, bias=False)
    w0 = model.weight.detach().clone()
    train.fit(model, d, train.TrainConfig(lr=0.01, batch_size=None, num_steps=1, loss="mse"), progress=False)
    X, Y = d.X_train, d.y_train
    grad = 2 * ((X @ w0.T - Y).T @ X) / len(X)  # d/dW mean_i ||W x_i - y_i||^2
    torch.testing.assert_close(model.weight.detach(), w0 - 0.01 * grad)


def test_adam_and_history_round_trip():
    _, h = tiny_run(optimizer="adam", lr=1e-3)
    back = train.History.from_arrays(h.to_arrays())
    assert_same_history(h, back)
    assert h.eval_step.tolist() == [0, 3, 6] and np.all((0 <= h.test_acc) & (h.test_acc <= 1))


@pytest.mark.parametrize("field, value, match", [
    ("lr", -1.0, r"TrainConfig.lr must be a positive float; got -1.0"),
    ("num_steps", 0, r"TrainConfig.num_steps must be a positive int; got 0"),
    ("batch_size", 10_000, r"TrainConfig.batch_size must be None \(full batch\) or an int in \[1, 256\]"),
])
def test_bad_train_config_fails_before_training(field, value, match):
    model = models.mlp()
    with pytest.raises(ValueError, match=match):
        train.fit(model, tiny_data(), train.TrainConfig(**{field: value}), progress=False)


def test_evaluate_leaves_bn_statistics_and_mode_alone():
    model = models.vgg(11, width=0.0625, norm="bn").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    d = tiny_data()
    for mode in ("batch", "running"):
        train.evaluate(model, d.X_test, d.y_test, bn_mode=mode)
    assert model.training
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_build_seeds_its_own_initialisation_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a, b = models.build(SPEC, 3), models.build(SPEC, 3)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = models.build(SPEC, 4)
    assert not all(torch.equal(p, q) for p, q in zip(a.parameters(), c.parameters()))


def test_batch_of_any_step_is_a_function_of_seed_and_step():
    d = tiny_data()
    full = train.Batches(len(d.X_train), 32, 5, d.device)
    seq = [full(t).clone() for t in range(20)]  # 2.5 epochs in order
    fresh = train.Batches(len(d.X_train), 32, 5, d.device)
    for t in (17, 3, 9, 0, 19):  # out of order, across epochs
        assert torch.equal(fresh(t), seq[t])
    assert sorted(torch.cat(seq[:8]).tolist()) == list(range(256))  # one epoch = one permutation


def test_always_on_records_before_and_after_every_normaliser():
    model, h = tiny_run(steps=6)
    r = h.records
    assert r["step"].tolist() == [0, 2, 4] and r["grad_norm"].shape == (3, len(models.weight_layers(model)))
    slots = models.norm_slots(model)
    assert len(slots) == len(models.weight_layers(model)) - 1
    assert r["pre1.mean"].shape == (3, slots[0][0].num_features)
    # after BN (before the noise) a channel has mean ~0 / var ~1; with noise it does not: the
    # post site is the slot's output, BN + noise, so its variance differs from 1
    assert np.all(r["pre1.var"] > 0) and not np.allclose(r["post1.var"], 1, atol=1e-3)


def test_resumed_trainer_is_bit_identical_to_an_uninterrupted_one():
    d = tiny_data()
    cfg = train.TrainConfig(lr=0.05, batch_size=32, num_steps=12, eval_every=3, record_every=2, record_size=16,
                            optimizer="adam")
    whole = train.fit(models.build(SPEC, 0), d, cfg, seed=1, progress=False)
    first = train.Trainer(models.build(SPEC, 0), d, cfg, seed=1)
    first.run(7, progress=False)
    second = train.Trainer(models.build(SPEC, 9), d, cfg, seed=1)  # other weights: all overwritten
    second.load_state(first.state())
    second.run(12, progress=False)
    assert_same_history(whole, second.history())
