"""The run folder: its layout, the training callbacks and atomic writes.

A run folder (`--output`) holds::

    model.keras            final model (written to a temporary name, then renamed)
    run.json               model, data, recipe and class names (read by evaluate,
                           predict and export)
    history.csv            one row per finished epoch (kept across resumes)
    history.png            loss and accuracy curves
    checkpoints/last.keras the model after the latest epoch
    backup/                BackupAndRestore state while a run is unfinished
    logs/                  TensorBoard

Example:
>>> paths = RunPaths("runs/digits")
>>> paths.model
'runs/digits/model.keras'
"""

import contextlib
import csv
import importlib.util
import json
import os
import signal
import tempfile

import keras

from keras_ba.training.errors import WorkflowError

KILL_AFTER_EPOCH_ENV = "KERAS_BA_KILL_AFTER_EPOCH"


class RunPaths:
    """Paths inside a run folder.

    Example:
    >>> RunPaths("out").history_csv
    'out/history.csv'
    """

    def __init__(self, root):
        self.root = os.fspath(root)
        self.model = os.path.join(self.root, "model.keras")
        self.config = os.path.join(self.root, "run.json")
        self.history_csv = os.path.join(self.root, "history.csv")
        self.history_png = os.path.join(self.root, "history.png")
        self.checkpoint = os.path.join(self.root, "checkpoints", "last.keras")
        self.backup = os.path.join(self.root, "backup")
        self.logs = os.path.join(self.root, "logs")


# === Checks and atomic writes ===


def prepare_output_dir(path):
    """Creates `path` if needed and proves that files can be written in it.

    Raises:
        WorkflowError: naming the folder and the reason.

    Example:
    >>> import tempfile
    >>> prepare_output_dir(tempfile.mkdtemp()) is None
    True
    """
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise WorkflowError(
            f"Cannot write to the output folder {os.fspath(path)!r}: {error.strerror or error}."
        ) from None


@contextlib.contextmanager
def temporary_path(path, suffix):
    """A fresh file name next to `path`, renamed to `path` if the block succeeds.

    On an exception the temporary file is removed and `path` is untouched.

    Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "out.txt")
    >>> with temporary_path(path, ".txt") as temporary:
    ...     _ = open(temporary, "w").write("done")
    >>> open(path).read()
    'done'
    """
    folder = os.path.dirname(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    os.close(handle)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def atomic_save(model, path):
    """Saves `model` to `path` (`.keras`) through a temporary file and a rename.

    If saving fails, `path` is untouched (an older file stays) and no
    partial file is left behind.

    Example:
    >>> import keras, tempfile, os
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> path = os.path.join(tempfile.mkdtemp(), "m.keras")
    >>> atomic_save(model, path); os.path.exists(path)
    True
    """
    with temporary_path(path, ".keras") as temporary:
        model.save(temporary)


def write_json(data, path):
    """Writes `data` as JSON through a temporary file and a rename.

    Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "run.json")
    >>> write_json({"a": 1}, path); read_json(path)
    {'a': 1}
    """
    with temporary_path(path, ".json") as temporary:
        with open(temporary, "w") as file:
            json.dump(data, file, indent=2)


def read_json(path):
    """Reads a JSON file; None if it does not exist.

    Example:
    >>> read_json("no/such/run.json") is None
    True
    """
    if not os.path.exists(path):
        return None
    with open(path) as file:
        return json.load(file)


# === Callbacks ===


class ResumableCSVLogger(keras.callbacks.CSVLogger):
    """`CSVLogger(append=True)` that keeps one row per epoch across resumes.

    When training starts at epoch `e` (0 for a new run, the next unfinished
    epoch after `BackupAndRestore` restored a run), rows of epochs `>= e`
    are dropped first: a run killed between writing its CSV row and its
    backup repeats that epoch without a duplicate row, and a new run in an
    old folder starts a fresh history.

    Example:
    >>> logger = ResumableCSVLogger("history.csv")
    >>> logger.append
    True
    """

    def __init__(self, filename, separator=","):
        super().__init__(filename, separator=separator, append=True)
        self._trimmed = False

    def on_train_begin(self, logs=None):
        self._trimmed = False
        super().on_train_begin(logs)

    def on_epoch_begin(self, epoch, logs=None):
        if not self._trimmed:
            self._trimmed = True
            self.csv_file.close()
            keep_epochs_before(self.filename, epoch, self.sep)
            super().on_train_begin(logs)  # reopens for appending
        super().on_epoch_begin(epoch, logs)


def keep_epochs_before(path, epoch, separator=","):
    """Rewrites the CSV history `path` without the rows of epochs `>= epoch`.

    Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "h.csv")
    >>> _ = open(path, "w").write("epoch,loss\\n0,2.0\\n1,1.5\\n1,1.5\\n")
    >>> keep_epochs_before(path, 1); open(path).read()
    'epoch,loss\\n0,2.0\\n'
    """
    if not os.path.exists(path):
        return
    with open(path, newline="") as file:
        rows = list(csv.reader(file, delimiter=separator))
    if not rows:
        return
    kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) < epoch]
    if epoch == 0:
        kept = []
    with temporary_path(path, ".csv") as temporary:
        with open(temporary, "w", newline="") as file:
            csv.writer(file, delimiter=separator, lineterminator="\n").writerows(kept)


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current `learning_rate` to the epoch logs.

    Example:
    >>> LearningRateLogger().__class__.__name__
    'LearningRateLogger'
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(
                keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            )


