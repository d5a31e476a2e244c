"""One training loop for every trajectory: SGD or Adam, a step budget, records, divergence.

``Trainer`` holds a trajectory in progress and can be checkpointed and resumed
bit-identically; ``fit`` trains one from scratch. The trainer owns the mode:
``model.train()`` before every step; evaluation and probes go through
``functional.probing``, which sets the mode they need and restores it. Batches are
drawn as in airbench: one device ``randperm`` per epoch (its own seeded generator, so
probes that use the global RNG cannot change the batch order), ``X[idx]`` per step, the
last partial batch dropped so every BN batch has the same size; the batch of step t is a
function of the seed and t. Always-on records (per-layer gradient norms, moments before
and after every normaliser) come every ``record_every`` steps. A NaN or inf loss stops the
run and marks it diverged: a result, not an exception.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from tqdm import tqdm  # text bars: tqdm.auto warns in kernels without ipywidgets

from . import checkpoint
from .data import Data
from .functional import capture, clone_state, loss_fn, probing
from .models import norm_slots, weight_layers

OPTIMIZERS = ("sgd", "adam")
PRECISIONS = ("float32", "tf32", "bf16")  # training's arithmetic on CUDA; probes always use float32


@dataclass(frozen=True)
class TrainConfig:
    """The optimiser and the always-on records of a trajectory (part of its key).

    The trajectory's seed, not this config, fixes the initial weights, the batch order and
    the noise draws.
    """

    optimizer: str = "sgd"         # "sgd" (no momentum by default) or "adam"
    lr: float = 0.1                # learning rate
    momentum: float = 0.0          # SGD momentum
    weight_decay: float = 0.0      # l2 penalty coefficient (torch's weight_decay)
    batch_size: int | None = 128   # examples per step; None = full batch (gradient descent)
    num_steps: int = 1000          # optimiser steps
    loss: str = "ce"               # "ce", "mse" or "mse_sum" (see functional.loss_fn)
    eval_every: int = 100          # steps between test-set evaluations
    eval_size: int | None = None   # test examples per evaluation; None = all
    record_every: int = 10         # steps between always-on records (gradient norms, moments)
    record_size: int = 64          # training examples in the fixed batch of the moment records
    precision: str = "float32"     # CUDA only: "float32" (true float32, no TF32), "tf32", "bf16" (autocast)
    compile: bool = False          # torch.compile the training step's model (CUDA; off on the CPU by default)


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
    data: Data | None = None        # the trajectory's data (for probes that use other batches)


@dataclass(frozen=True)
class Probe:
    """Call ``fn(ctx) -> dict`` every ``every`` steps (step 0 included)."""

    name: str
    fn: Callable[[StepContext], dict]
    every: int = 100


@dataclass
class History:
    """Metrics of one run. Per step: batch loss/accuracy (train mode) and wall time.

    ``records`` are the always-on records every ``record_every`` steps (before that step's
    update): ``"step"`` (R,), ``"grad_norm"`` (R, L) per weight layer, and per normaliser slot
    i (1-based) ``"pre{i}.mean"``/``"pre{i}.var"`` (R, C) of its input and ``"post{i}..."`` of
    its output, on a fixed batch with batch statistics.
    """

    train_loss: np.ndarray                # (steps,) batch loss before the step's update
    train_acc: np.ndarray                 # (steps,) batch accuracy (nan for regression)
    time_s: np.ndarray                    # (steps,) wall time since start, after the step
    eval_step: np.ndarray                 # (E,) steps at which the test set was evaluated
    test_loss: np.ndarray                 # (E,)
    test_acc: np.ndarray                  # (E,)
    diverged: bool = False                # True if a non-finite loss stopped the run
    probes: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    records: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def steps_done(self) -> int:
        return len(self.train_loss)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat dict for the store (``probe/<name>/<key>``, ``rec/<key>``)."""
        out = {k: getattr(self, k) for k in _SERIES}
        out["diverged"] = np.array(self.diverged)
        for name, d in self.probes.items():
            out.update({f"probe/{name}/{k}": v for k, v in d.items()})
        out.update({f"rec/{k}": v for k, v in self.records.items()})
        return out

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> History:
        probes: dict[str, dict[str, np.ndarray]] = {}
        for k, v in a.items():
            if k.startswith("probe/"):
                _, name, key = k.split("/", 2)
                probes.setdefault(name, {})[key] = v
        records = {k[4:]: v for k, v in a.items() if k.startswith("rec/")}
        return cls(**{k: a[k] for k in _SERIES}, diverged=bool(a["diverged"]), probes=probes,
                   records=records)


