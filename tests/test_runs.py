"""The run store: each trajectory trained once, probes from checkpoints, faults survived.

The subprocess tests use real processes: one killed with SIGKILL part-way through training,
two started together on the same trajectory.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from bnlib import data, functional, models, runs, train

CIFAR = data.DataSpec("cifar10-mini", train_size=256, test_size=64)
VGG = models.ModelSpec("vgg", depth=11, width=0.0625, norm="noisy_bn")
SGD = train.TrainConfig(lr=0.05, batch_size=32, num_steps=12, eval_every=4, record_every=3, record_size=16)
TRAJ = runs.Trajectory(CIFAR, VGG, SGD, seed=2)


@dataclass(frozen=True)
class GradProbe:
    """Loss and gradient norm on the step's batch, batch statistics (a probe needing the batch)."""

    scale: float = 1.0

    def measure(self, ctx: train.StepContext) -> dict:
        params, buffers = functional.clone_state(ctx.model)
        params = {k: v.requires_grad_() for k, v in params.items()}
        with functional.probing(ctx.model, "batch"):
            loss = functional.functional_loss(ctx.model, ctx.loss, ctx.X, ctx.y, buffers)(params)
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        norm = torch.sqrt(sum((g ** 2).sum() for g in grads if g is not None))
        return {"loss": self.scale * loss.item(), "grad_norm": norm.item()}


def store(root, **kw):
    return runs.Store(root, chapter=kw.pop("chapter", "test"), progress=False, **kw)


def same(a: train.History, b: train.History):
    for k, v in a.to_arrays().items():
        if "time" not in k:
            np.testing.assert_array_equal(v, b.to_arrays()[k], err_msg=k)


def test_a_trajectory_is_trained_once_and_shared(tmp_path):
    first, second = store(tmp_path, chapter="a"), store(tmp_path, chapter="b")
    h1, h2 = first.history(TRAJ), second.history(TRAJ)
    assert first.trained == [TRAJ.key()] and second.trained == []
    same(h1, h2)
    row = runs.listing(tmp_path)[0]
    assert row["trained_by"] == ["a"] and row["used_by"] == ["a", "b"] and row["state"] == "done"


def test_key_follows_every_spec_field():
    keys = {TRAJ.key(), runs.Trajectory(CIFAR, VGG.with_(norm="bn"), SGD, 2).key(),
            runs.Trajectory(CIFAR, VGG, SGD, 3).key(),
            runs.Trajectory(CIFAR, VGG, train.TrainConfig(**{**SGD.__dict__, "record_every": 4}), 2).key(),
            runs.Trajectory(data.DataSpec("cifar10-mini", train_size=128), VGG, SGD, 2).key()}
    assert len(keys) == 5
    assert TRAJ.key() == runs.Trajectory(CIFAR, models.ModelSpec("vgg", "noisy_bn", 11, 0.0625), SGD, 2).key()


def test_probe_on_checkpoints_equals_probe_attached_during_training(tmp_path):
    s = store(tmp_path)
    with runs.train_threads(torch.device("cpu")):  # the store trains on one CPU thread; probe on it too
        stored = s.probe(TRAJ, GradProbe(), [0, 3, 5, 11])  # 3 and 5 have no checkpoint: replayed
        model = models.build(VGG, 2)
        attached = train.fit(model, data.get(CIFAR), SGD, seed=2, progress=False,
                             probes=[train.Probe("g", GradProbe().measure, every=1)]).probes["g"]
    for k in ("loss", "grad_norm"):
        np.testing.assert_array_equal(stored[k], attached[k][[0, 3, 5, 11]])
    assert {3, 5} <= set(s.checkpoint_steps(TRAJ))  # replayed states are kept for next time


def test_changing_a_probe_parameter_reprobes_without_retraining(tmp_path, monkeypatch):
    store(tmp_path).probe(TRAJ, GradProbe(), [0, 6])
    monkeypatch.setattr(train.Trainer, "run", lambda *a, **k: pytest.fail("retrained"))
    again = store(tmp_path)
    out = again.probe(TRAJ, GradProbe(scale=2.0), [0, 6])
    assert again.trained == []
    np.testing.assert_allclose(out["loss"] / 2, store(tmp_path).probe(TRAJ, GradProbe(), [0, 6])["loss"])


def test_sweep_keys_and_where(tmp_path):
    nets = store(tmp_path).sweep(CIFAR, VGG.with_(norm="none"), SGD.__class__(**{**SGD.__dict__, "num_steps": 2}),
                                 seeds=[0, 1], norm=["none", "bn"], lr=[0.05, 0.1])
    assert sorted(nets.hist) == sorted((n, lr, s) for n in ("none", "bn") for lr in (0.05, 0.1) for s in (0, 1))
    assert sorted(nets.where(norm="bn", lr=0.1)) == [("bn", 0.1, 0), ("bn", 0.1, 1)]
    with pytest.raises(ValueError, match="cannot vary"):
        store(tmp_path).sweep(CIFAR, VGG, SGD, seeds=[0], colour=["red"])


