"""`keras-ba train | evaluate | predict | export` end to end, on the current backend.

One tiny training (BA-ResNet with one block per stage, 16x16 digits) runs as
a real `keras-ba train` process that is SIGKILLed while it writes its second
end-of-epoch backup (a test-side hook kills it inside the HDF5 write: the
instant that used to break a run for good), then reruns with the same
command: it must resume at epoch 2 from the first epoch's backup. The
finished run then serves evaluate, predict, export and the rerun checks.
`test_workflow_kill.py` kills a run at many more instants.
"""

import json
import os
import signal
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import BACKEND, only_in, run_command, run_python
from workflow_helpers import TINY_MODEL, cli, jax_cache_env, optimized_xla_env

from keras_ba.applications import preprocess_input
from keras_ba.cli import main
from keras_ba.data import pipeline as data
from keras_ba.runs import folder as run_folder

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
]  # --verbose auto: one line per epoch, since the output is a pipe
BIN = Path(sys.executable).parent
# An in-process training of a few seconds.
QUICK = ["--data", "digits", "--image-size", "16", "--limit", "32", "--no-plot"]
QUICK += ["--batch-size", "16", "--steps-per-epoch", "2", "--verbose", "0"]


# The kill inside the backup write is backend-independent (the same h5 writer):
# it runs in the TensorFlow pass; the others train once (the PyTorch pass also
# kills at many instants in test_workflow_kill.py).
KILL_PASS = "tensorflow"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run killed inside its second backup write, then resumed; facts from both.

    Outside the KILL_PASS: one uninterrupted run (`first` is None)."""
    out = tmp_path_factory.mktemp("run")
    command = ["train", *TINY_RUN, "--output", str(out)]
    env = {**jax_cache_env(tmp_path_factory), **optimized_xla_env()}
    paths = run_folder.RunPaths(out)
    first = after_kill = None
    if BACKEND == KILL_PASS:
        first = cli(command, env=env, kill_at="h5|backup|2")
        after_kill = {
            "rows": run_folder.read_history(paths.history_csv)["epoch"]
            if os.path.exists(paths.history_csv)
            else None,
            "backup": sorted(os.listdir(paths.backup)) if os.path.isdir(paths.backup) else None,
            "model": os.path.exists(paths.model),
            "status": run_folder.RunConfig.load(paths.config).status,
        }
    second = cli(command, env=env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    return {
        "paths": paths,
        "command": command,
        "first": first,
        "second": second,
        "after_kill": after_kill,
    }


@only_in(KILL_PASS, reason="backend-independent h5 writer: the kill runs in the TensorFlow pass")
def test_kill_while_writing_the_backup_resumes_at_the_next_epoch(run):
    first, second, after_kill = run["first"], run["second"], run["after_kill"]
    assert first.returncode == -signal.SIGKILL, first.stderr[-3000:]
    assert "KILL_HOOK: SIGKILL while writing" in first.stderr and "backup" in first.stderr
    # Epoch 2's row was written, its backup was cut off mid-write.
    assert after_kill["rows"] == [0.0, 1.0] and not after_kill["model"]
    assert after_kill["status"] == "running"
    assert "epoch-0001" in after_kill["backup"], after_kill
    assert [n for n in after_kill["backup"] if n.startswith(".tmp-")], after_kill
    assert "Resuming after epoch 1" in second.stdout
    assert "Epoch 1/2" not in second.stdout and "Epoch 2/2" in second.stdout
    assert "Traceback" not in second.stderr, second.stderr[-3000:]
    history = run_folder.read_history(run["paths"].history_csv)
    assert history["epoch"] == [0.0, 1.0]  # no gap, no duplicate
    assert history["learning_rate"][0] > history["learning_rate"][1]  # the schedule went on
    assert not os.path.exists(run["paths"].backup)  # removed once finished


def test_training_writes_the_run_folder(run):
    paths = run["paths"]
    names = sorted(os.listdir(paths.root))
    assert {"model.keras", "run.json", "history.csv", "history.png", "checkpoints"} <= set(names)
    assert not [n for n in names if ".tmp-" in n]
    config = run_folder.RunConfig.load(paths.config)
    assert config.status == "finished" and config.class_names == [str(i) for i in range(10)]
    assert config.image_size == 16 and config.steps == 25 and config.backend == BACKEND
    assert config.recipe["lr"] == 0.2 and config.model_spec["widths"] == [8, 16, 32, 64]
    model = keras.saving.load_model(paths.model, compile=False)
    assert model.input_shape == (None, 16, 16, 3) and model.output_shape == (None, 10)
    # PyTorch trains in channels_first (--data-format auto); every saved model is
    # channels_last, so that TensorFlow on CPU runs it.
    expected = "channels_first" if BACKEND == "torch" else "channels_last"
    assert config.data_format == expected
    for saved in (paths.model, paths.checkpoint):
        assert '"channels_first"' not in _model_config(saved)
        assert "to_channels_first" not in _model_config(saved)
    # Readable by others (not the 0600 of a temporary file).
    assert os.stat(paths.model).st_mode & 0o044 == 0o044 & ~_umask()
    import importlib.util

    if importlib.util.find_spec("tensorboard"):
        assert os.listdir(os.path.join(paths.logs, "train"))
    assert "val_accuracy" in run["second"].stdout


def _model_config(path):
    with zipfile.ZipFile(path) as archive:
        return archive.read("config.json").decode()


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_verbose_auto_writes_no_escape_codes_to_a_pipe(run):
    # --verbose auto with stdout not a terminal: one line per epoch.
    out = run["second"].stdout
    assert "\x08" not in out and "\r" not in out and "\x1b" not in out, repr(out[-500:])
    assert [line for line in out.splitlines() if line.startswith("25/25 - ")]


def test_tensorflow_start_up_lines_are_silenced(run):
    # The runs had no TF_CPP_MIN_LOG_LEVEL (see workflow_helpers.cli_env).
    err = run["second"].stderr
    for noise in ("oneDNN", "cuda", "absl::InitializeLog", "cpu_feature_guard"):
        assert noise not in err, err[-2000:]


def test_saved_models_record_jit_compile_as_requested(run):
    for path in (run["paths"].model, run["paths"].checkpoint):
        with zipfile.ZipFile(path) as archive:
            config = json.loads(archive.read("config.json"))
        assert config["compile_config"]["jit_compile"] == "auto", path


@pytest.mark.skipif(BACKEND != "jax", reason="a model trained under JAX, in the JAX pass")
def test_jax_trained_model_loads_under_torch_without_torch_compile(run):
    loaded = run_python(
        "import warnings, numpy as np, keras, keras_ba\n"
        f"model = keras.saving.load_model({run['paths'].model!r})\n"
        "x = np.zeros((4, 16, 16, 3), 'float32'); y = np.eye(10, dtype='float32')[:4]\n"
        "for _ in range(3):\n"
        "    model.evaluate(x, y, verbose=0); model.train_on_batch(x, y)\n"
        "print('JIT', model.jit_compile)\n",
        backend="torch",
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert "JIT False" in loaded.stdout
    assert "recompile" not in loaded.stderr and "dynamo" not in loaded.stderr, loaded.stderr[-2000:]


# === Reruns ===


def _snapshot(folder):
    return {
        str(path.relative_to(folder)): (path.stat().st_mtime_ns, path.stat().st_size)
        for path in Path(folder).rglob("*")
        if path.is_file()
    }


def test_rerunning_a_finished_run_does_nothing(run, capsys):
    before = _snapshot(run["paths"].root)
    assert main(run["command"]) == 0
    out = capsys.readouterr().out
    assert "Nothing to do" in out and "--overwrite" in out and "Epoch" not in out
    assert _snapshot(run["paths"].root) == before


def test_another_configuration_is_refused_before_anything_is_written(run, tmp_path, capsys):
    import shutil

    # An unfinished run (its run.json says running) and a rerun with other widths.
    folder = tmp_path / "unfinished"
    shutil.copytree(run["paths"].root, folder)
    config = run_folder.RunConfig.load(folder / "run.json")
    run_folder.write_json(dict(config.to_dict(), status="running"), folder / "run.json")
    before = _snapshot(folder)
    command = [a if a != "64" else "32" for a in run["command"][:-1]] + [str(folder)]
    assert main(command) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error  # one line
    assert "unfinished run of another configuration" in error and "--widths" in error, error
    assert _snapshot(folder) == before  # nothing written, run.json untouched
    # The finished run refuses another number of epochs the same way.
    finished = run["command"][:-1] + [run["paths"].root, "--epochs", "3"]
    assert main(finished) == 1
    assert "finished run of another configuration" in capsys.readouterr().err


# === Evaluate, predict, export ===


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


def test_predict_reports_unreadable_files_and_classifies_the_others(run, tmp_path, capsys):
    paths, images, _ = _digit_pngs(str(tmp_path / "pngs"), 2)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32)
    missing = tmp_path / "missing.png"
    report = tmp_path / "predictions.json"
    inputs = [paths[0], str(broken), str(missing), paths[1]]
    code = main(["predict", run["paths"].root, *inputs, "--json", str(report)])
    out, err = capsys.readouterr()
    assert code == 1
    results = json.loads(report.read_text())
    assert [r["path"] for r in results] == inputs
    assert [("top" in r, "error" in r) for r in results] == [
        (True, False),
        (False, True),
        (False, True),
        (True, False),
    ]
    assert "broken.png" in err and "missing.png" in err and "2 of 4 files" in err
    assert os.path.basename(paths[0]) in out and os.path.basename(paths[1]) in out
    model = keras.saving.load_model(run["paths"].model, compile=False)
    expected = np.asarray(model.predict(preprocess_input(images.astype("float32")), verbose=0))
    assert [results[0]["top"][0][0], results[3]["top"][0][0]] == [
        str(i) for i in expected.argmax(1)
    ]


@pytest.mark.skipif(
    BACKEND == "jax",
    reason="the TensorFlow pass exports in-process; the PyTorch pass covers the TensorFlow "
    "subprocess that a JAX or PyTorch process starts (the same code and file for both)",
)
def test_export_serves_the_same_probabilities(run, tmp_path):
    serving = tmp_path / "serving"
    assert main(["export", run["paths"].root, "--output", str(serving)]) == 0
    version = serving / "ba_resnet18" / "1"
    assert (version / "saved_model.pb").exists()
    assert (version / "assets.extra" / "labels.txt").read_text().split() == [
        str(i) for i in range(10)
    ]
    assert not [p for p in (serving / "ba_resnet18").iterdir() if p.name != "1"]
    assert os.stat(version).st_mode & 0o055 == 0o055 & ~_umask()  # not mkdtemp's 0700

    if BACKEND == "tensorflow":  # TF Serving's view of the file; the same file in every pass
        shown = run_command(
            [BIN / "saved_model_cli", "show", "--dir", version, "--all"], timeout=300
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


# === In-process training ===


@only_in(
    "tensorflow",
    "torch",
    reason="--overwrite and --seed are run-folder logic, the same on every backend: the TensorFlow and PyTorch passes",
)
def test_overwrite_trains_afresh_and_the_same_seed_gives_the_same_history(run, tmp_path):
    import shutil

    folder = tmp_path / "again"
    shutil.copytree(run["paths"].root, folder)  # a finished run of another configuration
    command = ["train", *TINY_MODEL, *QUICK, "--epochs", "2", "--seed", "0"]
    command += ["--steps-per-epoch", "1", "--output", str(folder), "--overwrite"]
    histories = []
    for _ in range(2):  # the second --overwrite retrains the same configuration
        assert main(command) == 0
        histories.append(run_folder.read_history(str(folder / "history.csv")))
        config = run_folder.RunConfig.load(folder / "run.json")
        assert config.data["limit"] == 32 and config.status == "finished"
        assert not (folder / "history.png").exists()  # the old run's files are gone
    assert histories[0]["epoch"] == [0.0, 1.0] and histories[0].keys() == histories[1].keys()
    for key in histories[0]:
        np.testing.assert_allclose(histories[0][key], histories[1][key], rtol=1e-6, err_msg=key)


@only_in(
    "tensorflow",
    "torch",
    reason="the --precision flag: the TensorFlow and PyTorch passes (JAX mixed precision is test_resnet's contract)",
)
def test_mixed_precision_bfloat16_trains_and_saves(tmp_path):
    out = tmp_path / "bf16"
    command = ["train", *TINY_MODEL, *QUICK, "--epochs", "1", "--precision", "bfloat16"]
    assert main([*command, "--output", str(out)]) == 0
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    model = keras.saving.load_model(str(out / "model.keras"), compile=False)
    assert model.get_layer("conv1_conv").dtype_policy.name == "mixed_bfloat16"
    assert model.get_layer("conv2_block1_ba").dtype_policy.name == "mixed_bfloat16"
    assert model.get_layer("predictions").dtype_policy.name == "float32"  # softmax in float32
    assert np.isfinite(run_folder.read_history(str(out / "history.csv"))["loss"]).all()


# === Bad input: a clear message, a non-zero exit, no .keras file ===


def _bad_folder(tmp_path, kind):
    root = tmp_path / "data"
    if kind == "missing":
        return root
    root.mkdir()
    labels = ("a",) if kind == "one_class" else ("a", "b")
    if kind in ("corrupt", "damaged", "one_class"):
        for label in labels:
            (root / label).mkdir()
            for i in range(3):
                keras.utils.save_img(
                    str(root / label / f"{i}.png"), np.zeros((8, 8, 3), np.uint8), scale=False
                )
        if kind == "corrupt":
            (root / "a" / "broken.jpg").write_bytes(b"not an image at all")
        elif kind == "damaged":  # a valid PNG header followed by garbage: only decoding finds it
            (root / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    if kind == "empty_class":
        (root / "a").mkdir()
        keras.utils.save_img(str(root / "a" / "0.png"), np.zeros((8, 8, 3), np.uint8))
        (root / "b").mkdir()
    if kind == "empty_validation":  # one image per class: a 0.3 split holds none
        for label in labels:
            (root / label).mkdir()
            keras.utils.save_img(str(root / label / "0.png"), np.zeros((8, 8, 3), np.uint8))
    return root


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "does not exist"),
        ("empty", "has no class sub-folders"),
        ("one_class", r"has 1 class \(\['a'\]\): a classifier needs at least two classes"),
        ("empty_class", r"No images .* in the class folders \['b'\]"),
        ("empty_validation", "leaves 2 training and 0 validation images.*--validation-split"),
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
    assert error.startswith("keras-ba train: error: ") and error.count("\n") == 1, error
    assert __import__("re").search(message, error), error
    assert not list(tmp_path.rglob("*.keras"))
    if kind != "damaged":  # data checks come before anything is written
        assert not (out / "run.json").exists()


@only_in(
    "tensorflow",
    "torch",
    reason="TerminateOnNaN is Keras' callback, the same on every backend: the TensorFlow and PyTorch passes",
)
def test_nan_loss_stops_training_without_a_model(tmp_path, capsys):
    out = tmp_path / "out"
    command = ["train", *TINY_MODEL, *QUICK, "--epochs", "2", "--lr", "1e30"]
    assert main([*command, "--image-size", "8", "--output", str(out)]) == 1
    assert "loss became NaN" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.keras"))


def test_unwritable_output_folder_fails_clearly(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = main(["train", *TINY_MODEL, "--output", str(blocker / "run")])
    assert code == 1
    assert "Cannot write to the output folder" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.keras"))


def test_library_errors_become_flags_on_the_command_line(tmp_path, capsys):
    out = str(tmp_path / "out")
    assert (
        main(["train", *TINY_MODEL, "--epochs", "3", "--warmup-epochs", "5", "--output", out]) == 1
    )
    error = capsys.readouterr().err
    assert "Invalid value for --warmup-epochs" in error and "--warmup-epochs 5.0" in error, error
    assert main(["predict", out, "x.png", "--top-k", "0"]) == 1
    assert "--top-k must be a positive integer" in capsys.readouterr().err


@pytest.mark.skipif(BACKEND != "torch", reason="backend-independent: runs in the PyTorch pass")
def test_unknown_model_fails_in_a_real_process(tmp_path):
    out = tmp_path / "out"
    result = run_command(
        [BIN / "keras-ba", "train", "--model", "ba_resnet7", "--output", out], timeout=300
    )
    assert result.returncode == 1
    assert "Unknown model name 'ba_resnet7'" in result.stderr and "ba_resnet50" in result.stderr
    assert "Traceback" not in result.stderr
    assert not list(tmp_path.rglob("*.keras"))


def test_evaluate_and_predict_missing_files(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "nope.keras"), "--data", "digits"]) == 1
    assert "No such model file" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "nope.keras"), str(tmp_path / "x.png")]) == 1
    assert "No such image file or folder" in capsys.readouterr().err


def test_evaluate_a_missing_model_says_so(tmp_path, capsys):
    assert main(["evaluate", str(tmp_path / "missing" / "model.keras")]) == 1
    error = capsys.readouterr().err
    assert "No such model file" in error and "run.json" not in error, error
