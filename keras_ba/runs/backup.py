"""The training-state backup: weights and optimizer after each epoch.

`backup/epoch-NNNN/` holds `state.weights.h5` and `state.json` (epoch, size
and checksum of the weights); the newest two are kept while the run is
unfinished. A damaged state is skipped for the one before it.

Example:
>>> check_training_state(tempfile.mkdtemp())
Traceback (most recent call last):
...
keras_ba.errors.WorkflowError: no state.json
"""

import hashlib
import json
import os
import shutil
import tempfile

from keras_ba.errors import WorkflowError
from keras_ba.runs.files import first_line, fsync_path
from keras_ba.utils import weights_files

# === Training state (backup) ===

STATE_WEIGHTS = "state.weights.h5"
STATE_INFO = "state.json"
STATE_PREFIX = "epoch-"


def save_training_state(model, folder, epoch, keep=2):
    """Saves the model's weights and optimizer state after `epoch` epochs.

    Written to `<folder>/.tmp-XXXX/` (weights, then `state.json` with the
    epoch and the weights' size and SHA-256), flushed, then renamed to
    `<folder>/epoch-NNNN`; only then are states older than the newest
    `keep` removed. A kill at any instant leaves the previous states intact
    and at most a `.tmp-` folder, which `restore_training_state` removes.

    Args:
        model: a compiled, built model.
        folder: the backup folder (created if needed).
        epoch: the number of finished epochs.
        keep: states to keep, the newest first.

    Returns:
        The new state's folder.

    Example:
    >>> import keras
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> folder = tempfile.mkdtemp()
    >>> os.path.basename(save_training_state(model, folder, 3))
    'epoch-0003'
    """
    os.makedirs(folder, exist_ok=True)
    temporary = tempfile.mkdtemp(prefix=".tmp-", dir=folder)
    try:
        weights = os.path.join(temporary, STATE_WEIGHTS)
        weights_files.save_weights(model, weights)
        fsync_path(weights)
        info = {"epoch": int(epoch), "bytes": os.path.getsize(weights), "sha256": _sha256(weights)}
        with open(os.path.join(temporary, STATE_INFO), "w") as file:
            json.dump(info, file)
        fsync_path(os.path.join(temporary, STATE_INFO))
        fsync_path(temporary)
        target = os.path.join(folder, f"{STATE_PREFIX}{int(epoch):04d}")
        if os.path.exists(target):  # a state of this epoch that failed its check before
            shutil.rmtree(target)
        os.replace(temporary, target)
        fsync_path(folder)
    except OSError as error:  # name the state being written, not its temporary folder
        state = os.path.join(folder, f"{STATE_PREFIX}{int(epoch):04d}")
        raise OSError(error.errno, error.strerror or str(error), state) from None
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    for old in _states(folder)[keep:]:
        shutil.rmtree(old[1], ignore_errors=True)
    return target


def _sha256(path):

    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _states(folder):
    """`(epoch, path)` of the state folders, newest first."""
    if not os.path.isdir(folder):
        return []
    found = []
    for name in os.listdir(folder):
        number = name[len(STATE_PREFIX) :]
        if name.startswith(STATE_PREFIX) and number.isdigit():
            found.append((int(number), os.path.join(folder, name)))
    return sorted(found, reverse=True)


def check_training_state(path):
    """The epoch of the state folder `path`; raises if it is incomplete or damaged.

    Raises:
        WorkflowError: naming what is wrong.

    Example:
    >>> check_training_state("no/such/epoch-0001")
    Traceback (most recent call last):
    ...
    keras_ba.errors.WorkflowError: no state.json
    """
    info_path = os.path.join(path, STATE_INFO)
    weights = os.path.join(path, STATE_WEIGHTS)
    if not os.path.isfile(info_path):
        raise WorkflowError(f"no {STATE_INFO}")
    try:
        with open(info_path) as file:
            info = json.load(file)
        epoch = int(info["epoch"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise WorkflowError(f"{STATE_INFO} is damaged") from None
    if not os.path.isfile(weights):
        raise WorkflowError(f"no {STATE_WEIGHTS}")
    if os.path.getsize(weights) != info.get("bytes") or _sha256(weights) != info.get("sha256"):
        raise WorkflowError(f"{STATE_WEIGHTS} is damaged (size or checksum differ)")
    return epoch


def restore_training_state(model, folder, clean=True):
    """Loads the newest intact state of `folder` into `model`; returns its epoch.

    States that fail their check (`check_training_state`: a cut-off or
    altered file) are reported, removed, and the previous one is tried;
    leftover `.tmp-` folders of an interrupted save are removed. Build the
    model's optimizer first (`model.optimizer.build(...)`) so that its
    state is restored too.

    Args:
        model: the compiled model of the same configuration.
        folder: the backup folder.
        clean: remove damaged states and leftovers; False only reads (the
            processes other than 0 of a multi-process run, which skip the
            same states).

    Returns:
        The number of finished epochs restored; 0 when there is no intact
        state (train from the start).

    Raises:
        WorkflowError: an intact state that does not fit `model`.

    Example:
    >>> import keras
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> restore_training_state(model, "no/such/backup")
    0
    """
    if not os.path.isdir(folder):
        return 0
    for name in os.listdir(folder) if clean else ():
        if name.startswith(".tmp-"):
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
    for epoch, path in _states(folder):
        try:
            if check_training_state(path) != epoch:
                raise WorkflowError(f"{STATE_INFO} names another epoch")
        except WorkflowError as problem:
            if clean:
                print(f"Skipping the damaged backup {path}: {problem}.")
                shutil.rmtree(path, ignore_errors=True)
            continue
        try:
            model.load_weights(os.path.join(path, STATE_WEIGHTS))
        except Exception as error:
            raise WorkflowError(
                f"The backup {path} does not fit this model ({first_line(error)}): "
                "was the run folder written by another configuration?"
            ) from None
        return epoch
    return _restore_keras_backup(model, folder)


def _restore_keras_backup(model, folder):
    """The state of `keras.callbacks.BackupAndRestore` (runs of earlier versions)."""
    weights = os.path.join(folder, "latest.weights.h5")
    metadata = os.path.join(folder, "training_metadata.json")
    if not (os.path.isfile(weights) and os.path.isfile(metadata)):
        return 0
    try:
        with open(metadata) as file:
            epoch = int(json.load(file)["epoch"])
        _read_every_dataset(weights)  # a damaged file fails here, before any assignment
        model.load_weights(weights)
    except Exception as error:  # a file cut off by a kill while Keras wrote it
        print(f"Skipping the damaged backup {folder}: {first_line(error)}.")
        return 0
    return epoch


def _read_every_dataset(path):
    import h5py

    def read(name, item):
        if isinstance(item, h5py.Dataset):
            item[()]

    with h5py.File(path, "r") as file:
        file.visititems(read)
