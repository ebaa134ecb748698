#!/usr/bin/env bash
# Runs the whole test suite once per Keras backend (one process each),
# after making sure .venv has everything (see .ci/setup).
# Usage: bash tests/run_all_backends.sh [extra pytest args]
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/.ci/setup" || exit 1
export TF_CPP_MIN_LOG_LEVEL=3 PYTHONWARNINGS=ignore
status=0
summary=()
for backend in tensorflow jax torch; do
  echo "=== KERAS_BACKEND=$backend ==="
  start=$SECONDS
  KERAS_BACKEND=$backend "$root/.venv/bin/python" -m pytest "$root/tests" -q \
    -p no:cacheprovider --durations=5 "$@"
  code=$?
  summary+=("$backend: exit $code in $((SECONDS - start)) s")
  [ $code -ne 0 ] && status=1
done
printf '%s\n' "${summary[@]}"
exit $status
