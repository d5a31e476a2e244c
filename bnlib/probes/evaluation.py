"""Test loss and accuracy of a checkpoint under a chosen kind of normalisation statistics.

A trajectory's own test evaluations use running statistics (evaluation mode), the usual
convention. Normalisers with running averages (BN, the lp layers) can also be evaluated with
the statistics of the images themselves, chunk by chunk; the gap between the two shows how much
the running averages matter (e.g. for the lp layers, whose running scale is our choice).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
