#!/usr/bin/env bash
# The main job: train a BA-ResNet-18 on the embedded digits (offline, no
# download), save the .keras model and its training curves, then evaluate it.
#
#   bash examples/main_job.sh [RUN_FOLDER]        (default: runs/digits)
#
# KERAS_BACKEND picks the backend (tensorflow by default; jax and torch work
# too). Keras shows its progress bar on a terminal, one line per epoch in a log.
# Rerunning after an interruption
# resumes at the next epoch.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$here/.ci/setup"   # creates .venv with keras_ba and the three backends
cd "$here"
out="${1:-runs/digits}"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
keras_ba="$here/.venv/bin/keras-ba"
start=$(date +%s)

# 32x32 digits, the CIFAR stem (chosen automatically below 128 px), the
# `small` recipe (SGD Nesterov, cosine, pad-crop + flip), 3 epochs.
"$keras_ba" train --model ba_resnet18 --data digits --recipe small --epochs 3 \
  --batch-size 64 --output "$out"

"$keras_ba" evaluate "$out/model.keras" --json "$out/evaluation.json" --verbose 0

"$here/.venv/bin/python" - "$out/evaluation.json" <<'PY'
import json, sys
results = json.load(open(sys.argv[1]))
if results["accuracy"] <= 3 * results["chance"]:
    sys.exit(f"Accuracy {results['accuracy']:.3f} is not clearly above chance "
             f"({results['chance']:.3f}): something is wrong.")
PY
echo "Model: $out/model.keras  curves: $out/history.png  history: $out/history.csv"
echo "Main job wall time: $(( $(date +%s) - start )) s"
