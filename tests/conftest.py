"""Shared test configuration: paths, backend name, subprocess runner.

The backend is chosen by KERAS_BACKEND before pytest starts (one process per
backend, see tests/run_all_backends.sh).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("KERAS_BA_SHARED", REPO_ROOT.parent / "shared"))
REFERENCE_DIR = SHARED_DIR / "reference"
BACKEND = keras.backend.backend()
BACKENDS = ("tensorflow", "jax", "torch")


@pytest.fixture(autouse=True)
def _seed_and_reset():
    """Each test starts from a fixed seed, float32 and a fresh name scope."""
    keras.utils.set_random_seed(1234)
    keras.config.set_dtype_policy("float32")
    keras.backend.clear_session()
    yield
    keras.config.set_dtype_policy("float32")


def official_keys(name):
    """The authors' state-dict layout and parameter total for `name`."""
    with open(REFERENCE_DIR / "official_keys" / f"{name}.json") as file:
        return json.load(file)


def trainable_count(model):
    """What PyTorch's parameters() counts: trainable weights only."""
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def run_python(code, backend=None, env=None, timeout=600, cwd=None):
    """Runs `code` in a fresh interpreter; returns CompletedProcess.

    Used for anything process-global (another backend, device counts) and
    to prove that files load in a process that only imports keras_ba.
    """
    full_env = dict(os.environ)
    full_env["KERAS_BACKEND"] = backend or BACKEND
    full_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=cwd or REPO_ROOT,
    )
