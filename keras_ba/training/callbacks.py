"""The callbacks of a training run.

Every file they write is written atomically (`run_folder.atomic_path`):
a process killed at any instant leaves the previous complete file or the
new one. `make_callbacks` puts them in the order that keeps the run folder
consistent: the history row of an epoch is written before the epoch's
backup, so a run killed between the two repeats that epoch (its row is
dropped on resume) instead of losing its row.

Example:
>>> from keras_ba.runs.folder import RunPaths
>>> [type(c).__name__ for c in make_callbacks(RunPaths("run"), tensorboard=False)]
['TerminateOnNaN', 'LearningRateLogger', 'ResumableCSVLogger', 'AtomicCheckpoint', 'RunBackup']
"""

import importlib.util
import math

import keras

from keras_ba.runs import folder as run_folder


def _finite(logs):
    """False when the epoch's loss is NaN or infinite (nothing worth keeping)."""
    value = (logs or {}).get("loss")
    try:
        return value is None or math.isfinite(float(value))
    except (TypeError, ValueError):
        return True


class ResumableCSVLogger(keras.callbacks.Callback):
    """Writes `history.csv`, one row per epoch, kept across resumes.

    When training starts at epoch `e` (0 for a new run, the next unfinished
    epoch for a resumed one), rows of epochs `>= e` are dropped first: a run
    killed after writing an epoch's row but before its backup repeats that
    epoch without a duplicate row, and a new run starts a fresh history.
    The whole file is rewritten atomically after every epoch (it is small),
    so it is never cut off in the middle of a row.

    Args:
        filename: the CSV file.
        separator: the column separator.

    Example:
    >>> ResumableCSVLogger("history.csv").filename
    'history.csv'
    """

    def __init__(self, filename, separator=","):
        super().__init__()
        self.filename = filename
        self.separator = separator
        self._header = None
        self._rows = None

    def on_train_begin(self, logs=None):
        self._rows = None

    def on_epoch_begin(self, epoch, logs=None):
        if self._rows is None:
            run_folder.keep_epochs_before(self.filename, epoch, self.separator)
            self._header, self._rows = run_folder.read_history_rows(self.filename, self.separator)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        header = list(self._header or ["epoch"])
        header += sorted(key for key in logs if key not in header)
        self._header = header
        self._rows.append({"epoch": str(epoch), **{k: _text(v) for k, v in logs.items()}})
        run_folder.write_history_rows(self.filename, header, self._rows, self.separator)


def _text(value):
    try:
        return str(float(value))
    except (TypeError, ValueError):
        return str(value)


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


class AtomicCheckpoint(keras.callbacks.Callback):
    """Saves the model (`.keras`, with the optimizer) after every epoch, atomically.

    Unlike `keras.callbacks.ModelCheckpoint`, which writes in place, the
    file is written under a temporary name and renamed: a kill while saving
    leaves the previous epoch's file. An epoch whose loss is not finite is
    not saved (the weights are NaN).

    Args:
        filepath: the `.keras` file.
        saved: `saved(model)` returns the model to write (default: the
            model itself; the trainer passes its channels_last copy when it
            trains in channels_first).

    Example:
    >>> AtomicCheckpoint("checkpoints/last.keras").filepath
    'checkpoints/last.keras'
    """

    def __init__(self, filepath, saved=None):
        super().__init__()
        self.filepath = filepath
        self.saved = saved

    def on_epoch_end(self, epoch, logs=None):
        if _finite(logs):
            run_folder.makedirs_for(self.filepath)
            model = self.saved(self.model) if self.saved else self.model
            run_folder.atomic_save(model, self.filepath)


class RunBackup(keras.callbacks.Callback):
    """Backs up the training state after every epoch, for `restore_training_state`.

    Replaces `keras.callbacks.BackupAndRestore`, which writes its weights
    and its epoch number in place, in two files: a kill while it writes
    leaves a truncated file that fails every later restore, or new weights
    beside the previous epoch number. Here each epoch's state (weights with
    the optimizer, epoch number, checksum) goes to a new folder
    `epoch-NNNN` that is complete before it is renamed into place, and the
    newest `keep` states stay, so a damaged newest copy falls back to the
    previous one (see `run_folder.save_training_state`). The trainer
    restores before `fit` (`run_folder.restore_training_state`) and passes
    `initial_epoch`; the folder is removed once the run is finished and its
    model saved.

    Args:
        folder: the backup folder.
        keep: how many epochs' states to keep (at least 1).

    Example:
    >>> RunBackup("backup").keep
    2
    """

    def __init__(self, folder, keep=2):
        super().__init__()
        if keep < 1:
            raise ValueError(f"`keep` must be a positive integer. Received: `keep={keep}`.")
        self.folder = folder
        self.keep = keep

    def on_epoch_end(self, epoch, logs=None):
        if _finite(logs):
            run_folder.save_training_state(self.model, self.folder, epoch + 1, self.keep)


def make_callbacks(paths, tensorboard=None, saved=None):
    """The callbacks of a training run, in order.

    `TerminateOnNaN`, the learning rate in the logs, `ResumableCSVLogger`,
    `TensorBoard` (when the `tensorboard` package is installed),
    `AtomicCheckpoint` of the last epoch, and `RunBackup` last (an epoch is
    backed up only once everything else of it is written).

    Args:
        paths: the run's `RunPaths`.
        tensorboard: write TensorBoard logs; default: when the
            `tensorboard` package is installed.
        saved: passed to `AtomicCheckpoint`.

    Returns:
        A list of `keras.callbacks.Callback`.

    Example:
    >>> from keras_ba.runs.folder import RunPaths
    >>> [type(c).__name__ for c in make_callbacks(RunPaths("run"), tensorboard=False)][:2]
    ['TerminateOnNaN', 'LearningRateLogger']
    """
    if tensorboard is None:
        tensorboard = importlib.util.find_spec("tensorboard") is not None
        if not tensorboard:
            print("No TensorBoard log: the tensorboard package is missing (the train extra).")
    callbacks = [
        keras.callbacks.TerminateOnNaN(),
        LearningRateLogger(),
        ResumableCSVLogger(paths.history_csv),
    ]
    if tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(paths.logs, write_graph=False))
    return callbacks + [AtomicCheckpoint(paths.checkpoint, saved), RunBackup(paths.backup)]