_SERIES = ("train_loss", "train_acc", "time_s", "eval_step", "test_loss", "test_acc")


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


def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, *, loss: str = "ce",
             bn_mode: str = "running", chunk: int = 1000) -> tuple[float, float]:
    """Mean loss and accuracy over (X, y) in chunks, without changing the model, under
    ``inference_mode``; the sums stay on the device (float64) and are read once.

    With ``bn_mode="batch"`` every chunk is normalised by its own statistics; the running
    statistics are saved and restored, so they do not move.
    """
    f = loss_fn(loss)
    saved = {k: v.clone() for k, v in model.named_buffers()}
    totals = torch.zeros(2, dtype=torch.float64, device=X.device)
    with probing(model, bn_mode), torch.inference_mode():
        for Xc, yc in zip(X.split(chunk), y.split(chunk)):
            out = model(Xc)
            totals += torch.stack([f(out, yc).double(), accuracy(out, yc).double().to(X.device)]) * len(Xc)
    for k, v in model.named_buffers():
        v.copy_(saved[k])
    total_loss, total_acc = totals.tolist()
    return total_loss / len(X), total_acc / len(X)


class Batches:
    """The batch indices of step t, a pure function of (n, batch_size, seed, t).

    One ``randperm`` per epoch from a generator seeded with ``seed`` (airbench's recipe), the
    last partial batch dropped so every BN batch has the same size. Asking for any step
    (e.g. after resuming from a checkpoint) replays the generator to that epoch.
    """

    def __init__(self, n: int, batch_size: int | None, seed: int, device: torch.device):
        self.n, self.bs, self.seed, self.device = n, n if batch_size is None else batch_size, seed, device
        self.per_epoch = self.n // self.bs
        self._epoch, self._perm, self._gen = -1, None, None

    def __call__(self, step: int) -> torch.Tensor:
        epoch, i = divmod(step, self.per_epoch)
        if epoch < self._epoch or self._gen is None:
            self._gen = torch.Generator(device=self.device).manual_seed(self.seed)
            self._epoch = -1
        while self._epoch < epoch:
            self._perm = torch.randperm(self.n, generator=self._gen, device=self.device)
            self._epoch += 1
        return self._perm[i * self.bs:(i + 1) * self.bs]


def _validate(cfg: TrainConfig, n: int) -> None:
    """Reject a config that cannot train, naming the field, its value and what is allowed."""
    checks = [("lr", cfg.lr > 0, "a positive float"), ("num_steps", cfg.num_steps > 0, "a positive int"),
              ("eval_every", cfg.eval_every > 0, "a positive int"),
              ("record_every", cfg.record_every > 0, "a positive int"),
              ("batch_size", cfg.batch_size is None or 0 < cfg.batch_size <= n,
               f"None (full batch) or an int in [1, {n}] (the training-set size)"),
              ("precision", cfg.precision in PRECISIONS, f"one of {', '.join(PRECISIONS)}")]
    for name, ok, allowed in checks:
        if not ok:
            raise ValueError(f"TrainConfig.{name} must be {allowed}; got {getattr(cfg, name)!r}")


@contextlib.contextmanager
def precision(kind: str, device: torch.device) -> Iterator[None]:
    """The arithmetic of training steps: on CUDA, "float32" turns TF32 off (cuDNN's convolutions
    use it by default), "tf32" turns it on, "bf16" autocasts the forward pass to bfloat16;
    restored after. On other devices only "float32" is allowed (it is what they compute)."""
    if device.type != "cuda":
        if kind != "float32":
            raise ValueError(f"TrainConfig.precision {kind!r} needs a CUDA device; on {device.type} use 'float32'")
        yield
        return
    flags = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = kind == "tf32"
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=kind == "bf16"):
            yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = flags


def _fast_layout(model: nn.Module, device: torch.device) -> bool:
    """On CUDA, convolutional networks run in ``channels_last`` (tensor cores read NHWC)."""
    convs = any(isinstance(m, nn.Conv2d) for m in model.modules())
    if device.type == "cuda" and convs:
        model.to(memory_format=torch.channels_last)
    return device.type == "cuda" and convs


