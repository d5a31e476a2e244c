"""What the book trains and probes under a profile, its FLOPs, and the GPU-hours it needs.

``plan(profile)`` replays each chapter's experiment cells (``RECIPES``: the same calls, on the
chapter's own helpers) against a ``RecordingStore``, which trains nothing: it hands back a
History of the full length and records every trajectory asked for (with its checkpoints) and
every probe (with its steps). ``differences`` compares a plan with the store an execution of the
same chapters filled (the tests do, under ``smoke``), so the plan cannot drift from the
notebooks. Choices a chapter makes from results (the hessian chapter's lr and
l2, searched on validation accuracy) are planned at the grid's first point and marked
``depends``: their FLOPs do not depend on the choice.

Cost: FLOPs per training step by ``torch.utils.flop_counter.FlopCounterMode`` on the model
(forward and backward of one batch, on fake tensors), the kernel launches of a step by
counting aten calls. Time per step on one GPU = max(FLOPs / (UTILISATION x peak), launches x
LAUNCH_S): big convolutions are compute bound, the small MLP and DLN are launch bound.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from . import chapters, models, profiles, runs, scaleout
from .runs import Runs, Store, Trajectory
from .train import History

# One H100 SXM (NVIDIA's datasheet): 67 TFLOP/s dense FP32 (no tensor cores: the book trains in
# true float32), 34 TFLOP/s FP64 (the DLN). UTILISATION is our assumption for eager PyTorch on
# small images (airbench-like loops reach 30-50% of peak on VGG-sized convolutions): 35%.
PEAK_FLOPS = {"float32": 67e12, "float64": 34e12}
UTILISATION = 0.35
LAUNCH_S = 6e-6   # seconds per kernel launch in eager PyTorch (CUDA launch + dispatcher), our assumption
OPTIMIZER_OPS = 3  # kernels per parameter tensor of an optimiser step (foreach kernels are fewer)
IMAGE_SHAPES = {"cifar10": (3, 32, 32), "cifar10-mini": (3, 32, 32), "mnist": (1, 28, 28),
                "mnist-mini": (1, 28, 28)}


@dataclass
class Planned:
    """One trajectory the book trains: who asks for it, checkpoints, probes (spec, steps, chapter)."""

    traj: Trajectory
    chapters: list[str] = field(default_factory=list)
    checkpoints: set[int] = field(default_factory=set)
    probes: list[tuple[Any, tuple[int, ...], str]] = field(default_factory=list)  # (probe, steps, chapter)
    depends: str = ""


class RecordingStore(Store):
    """A store that trains nothing: every trajectory is "finished" at its full length (records
    at every ``record_every``), every probe returns only its steps; both are recorded."""

    def __init__(self, chapter: str, planned: dict[str, Planned], depends: str = ""):
        super().__init__("/nonexistent", chapter=chapter, progress=False)
        self.planned, self.depends = planned, depends

    def _entry(self, traj: Trajectory) -> Planned:
        p = self.planned.setdefault(self.key(traj), Planned(traj, depends=self.depends))
        if self.chapter not in p.chapters:
            p.chapters.append(self.chapter)
        return p

    def history(self, traj: Trajectory, *, checkpoints: tuple[int, ...] = (), wait: bool = True) -> History:
        self._entry(traj).checkpoints.update(checkpoints)
        n, t = traj.train.num_steps, traj.train
        zeros = np.zeros(n, dtype=np.float32)
        rec = np.arange(0, n, t.record_every)
        return History(zeros, zeros, zeros.astype(float), np.array([n]), np.zeros(1), np.zeros(1),
                       records={"step": rec, "grad_norm": np.zeros((len(rec), 1))})

    def finished(self, traj: Trajectory) -> History:
        return self.history(traj)

    def probe(self, traj: Trajectory, probe: Any, steps: tuple[int, ...] | list[int]) -> dict:
        steps = tuple(sorted({int(s) for s in steps}))
        self._entry(traj).probes.append((probe, steps, self.chapter))
        return {"step": np.array(steps)}

    def model_at(self, traj: Trajectory, step: int | None = None) -> torch.nn.Module:
        self._entry(traj)
        return models.build(traj.model, traj.seed)


# ---------------------------------------------------------------- the chapters' experiment cells

def _training(cfg, store) -> None:
    cifar, vgg, sgd = profiles.vgg_specs(cfg)
    _, _, sgd_variant = profiles.vgg_specs(cfg, variant=True)
    store.sweep(cifar, vgg, sgd, norm=["none", "bn"], lr=[cfg.lr], seeds=profiles.seeds(cfg))
    store.sweep(cifar, vgg, sgd_variant, norm=["none", "bn"], lr=[cfg.lr_large],
                seeds=profiles.seeds(cfg, "variant_seeds"))


def _ics_noise(cfg, store) -> None:
    from .chapters import ics_noise as ch
    from .probes.activations import ActivationBands, Moments, NoiseOnAccuracy

    cifar, vgg, sgd = profiles.vgg_specs(cfg)
    _, _, sgd_variant = profiles.vgg_specs(cfg, variant=True)
    seeds = ch.compared_seeds(cfg)
    nets = store.sweep(cifar, vgg, sgd, norm=["none", "bn"], lr=[cfg.lr], seeds=profiles.seeds(cfg),
                       checkpoints=ch.record_steps(cfg))
    noisy = store.sweep(cifar, vgg.with_(noise=ch.noise(cfg)), sgd_variant, norm=["noisy_bn", "noise"],
                        lr=[cfg.lr], seeds=seeds, checkpoints=ch.record_steps(cfg, cfg.variant_steps))
    sample = ActivationBands(layers=ch.recorded_layers(cfg), num_samples=cfg.num_samples, batch_seed=cfg.seed)
    for runs_ in (nets, noisy):
        runs_.where(seed=cfg.seed).probe(sample, ch.at_records)
        for s in {k[-1] for k in runs_}:
            runs_.where(seed=s).probe(Moments(batch_seed=s), lambda h: ch.lag_steps(cfg, h))
    noisy.probe(NoiseOnAccuracy(), ch.at_end)
    mnist_data, lenet, mnist_sgd = ch.mnist_specs(cfg)
    store.sweep(mnist_data, lenet, mnist_sgd, norm=list(ch.MNIST_NORMS), lr=[cfg.lr], seeds=seeds)


def _ics_measure(cfg, store) -> None:
    from .chapters import ics_measure as ch

    ch.train_and_probe(cfg, store)


def _smoothness(cfg, store) -> None:
    from .chapters import smoothness as ch
    from .probes.landscape import ActivationGrads

    seeds, norms = profiles.seeds(cfg), list(ch.NORMS)
    cifar, vgg, sgd = profiles.vgg_specs(cfg)
    task, dln, gd = profiles.dln_specs(cfg)
    nets = {"vgg": store.sweep(cifar, vgg, sgd, norm=norms, seeds=seeds, checkpoints=ch.probe_steps(cfg, "vgg")),
            "dln": store.sweep(task, dln, gd, norm=norms, seeds=seeds, checkpoints=ch.probe_steps(cfg, "dln"))}
    ch.sweep_runs(cfg, store, {"vgg": (cifar, vgg, sgd), "dln": (task, dln, gd)}, ch.shared_runs(cfg))
    for (net, _), (line, steps) in ch.line_searches(cfg).items():
        nets[net].probe(line, steps)
    late = [s for s in ch.probe_steps(cfg, "vgg") if s >= cfg.compare_from]  # as ch.gradient_magnitudes
    nets["vgg"].probe(ActivationGrads(), lambda h: [s for s in late if s < h.steps_done])


def _lp_norms(cfg, store) -> None:
    from .chapters import lp_norms as ch

    ch.measure(cfg, ch.nets(store, cfg))


def _surfaces(cfg, store) -> None:
    from .chapters import surfaces as ch
    from .probes.landscape import LineSearch

    ch.measure(cfg, ch.nets(store, cfg), LineSearch(multipliers=cfg.multipliers))


def _hessian(cfg, store) -> None:
    from .chapters import hessian as ch
    from .probes import curvature

    subset, mlp, adam = ch.search_specs(cfg)
    grid = store.sweep(subset, mlp, adam, norm=["none", "bn"], lr=cfg.lrs, weight_decay=cfg.l2s, seeds=[cfg.seed])
    accuracies = curvature.Accuracies(val_start=cfg.train_size, val_size=cfg.val_size, train_size=cfg.train_eval_size)
    grid.probe(accuracies, steps=ch.last_step)
    lr, l2 = cfg.lrs[0], cfg.l2s[0]  # the search's choice: planned at the grid's first point
    store.depends = "lr, weight_decay: chosen by the search"
    mnist, mlp, adam = ch.specs(cfg, lr=lr, l2=l2)
    epochs = ch.epoch_ends(cfg)
    nets = Runs(store, ch.trajectories(mnist, mlp, adam, profiles.seeds(cfg), cfg.before_seeds), checkpoints=epochs)
    bn = dict(size=cfg.hessian_size, bn_mode=cfg.hessian_bn_mode)
    nets.probe(accuracies, ch.reached(epochs))
    nets.probe(curvature.LastLayerHessian(**bn), ch.reached(epochs))
    nets.probe(curvature.HessianTopK(k=cfg.top_k, tol=cfg.lanczos_tol, **bn),
               ch.reached(ch.epoch_ends(cfg, ch.full_epochs(cfg))))
    nets.probe(curvature.HessianBlocks(k=2 * cfg.top_k + 1, tol=cfg.lanczos_tol, probes=cfg.block_probes, **bn),
               ch.last_step)
    sweep = Runs(store, ch.width_trajectories(cfg, lr, l2, profiles.seeds(cfg)))
    sweep.probe(curvature.NearZeroShare(steps=cfg.slq_steps, band=cfg.zero_band, **bn), ch.last_step)


def _theory(cfg, store) -> None:
    from .chapters import theory as ch
    from .probes import capture

    cifar, vgg, sgd = profiles.vgg_specs(cfg, norm="bn")
    steps = ch.probe_steps(cfg)
    vggs = store.sweep(cifar, vgg, sgd, seeds=profiles.seeds(cfg), checkpoints=steps)
    vggs.probe(capture.Statements(conv_bn=cfg.conv_bn), ch.reached(steps))
    vggs.probe(capture.EndChecks(conv_bn=cfg.conv_bn, seed=cfg.seed), ch.last_step)


def _later_work(cfg, store) -> None:
    from .chapters import later_work as ch
    from .probes.curvature import HessianTopK
    from .probes.scale import LayerScale

    cifar, vgg, sgd = profiles.vgg_specs(cfg)
    _, _, sgd_variant = profiles.vgg_specs(cfg, variant=True)
    core = store.sweep(cifar, vgg, sgd, norm=["none", "bn"], lr=[cfg.lr], seeds=profiles.seeds(cfg))
    store.sweep(cifar, vgg, sgd_variant, norm=["none", "bn"], lr=[cfg.lr_large],
                seeds=profiles.seeds(cfg, "variant_seeds"))
    ch.lr_sweep(cfg, store)
    core.probe(LayerScale(rel_step=cfg.rel_step, c=cfg.scale_c), ch.reached(ch.scale_steps(cfg)))
    cifar_small, mlp, gd = ch.gd_specs(cfg)
    gd_runs = store.sweep(cifar_small, mlp, gd, norm=["none", "bn"], lr=list(cfg.gd_lrs),
                          seeds=profiles.seeds(cfg, "gd_seeds"), checkpoints=tuple(ch.gd_probe_steps(cfg)))
    gd_runs.probe(HessianTopK(size=cfg.gd_size, k=1, tol=cfg.lanczos_tol), ch.reached(ch.gd_probe_steps(cfg)))


RECIPES = {"training": _training, "ics_noise": _ics_noise, "ics_measure": _ics_measure, "smoothness": _smoothness,
           "lp_norms": _lp_norms, "surfaces": _surfaces, "hessian": _hessian, "theory": _theory,
           "later_work": _later_work}


@contextlib.contextmanager
def _without_ray() -> Iterator[None]:
    saved = os.environ.pop(scaleout.ENV, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[scaleout.ENV] = saved


def plan(profile: str = "paper", *, only: list[str] | None = None,
         params: dict[str, dict] | None = None) -> list[Planned]:
    """Every trajectory the chapters (``only`` these, else all of ``RECIPES``) train under
    ``profile``, with a chapter's parameters overridden by ``params[chapter]`` if given."""
    planned: dict[str, Planned] = {}
    with _without_ray():
        for name in only or list(RECIPES):
            cfg = chapters.resolve(name, profile, **(params or {}).get(name, {}))
            RECIPES[name](cfg, RecordingStore(name, planned))
    return list(planned.values())


