"""The machine's measured fp32 limit, and how close a computation comes to it.

Every benchmark (``benchmarks/``) measures, in the same run and at the same thread count as
its computation, the rate of a 2048 x 2048 fp32 matrix product (2 n^3 FLOPs), the best a
BLAS reaches on this machine, and prints each computation's rate as a fraction of it.
FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (matrix products and
convolutions, forward and backward; elementwise work is not counted, so a fraction is a lower
bound of the machine's use).

Under a shared machine both rates suffer the same load only if measured close together, so
``Peak.measure`` is cheap (a few products, median) and a benchmark may re-measure it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count


def median_seconds(fn: Callable[[], object], repeats: int = 3) -> float:
    """Median wall time of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation,
                         transposed, _output_padding, groups, output_mask, out_shape=None, **_) -> int:
    """torch's formula for ``convolution_backward``, except that the weight gradient of a
    grouped convolution pairs each group's input channels with that group's output channels
    only: torch's formula pairs every input channel with every output channel, ``groups``
    times too many (``vmap`` over convolution weights makes grouped convolutions)."""
    def t(shape):
        return [shape[1], shape[0], *shape[2:]]

    flops = 0
    if output_mask[0]:
        flops += conv_flop_count(grad_out_shape, w_shape, out_shape[0], not transposed)
    if output_mask[1]:
        a, b = (grad_out_shape, x_shape) if transposed else (x_shape, grad_out_shape)
        flops += conv_flop_count(t(a), t(b), t(out_shape[1]), transposed=False) // groups
    return flops


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` (matrix products and convolutions), by ``FlopCounterMode``
    with grouped convolutions' weight gradients counted per group (``_conv_backward_flops``)."""
    mapping = {torch.ops.aten.convolution_backward: _conv_backward_flops}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return int(counter.get_total_flops())


@dataclass(frozen=True)
class Peak:
    """The measured fp32 matrix-product rate: ``flops_per_s`` at ``threads`` torch threads."""

    flops_per_s: float
    threads: int
    n: int

    @classmethod
    def measure(cls, n: int = 2048, repeats: int = 5) -> Peak:
        """Median rate of ``repeats`` n x n fp32 products at the current thread count."""
        gen = torch.Generator().manual_seed(0)
        a, b = (torch.randn(n, n, generator=gen) for _ in range(2))
        seconds = median_seconds(lambda: a @ b, repeats)
        return cls(2 * n**3 / seconds, torch.get_num_threads(), n)

    def __str__(self) -> str:
        return (f"machine fp32 peak: {self.flops_per_s / 1e9:.1f} GFLOP/s "
                f"({self.n}x{self.n} matmul, {self.threads} thread(s), median of 5)")

    def fraction(self, flops: float, seconds: float) -> float:
        """Share of this peak that ``flops`` FLOPs in ``seconds`` reach."""
        return flops / seconds / self.flops_per_s

    def rate(self, flops: float, seconds: float) -> str:
        """``'X GFLOP/s, Y% of peak'`` for ``flops`` FLOPs done in ``seconds``."""
        if flops == 0:
            return "no matmul/conv FLOPs (elementwise work, which the counter does not count)"
        return f"{flops / seconds / 1e9:6.1f} GFLOP/s, {100 * self.fraction(flops, seconds):5.1f}% of peak"


def headline(ratio: float) -> str:
    """The one line every benchmark ends with, for scripts to read."""
    return f"ratio {ratio:.2f}x"
