"""Several networks of one architecture trained as one batched computation.

``StackedSGD`` stacks the parameters and buffers of S models (``torch.func.stack_module_state``)
and takes one plain SGD step for all of them with ``vmap`` of ``functional_call``: model i
sees its own batch ``X[i]``; train-mode BatchNorm normalises each model's batch with its own
statistics and updates its own slice of the stacked running statistics. Under ``vmap`` a
convolution whose weights are batched becomes one grouped convolution over the S models, so
S small networks make one larger computation (``benchmarks/bench_training.py`` measures
whether that pays against training them one at a time). ``map_in_processes`` runs
independent jobs (one network each) in one-thread worker processes instead.
"""

from __future__ import annotations

import contextlib
import copy
import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from .functional import Tensors


class StackedSGD:
    """Plain SGD (no momentum) on S same-architecture models at once, losses summed over the
    models so each model's gradient is its own; ``params``/``buffers`` are stacked (S, ...)."""

    def __init__(self, models: list[nn.Module], *, lr: float):
        if len({type(m) for m in models}) != 1 or not models:
            raise ValueError("StackedSGD needs one or more models of the same class")
        params, self.buffers = stack_module_state(models)
        self.params: Tensors = {k: v.detach().requires_grad_() for k, v in params.items()}
        self.base = copy.deepcopy(models[0]).to("meta").train()
        self.lr = lr

    def _loss(self, p: Tensors, b: Tensors, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(functional_call(self.base, (p, b), (X,)), y)

    def step(self, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One step of every model on its batch: ``X`` (S, n, ...), ``y`` (S, n); the (S,) losses."""
        losses = vmap(self._loss)(self.params, self.buffers, X, y)
        grads = torch.autograd.grad(losses.sum(), list(self.params.values()))
        with torch.no_grad():
            for p, g in zip(self.params.values(), grads, strict=True):
                p.sub_(g, alpha=self.lr)
        return losses.detach()

    def model(self, i: int) -> nn.Module:
        """A fresh module holding model ``i``'s current parameters and buffers."""
        m = copy.deepcopy(self.base).to_empty(device=next(iter(self.params.values())).device)
        m.load_state_dict({k: v[i].detach() for k, v in {**self.params, **self.buffers}.items()})
        return m


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block at ``n`` torch threads, then restore the count it had."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _one_thread() -> None:
    torch.set_num_threads(1)


def single_threaded_pool(processes: int = 2) -> ProcessPoolExecutor:
    """``processes`` spawned worker processes (no thread pool inherited), one torch thread
    each; keep it across calls of ``map_in_processes`` to pay their start-up once."""
    return ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_one_thread)


def map_in_processes(fn: Callable[[Any], Any], items: Iterable[Any], *, processes: int = 2,
                     pool: ProcessPoolExecutor | None = None) -> list:
    """``[fn(item) for item in items]`` in one-thread worker processes (``pool``, else a fresh
    ``single_threaded_pool(processes)``); results in ``items``' order.

    On a small network a training step leaves a second thread mostly idle; two one-thread
    processes each training their own network may use both cores better
    (``benchmarks/bench_training.py``). ``fn`` and the items must pickle (a module-level
    function, ``functools.partial``). The results equal ``fn(item)`` computed at one thread in
    this process, bit for bit; not the results at another thread count (reductions split
    differently).
    """
    if pool is not None:
        return list(pool.map(fn, items))
    with single_threaded_pool(processes) as own:
        return list(own.map(fn, items))
