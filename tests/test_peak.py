"""bnlib.peak: FLOP counting, the fraction of the measured peak, the headline line."""

from __future__ import annotations

import torch

from bnlib.peak import Peak, count_flops, headline


def test_count_flops_of_a_matmul_and_a_linear_backward():
    a, b = torch.randn(8, 5), torch.randn(5, 3)
    assert count_flops(lambda: a @ b) == 2 * 8 * 5 * 3
    w = torch.randn(3, 5, requires_grad=True)
    # forward x w^T, backward grad_w = g^T x (x needs no gradient): twice the forward
    assert count_flops(lambda: (a @ w.T).sum().backward()) == 2 * (2 * 8 * 5 * 3)


def test_a_grouped_convolution_counts_what_its_groups_count_apart():
    x = torch.randn(4, 6, 8, 8, requires_grad=True)
    w = torch.randn(9, 2, 3, 3, requires_grad=True)  # 3 groups of 2 -> 3 channels

    def grouped():
        torch.nn.functional.conv2d(x, w, padding=1, groups=3).sum().backward()

    def apart():
        for xg, wg in zip(x.split(2, 1), w.split(3, 0)):
            torch.nn.functional.conv2d(xg, wg, padding=1).sum().backward()

    one = 2 * 4 * 8 * 8 * 3 * 2 * 9  # one group's forward: 2 x batch x pixels x c_out x c_in x 3x3
    assert count_flops(apart) == 3 * 3 * one  # forward, input gradient, weight gradient
    assert count_flops(grouped) == count_flops(apart)


def test_peak_fraction_and_lines():
    peak = Peak(flops_per_s=1e9, threads=2)
    assert peak.fraction(5e8, 1.0) == 0.5
    assert "50.0% of peak" in peak.rate(1e9, 2.0)
    assert "no matmul" in peak.rate(0, 1.0)
    assert headline(20.866) == "ratio 20.87x"
    measured = Peak.measure(repeats=1)
    assert measured.threads == torch.get_num_threads() and len(measured.rates) == 2
    assert measured.flops_per_s == max(r for _, r in measured.rates) > 0
    assert "matmul" in str(measured) and "conv" in str(measured)