def _series(name: str) -> property:
    """A Trainer attribute read after the values still on the device are (``Trainer._read``)."""
    def get(self: Trainer) -> Any:
        self._read()
        return getattr(self, name)

    def put(self: Trainer, value: Any) -> None:
        self._read()
        setattr(self, name, list(value) if isinstance(value, (list, tuple)) else value)
    return property(get, put)


class Trainer:
    """One trajectory in progress: model, optimiser, batches and records, resumable.

    ``run(until)`` trains up to step ``until``; ``state()``/``load_state()`` give and take a
    checkpoint (weights, buffers, optimiser state, RNG states, step, records so far), from
    which training continues bit-identically. The step loop reads nothing from the device but
    the divergence check: losses and accuracies stay there until read (``losses``, ``accs``,
    ``times`` read them all at once), CUDA steps are timed with events.
    """

    def __init__(self, model: nn.Module, data: Data, cfg: TrainConfig, *, seed: int = 0):
        _validate(cfg, len(data.X_train))
        self.model, self.data, self.cfg, self.seed = model, data, cfg, seed
        self.channels_last = _fast_layout(model, data.device)
        self.forward = torch.compile(model) if cfg.compile else model
        self.loss, self.opt = loss_fn(cfg.loss), make_optimizer(model, cfg)
        self.batches = Batches(len(data.X_train), cfg.batch_size, seed, data.device)
        n_eval = cfg.eval_size or len(data.X_test)
        self.X_eval, self.y_eval = data.X_test[:n_eval], data.y_test[:n_eval]
        g = torch.Generator().manual_seed(seed)
        self.X_rec = data.X_train[torch.randperm(len(data.X_train), generator=g)[:cfg.record_size]
                                  .to(data.device)]
        self.step, self.diverged, self._train_time = 0, False, 0.0
        self._losses: list[float] = []
        self._accs: list[float] = []
        self._times: list[float] = []
        self._pending: list[tuple[torch.Tensor, torch.Tensor, Any]] = []  # (loss, acc, time) not read yet
        self.evals: list[tuple[int, float, float]] = []
        self.recs: list[dict[str, np.ndarray]] = []
        self.probed: dict[str, list[tuple[int, dict]]] = {}

    def batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The training batch of ``step`` (the same whenever it is asked for)."""
        idx = self.batches(step)
        X = self.data.X_train[idx]
        return X.contiguous(memory_format=torch.channels_last) if self.channels_last else X, self.data.y_train[idx]

    def _read(self) -> None:
        """Move the losses, accuracies and step times still on the device into the lists (one sync)."""
        if not self._pending:
            return
        losses, accs, times = zip(*self._pending)
        self._losses += torch.stack(losses).tolist()
        self._accs += torch.stack(accs).tolist()
        for t in times:
            if isinstance(t, tuple):  # CUDA events (start, end)
                t[1].synchronize()
                t = t[0].elapsed_time(t[1]) / 1000
            self._train_time += t
            self._times.append(self._train_time)
        self._pending.clear()

    losses, accs, times, train_time = _series("_losses"), _series("_accs"), _series("_times"), _series("_train_time")

    def context(self) -> StepContext:
        """What a probe sees now: the model before this step's update, on this step's batch."""
        return StepContext(self.step, self.model, *self.batch(self.step), self.loss, self.opt, self.cfg,
                           self.data)

    def run(self, until: int, *, probes: tuple[Probe, ...] | list = (), on_step: Callable | None = None,
            progress: bool = True, desc: str = "train") -> None:
        """Train from ``self.step`` to ``until``; ``on_step(self)`` runs after every update."""
        bar = tqdm(total=until, initial=self.step, desc=desc, disable=not progress, mininterval=2)
        with precision(self.cfg.precision, self.data.device):
            while self.step < until and not self.diverged:
                self._measure(probes)
                self._timed_update(on_step)
                bar.update(1)
        bar.close()
        self._read()

    def _timed_update(self, on_step: Callable | None) -> None:
        cuda = self.data.device.type == "cuda"
        if cuda:
            start = torch.cuda.Event(enable_timing=True)
            start.record()
        t0 = time.perf_counter()
        result = self._update()
        if result is None:
            return
        if cuda:
            end = torch.cuda.Event(enable_timing=True)
            end.record()
        self._pending.append((*result, (start, end) if cuda else time.perf_counter() - t0))
        if on_step is not None:
            on_step(self)

    def _measure(self, probes) -> None:
        """Probes, always-on records and the test evaluation due at this step."""
        t, cfg = self.step, self.cfg
        for p in probes:
            if t % p.every == 0:
                self.probed.setdefault(p.name, []).append((t, p.fn(self.context())))
        if t % cfg.record_every == 0:
            self.recs.append({"step": np.array(t), **moments(self.model, self.X_rec)})
        if t % cfg.eval_every == 0:
            self.evals.append((t, *evaluate(self.model, self.X_eval, self.y_eval, loss=cfg.loss)))

    def _update(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """One optimiser step on this step's batch: its (loss, accuracy), still on the device;
        None (and ``diverged``) on a non-finite loss."""
        X, y = self.batch(self.step)
        self.model.train()
        out = self.forward(X)
        loss = self.loss(out, y)
        if not torch.isfinite(loss):
            self.diverged = True
            if self.recs and "grad_norm" not in self.recs[-1]:
                self.recs.pop()  # a record is complete only with the step's gradient
            return None
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.step % self.cfg.record_every == 0:
            self.recs[-1]["grad_norm"] = grad_norms(self.model)
        self.opt.step()
        self.step += 1
        return loss.detach(), accuracy(out.detach(), y).to(loss.device)

    def history(self) -> History:
        """The History so far (with a final evaluation once training is over)."""
        evals = list(self.evals)
        if not self.diverged and (not evals or evals[-1][0] != self.step):
            evals.append((self.step, *evaluate(self.model, self.X_eval, self.y_eval, loss=self.cfg.loss)))
        ev = np.array(evals, dtype=float).reshape(-1, 3)
        records = _stack_records(self.recs)
        return History(np.array(self.losses, dtype=np.float32), np.array(self.accs, dtype=np.float32),
                       np.array(self.times), ev[:, 0].astype(int), ev[:, 1], ev[:, 2], self.diverged,
                       _stack(self.probed), records)

    def state(self, *, records: bool = True) -> dict[str, np.ndarray]:
        """A checkpoint as flat arrays: ``model/``, ``opt/``, ``rng/`` and the records so far."""
        return checkpoint.state(self, records=records)

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Continue from a checkpoint made by ``state()`` (bit-identical to never stopping)."""
        checkpoint.load_state(self, state)


