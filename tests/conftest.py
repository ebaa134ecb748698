"""Shared test configuration: paths, backend name, subprocess runner.

The backend is chosen by KERAS_BACKEND before pytest starts (one process per
backend, see tests/run_all_backends.sh). Reference data from the authors'
code lives in `tests/fixtures/` (see its PROVENANCE.md), so the suite needs
nothing outside the repository.
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
REFERENCE_DIR = Path(__file__).resolve().parent / "fixtures"
BACKEND = keras.backend.backend()
BACKENDS = ("tensorflow", "jax", "torch")


# Modules whose tests start processes, export or train, costliest first. The
# runner (tests/run_all_backends.sh) hands whole modules to the workers in
# collection order (`--dist loadfile --no-loadscope-reorder`): starting with
# these leaves the many short modules to fill the gaps, instead of one long
# module running alone at the end while the other workers wait.
SCHEDULED_FIRST = (
    "test_workflow.py",
    "test_cv.py",
    "test_export_formats.py",
    "test_multiprocess.py",
    "test_resnet.py",
    "test_workflow_kill.py",
    "test_workflow_distribute.py",
    "test_efficientnet.py",
    "test_analysis.py",
    "test_convert.py",
)


# Modules that train, export, convert files or start processes in most of
# their tests: marked `slow` as a whole (single tests elsewhere carry
# `@pytest.mark.slow`). The fast tier, `-m "not slow"` on one backend, is
# for everyday work; CI runs everything on every backend.
SLOW_MODULES = (
    "test_workflow.py",
    "test_workflow_kill.py",
    "test_workflow_distribute.py",
    "test_workflow_data.py",
    "test_multiprocess.py",
    "test_export_formats.py",
    "test_cv.py",
    "test_analysis.py",
    "test_convert.py",
    "test_convert_cli.py",
    "test_compilation_cache.py",
    "test_benchmarks.py",
    "test_kerashub.py",
    "test_reliability.py",
)


def pytest_collection_modifyitems(config, items):
    """Marks the tests of `SLOW_MODULES` `slow`; puts the modules of
    `SCHEDULED_FIRST` first, in that order (the rest keep their order)."""
    for item in items:
        if item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
    rank = {name: index for index, name in enumerate(SCHEDULED_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(autouse=True)
def _seed_and_reset():
    """Each test starts from a fixed seed, float32 and a fresh name scope.

    `free_memory=False`: a full `gc.collect()` costs about a second per
    test once TensorFlow or JAX is loaded (more on a busy machine); Python's
    own collector frees the old models.
    """
    keras.utils.set_random_seed(1234)
    keras.config.set_dtype_policy("float32")
    keras.config.set_image_data_format("channels_last")
    keras.backend.clear_session(free_memory=False)
    yield
    keras.config.set_dtype_policy("float32")
    keras.config.set_image_data_format("channels_last")


def only_in(*backends, reason):
    """Runs a test in the passes of `backends` only (the others skip it, saying why).

    For checks that do not depend on the backend (names, files, tf.data,
    subprocesses under another backend): the suite runs once per backend,
    and repeating them would only cost time.
    """
    return pytest.mark.skipif(BACKEND not in backends, reason=reason)


# Parameter counts and weight layouts of full-size models, built shapes only:
# they are the shapes Keras' layers create in `build`, the same on every
# backend (each pass checks its own forward shapes and numbers). They run in
# the JAX pass, whose shapes-only builds are the cheapest (in all three passes
# they took 108 s of test time, 29 s of it in the JAX pass).
SHAPES_PASS = only_in(
    "jax", reason="weight shapes are backend-independent: counted once, in the JAX pass"
)


def official_keys(name):
    """The authors' state-dict layout and parameter total for `name`."""
    with open(REFERENCE_DIR / "official_keys" / f"{name}.json") as file:
        return json.load(file)


def trainable_count(model):
    """What PyTorch's parameters() counts: trainable weights only."""
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def shapes_only(builder, *args, **kwargs):
    """Builds a model without computing initial values (shapes only).

    Parameter counts need no values; on JAX each new weight shape would
    otherwise cost an XLA compile of its initializer.
    """
    with keras.StatelessScope(initialize_variables=False):
        return builder(*args, **kwargs)


def spec_attention_params(model):
    """Trainable parameters that SPEC.md's equations give for the attention
    layers of `model` (channels_last), from their input channel counts.

    BAv1: sum_i C_i w + n (2w) BatchNorms + w C_n; BAv2: sum_i C_i w +
    (n + 1) selection + 2w BatchNorm + w C_n; SE: 2 C w (+ w + C biases).
    """
    from keras_ba.layers import BridgeAttention, SqueezeExcite

    total = 0
    for layer in model.layers:
        inputs = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
        channels = [x.shape[-1] for x in inputs]
        if isinstance(layer, BridgeAttention):
            width = layer.squeeze_channels or channels[-1] // layer.reduction
            n = len(channels)
            total += sum(c * width for c in channels) + width * channels[-1]
            total += n * 2 * width if layer.version == "v1" else (n + 1) + 2 * width
        elif isinstance(layer, SqueezeExcite):
            width = layer.squeeze_channels or channels[-1] // layer.reduction
            total += 2 * channels[-1] * width
            total += (width + channels[-1]) if layer.use_bias else 0
    return total


def forward(model, inputs, training=False):
    """`model(inputs, training=training)` as NumPy, in one compiled program on JAX.

    JAX runs an eager call op by op and compiles each op for its shapes:
    the reduced EfficientNet fixture's forward pass took 11 s so, 1 s as one
    `jax.jit` program. The state a call updates (BatchNorm statistics in
    training) is written back, as an eager call does. TensorFlow and
    PyTorch call the model eagerly.
    """
    if BACKEND != "jax":
        return keras.tree.map_structure(
            keras.ops.convert_to_numpy, model(inputs, training=training)
        )
    import jax

    def call(trainable, non_trainable, x):
        return model.stateless_call(trainable, non_trainable, x, training=training)

    outputs, state = jax.jit(call)(
        [v.value for v in model.trainable_variables],
        [v.value for v in model.non_trainable_variables],
        inputs,
    )
    for variable, value in zip(model.non_trainable_variables, state, strict=True):
        variable.assign(value)
    return keras.tree.map_structure(np.asarray, outputs)


def run_command(command, backend=None, env=None, timeout=600, cwd=None, clean=False):
    """The tests' one way to run a process to completion; returns CompletedProcess.

    Args:
        command: the argument list (`[sys.executable, "-c", code]`, a CLI...).
        backend: its KERAS_BACKEND (default: this pass's); None with
            `clean` to leave it unset.
        env: variables to add (a value of None removes the variable).
        timeout: seconds before the test fails.
        cwd: its working folder (default: the repository).
        clean: start from this process's environment without PYTHONPATH and
            TF_CPP_MIN_LOG_LEVEL (as a user's shell would), instead of
            keeping TensorFlow's C++ logs quiet.
    """
    full_env = dict(os.environ)
    if clean:
        full_env.pop("PYTHONPATH", None)
        full_env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    else:
        full_env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if backend is not None or not clean:
        full_env["KERAS_BACKEND"] = backend or BACKEND
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    return subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=cwd or REPO_ROOT,
    )


def run_python(code, backend=None, env=None, timeout=600, cwd=None):
    """Runs `code` in a fresh interpreter (`run_command`); returns CompletedProcess.

    Used for anything process-global (another backend, device counts) and
    to prove that files load in a process that only imports keras_ba.
    """
    return run_command([sys.executable, "-c", code], backend, env, timeout, cwd)