class KillAfterEpoch(keras.callbacks.Callback):
    """Fault injection: SIGKILLs its own process after epoch `epoch` (1-based).

    Enabled by the environment variable `KERAS_BA_KILL_AFTER_EPOCH=N`; used by
    the tests to interrupt a real training process after every callback of
    epoch N has run, the way a preempted machine would.

    Example:
    >>> KillAfterEpoch(2).epoch
    2
    """

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            print(f"\n{KILL_AFTER_EPOCH_ENV}={self.epoch}: killing this process.", flush=True)
            os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def make_callbacks(paths):
    """The callbacks of a training run, in order.

    `BackupAndRestore` (restores an unfinished run, backs up every epoch),
    `TerminateOnNaN`, the learning rate in the logs, `ResumableCSVLogger`,
    `TensorBoard` (when the `tensorboard` package is installed: TensorFlow
    2.21 no longer installs it), and `ModelCheckpoint` of the last epoch;
    plus `KillAfterEpoch` when `KERAS_BA_KILL_AFTER_EPOCH` is set.

    Args:
        paths: the run's `RunPaths`.

    Returns:
        A list of `keras.callbacks.Callback`.

    Example:
    >>> [type(c).__name__ for c in make_callbacks(RunPaths("run"))][:2]
    ['BackupAndRestore', 'TerminateOnNaN']
    """
    callbacks = [
        keras.callbacks.BackupAndRestore(paths.backup),
        keras.callbacks.TerminateOnNaN(),
        LearningRateLogger(),
        ResumableCSVLogger(paths.history_csv),
        keras.callbacks.ModelCheckpoint(paths.checkpoint),
    ]
    if importlib.util.find_spec("tensorboard") is not None:
        callbacks.insert(4, keras.callbacks.TensorBoard(paths.logs, write_graph=False))
    else:
        print("No TensorBoard log: install the tensorboard package (pip install tensorboard).")
    kill_after = os.environ.get(KILL_AFTER_EPOCH_ENV)
    if kill_after:
        callbacks.append(KillAfterEpoch(int(kill_after)))
    return callbacks


def read_history(path):
    """The CSV history as `{column: [float, ...]}`, ordered by epoch.

    Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "h.csv")
    >>> _ = open(path, "w").write("epoch,loss\\n0,2.0\\n1,1.5\\n")
    >>> read_history(path)["loss"]
    [2.0, 1.5]
    """
    if not os.path.exists(path):
        raise WorkflowError(f"No training history at {path!r}.")
    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    columns = rows[0].keys() if rows else []
    return {c: [_number(r[c]) for r in rows] for c in columns}


def _number(text):
    try:
        return float(text)
    except ValueError:
        return float("nan")