def _neutral(specs: dict, chosen: bool) -> str:
    """A trajectory's specs as text; without the lr and l2 if they are ``chosen`` by a search."""
    train = {k: v for k, v in specs["train"].items() if not (chosen and k in ("lr", "weight_decay"))}
    return json.dumps({"data": specs["data"], "model": specs["model"], "train": train, "seed": specs["seed"]},
                      sort_keys=True, default=str)


def differences(planned: list[Planned], root: str | os.PathLike) -> dict[str, list]:
    """What a store filled by executing the planned chapters holds beyond the plan, and what it
    lacks: trajectories (specs; a search's choice of lr and l2 aside) and probe results (probe
    class, steps). Empty lists when the plan is exact."""
    base = runs.runs_root(root)
    stored = {p.name: json.loads((p / "spec.json").read_text()) for p in (base / "traj").glob("*")}
    chosen = {_neutral(p.traj.specs(), True) for p in planned if p.depends}

    def ident(specs: dict) -> str:
        return _neutral(specs, _neutral(specs, True) in chosen)

    have, want = {ident(s) for s in stored.values()}, {ident(p.traj.specs()) for p in planned}
    probes_have = {(ident(stored[m["traj"]]), m["probe"].rsplit(".", 1)[-1], tuple(m["steps"]))
                   for m in map(lambda f: json.loads(f.read_text()), (base / "probe").glob("*/*.json"))}
    probes_want = {(ident(p.traj.specs()), type(pr).__name__, s) for p in planned for pr, s, _ in p.probes}
    return {"unplanned trajectories": sorted(have - want), "planned, not stored": sorted(want - have),
            "unplanned probes": sorted(probes_have - probes_want),
            "planned probes not stored": sorted(probes_want - probes_have)}


