"""The command line's traps, each tried with the exact command a user typed.

Every one is a one-line error (or, for `--distribute mirrored` on one
device, an explicit warning), and the cheap checks answer before
TensorFlow starts. Backend-independent: they run in one pass.
"""

import sys
import time
from pathlib import Path

import pytest
from conftest import only_in, run_command, run_python

pytestmark = only_in("torch", reason="command-line checks: backend-independent")

BIN = Path(sys.executable).parent
TRAIN = [
    "--model",
    "ba_resnet18",
    "--depths",
    "1",
    "1",
    "1",
    "1",
    "--widths",
    "8",
    "16",
    "32",
    "64",
]
TRAIN += ["--data", "digits", "--limit", "64", "--epochs", "1", "--batch-size", "16"]


def keras_ba(args, tmp_path, **env):
    start = time.time()
    result = run_command([BIN / "keras-ba", *args], env=env, timeout=300, cwd=tmp_path)
    return result, time.time() - start


def error_lines(result):
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_bad_keras_backend_is_one_line_naming_the_valid_ones(tmp_path):
    result, _ = keras_ba(["train", *TRAIN, "--output", "r"], tmp_path, KERAS_BACKEND="pytorch")
    assert result.returncode == 2
    assert error_lines(result) == [
        "keras-ba: error: KERAS_BACKEND='pytorch' is not a backend keras_ba runs on: set it "
        "to tensorflow, jax or torch (did you mean 'torch'?)."
    ]
    assert not (tmp_path / "r").exists()


def test_unknown_model_answers_before_tensorflow_with_the_closest_name(tmp_path):
    result, seconds = keras_ba(["train", "--model", "ba_resnet05", "--output", "r"], tmp_path)
    assert result.returncode == 1
    (line,) = error_lines(result)
    assert "Unknown model name 'ba_resnet05' (did you mean 'ba_resnet50'" in line
    assert not (tmp_path / "r").exists()
    # TensorFlow's import alone takes several seconds here; the answer comes first.
    assert seconds < 5, seconds


def test_device_gpu_without_a_gpu_is_one_line(tmp_path):
    result, _ = keras_ba(["train", *TRAIN, "--device", "gpu", "--output", "r"], tmp_path)
    assert result.returncode == 1
    assert error_lines(result) == [
        "keras-ba train: error: --device gpu but the torch backend sees no GPU on this machine: "
        "use --device cpu (or auto), or install the backend's GPU build."
    ]
    assert not (tmp_path / "r").exists()


def test_a_wrong_flag_is_one_line_not_the_usage(tmp_path):
    result, _ = keras_ba(["train", "--epochs", "two"], tmp_path)
    assert result.returncode == 2
    assert error_lines(result) == [
        "keras-ba train: error: argument --epochs: invalid int value: 'two' "
        "(see keras-ba train --help)"
    ]


def test_device_flag_is_not_completed_to_devices(tmp_path):
    result, _ = keras_ba(["train", "--help"], tmp_path)
    assert "--device {auto,cpu,gpu}" in result.stdout and "--devices DEVICES" in result.stdout


@pytest.mark.slow
def test_mirrored_on_one_device_warns():
    code = (
        "from keras_ba.training.distributed import strategies\n"
        "setup = strategies.setup_distribution('mirrored', log=print)\n"
        "print('replicas', setup.replicas)\n"
    )
    result = run_python(code, backend="tensorflow")
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert lines[-1] == "replicas 1"
    assert lines[-2].startswith("warning: `distribute_mode=mirrored` found one device (")


def test_an_invalid_choice_names_the_closest_one(tmp_path):
    result, seconds = keras_ba(["train", "--distribute", "mirored"], tmp_path)
    assert result.returncode == 2
    (line,) = error_lines(result)
    assert "invalid choice: 'mirored'" in line and "did you mean 'mirrored'?" in line
    assert seconds < 5, seconds  # argparse answers before TensorFlow starts
