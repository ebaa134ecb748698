"""Runs nobody can corrupt (issue #24): locks, untrusted files, damaged files, OS errors.

Every check names the case of the issue it covers. Checks that start
processes run in one backend pass only (a lock, a file's bytes and an OS
error do not depend on the backend); the others run in-process in every
pass, failing before any training where they can.
"""

import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile

import keras
import numpy as np
import pytest
from conftest import only_in
from workflow_helpers import TINY_MODEL, cli_command, cli_env

from keras_ba.cli import main
from keras_ba.runs import files as run_files
from keras_ba.runs import folder as run_folder
from keras_ba.utils import locking

TINY = [*TINY_MODEL, "--data", "digits", "--image-size", "16", "--limit", "16"]
TINY += ["--batch-size", "8", "--verbose", "2", "--no-plot"]
ONE_PASS = only_in(
    "torch", reason="backend-independent (files, locks, processes): PyTorch pass only"
)


def _error_line(capsys):
    """The command's stderr: exactly one line, no traceback."""
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def _tiny_classifier(folder, run_json=None):
    """A tiny keras_ba classifier saved as `folder/model.keras` (+ run.json text)."""
    from keras_ba.applications import BAResNet

    os.makedirs(folder, exist_ok=True)
    model = BAResNet([1], [8], block_type="basic", stem="cifar", stem_filters=8,
                     reduction=4, input_shape=(16, 16, 3), classes=3)  # fmt: skip
    model.save(os.path.join(folder, "model.keras"))
    if run_json is not None:
        with open(os.path.join(folder, "run.json"), "w") as file:
            file.write(run_json)
    return os.path.join(folder, "model.keras")


def _png(path):
    from PIL import Image

    Image.fromarray(np.zeros((16, 16, 3), "uint8")).save(path)
    return str(path)


# === 1. One process per run folder / export folder ===


class _Started:
    """A `keras-ba` process started in the background, stdout in a file."""

    def __init__(self, args, tmp_path, name, prelude=""):
        self.out_path = tmp_path / f"{name}.out"
        command = cli_command()
        command[2] = prelude + command[2]
        with open(self.out_path, "w") as out:
            self.popen = subprocess.Popen(
                [*command, *args], stdout=out, stderr=subprocess.STDOUT, env=cli_env(),
                start_new_session=True,
            )  # fmt: skip

    def wait_for(self, text, limit=300):
        deadline = time.time() + limit
        while time.time() < deadline and self.popen.poll() is None:
            if text in self.out_path.read_text():
                return
            time.sleep(0.1)
        raise AssertionError(f"never printed {text!r}:\n{self.out_path.read_text()[-3000:]}")

    def kill(self):
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()


@ONE_PASS
def test_a_second_train_in_a_run_folder_stops_at_once_naming_the_first(tmp_path):
    run = tmp_path / "run"
    args = ["train", *TINY, "--epochs", "200", "--output", str(run)]
    first = _Started(args, tmp_path, "first")
    try:
        first.wait_for("Epoch 2/200")  # it trains, its files are written
        second = subprocess.run(
            cli_command() + args + ["--seed", "1"],
            capture_output=True,
            text=True,
            env=cli_env(),
            timeout=600,
        )
        assert second.returncode == 1, second.stderr[-3000:]
        err = second.stderr.strip()
        assert "Traceback" not in err and len(err.splitlines()) == 1, err
        assert f"is in use by another keras-ba process (pid {first.popen.pid})" in err, err
        assert "Training" not in second.stdout  # stopped before any data or model work
        assert first.popen.poll() is None  # the first one trains on, untouched
        config = json.loads((run / "run.json").read_text())
        assert config["seed"] == 0 and config["status"] == "running"
    finally:
        first.kill()
    # The kill dropped the lock with the process: the folder is free again.
    locking.FolderLock(run).acquire().release()


HOLD_EXPORT = (
    "import time, keras_ba.export.saved_model as e\n"
    "def _hold(*args):\n"
    "    print('EXPORTING', flush=True); time.sleep(120)\n"
    "e._export_here = _hold\n"
)


