#!/usr/bin/env bash
# Runs the whole test suite once per Keras backend (one process each),
# after making sure .venv has everything (see .ci/setup).
# Usage: bash tests/run_all_backends.sh [test paths] [extra pytest args]
#   bash tests/run_all_backends.sh                       # everything (what CI runs)
#   bash tests/run_all_backends.sh tests/test_resnet.py  # one module, three backends
#   KERAS_BA_BACKENDS=jax bash tests/run_all_backends.sh -m "not slow"  # fast tier
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/.ci/setup" || exit 1
export TF_CPP_MIN_LOG_LEVEL=3 PYTHONWARNINGS=ignore
# One JAX compilation cache per run, shared by the test workers and every
# process they start (CLI runs, other-backend loads, multi-process training).
# Every program goes in, however quick its compile: the tests build the same
# tiny models in several processes, and each new weight shape is an XLA
# compile of its initializer (measured on 4 JAX test modules, 2 workers:
# 134-145 s with every program cached, 149-185 s with a 0.5 s threshold).
cache="$(mktemp -d -t keras_ba_jax_cache.XXXXXX)"
trap 'rm -rf "$cache"' EXIT
export JAX_COMPILATION_CACHE_DIR="$cache" JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
export JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0
# The test models are tiny: XLA's time goes into compiling them, not running
# them. LLVM without its optimisation passes compiles about a fifth faster.
export XLA_FLAGS="${XLA_FLAGS:+$XLA_FLAGS }--xla_backend_optimization_level=0"
# Arguments that name existing files or folders (or node ids) are the tests to
# run, instead of all of tests/; the others go to pytest as they are.
paths=()
options=()
for argument in "$@"; do
  if [[ "$argument" != -* && ( -e "${argument%%::*}" ) ]]; then
    paths+=("$argument")
  else
    options+=("$argument")
  fi
done
[ ${#paths[@]} -eq 0 ] && paths=("$root/tests")
status=0
summary=()
for backend in ${KERAS_BA_BACKENDS:-tensorflow jax torch}; do
  echo "=== KERAS_BACKEND=$backend ==="
  start=$SECONDS
  # Workers (pytest-xdist), each test module on one worker, so that a
  # module's shared fixtures (a trained run, a converted model) are built once;
  # the costliest modules first (tests/conftest.py: SCHEDULED_FIRST).
  KERAS_BACKEND=$backend "$root/.venv/bin/python" -m pytest "${paths[@]}" -q \
    -p no:cacheprovider -n "${KERAS_BA_TEST_WORKERS:-2}" --dist loadfile \
    --no-loadscope-reorder --durations=10 ${options[@]+"${options[@]}"}
  code=$?
  summary+=("$backend: exit $code in $((SECONDS - start)) s")
  [ $code -ne 0 ] && status=1
done
printf '%s\n' "${summary[@]}"
exit $status
