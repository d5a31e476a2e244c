"""One training loop for every chapter: SGD or Adam, a step budget, probes, divergence.

``fit`` owns the mode: ``model.train()`` before every step; evaluation and probes go through
``functional.probing``, which sets the mode they need and restores it. Batches are
drawn as in airbench: one device ``randperm`` per epoch (its own seeded generator, so
probes that use the global RNG cannot change the batch order), ``X[idx]`` per step, the
last partial batch dropped so every BN batch has the same size. A NaN or inf loss stops the
run and marks it diverged: a result, not an exception.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .data import Data
from .functional import loss_fn, probing

OPTIMIZERS = ("sgd", "adam")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run (and its cache key)."""

    optimizer: str = "sgd"         # "sgd" (no momentum by default) or "adam"
    lr: float = 0.1                # learning rate
    momentum: float = 0.0          # SGD momentum
    weight_decay: float = 0.0      # l2 penalty coefficient (torch's weight_decay)
    batch_size: int | None = 128   # examples per step; None = full batch (gradient descent)
    num_steps: int = 1000          # optimiser steps
    loss: str = "ce"               # "ce", "mse" or "mse_sum" (see functional.loss_fn)
    eval_every: int = 100          # steps between test-set evaluations
    eval_size: int | None = None   # test examples per evaluation; None = all
    seed: int = 0                  # seeds the batch order


@dataclass
class StepContext:
    """What a probe sees at step ``step``, before that step's update."""

    step: int
    model: nn.Module
    X: torch.Tensor
    y: torch.Tensor
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    cfg: TrainConfig


@dataclass(frozen=True)
class Probe:
    """Call ``fn(ctx) -> dict`` every ``every`` steps (step 0 included)."""

    name: str
    fn: Callable[[StepContext], dict]
    every: int = 100


@dataclass
class History:
    """Metrics of one run. Per step: batch loss/accuracy (train mode) and wall time."""

    train_loss: np.ndarray                # (steps,) batch loss before the step's update
    train_acc: np.ndarray                 # (steps,) batch accuracy (nan for regression)
    time_s: np.ndarray                    # (steps,) wall time since start, after the step
    eval_step: np.ndarray                 # (E,) steps at which the test set was evaluated
    test_loss: np.ndarray                 # (E,)
    test_acc: np.ndarray                  # (E,)
    diverged: bool = False                # True if a non-finite loss stopped the run
    probes: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    @property
    def steps_done(self) -> int:
        return len(self.train_loss)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat dict for ``runs`` (probe arrays as ``probe/<name>/<key>``)."""
        out = {k: getattr(self, k) for k in ("train_loss", "train_acc", "time_s", "eval_step",
                                             "test_loss", "test_acc")}
        out["diverged"] = np.array(self.diverged)
        for name, d in self.probes.items():
            out.update({f"probe/{name}/{k}": v for k, v in d.items()})
        return out

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> History:
        probes: dict[str, dict[str, np.ndarray]] = {}
        for k, v in a.items():
            if k.startswith("probe/"):
                _, name, key = k.split("/", 2)
                probes.setdefault(name, {})[key] = v
        keys = ("train_loss", "train_acc", "time_s", "eval_step", "test_loss", "test_acc")
        return cls(**{k: a[k] for k in keys}, diverged=bool(a["diverged"]), probes=probes)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                               weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"Unknown optimizer {cfg.optimizer!r}; known: {', '.join(OPTIMIZERS)}")


def accuracy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fraction of correct argmax predictions; nan for regression targets."""
    if y.dtype.is_floating_point:
        return torch.tensor(float("nan"))
    return (out.argmax(dim=1) == y).float().mean()


@torch.no_grad()
def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, loss: str = "ce",
             bn_mode: str = "running", chunk: int = 1000) -> tuple[float, float]:
    """Mean loss and accuracy over (X, y) in chunks, without changing the model.

    With ``bn_mode="batch"`` every chunk is normalised by its own statistics; the running
    statistics are saved and restored, so they do not move.
    """
    f = loss_fn(loss)
    saved = {k: v.clone() for k, v in model.named_buffers()}
    total_loss = total_acc = 0.0
    with probing(model, bn_mode):
        for Xc, yc in zip(X.split(chunk), y.split(chunk)):
            out = model(Xc)
            total_loss += f(out, yc).item() * len(Xc)
            total_acc += accuracy(out, yc).item() * len(Xc)
    for k, v in model.named_buffers():
        v.copy_(saved[k])
    return total_loss / len(X), total_acc / len(X)