@only_in("tensorflow", reason="the export runs under TensorFlow: TF pass only")
def test_a_second_export_to_the_same_base_stops_naming_the_first(tmp_path, capsys):
    model = _tiny_classifier(tmp_path / "run")
    base = tmp_path / "serving"
    args = ["export", model, "--output", str(base), "--name", "tiny"]
    first = _Started(args, tmp_path, "first", prelude=HOLD_EXPORT)
    try:
        first.wait_for("EXPORTING", limit=120)  # holds the lock of serving/tiny
        assert main(args) == 1
        err = _error_line(capsys)
        assert f"another keras-ba process (pid {first.popen.pid})" in err, err
        assert os.listdir(base / "tiny") == [locking.LOCK_FILE]  # nothing half-written
    finally:
        first.kill()


def test_the_lock_is_exclusive_and_names_its_holder(tmp_path):
    lock = locking.FolderLock(tmp_path, "The run folder").acquire()
    assert locking.holder(tmp_path) == os.getpid()
    with pytest.raises(locking.LockedError, match=f"in use by .* process .pid {os.getpid()}"):
        locking.FolderLock(tmp_path).check_free()
    with pytest.raises(locking.LockedError):
        locking.FolderLock(tmp_path).acquire()
    lock.release()
    assert not (tmp_path / locking.LOCK_FILE).exists()
    locking.FolderLock(tmp_path).acquire().release()


# === 2. A .keras file never chooses what is imported ===


def _crafted_file(path, module="keras_ba.cli.__main__"):
    config = {
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": "s", "layers": [{"module": module, "class_name": "Main",
                                            "config": {}, "registered_name": "Main"}]},
        "registered_name": None,
    }  # fmt: skip
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("metadata.json", json.dumps({"keras_version": keras.__version__}))
    return str(path)


def test_load_model_never_imports_a_module_the_file_names(tmp_path, capsys):
    import keras_ba

    evil = _crafted_file(tmp_path / "evil.keras")
    argv = list(sys.argv)
    sys.modules.pop("keras_ba.cli.__main__", None)
    with pytest.raises(ValueError, match="names the module 'keras_ba.cli.__main__'.*refusing"):
        keras_ba.load_model(evil)
    assert "keras_ba.cli.__main__" not in sys.modules and sys.argv == argv
    image = _png(tmp_path / "x.png")
    commands = [
        ["evaluate", evil, "--data", "digits"],
        ["predict", evil, image],
        ["export", evil, "--output", str(tmp_path / "out")],
        ["train", *TINY, "--weights", evil, "--output", str(tmp_path / "run")],
    ]
    for command in commands:
        assert main(command) == 1, command
        assert "keras_ba.cli.__main__" in _error_line(capsys), command
        assert "keras_ba.cli.__main__" not in sys.modules and sys.argv == argv
    assert not (tmp_path / "run").exists() and not (tmp_path / "out").exists()


def test_every_registering_module_is_in_the_allowlist():
    from keras_ba import saving

    root = os.path.dirname(os.path.dirname(saving.__file__))
    registering = set()
    for folder, _, names in os.walk(os.path.join(root, "keras_ba")):
        for name in names:
            path = os.path.join(folder, name)
            if name.endswith(".py") and "register_keras_serializable(" in open(path).read():
                module = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                registering.add(module.removesuffix(".__init__"))
    allowed = saving.registering_packages(sorted(registering))
    assert set(allowed) == set(saving.REGISTERING_PACKAGES)
    for module in ("keras_ba", "keras_ba.export.saved_model", "keras_ba.cli", "keras_ba.layersx"):
        with pytest.raises(ValueError, match="refusing to load it"):
            saving.registering_packages([module])


# === 3. Damaged run files are named ===


