"""`keras-ba train | evaluate | predict | export` end to end, on the current backend.

One tiny training (BA-ResNet with one block per stage, 16x16 digits) is run
as a real `keras-ba train` process that kills itself (SIGKILL) after its
first epoch, then rerun with the same command: it must resume at epoch 2.
The finished run then serves `evaluate`, `predict` and `export`.
"""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import BACKEND, run_python

from keras_ba.applications import preprocess_input
from keras_ba.cli import main
from keras_ba.training import callbacks, data

TINY_MODEL = [
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
TINY_RUN = TINY_MODEL + [
    "--data",
    "digits",
    "--recipe",
    "small",
    "--image-size",
    "16",
    "--batch-size",
    "32",
    "--lr",
    "0.2",
    "--limit",
    "320",
    "--steps-per-epoch",
    "25",
    "--epochs",
    "2",
    "--verbose",
    "2",
]
BIN = Path(sys.executable).parent


def _cli(args, env=None, timeout=600):
    """Runs `python -m keras_ba.cli ...` in a fresh process on the current backend."""
    full_env = dict(os.environ, KERAS_BACKEND=BACKEND, TF_CPP_MIN_LOG_LEVEL="3", **(env or {}))
    return subprocess.run(
        [sys.executable, "-m", "keras_ba.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
    )


def _jax_cache(tmp_path_factory):
    """A persistent JAX compilation cache shared by this module's processes."""
    folder = tmp_path_factory.getbasetemp() / "jax-cache"
    return {
        "JAX_COMPILATION_CACHE_DIR": str(folder),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """An interrupted, then resumed, tiny training run; facts from both halves."""
    out = tmp_path_factory.mktemp("run")
    command = ["train", *TINY_RUN, "--output", str(out)]
    env = _jax_cache(tmp_path_factory)
    first = _cli(command, env={**env, callbacks.KILL_AFTER_EPOCH_ENV: "1"})
    paths = callbacks.RunPaths(out)
    after_kill = {
        "rows": callbacks.read_history(paths.history_csv)["epoch"]
        if os.path.exists(paths.history_csv)
        else None,
        "backup": os.path.isdir(paths.backup),
        "model": os.path.exists(paths.model),
        "checkpoint": os.path.exists(paths.checkpoint),
    }
    second = _cli(command, env=env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    return {"paths": paths, "first": first, "second": second, "after_kill": after_kill}


def test_interrupted_training_resumes_at_the_next_epoch(run):
    first, second, after_kill = run["first"], run["second"], run["after_kill"]
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    assert after_kill == {"rows": [0.0], "backup": True, "model": False, "checkpoint": True}
    assert "Epoch 1/2" not in second.stdout and "Epoch 2/2" in second.stdout
    history = callbacks.read_history(run["paths"].history_csv)
    assert history["epoch"] == [0.0, 1.0]  # no gap, no duplicate
    assert history["learning_rate"][0] > history["learning_rate"][1]  # the schedule went on
    assert not os.path.exists(run["paths"].backup)  # removed once finished


def test_training_writes_the_run_folder(run):
    paths = run["paths"]
    names = sorted(os.listdir(paths.root))
    assert {"model.keras", "run.json", "history.csv", "history.png", "checkpoints"} <= set(names)
    assert not [n for n in names if n.startswith(".tmp-")]
    config = callbacks.read_json(paths.config)
    assert config["class_names"] == [str(i) for i in range(10)] and config["image_size"] == 16
    assert config["recipe"]["lr"] == 0.2 and config["backend"] == BACKEND
    model = keras.saving.load_model(paths.model, compile=False)
    assert model.input_shape == (None, 16, 16, 3) and model.output_shape == (None, 10)
    import importlib.util

    if importlib.util.find_spec("tensorboard"):
        assert os.listdir(os.path.join(paths.logs, "train"))
    assert "val_accuracy" in run["second"].stdout


def test_evaluate_reports_accuracy_above_chance(run, tmp_path, capsys):
    report = tmp_path / "metrics.json"
    code = main(["evaluate", run["paths"].root, "--json", str(report), "--verbose", "0"])
    printed = capsys.readouterr().out
    assert code == 0
    results = json.loads(report.read_text())
    assert (
        results["images"] == 320 and results["classes"] == 10 and results["subset"] == "validation"
    )
    assert results["accuracy"] > 3 * results["chance"], printed  # 50 steps already learn digits
    assert f"accuracy {results['accuracy']:.4f}" in printed and "chance 0.1000" in printed


def _digit_pngs(folder, count):
    """Validation digits as 16x16 PNG files; returns (paths, uint8 images, labels)."""
    splits = data.load_splits(data.DataSource("digits", limit=count), load_size=16)
    images, labels = zip(*splits.validation.as_numpy_iterator(), strict=True)
    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, f"{i}_label{y}.png") for i, y in enumerate(labels)]
    for path, image in zip(paths, images, strict=True):
        keras.utils.save_img(path, image, scale=False)
    return paths, np.stack(images), np.array(labels)


def test_predict_prints_top_classes_matching_the_model(run, tmp_path, capsys):
    paths, images, _ = _digit_pngs(str(tmp_path / "pngs"), 4)
    report = tmp_path / "predictions.json"
    code = main(
        [
            "predict",
            run["paths"].model,
            str(tmp_path / "pngs"),
            "--top-k",
            "3",
            "--json",
            str(report),
        ]
    )
    printed = capsys.readouterr().out
    assert code == 0
    results = json.loads(report.read_text())
    assert [r["path"] for r in results] == sorted(paths)
    model = keras.saving.load_model(run["paths"].model, compile=False)
    expected = np.asarray(model.predict(preprocess_input(images.astype("float32")), verbose=0))
    for result in results:
        row = expected[paths.index(result["path"])]
        names = [name for name, _ in result["top"]]
        probabilities = [p for _, p in result["top"]]
        assert names == [str(i) for i in np.argsort(-row)[:3]]
        np.testing.assert_allclose(probabilities, np.sort(row)[::-1][:3], atol=1e-5)
        assert os.path.basename(result["path"]) in printed


def test_export_serves_the_same_probabilities(run, tmp_path):
    serving = tmp_path / "serving"
    assert main(["export", run["paths"].root, "--output", str(serving)]) == 0
    version = serving / "ba_resnet18" / "1"
    assert (version / "saved_model.pb").exists()
    assert (version / "assets.extra" / "labels.txt").read_text().split() == [
        str(i) for i in range(10)
    ]
    assert not [p for p in (serving / "ba_resnet18").iterdir() if p.name != "1"]

    shown = subprocess.run(
        [str(BIN / "saved_model_cli"), "show", "--dir", str(version), "--all"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert "signature_def['serving_default']" in shown.stdout
    assert "images" in shown.stdout and "probabilities" in shown.stdout

    _, images, _ = _digit_pngs(str(tmp_path / "pngs"), 6)
    np.save(tmp_path / "images.npy", images)
    served = run_python(
        "import numpy as np, tensorflow as tf\n"
        f"loaded = tf.saved_model.load({str(version)!r})\n"
        "serve = loaded.signatures['serving_default']\n"
        f"x = np.load({str(tmp_path / 'images.npy')!r}).astype('float32')\n"
        "out = serve(images=tf.constant(x))\n"
        f"np.save({str(tmp_path / 'served.npy')!r}, out['probabilities'].numpy())\n"
        "other = serve(images=tf.zeros([2, 24, 20, 3]))\n"
        "print('OTHER', tuple(other['probabilities'].shape), tuple(other['class_ids'].shape))\n",
        backend="tensorflow",
    )
    assert served.returncode == 0, served.stderr[-3000:]
    assert "OTHER (2, 10) (2,)" in served.stdout
    model = keras.saving.load_model(run["paths"].model, compile=False)
    expected = np.asarray(model.predict(preprocess_input(images.astype("float32")), verbose=0))
    difference = np.abs(np.load(tmp_path / "served.npy") - expected).max()
    assert difference < 1e-5, difference


def test_onnx_export_computes_the_same_probabilities(run, tmp_path):
    import importlib.util

    if not (importlib.util.find_spec("tf2onnx") and importlib.util.find_spec("onnx")):
        pytest.skip("ONNX export needs tf2onnx and onnx (pip install tf2onnx onnx)")
    import onnx
    from onnx.reference import ReferenceEvaluator

    target = tmp_path / "model.onnx"
    assert main(["export", run["paths"].model, "--format", "onnx", "--output", str(target)]) == 0
    graph = onnx.load(str(target))
    _, images, _ = _digit_pngs(str(tmp_path / "pngs"), 3)
    pixels = images.astype("float32")
    served = ReferenceEvaluator(graph).run(None, {graph.graph.input[0].name: pixels})[0]
    model = keras.saving.load_model(run["paths"].model, compile=False)
    expected = np.asarray(model.predict(preprocess_input(pixels), verbose=0))
    assert np.abs(served - expected).max() < 1e-5


def test_mixed_precision_bfloat16_trains_and_saves(tmp_path):
    out = tmp_path / "bf16"
    code = main(
        [
            "train",
            *TINY_MODEL,
            "--data",
            "digits",
            "--image-size",
            "16",
            "--batch-size",
            "16",
            "--limit",
            "48",
            "--epochs",
            "1",
            "--steps-per-epoch",
            "2",
            "--precision",
            "bfloat16",
            "--output",
            str(out),
            "--verbose",
            "0",
            "--no-plot",
        ]
    )
    assert code == 0
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    model = keras.saving.load_model(str(out / "model.keras"), compile=False)
    assert model.get_layer("conv1_conv").dtype_policy.name == "mixed_bfloat16"
    assert model.get_layer("conv2_block1_ba").dtype_policy.name == "mixed_bfloat16"
    assert model.get_layer("predictions").dtype_policy.name == "float32"  # softmax in float32
    assert np.isfinite(callbacks.read_history(str(out / "history.csv"))["loss"]).all()


# === Bad input: a clear message, a non-zero exit, no .keras file ===


def _bad_folder(tmp_path, kind):
    root = tmp_path / "data"
    if kind == "missing":
        return root
    root.mkdir()
    if kind in ("corrupt", "damaged"):
        for label in ("a", "b"):
            (root / label).mkdir()
            for i in range(3):
                keras.utils.save_img(
                    str(root / label / f"{i}.png"), np.zeros((8, 8, 3), np.uint8), scale=False
                )
        if kind == "corrupt":
            (root / "a" / "broken.jpg").write_bytes(b"not an image at all")
        else:  # a valid PNG header followed by garbage: only decoding finds it
            (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    return root


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "does not exist"),
        ("empty", "has no class sub-folders"),
        ("corrupt", "not readable images.*broken.jpg"),
        ("damaged", "Reading the images of .* failed: Invalid PNG.*unreadable: .*broken.png"),
    ],
)
def test_bad_data_folder_fails_clearly(tmp_path, capsys, kind, message):
    root = _bad_folder(tmp_path, kind)
    out = tmp_path / "out"
    code = main(
        [
            "train",
            *TINY_MODEL,
            "--data",
            str(root),
            "--image-size",
            "8",
            "--batch-size",
            "2",
            "--epochs",
            "1",
            "--validation-split",
            "0.3",
            "--output",
            str(out),
            "--verbose",
            "0",
        ]
    )
    error = capsys.readouterr().err
    assert code == 1
    assert error.startswith("keras-ba train: error: ")
    assert __import__("re").search(message, error), error
    assert not list(tmp_path.rglob("*.keras"))


def test_nan_loss_stops_training_without_a_model(tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "train",
            *TINY_MODEL,
            "--data",
            "digits",
            "--image-size",
            "8",
            "--batch-size",
            "16",
            "--limit",
            "32",
            "--epochs",
            "2",
            "--steps-per-epoch",
            "2",
            "--lr",
            "1e30",
            "--output",
            str(out),
            "--verbose",
            "0",
            "--no-plot",
        ]
    )
    assert code == 1
    assert "loss became NaN" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.keras"))


def test_unwritable_output_folder_fails_clearly(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(["train", *TINY_MODEL, "--output", str(blocker / "run")])
    assert code == 1
    assert "Cannot write to the output folder" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.keras"))


def test_unknown_model_fails_in_a_real_process(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [str(BIN / "keras-ba"), "train", "--model", "ba_resnet7", "--output", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, KERAS_BACKEND=BACKEND, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert result.returncode == 1
    assert "Unknown model name 'ba_resnet7'" in result.stderr and "ba_resnet50" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.rglob("*.keras"))


def test_evaluate_and_predict_missing_files(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope.keras"), "--data", "digits"]) == 1
    assert "No model file" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "nope.keras"), str(tmp_path / "x.png")]) == 1
    assert "No such image file or folder" in capsys.readouterr().err