# ---------------------------------------------------------------- cost

class _Launches(TorchDispatchMode):
    """Counts the aten calls (one kernel launch each, roughly) run inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        return func(*args, **(kwargs or {}))


def input_shape(traj: Trajectory) -> tuple[int, ...]:
    """One example's shape as the model sees it."""
    d = traj.data
    if d.name == "linear":
        return (d.dim,)
    c, h, w = IMAGE_SHAPES[d.name]
    return (c, d.pad_to, d.pad_to) if d.pad_to and d.pad_to > h else (c, h, w)


def batch_size(traj: Trajectory) -> int:
    """Examples per step (the training-set size for full-batch gradient descent)."""
    return traj.train.batch_size or traj.data.train_size


@lru_cache(maxsize=256)
def step_cost(model: models.ModelSpec, shape: tuple[int, ...], batch: int, dtype: str) -> tuple[float, int]:
    """(FLOPs, kernel launches) of one training step: forward and backward of one batch on the meta
    fake tensors (FlopCounterMode), plus the optimiser's per-parameter kernels."""
    net = models.build(model, 0).to(dtype=getattr(torch, dtype))
    with FakeTensorMode(allow_non_fake_inputs=True):
        x = torch.empty(batch, *shape, dtype=getattr(torch, dtype))
        with FlopCounterMode(display=False) as flops, _Launches() as launches:
            out = net(x)
            (out * out.detach()).sum().backward()
    return float(flops.get_total_flops()), launches.calls + OPTIMIZER_OPS * len(list(net.parameters()))