@pytest.mark.parametrize(
    "text, reason",
    [
        (b"epoch,loss\n0,2.0\n1,1.", "cut off"),
        (b"epoch,accuracy,lo", "cut off"),
        (b"epoch,lo\n0,2.0,1.0\n", "line 2 has 3 values for 2 columns"),
        (bytes(range(256)) * 4, "utf-8"),
    ],
    ids=["cut-row", "cut-header", "row-length", "random-bytes"],
)
def test_a_damaged_history_stops_train_naming_it(tmp_path, capsys, text, reason):
    run = tmp_path / "run"
    run.mkdir()
    run_folder.RunConfig(model="ba_resnet18").save(run / "run.json")
    (run / "history.csv").write_bytes(text)
    before = sorted(os.listdir(run))
    assert main(["train", *TINY, "--output", str(run)]) == 1
    err = _error_line(capsys)
    assert f"The run file {str(run / 'history.csv')!r} is damaged" in err, err
    assert reason in err and "delete it" in err and "--overwrite" in err, err
    assert sorted(os.listdir(run)) == before and (run / "history.csv").read_bytes() == text


def test_a_damaged_run_json_stops_evaluate_predict_export(tmp_path, capsys):
    run = tmp_path / "run"
    _tiny_classifier(run, run_json='{"model": "ba_resnet18", "status": "fini')
    image = _png(tmp_path / "x.png")
    for command in (
        ["evaluate", str(run)],
        ["predict", str(run), image],
        ["export", str(run), "--output", str(tmp_path / "serving")],
    ):
        assert main(command) == 1, command
        err = _error_line(capsys)
        assert f"The run file {str(run / 'run.json')!r} is damaged" in err, err
        assert "restore it from a copy" in err
    assert not (tmp_path / "serving").exists()


def test_outputs_never_replace_a_run_file_or_an_existing_file(tmp_path, capsys):
    run = tmp_path / "run"
    _tiny_classifier(run, run_json="{}")
    original = (run / "run.json").read_text()
    assert main(["evaluate", str(run), "--json", str(run / "run.json"), "--overwrite"]) == 1
    assert "is a file of the run" in _error_line(capsys)
    assert (run / "run.json").read_text() == original
    existing = tmp_path / "results.json"
    existing.write_text("keep")
    image = _png(tmp_path / "x.png")
    for command in (
        ["evaluate", str(run), "--json", str(existing)],
        ["predict", str(run), image, "--json", str(existing)],
    ):
        assert main(command) == 1
        assert "already exists: pass --overwrite" in _error_line(capsys)
    assert existing.read_text() == "keep"
    converted = tmp_path / "converted.keras"
    converted.write_text("keep")
    command = ["convert", "missing.pth", "--arch", "ba_resnet18", "-o", str(converted)]
    assert main(command) == 1
    assert "already exists: pass --overwrite" in _error_line(capsys)
    assert converted.read_text() == "keep"


# === 4. OS errors: one line, exit 1, the folder resumable ===


def _enospc(path):
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def test_a_full_disk_at_the_start_leaves_nothing(tmp_path, capsys, monkeypatch):
    def full(text, path):
        raise _enospc(path)

    monkeypatch.setattr(run_files, "write_text", full)  # where run.json is written
    run = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--output", str(run)]) == 1
    err = _error_line(capsys)
    assert f"No space left on device: {str(run / 'run.json')!r} (errno 28)" in err, err
    assert "rerun the same command" in err
    assert not run.exists()  # the folder it had created is gone


@ONE_PASS
def test_a_full_disk_during_a_checkpoint_leaves_a_resumable_run(tmp_path, capsys, monkeypatch):
    from keras_ba.training import callbacks

    run = tmp_path / "run"
    args = ["train", *TINY, "--epochs", "2", "--steps-per-epoch", "1", "--output", str(run)]
    save = run_folder.atomic_save
    calls = []

    def full_in_epoch_2(model, path):
        calls.append(path)
        if len(calls) == 2:
            raise _enospc(path)
        save(model, path)

    monkeypatch.setattr(callbacks.run_folder, "atomic_save", full_in_epoch_2)
    assert main(args) == 1
    err = _error_line(capsys)
    assert f"No space left on device: {str(run / 'checkpoints' / 'last.keras')!r}" in err, err
    assert run_folder.RunConfig.load(run / "run.json").status == "running"
    assert os.path.isdir(run / "backup" / "epoch-0001")
    monkeypatch.undo()
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Resuming after epoch 1" in out and "Epoch 2/2" in out and "Epoch 1/2" not in out
    assert run_folder.RunConfig.load(run / "run.json").finished


