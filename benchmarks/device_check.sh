#!/usr/bin/env bash
# The GPU check: run it the day a GPU is available (one H200-class GPU: under 8 minutes).
#
#   benchmarks/device_check.sh            # on a CUDA GPU: the paper profile's networks
#   benchmarks/device_check.sh --tiny     # anywhere (the CPU): smoke settings, a few steps (a test runs this)
#
# Needs the book's environment (requirements-lock.txt, with ray) and a CUDA build of torch for the GPU run.
# Data: $BNLIB_DATA's cifar10/mnist files if present, else synthetic files of the same shapes (the check
# measures speed, not learning). Nothing is written outside temporary folders.
#
# Output format (numbers vary; the lines and their order do not):
#   # device_check: <device name>, torch <version>, profile <paper|smoke>, data <real (...)|synthetic (...)>
#   [1] training throughput, <model label> batch <B>, <S> timed steps:
#       bnlib Trainer (data on the device): <float> images/s
#       DataLoader loop:                    <float> images/s   ratio <float>x
#   [2] 4 trajectories through Ray (<share> GPU each on CUDA, 1 CPU each here):
#       aggregate: <float> images/s over the wall time (worker start included), <float> images/s over training time   (1 alone: <float>)
#   [3] probe cost per probed step, in training steps of the same trajectory (table below)
#   [4] short <profile>-profile trajectories (<N> steps) with every probe attached:
#       probe                trajectory                                     ms/step x train step  capped
#       <ProbeClass>         <trajectory label>                             <float>      <float>  <setting a->b, ...|->
#       ... one line per probe class the book uses (or "<ProbeClass> skipped: the check's time budget is spent")
#   # done in <seconds> s
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-$here/../.venv/bin/python}"
[ -x "$python" ] || python=python3
exec timeout 480 "$python" "$here/device_check.py" "$@"