def gpu_seconds(p: Planned) -> tuple[float, float]:
    """(FLOPs per step, seconds of training) of a planned trajectory on one H100-class GPU."""
    t = p.traj
    flops, launches = step_cost(t.model, input_shape(t), batch_size(t), t.data.dtype)
    per_step = max(flops / (UTILISATION * PEAK_FLOPS[t.data.dtype]), launches * LAUNCH_S)
    return flops, per_step * t.train.num_steps


def makespan(seconds: list[float], gpus: int) -> float:
    """Wall time of independent tasks on ``gpus`` GPUs, longest first onto the least loaded (LPT)."""
    load = [0.0] * gpus
    for s in sorted(seconds, reverse=True):
        load[load.index(min(load))] += s
    return max(load)


def rows(planned: list[Planned]) -> list[dict]:
    """One row per trajectory: label, chapters, steps, checkpoints, probes, FLOPs/step, GPU-hours."""
    out = []
    for p in planned:
        flops, secs = gpu_seconds(p)
        probes = sorted({type(probe).__name__ for probe, _, _ in p.probes})
        out.append({"label": p.traj.label(), "chapters": ",".join(p.chapters), "steps": p.traj.train.num_steps,
                    "checkpoints": len(p.checkpoints), "probes": ",".join(probes),
                    "probed_steps": sum(len(s) for _, s, _ in p.probes), "gflop_step": flops / 1e9,
                    "gpu_h": secs / 3600, "depends": p.depends})
    return out