def test_no_room_for_the_backup_is_refused_before_hdf5_opens(tmp_path, monkeypatch):
    import shutil

    from keras_ba.utils import weights_files

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(64)])
    free = weights_files.needed_bytes(model) - 1
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(1, 1, free))
    with pytest.raises(OSError, match="No space left") as raised:
        run_folder.save_training_state(model, tmp_path / "backup", 3)
    assert raised.value.filename == str(tmp_path / "backup" / "epoch-0003")
    assert os.listdir(tmp_path / "backup") == []


def _mount_tmpfs(folder, size):
    folder.mkdir()
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True,
        )
    except OSError:
        return False
    return done.returncode == 0


@ONE_PASS
def test_a_really_full_disk_during_the_backup_is_one_line_and_no_crash(tmp_path):
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "2m"):
        pytest.skip("needs `mount -t tmpfs` (root)")
    try:
        # Room for the checkpoint of epoch 1 (0.9 MB), not for its backup.
        (disk / "fill").write_bytes(b"\0" * 1000 * 1024)
        run = disk / "run"
        args = [*TINY, "--epochs", "2", "--steps-per-epoch", "1", "--output", str(run)]
        done = subprocess.run(
            cli_command() + ["train", *args], capture_output=True, text=True, env=cli_env()
        )
        err = done.stderr.strip()
        assert done.returncode == 1, (done.returncode, err[-3000:])  # 139 before: segfault
        assert "Traceback" not in err, err[-3000:]
        assert f"No space left on device: {str(run / 'backup' / 'epoch-0001')!r}" in err, err
        assert (run / "checkpoints" / "last.keras").exists()
        assert not [n for n in os.listdir(run / "backup")]  # no half state left
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_a_model_that_is_not_an_image_classifier_is_one_line(tmp_path, capsys):
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2)])
    path = str(tmp_path / "plain.keras")
    model.save(path)
    image = _png(tmp_path / "x.png")
    for command in (["evaluate", path, "--data", "digits"], ["predict", path, image]):
        assert main(command) == 1, command
        err = _error_line(capsys)
        assert "is not an image classifier: it maps (None, 5) to (None, 2)" in err, err


# === 5. Nothing written before the data, the model and the options are checked ===


@ONE_PASS
def test_a_corrupt_image_found_while_training_leaves_no_run(tmp_path, capsys):
    from PIL import Image

    data = tmp_path / "photos"
    for name in ("cat", "dog"):
        (data / name).mkdir(parents=True)
        for index in range(4):
            Image.fromarray(np.full((16, 16, 3), index * 40, "uint8")).save(
                data / name / f"{index}.jpg"
            )
    damaged = data / "dog" / "3.jpg"
    damaged.write_bytes(damaged.read_bytes()[:40] + b"\0" * 200)  # a JPEG header, no image
    run = tmp_path / "run"
    args = [*TINY_MODEL, "--image-size", "16", "--batch-size", "2", "--validation-split", "0.25"]
    args += ["--no-plot", "--verbose", "0", "--epochs", "1", "--output", str(run)]
    assert main(["train", "--data", str(data), *args]) == 1
    err = _error_line(capsys)
    assert "unreadable" in err and "3.jpg" in err, err
    assert not run.exists()  # before: run.json "running" and logs/ stayed


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--lr", "inf"], "Invalid value for --lr: expected a positive number"),
        (["--lr", "nan"], "Invalid value for --lr"),
        (["--model", "ba_nothing"], "ba_nothing"),
        (["--data", "ONE_CLASS"], "has 1 class"),
    ],
    ids=["lr-inf", "lr-nan", "model", "one-class"],
)
def test_bad_input_writes_nothing(tmp_path, capsys, flags, message):
    if "ONE_CLASS" in flags:
        (tmp_path / "one" / "cat").mkdir(parents=True)
        _png(tmp_path / "one" / "cat" / "a.png")
        flags = ["--data", str(tmp_path / "one")]
    run = tmp_path / "run"
    args = [*TINY, "--epochs", "1", *flags, "--output", str(run)]
    assert main(["train", *args]) == 1
    assert re.search(message, _error_line(capsys))
    assert not run.exists()
