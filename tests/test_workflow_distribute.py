"""Multi-device training: MirroredStrategy (TensorFlow) and DataParallel (JAX).

Each check runs in its own process (device counts are process-global) and
only once across the three backend runs: the TensorFlow one when pytest runs
under KERAS_BACKEND=tensorflow, the JAX one under jax. The other backends
check the clear errors instead.

Equivalence: one step on two devices must give the loss of one device on the
same global batch. The batch is [a, b, c, d, a, b, c, d], so each replica
sees [a, b, c, d]: with MirroredStrategy's per-replica BatchNorm statistics
this makes the two-device step mathematically the single-device step, and
any error in gradient aggregation or loss scaling (sum vs mean over
replicas) shows in the next steps' losses and in the weights.
"""

import json

import pytest
from conftest import BACKEND, run_python

from keras_ba.cli import main

EQUIVALENCE = r"""
import json, sys
import numpy as np
import keras
from keras_ba.training import models, recipes
from keras_ba.training.distributed import strategies as distribute
from keras_ba.cli import main

mode, output = sys.argv[1], sys.argv[2]
# First the command line, as `keras-ba train` runs it in a fresh process: it
# splits the CPU itself before TensorFlow or JAX start.
code = main([
    "train", "--model", "ba_resnet18", "--depths", "1", "1", "1", "1", "--widths", "8", "16", "32", "64",
    "--data", "digits", "--image-size", "16", "--batch-size", "8", "--limit", "37", "--epochs", "1",
    "--steps-per-epoch", "2", "--distribute", mode, "--devices", "2", "--output", output, "--verbose", "2",
])
distribute.configure_devices(2)  # already done: a no-op
rng = np.random.RandomState(0)
half_x = rng.normal(0.0, 1.0, (4, 16, 16, 3)).astype("float32")  # normalized-like inputs
half_y = np.eye(10, dtype="float32")[[1, 3, 5, 7]]
x, y = np.concatenate([half_x, half_x]), np.concatenate([half_y, half_y])


def build():
    model = models.build_model("ba_resnet18", 10, 16, depths=[1, 1, 1, 1], widths=[8, 16, 32, 64])
    recipe = recipes.get_recipe("small", batch_size=8, epochs=3, warmup_epochs=0, lr=0.4)
    model.compile(optimizer=recipes.make_optimizer(recipe, 1, model), loss=recipes.make_loss(recipe))
    return model


keras.utils.set_random_seed(0)
single = build()
weights = single.get_weights()
single_losses = single.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0).history["loss"]

setup = distribute.setup_distribution(mode)
with setup.scope():
    model = build()
model.set_weights(weights)
losses = model.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0).history["loss"]
weight_difference = max(
    float(np.abs(a - b).max()) for a, b in zip(single.get_weights(), model.get_weights())
)
print("RESULT", json.dumps({
    "replicas": setup.replicas, "single": single_losses, "distributed": losses,
    "weight_difference": weight_difference, "cli_code": code,
}))
"""


def _equivalence(mode, backend, tmp_path, tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "jax-cache"  # shared with test_workflow.py
    result = run_python(
        f"import sys; sys.argv = ['x', {mode!r}, {str(tmp_path / 'run')!r}]\n" + EQUIVALENCE,
        backend=backend,
        env={
            "JAX_COMPILATION_CACHE_DIR": str(cache),
            "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        },
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("RESULT"))
    return json.loads(line[len("RESULT ") :]), result.stdout


def _check(report, stdout, mode, tmp_path):
    assert report["replicas"] == 2
    single, distributed = report["single"], report["distributed"]
    assert single[2] < single[0]  # the three steps train
    for a, b in zip(single, distributed, strict=True):
        assert abs(a - b) < 1e-4 * max(1.0, abs(a)), (single, distributed)
    assert report["weight_difference"] < 1e-4, report["weight_difference"]
    assert report["cli_code"] == 0, stdout[-3000:]
    assert f"{mode} (2 replica(s))" in stdout
    assert (tmp_path / "run" / "model.keras").exists()


@pytest.mark.skipif(BACKEND != "tensorflow", reason="runs once, in the TensorFlow backend run")
def test_mirrored_strategy_on_two_cpus_matches_one_device(tmp_path, tmp_path_factory):
    report, stdout = _equivalence("mirrored", "tensorflow", tmp_path, tmp_path_factory)
    _check(report, stdout, "mirrored", tmp_path)


@pytest.mark.skipif(BACKEND != "jax", reason="runs once, in the JAX backend run")
def test_jax_data_parallel_on_two_host_devices_matches_one_device(tmp_path, tmp_path_factory):
    report, stdout = _equivalence("data-parallel", "jax", tmp_path, tmp_path_factory)
    _check(report, stdout, "data-parallel", tmp_path)


# === What a backend cannot do: a clear error before any work ===

UNSUPPORTED = {
    "tensorflow": [("data-parallel", "needs KERAS_BACKEND=jax.*--distribute mirrored")],
    "jax": [("mirrored", "needs KERAS_BACKEND=tensorflow.*--distribute data-parallel")],
    "torch": [
        ("data-parallel", "needs KERAS_BACKEND=jax.*DistributedDataParallel"),
        ("mirrored", "needs KERAS_BACKEND=tensorflow.*DistributedDataParallel"),
    ],
}


@pytest.mark.parametrize("mode, message", UNSUPPORTED[BACKEND])
def test_unsupported_distribution_fails_clearly(tmp_path, capsys, mode, message):
    import re

    code = main(["train", "--distribute", mode, "--output", str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert code == 1 and re.search(message, error), error
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(BACKEND != "torch", reason="the PyTorch backend has no Keras device split")
def test_devices_on_torch_fails_clearly(tmp_path, capsys):
    assert main(["train", "--devices", "2", "--output", str(tmp_path / "out")]) == 1
    assert "--devices is not supported on the 'torch' backend" in capsys.readouterr().err


@pytest.mark.skipif(BACKEND != "tensorflow", reason="TF_CONFIG concerns the TensorFlow backend")
def test_several_workers_are_refused_with_the_reason(tmp_path, capsys, monkeypatch):
    cluster = {"worker": ["localhost:23461", "localhost:23462"]}
    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}})
    )
    code = main(["train", "--distribute", "mirrored", "--output", str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert code == 1 and "keras-team/keras#20585" in error and "2 machines" in error