def report(planned: list[Planned], *, gpus: int = 8) -> str:
    """The plan as a table a person reads, with totals on one GPU and on ``gpus`` through Ray."""
    table = rows(planned)
    lines = [f"{'trajectory':<50} {'chapters':<34} {'ckpt':>4} {'probed':>6} {'GFLOP/step':>10} "
             f"{'GPU-h':>7}  probes"]
    for r in table:
        mark = f"  [{r['depends']}]" if r["depends"] else ""
        lines.append(f"{r['label'][:50]:<50} {r['chapters'][:34]:<34} {r['checkpoints']:>4} {r['probed_steps']:>6} "
                     f"{r['gflop_step']:>10.3g} {r['gpu_h']:>7.3f}  {r['probes']}{mark}")
    total = sum(r["gpu_h"] for r in table)
    span = makespan([r["gpu_h"] for r in table], gpus)
    lines += [f"{len(table)} trajectories, {sum(r['steps'] for r in table):,} training steps, "
              f"{sum(r['probed_steps'] for r in table):,} probed steps",
              f"training: {total:.1f} GPU-hours on one H100-class GPU; {span:.1f} h on {gpus} GPUs through Ray "
              f"(longest first onto the least loaded GPU; the longest trajectory alone: "
              f"{max(r['gpu_h'] for r in table):.2f} h)",
              f"assumed: {UTILISATION:.0%} of the H100 SXM's dense FP32 peak ({PEAK_FLOPS['float32'] / 1e12:.0f} "
              f"TFLOP/s; FP64 {PEAK_FLOPS['float64'] / 1e12:.0f}), or {LAUNCH_S * 1e6:.0f} us per kernel launch "
              "where that is slower (small networks); probes and evaluations are not in these hours "
              "(benchmarks/device_check.sh measures each probe's cost in training steps)"]
    return "\n".join(lines)
