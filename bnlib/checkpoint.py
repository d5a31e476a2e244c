"""A trainer's checkpoint as flat arrays: weights, buffers, optimiser state, RNG states, step
and (for resuming) the records so far, so training resumes bit-identically and probes see
step t exactly.

Keys: ``model/<name>`` (state_dict), ``opt/<param index>/<key>`` (optimiser state tensors),
``rng/torch`` and ``rng/<module>`` (generator states of noise layers), ``hist/...`` (records)
and ``meta`` (a JSON string: step, diverged, wall time, evaluations). Arrays only, no pickles.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from .train import Trainer


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().copy()


def state(tr: Trainer, *, records: bool = True) -> dict[str, np.ndarray]:
    """The checkpoint of ``tr`` at its current step; without ``records`` (what probes read:
    weights, optimiser and RNG states, step) it is much smaller, but training that resumes
    from it keeps no records of the steps before it."""
    from .train import _stack, _stack_records

    out = {f"model/{k}": _np(v) for k, v in tr.model.state_dict().items()}
    for i, st in tr.opt.state_dict()["state"].items():
        out.update({f"opt/{i}/{k}": _np(v) for k, v in st.items() if isinstance(v, torch.Tensor)})
    out["rng/torch"] = _np(torch.get_rng_state())
    for name, m in tr.model.named_modules():
        if isinstance(getattr(m, "generator", None), torch.Generator):
            out[f"rng/{name}"] = _np(m.generator.get_state())
    meta = {"step": tr.step, "diverged": tr.diverged, "train_time": tr.train_time, "evals": [], "num_recs": 0}
    if records:
        out["hist/train_loss"] = np.array(tr.losses, dtype=np.float64)
        out["hist/train_acc"] = np.array(tr.accs, dtype=np.float64)
        out["hist/time_s"] = np.array(tr.times, dtype=np.float64)
        out.update({f"rec/{k}": v for k, v in _stack_records(tr.recs).items()})
        for name, d in _stack(tr.probed).items():
            out.update({f"probe/{name}/{k}": v for k, v in d.items()})
        meta.update(evals=tr.evals, num_recs=len(tr.recs))
    out["meta"] = np.array(json.dumps(meta))
    return out


def meta(arrays: dict[str, np.ndarray]) -> dict:
    """The JSON part of a checkpoint (step, diverged, ...)."""
    return json.loads(str(arrays["meta"]))


def load_state(tr: Trainer, arrays: dict[str, np.ndarray]) -> None:
    """Put ``tr`` into the state of a checkpoint made by ``state``."""
    dev = tr.data.device
    tr.model.load_state_dict({k[6:]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("model/")})
    opt_state: dict[int, dict] = {}
    for k, v in arrays.items():
        if k.startswith("opt/"):
            _, i, key = k.split("/", 2)
            t = torch.from_numpy(v)
            opt_state.setdefault(int(i), {})[key] = t if key == "step" else t.to(dev)
    tr.opt.load_state_dict({"state": opt_state, "param_groups": tr.opt.state_dict()["param_groups"]})
    torch.set_rng_state(torch.from_numpy(arrays["rng/torch"]))
    for name, m in tr.model.named_modules():
        if f"rng/{name}" in arrays:
            m.generator = torch.Generator(device=dev)
            m.generator.set_state(torch.from_numpy(arrays[f"rng/{name}"]))
    m = meta(arrays)
    tr.step, tr.diverged, tr.train_time = m["step"], m["diverged"], m["train_time"]
    tr.evals = [tuple(e) for e in m["evals"]]
    empty = np.zeros(0)
    tr.losses = arrays.get("hist/train_loss", empty).tolist()
    tr.accs = arrays.get("hist/train_acc", empty).tolist()
    tr.times = arrays.get("hist/time_s", empty).tolist()
    recs = {k[4:]: v for k, v in arrays.items() if k.startswith("rec/")}
    tr.recs = [{k: v[r] for k, v in recs.items()} for r in range(m["num_recs"])]
    tr.probed = {}
    for k, v in arrays.items():
        if k.startswith("probe/") and k.endswith("/step"):
            name = k.split("/")[1]
            keys = [x for x in arrays if x.startswith(f"probe/{name}/") and not x.endswith("/step")]
            tr.probed[name] = [(int(s), {x.split("/", 2)[2]: arrays[x][j] for x in keys})
                               for j, s in enumerate(v)]
