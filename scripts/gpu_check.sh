#!/usr/bin/env bash
# One-shot check on a GPU machine: install the carried wheels, show the device, run the
# scaling benchmark and the test suite. Every part runs under `timeout`, so the whole
# script ends in under 8 minutes; results go to $OUT (default ./gpu_check_out).
#
#   bash scripts/gpu_check.sh                        # on the device machine, repository root
#   BENCH_ARGS=--quick TEST_PLATFORM=cpu TEST_WORKERS=2 TEST_ARGS=tests/test_noise.py bash scripts/gpu_check.sh  # dry run
#
# .whl/ holds the wheels the GPU image lacks (hydra-core, omegaconf, antlr4 4.9.3, wandb and
# its dependencies, mnist1d, the hydra launchers, submitit); they are installed into
# /tmp/site, never into the image's environment. Environment overrides:
#   BENCH_ARGS     extra arguments of scripts/bench_scale.py (default: none, the GPU sizes)
#   TEST_PLATFORM  JAX_PLATFORMS for the tests (default: cuda; tests/conftest.py would pick cpu)
#   TEST_ARGS      extra pytest arguments, e.g. a subset of test files
#   TEST_WORKERS   pytest-xdist workers (default 8)
set -u
OUT=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
# several processes share the GPU (pytest -n 8): allocate on demand, not 75% each
export XLA_PYTHON_CLIENT_PREALLOCATE=false
t_start=$(date +%s)
stamp() { echo "== $1 ($(( $(date +%s) - t_start )) s)" | tee -a "$OUT/summary.txt"; }

stamp "install wheels"
if ls .whl/*.whl > /dev/null 2>&1; then
  timeout 120 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl 2>&1 | tail -5 | tee "$OUT/install.log"
else
  echo "no .whl/ directory: relying on installed packages" | tee "$OUT/install.log"
fi
export PYTHONPATH=/tmp/site:$PWD

stamp "device"
if command -v nvidia-smi > /dev/null; then nvidia-smi 2>&1 | tee "$OUT/nvidia-smi.txt"; else echo "no nvidia-smi" | tee "$OUT/nvidia-smi.txt"; fi
timeout 90 python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__); print(jax.devices())" \
  2>&1 | tee "$OUT/devices.txt"
timeout 90 python3 -c "import hydra, omegaconf, wandb, mnist1d, submitit, ib_jax; print('imports ok: hydra', hydra.__version__, 'wandb', wandb.__version__)" \
  2>&1 | tail -3 | tee -a "$OUT/devices.txt"

stamp "bench_scale"
# shellcheck disable=SC2086
timeout ${BENCH_TIMEOUT:-270} python3 scripts/bench_scale.py --out "$OUT/bench_scale.json" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench_scale.log"
echo "bench_scale exit: ${PIPESTATUS[0]} (124 = timed out)" | tee -a "$OUT/summary.txt"

stamp "tests"
left=$(( ${TOTAL_S:-460} - ($(date +%s) - t_start) ))
[ "$left" -lt 60 ] && left=60
# shellcheck disable=SC2086
JAX_PLATFORMS=${TEST_PLATFORM:-cuda} timeout "$left" python3 -m pytest -x -q -n "${TEST_WORKERS:-8}" -m 'not slow' -p no:cacheprovider \
  --durations=15 ${TEST_ARGS:-} 2>&1 | tee "$OUT/tests.log"
echo "pytest exit: ${PIPESTATUS[0]} (124 = timed out after ${left} s)" | tee -a "$OUT/summary.txt"
stamp "done"
