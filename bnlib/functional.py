"""Side-effect-free evaluation of a model, the base of every probe.

A probe must leave the model exactly as it found it: parameters, buffers (BN running
statistics, ``num_batches_tracked``), ``model.training`` and every RNG state. We evaluate with
``torch.func.functional_call`` on *cloned* parameters and buffers, so in-place buffer updates
land in the clones (pytorch/pytorch: torch/_functorch/functional_call.py), and put the mode
and the RNG back in ``finally`` blocks.

``bn_mode`` is always explicit: ``"batch"`` normalises with the statistics of the batch being
evaluated (train-mode BN), ``"running"`` with the running averages (eval-mode BN).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.func import functional_call

BN_MODES = ("batch", "running")
Tensors = dict[str, torch.Tensor]


def check_bn_mode(bn_mode: str) -> None:
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode must be one of {BN_MODES}; got {bn_mode!r}")


def clone_state(model: nn.Module) -> tuple[Tensors, Tensors]:
    """Detached copies of the model's parameters and buffers, keyed by name."""
    params = {k: v.detach().clone() for k, v in model.named_parameters()}
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    return params, buffers


@contextlib.contextmanager
def mode(model: nn.Module, bn_mode: str) -> Iterator[nn.Module]:
    """Put the model in the mode ``bn_mode`` needs; restore every module's flag afterwards."""
    check_bn_mode(bn_mode)
    flags = [(m, m.training) for m in model.modules()]
    model.train(bn_mode == "batch")
    try:
        yield model
    finally:
        for m, flag in flags:
            m.training = flag


@contextlib.contextmanager
def preserved_rng(model: nn.Module | None = None) -> Iterator[None]:
    """Restore the global CPU/CUDA RNG and the model's own generators (noise layers) on exit.

    A module's ``generator`` that did not exist yet (noise layers create it lazily on their
    first training forward) is removed again, so it is re-created from its seed later.
    """
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    gens = []
    if model is not None:
        for m in model.modules():
            if hasattr(m, "generator"):
                g = m.generator
                gens.append((m, g.get_state() if isinstance(g, torch.Generator) else None))
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        for m, state in gens:
            if state is None:
                m.generator = None
            else:
                m.generator.set_state(state)


@contextlib.contextmanager
def probing(model: nn.Module, bn_mode: str) -> Iterator[nn.Module]:
    """``mode`` and ``preserved_rng`` together: the context every probe runs in."""
    with preserved_rng(model), mode(model, bn_mode):
        yield model


def loss_fn(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``"ce"`` (mean cross-entropy), ``"mse"`` (mean over the batch of the squared error
    summed over outputs) or ``"mse_sum"`` (summed over the batch too)."""
    if name == "ce":
        return nn.functional.cross_entropy
    if name == "mse":
        return lambda out, y: (out - y).pow(2).sum(dim=1).mean()
    if name == "mse_sum":
        return lambda out, y: (out - y).pow(2).sum()
    raise ValueError(f"Unknown loss {name!r}; known: ce, mse, mse_sum")


def functional_loss(model: nn.Module, loss: Callable, X: torch.Tensor, y: torch.Tensor,
                    buffers: Tensors) -> Callable[[Tensors], torch.Tensor]:
    """``params -> loss`` at the batch (X, y), reading and updating ``buffers`` (clones!).

    Call it inside ``probing(model, bn_mode)`` so BN uses the intended statistics.
    """
    def f(params: Tensors) -> torch.Tensor:
        return loss(functional_call(model, (params, buffers), (X,)), y)
    return f


@contextlib.contextmanager
def capture(modules: dict[str, nn.Module], *, inputs: bool = False,
            outputs: bool = True) -> Iterator[dict[str, torch.Tensor]]:
    """Record the detached input (``"<name>.in"``) and/or output (``"<name>.out"``) of each
    named module during the forward passes inside the block; the hooks are always removed.

    The one hook-capture routine of bnlib: probes that need activations use it.
    """
    rec: dict[str, torch.Tensor] = {}
    handles = []
    for name, m in modules.items():
        if inputs:
            handles.append(m.register_forward_pre_hook(
                lambda _m, i, name=name: rec.__setitem__(f"{name}.in", i[0].detach())))
        if outputs:
            handles.append(m.register_forward_hook(
                lambda _m, _i, o, name=name: rec.__setitem__(f"{name}.out", o.detach())))
    try:
        yield rec
    finally:
        for h in handles:
            h.remove()