def grad_norms(model: nn.Module) -> np.ndarray:
    """l2 norm of each weight layer's weight gradient, in layer order: (L,)."""
    grads = [m.weight.grad for m in weight_layers(model)]
    return torch.stack([g.norm() for g in grads]).detach().cpu().numpy()


def moments(model: nn.Module, X: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-channel mean and variance of each normaliser slot's input (``pre{i}``) and output
    (``post{i}``) on ``X``, with batch statistics; the model is left bit-identical."""
    slots = {str(i): m for i, m in enumerate(norm_slots(model), 1)}
    params, buffers = clone_state(model)
    with probing(model, "batch"), torch.no_grad(), capture(slots, inputs=True) as rec:
        functional_call(model, (params, buffers), (X,))
    out = {}
    for i in slots:
        for site, key in (("pre", f"{i}.in"), ("post", f"{i}.out")):
            a = rec[key]
            var, mean = torch.var_mean(a, dim=(0, *range(2, a.dim())), correction=0)  # (C,)
            out[f"{site}{i}.mean"], out[f"{site}{i}.var"] = mean.cpu().numpy(), var.cpu().numpy()
    return out


def _stack_records(recs: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The list of per-step records as arrays with a leading record axis."""
    return {k: np.stack([r[k] for r in recs]) for k in recs[0]} if recs else {}


def fit(model: nn.Module, data: Data, cfg: TrainConfig, *, seed: int = 0,
        probes: tuple[Probe, ...] | list = (), progress: bool = True, desc: str = "train") -> History:
    """Train ``model`` in place on ``data`` for ``cfg.num_steps`` steps; return its History."""
    trainer = Trainer(model, data, cfg, seed=seed)
    trainer.run(cfg.num_steps, probes=probes, progress=progress, desc=desc)
    return trainer.history()


def _stack(records: dict[str, list[tuple[int, dict]]]) -> dict[str, dict[str, np.ndarray]]:
    """Probe results as arrays: ``{"step": (K,), key: (K, ...)}`` per probe."""
    out = {}
    for name, rows in records.items():
        if rows:
            keys = rows[0][1].keys()
            out[name] = {"step": np.array([s for s, _ in rows])}
            out[name].update({k: np.stack([np.asarray(r[k]) for _, r in rows]) for k in keys})
    return out