def _batches(n: int, batch_size: int | None, gen: torch.Generator, device: torch.device):
    """Endless stream of index batches: one randperm per epoch, last partial batch dropped."""
    bs = n if batch_size is None else batch_size
    while True:
        perm = torch.randperm(n, generator=gen, device=device)
        for i in range(n // bs):
            yield perm[i * bs:(i + 1) * bs]


def _validate(cfg: TrainConfig, n: int) -> None:
    """Reject a config that cannot train, naming the field, its value and what is allowed."""
    checks = [("lr", cfg.lr > 0, "a positive float"), ("num_steps", cfg.num_steps > 0, "a positive int"),
              ("eval_every", cfg.eval_every > 0, "a positive int"),
              ("batch_size", cfg.batch_size is None or 0 < cfg.batch_size <= n,
               f"None (full batch) or an int in [1, {n}] (the training-set size)")]
    for name, ok, allowed in checks:
        if not ok:
            raise ValueError(f"TrainConfig.{name} must be {allowed}; got {getattr(cfg, name)!r}")


def fit(model: nn.Module, data: Data, cfg: TrainConfig, *, probes: tuple[Probe, ...] | list = (),
        progress: bool = True, desc: str = "train") -> History:
    """Train ``model`` in place on ``data`` for ``cfg.num_steps`` steps; return its History."""
    _validate(cfg, len(data.X_train))
    f, opt = loss_fn(cfg.loss), make_optimizer(model, cfg)
    gen = torch.Generator(device=data.device).manual_seed(cfg.seed)
    batches = _batches(len(data.X_train), cfg.batch_size, gen, data.device)
    n_eval = cfg.eval_size or len(data.X_test)
    Xe, ye = data.X_test[:n_eval], data.y_test[:n_eval]
    losses = torch.full((cfg.num_steps,), float("nan"))
    accs = torch.full((cfg.num_steps,), float("nan"))
    times = np.full(cfg.num_steps, np.nan)
    evals: list[tuple[int, float, float]] = []
    records: dict[str, list[tuple[int, dict]]] = {p.name: [] for p in probes}
    diverged, steps_done, eval_time = False, 0, 0.0
    start = time.perf_counter()
    for step in tqdm(range(cfg.num_steps), desc=desc, disable=not progress, mininterval=2):
        idx = next(batches)
        X, y = data.X_train[idx], data.y_train[idx]
        t0 = time.perf_counter()
        for p in probes:
            if step % p.every == 0:
                records[p.name].append((step, p.fn(StepContext(step, model, X, y, f, opt, cfg))))
        if step % cfg.eval_every == 0:
            evals.append((step, *evaluate(model, Xe, ye, loss=cfg.loss)))
        eval_time += time.perf_counter() - t0  # probes and evaluation are not training time
        model.train()
        out = model(X)
        loss = f(out, y)
        if not torch.isfinite(loss):
            diverged = True
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses[step], accs[step] = loss.detach(), accuracy(out.detach(), y)
        times[step] = time.perf_counter() - start - eval_time
        steps_done = step + 1
    if not diverged:
        evals.append((steps_done, *evaluate(model, Xe, ye, loss=cfg.loss)))
    ev = np.array(evals, dtype=float).reshape(-1, 3)
    return History(losses[:steps_done].numpy(), accs[:steps_done].numpy(), times[:steps_done],
                   ev[:, 0].astype(int), ev[:, 1], ev[:, 2], diverged, _stack(records))


def _stack(records: dict[str, list[tuple[int, dict]]]) -> dict[str, dict[str, np.ndarray]]:
    """Probe results as arrays: ``{"step": (K,), key: (K, ...)}`` per probe."""
    out = {}
    for name, rows in records.items():
        if rows:
            keys = rows[0][1].keys()
            out[name] = {"step": np.array([s for s, _ in rows])}
            out[name].update({k: np.stack([np.asarray(r[k]) for _, r in rows]) for k in keys})
    return out