def test_damaged_artifacts_are_reported_and_recomputed_never_loaded(tmp_path, capfd):
    s = store(tmp_path)
    h = s.history(TRAJ, checkpoints=(6,))
    path = s.path(TRAJ)
    hist_file = path / "history.npz"
    hist_file.write_bytes(hist_file.read_bytes()[:200])  # truncated
    again = store(tmp_path)
    same(h, again.history(TRAJ))
    assert again.trained == [TRAJ.key()]
    ckpt = path / "ckpt" / "00000006.npz"
    raw = bytearray(ckpt.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte: a valid-looking file with a wrong checksum
    ckpt.write_bytes(bytes(raw))
    probe = store(tmp_path).probe(TRAJ, GradProbe(), [6])  # replayed from step 0, not loaded
    assert probe["loss"][0] == pytest.approx(GradProbe().measure(next(s.states(TRAJ, [6])).context())["loss"])
    err = capfd.readouterr().err
    assert "history.npz is damaged" in err and "00000006.npz is damaged (ValueError: checksum mismatch)" in err


SCRIPT = textwrap.dedent("""
    import sys, time
    from bnlib import data, models, runs, train
    spec = runs.Trajectory(data.DataSpec("cifar10-mini", train_size=512, test_size=64),
                           models.ModelSpec("vgg", depth=11, width=0.0625, norm="bn"),
                           train.TrainConfig(lr=0.05, batch_size=32, num_steps=int(sys.argv[2]), eval_every=10,
                                             record_every=5, record_size=16, optimizer="adam"), seed=1)
    s = runs.Store(sys.argv[1], chapter=sys.argv[3], progress=False, resume_every=5)
    h = s.history(spec)
    print("TRAINED" if s.trained else "LOADED", h.steps_done, float(h.train_loss.sum()), flush=True)
""")


def _run(root, steps, name, **kw):
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(root), str(steps), name], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_a_killed_training_resumes_bit_identically(tmp_path):
    p = _run(tmp_path / "killed", 400, "killed")
    resume = next((tmp_path / "killed" / "traj").glob("*"), None)
    deadline = time.time() + 120
    while time.time() < deadline and not (resume and any(resume.glob("resume-*.npz.sha256"))):
        time.sleep(0.05)
        resume = next((tmp_path / "killed" / "traj").glob("*"), None)
    time.sleep(0.3)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not (resume / "history.npz").exists(), "the run finished before it could be killed"
    out, err = _run(tmp_path / "killed", 400, "resumed").communicate(timeout=300)
    assert "resuming at step" in err and out.startswith("TRAINED 400")
    whole, _ = _run(tmp_path / "whole", 400, "whole").communicate(timeout=300)
    assert out.split()[1:] == whole.split()[1:]  # same steps, same loss sum to the last bit


def test_two_processes_asking_for_one_trajectory_train_it_once(tmp_path):
    procs = [_run(tmp_path, 60, f"p{i}") for i in range(2)]
    outs = [p.communicate(timeout=300)[0].split() for p in procs]
    assert sorted(o[0] for o in outs) == ["LOADED", "TRAINED"]
    assert outs[0][1:] == outs[1][1:]
    assert runs.listing(tmp_path)[0]["state"] == "done"


def test_the_device_type_is_part_of_the_key():
    assert TRAJ.key() == TRAJ.key("cpu") != TRAJ.key("cuda") != TRAJ.key("mps")


def test_training_does_not_depend_on_the_callers_thread_count(tmp_path):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        h2 = store(tmp_path / "a").history(TRAJ)
        torch.set_num_threads(1)
        h1 = store(tmp_path / "b").history(TRAJ)
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(h1.train_loss, h2.train_loss)
    assert torch.get_num_threads() == before


def test_sweep_skips_a_trajectory_another_process_is_training(tmp_path):
    s = store(tmp_path)
    with runs._locked(s.path(TRAJ) / ".lock"):  # as if another process were training it
        assert s.history(TRAJ, wait=False) is None
    assert s.history(TRAJ, wait=False) is not None


def test_prose_edits_do_not_change_the_code_version(tmp_path):
    """Docstrings, comments and layout are not part of a key: editing prose never retrains."""
    a, b, c = tmp_path / "a.py", tmp_path / "b.py", tmp_path / "c.py"
    a.write_text('"""Module."""\n\ndef f(x):\n    """Double."""\n    return 2 * x  # twice\n')
    b.write_text('"""Another text."""\ndef f(x):\n    """Twice x, reworded."""\n\n    return 2*x\n')
    c.write_text('"""Module."""\n\ndef f(x):\n    """Double."""\n    return 3 * x\n')
    assert runs._code(a) == runs._code(b) != runs._code(c)


def test_a_probe_key_depends_on_the_modules_it_imports_only():
    deps = runs._imports("probes/ics")
    assert {"probes/ics", "train", "models"} <= deps
    assert "probes/landscape" not in deps and "probes/curvature" not in deps
    assert {"probes/directions", "probes/landscape"} <= runs._imports("probes/surface")
