"""Test loss and accuracy of a checkpoint under a chosen kind of normalisation statistics.

A trajectory's own test evaluations use running statistics (evaluation mode), the usual
convention. Normalisers with running averages (BN, the lp layers) can also be evaluated with
the statistics of the images themselves, chunk by chunk; the gap between the two shows how much
the running averages matter (e.g. for the lp layers, whose running scale is our choice).

``step_times`` measures training speed the way a wall-clock comparison needs it: every network's
per-step time in one process, interleaved, so machine load cannot favour one of them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import data
from ..models import ModelSpec, build
from ..train import StepContext, evaluate


@dataclass(frozen=True)
class Evaluation:
    """Probe: ``train.evaluate`` on the first ``size`` test images (None: the trajectory's
    ``eval_size``, the images of its own evaluations) in chunks of ``chunk`` with ``bn_mode``
    statistics. Returns ``test_loss`` and ``test_acc``; the model is left unchanged."""

    bn_mode: str = "batch"         # "batch": each chunk's own statistics; "running": eval mode
    size: int | None = None        # test images (None: the trajectory's eval_size)
    chunk: int = 1000              # images per forward pass (and per set of batch statistics)

    def measure(self, ctx: StepContext) -> dict[str, np.ndarray]:
        n = self.size or ctx.cfg.eval_size or len(ctx.data.X_test)
        loss, acc = evaluate(ctx.model, ctx.data.X_test[:n], ctx.data.y_test[:n], loss=ctx.cfg.loss,
                             bn_mode=self.bn_mode, chunk=self.chunk)
        return {"test_loss": np.array(loss), "test_acc": np.array(acc)}


def step_times(nets: dict[str, ModelSpec], d: data.Data, *, lr: float, l2: float, batch_size: int,
               rounds: int, steps: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Seconds per Adam step (lr, l2 as ``weight_decay``) of each network of ``nets``, measured
    *interleaved* in one process on one thread: after a warm-up, each of ``rounds`` rounds times
    ``steps`` steps of every network in turn (the order rotates), so background load hits all
    networks alike. Returns {name: (rounds,) per-step seconds}; the training code path is
    ``train``'s (forward, cross-entropy, backward, Adam step)."""
    gen = torch.Generator().manual_seed(seed)
    models = {k: build(s, seed) for k, s in nets.items()}
    opts = {k: torch.optim.Adam(m.parameters(), lr=lr, weight_decay=l2) for k, m in models.items()}
    before, out = torch.get_num_threads(), {k: np.zeros(rounds) for k in nets}
    torch.set_num_threads(1)
    try:
        names = list(nets)
        for r in range(-1, rounds):  # round -1 warms up
            for k in names[r % len(names):] + names[:r % len(names)]:
                idx = torch.randint(len(d.X_train), (steps, batch_size), generator=gen)
                t = time.perf_counter()
                for i in idx:
                    opts[k].zero_grad(set_to_none=True)
                    F.cross_entropy(models[k](d.X_train[i]), d.y_train[i]).backward()
                    opts[k].step()
                if r >= 0:
                    out[k][r] = (time.perf_counter() - t) / steps
    finally:
        torch.set_num_threads(before)
    return out
