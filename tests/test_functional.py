"""The probe contract: a probe leaves parameters, buffers, modes and RNG states bit-identical."""

import pytest
import torch

from bnlib import models
from bnlib.functional import clone_state, functional_loss, loss_fn, mode, probing


def snapshot(model):
    return ({k: v.clone() for k, v in model.state_dict().items()},
            [m.training for m in model.modules()], torch.get_rng_state(),
            [m.generator.get_state() for m in model.modules() if getattr(m, "generator", None) is not None])


def assert_unchanged(model, snap):
    state, flags, rng, gens = snap
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert [m.training for m in model.modules()] == flags
    assert torch.equal(torch.get_rng_state(), rng)
    now = [m.generator.get_state() for m in model.modules() if getattr(m, "generator", None) is not None]
    assert len(now) == len(gens) and all(torch.equal(a, b) for a, b in zip(now, gens))


@pytest.mark.parametrize("bn_mode", ["batch", "running"])
def test_functional_loss_in_probing_changes_nothing(bn_mode):
    torch.manual_seed(0)
    model = models.vgg(11, width=0.0625, norm="noisy_bn").eval()
    model(torch.randn(4, 3, 32, 32))  # eval forward: creates nothing; generators appear in train mode
    model.train()
    model(torch.randn(4, 3, 32, 32))  # noise generators now exist
    model.eval()
    X, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    snap = snapshot(model)
    params, buffers = clone_state(model)
    with probing(model, bn_mode):
        assert model.training == (bn_mode == "batch")
        loss = functional_loss(model, loss_fn("ce"), X, y, buffers)(params)
        torch.rand(3)
    assert torch.isfinite(loss)
    assert_unchanged(model, snap)


def test_batch_mode_updates_only_the_cloned_buffers():
    model = models.mlp(norm="bn")
    params, buffers = clone_state(model)
    with probing(model, "batch"):
        functional_loss(model, loss_fn("ce"), torch.randn(16, 784) + 3, torch.zeros(16, dtype=torch.long),
                        buffers)(params)
    assert not torch.equal(buffers["3.running_mean"], model.state_dict()["3.running_mean"])


def test_mode_restores_mixed_flags_and_rejects_bad_mode():
    model = models.mlp(norm="bn").train()
    model[3].eval()  # a deliberately mixed state must come back exactly
    flags = [m.training for m in model.modules()]
    with mode(model, "running"):
        assert not any(m.training for m in model.modules())
    assert [m.training for m in model.modules()] == flags
    with pytest.raises(ValueError, match="bn_mode must be one of"):
        with mode(model, "train"):
            pass


def test_losses():
    out, y = torch.tensor([[1.0, 2.0], [0.0, 1.0]]), torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    assert loss_fn("mse")(out, y).item() == pytest.approx((5 + 1) / 2)
    assert loss_fn("mse_sum")(out, y).item() == pytest.approx(6)
    with pytest.raises(ValueError, match="Unknown loss"):
        loss_fn("hinge")
