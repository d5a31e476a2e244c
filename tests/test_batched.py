"""bnlib.batched: several networks as one vmapped SGD step, and one-thread worker processes."""

from __future__ import annotations

import torch
from torch import nn

from bnlib.batched import StackedSGD, map_in_processes, single_threaded_pool
from bnlib.models import mlp

SIZES = (20, 16, 5)


def data(seed: int, steps: int = 3, n: int = 32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, SIZES[0], generator=gen), torch.randint(0, 5, (n,), generator=gen))
            for _ in range(steps)]


def train_one(seed: int, lr: float = 0.1) -> dict[str, torch.Tensor]:
    """A small BN MLP trained by plain SGD on its own seeded batches; its state."""
    model = mlp(norm="bn", sizes=SIZES, seed=seed).train()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for X, y in data(seed):
        opt.zero_grad()
        nn.functional.cross_entropy(model(X), y).backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_stacked_sgd_equals_training_each_model_alone():
    seeds = (0, 1, 2)
    trainer = StackedSGD([mlp(norm="bn", sizes=SIZES, seed=s).train() for s in seeds], lr=0.1)
    for batches in zip(*(data(s) for s in seeds), strict=True):
        losses = trainer.step(torch.stack([X for X, _ in batches]), torch.stack([y for _, y in batches]))
        assert losses.shape == (len(seeds),)
    for i, s in enumerate(seeds):
        alone, stacked = train_one(s), trainer.model(i).state_dict()
        assert alone.keys() == stacked.keys()
        for k, v in alone.items():  # running statistics included
            torch.testing.assert_close(stacked[k], v, rtol=1e-5, atol=1e-6, msg=k)


def test_map_in_processes_equals_one_thread_here_bit_for_bit():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        here = [train_one(s) for s in (3, 4, 5)]
    finally:
        torch.set_num_threads(threads)
    fresh = map_in_processes(train_one, (3, 4, 5), processes=2)
    with single_threaded_pool(2) as pool:
        kept = [map_in_processes(train_one, (3, 4, 5), pool=pool) for _ in range(2)]
    for there in (fresh, *kept):
        for a, b in zip(here, there, strict=True):
            assert a.keys() == b.keys()
            assert all(torch.equal(a[k], b[k]) for k in a)
