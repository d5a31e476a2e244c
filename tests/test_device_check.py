"""The GPU check runs here with tiny CPU settings and prints the format its header documents."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parent.parent
NUM = r"[0-9.]+"
EXPECTED = [r"# device_check: cpu, torch \S+, profile smoke, data (real|synthetic) \(.+\)",
            r"\[1\] training throughput, vgg16/0.0625 bn batch 32, 5 timed steps:",
            rf"    bnlib Trainer \(data on the device\): +{NUM} images/s",
            rf"    DataLoader loop: +{NUM} images/s   ratio {NUM}x",
            r"\[2\] 4 trajectories through Ray .*",
            rf"    aggregate: +{NUM} images/s over the wall time .*, +{NUM} images/s over training time .*",
            r"\[3\] probe cost per probed step.*",
            r"\[4\] short smoke-profile trajectories \(4 steps\) with every probe attached:",
            r"    probe +trajectory +ms/step x train step  capped",
            rf"    \w+ +.+ +{NUM} +{NUM}  -",
            rf"    \w+ +.+ +{NUM} +{NUM}  -",
            rf"# done in {NUM} s"]


def test_device_check_runs_on_the_cpu():
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([str(ROOT / "benchmarks" / "device_check.sh"), "--tiny", "--probes", "2"], env=env,
                         capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert len(lines) == len(EXPECTED), out.stdout
    for pattern, line in zip(EXPECTED, lines):
        assert re.fullmatch(pattern, line), (pattern, line)
    rates = [float(x) for x in re.findall(r"([0-9.]+) images/s", out.stdout)]
    assert all(r > 0 for r in rates)
