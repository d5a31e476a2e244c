"""The machine's measured fp32 limit, and how close a computation comes to it.

Every benchmark (``benchmarks/``) measures, in the same run and at the same thread count as
its computation, the rates of a 2048 x 2048 fp32 matrix product (the BLAS) and of a large 3 x 3
convolution (oneDNN; on this project's CPU it ran 1.2-1.8x faster than the BLAS product), takes
the faster as the machine's peak, and prints each computation's rate as a fraction of it.
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
    """The machine's measured fp32 rate, ``flops_per_s`` at ``threads`` torch threads: the
    faster of a matrix product and a convolution (``rates`` holds both)."""

    flops_per_s: float
    threads: int
    rates: tuple[tuple[str, float], ...] = ()

    @classmethod
    def measure(cls, repeats: int = 5) -> Peak:
        """Median rate of ``repeats`` calls of two dense fp32 kernels at the current thread count:
        a 2048 x 2048 matrix product (the BLAS) and a 3 x 3 convolution of 256 channels on 16 x 16
        maps, batch 32, channels-last (oneDNN, which outruns the BLAS on this project's CPU)."""
        gen = torch.Generator().manual_seed(0)
        a, b = (torch.randn(2048, 2048, generator=gen) for _ in range(2))
        x = torch.randn(32, 256, 16, 16, generator=gen).contiguous(memory_format=torch.channels_last)
        w = torch.randn(256, 256, 3, 3, generator=gen).contiguous(memory_format=torch.channels_last)
        conv = lambda: torch.nn.functional.conv2d(x, w, padding=1)  # noqa: E731
        kernels = {"2048x2048 matmul": (lambda: a @ b, 2 * 2048**3),
                   "3x3 conv 256ch": (conv, 2 * 32 * 256 * 256 * 9 * 16 * 16)}
        rates = tuple((k, flops / median_seconds(fn, repeats)) for k, (fn, flops) in kernels.items())
        return cls(max(r for _, r in rates), torch.get_num_threads(), rates)

    def __str__(self) -> str:
        each = ", ".join(f"{k} {r / 1e9:.1f}" for k, r in self.rates)
        return (f"machine fp32 peak: {self.flops_per_s / 1e9:.1f} GFLOP/s (the faster of: {each}; "
                f"{self.threads} thread(s), median of 5)")

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
