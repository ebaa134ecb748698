"""The run folder: its layout, `run.json`, atomic writes and loading the model.

A run folder (`output` of `train`, `--output` of `keras-ba train`) holds::

    run.json               the configuration (`RunConfig`): model, data, recipe,
                           seed, class names; `status` "running" or "finished"
    model.keras            the final model
    history.csv            one row per finished epoch
    history.png            loss and accuracy curves
    checkpoints/last.keras the model after the latest epoch
    backup/epoch-NNNN/     training state (weights + optimizer) after epoch NNNN,
                           the newest two, while the run is unfinished
                           (`save_training_state`, `restore_training_state`)
    logs/                  TensorBoard
    .keras-ba.lock         while a process trains here: its pid (`utils.locking`;
                           a second `train` on the folder stops at once)

Every file is written under a temporary name in the same folder and renamed
(`os.replace`, atomic on POSIX and Windows) once complete and flushed to
disk, so a process killed at any instant leaves either the old file or the
new one, never half a file. TensorBoard's event files are the exception:
they are append-only logs of checksummed records, and TensorBoard skips a
torn last record.

Nothing here imports TensorFlow; `load_trained_model` imports Keras.

Example:
>>> paths = RunPaths("runs/digits")
>>> paths.model
'runs/digits/model.keras'
"""

import contextlib
import csv
import dataclasses
import json
import os
import shutil
import tempfile

from keras_ba.errors import WorkflowError
from keras_ba.utils import weights_files

MODEL_FILE = "model.keras"
CONFIG_FILE = "run.json"
RUNNING, FINISHED = "running", "finished"


class RunPaths:
    """Paths inside a run folder.

    Example:
    >>> RunPaths("out").history_csv
    'out/history.csv'
    """

    def __init__(self, root):
        self.root = os.fspath(root)
        self.model = os.path.join(self.root, MODEL_FILE)
        self.config = os.path.join(self.root, CONFIG_FILE)
        self.history_csv = os.path.join(self.root, "history.csv")
        self.history_png = os.path.join(self.root, "history.png")
        self.checkpoint = os.path.join(self.root, "checkpoints", "last.keras")
        self.backup = os.path.join(self.root, "backup")
        self.logs = os.path.join(self.root, "logs")

    def training_state(self):
        """The files a run writes while it trains (removed by `clear`).

        Example:
        >>> [os.path.basename(p) for p in RunPaths("out").training_state()][:2]
        ['model.keras', 'run.json']
        """
        folders = (os.path.dirname(self.checkpoint), self.backup, self.logs)
        return (self.model, self.config, self.history_csv, self.history_png) + folders

    def remove_temporaries(self):
        """Removes the temporary files of writes that a kill interrupted.

        Example:
        >>> folder = tempfile.mkdtemp()
        >>> _ = open(os.path.join(folder, ".model.keras.tmp-x1.keras"), "w")
        >>> RunPaths(folder).remove_temporaries(); os.listdir(folder)
        []
        """
        for folder in (self.root, os.path.dirname(self.checkpoint)):
            if not os.path.isdir(folder):
                continue
            for name in os.listdir(folder):
                if name.startswith(".") and ".tmp-" in name:
                    path = os.path.join(folder, name)
                    if os.path.isdir(path):
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        os.remove(path)

    def clear(self):
        """Removes what a previous run wrote here (nothing else in the folder).

        Example:
        >>> folder = tempfile.mkdtemp()
        >>> write_json({"a": 1}, os.path.join(folder, "run.json"))
        >>> RunPaths(folder).clear(); os.listdir(folder)
        []
        """
        for path in self.training_state():
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)


def model_path(path):
    """The model file that `path` names: a `.keras` file, or a run folder's model.

    Raises:
        WorkflowError: when there is no such file.

    Example:
    >>> model_path("no/such/model.keras")
    Traceback (most recent call last):
    ...
    keras_ba.errors.WorkflowError: No such model file: 'no/such/model.keras'.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        candidate = os.path.join(path, MODEL_FILE)
        if not os.path.isfile(candidate):
            raise WorkflowError(f"No {MODEL_FILE} in the folder {path!r}: is the run finished?")
        return candidate
    if not os.path.isfile(path):
        raise WorkflowError(f"No such model file: {path!r}.")
    from keras_ba import saving

    try:  # a file naming modules outside keras_ba's model packages: refused here, cheaply
        saving.registering_packages(saving.keras_ba_modules(path), path)
    except ValueError as error:
        raise WorkflowError(f"Cannot load the model {path!r}: {error}") from None
    return path


# === run.json ===


@dataclasses.dataclass
class RunConfig:
    """The configuration of a training run, stored as `run.json`.

    Two runs are the same run when their configuration fields (`model_spec`,
    `data`, `recipe`, `seed`, `precision`, `distribute`, `steps_per_epoch`,
    `backend`) are equal: `differences` lists those that are not. The class
    names are compared once the data is read; the other fields are derived
    or informative.

    Attributes:
        model: model name, e.g. `"ba_resnet18"`.
        model_spec: the `ModelSpec` as a dict.
        data: the `DataSource` as a dict (folder paths absolute).
        recipe: the `Recipe` as a dict.
        seed: the run's seed.
        precision: `"float32"`, `"bfloat16"` or `"float16"`.
        distribute: the distribution mode.
        steps_per_epoch: optimizer steps per epoch as requested (None: one
            pass over the training images).
        steps: optimizer steps per epoch as run.
        backend: the Keras backend.
        image_size: model input side (from the recipe).
        eval_crop_pct: evaluation crop (from the recipe).
        class_names: the data's class names.
        status: `"running"` or `"finished"`.
        keras_ba_version: the version that wrote the file.
        data_format: the layout the model computed in (the saved models
            are channels_last; a run may resume in another layout).

    Example:
    >>> a = RunConfig(model="m", recipe={"epochs": 3, "lr": 0.1})
    >>> b = RunConfig(model="m", recipe={"epochs": 5, "lr": 0.1})
    >>> a.differences(b)
    ['recipe.epochs']
    """

    model: str = ""
    model_spec: dict = dataclasses.field(default_factory=dict)
    data: dict = dataclasses.field(default_factory=dict)
    recipe: dict = dataclasses.field(default_factory=dict)
    seed: int = 0
    precision: str = "float32"
    distribute: str = "none"
    steps_per_epoch: int | None = None
    steps: int | None = None
    backend: str = ""
    image_size: int | None = None
    eval_crop_pct: float = 1.0
    class_names: list | None = None
    status: str = RUNNING
    keras_ba_version: str = ""
    data_format: str = "channels_last"

    # Derived (from model_spec and recipe), compared later, or informative.
    NOT_COMPARED = (
        "model",
        "image_size",
        "eval_crop_pct",
        "status",
        "class_names",
        "steps",
        "keras_ba_version",
        "data_format",
    )

    @property
    def finished(self):
        return self.status == FINISHED

    def differences(self, other):
        """Names of the fields (`recipe.lr` for nested ones) that differ.

        Example:
        >>> RunConfig(seed=1).differences(RunConfig(seed=2))
        ['seed']
        """
        mine, theirs = _comparable(self), _comparable(other)
        return [key for key in sorted(set(mine) | set(theirs)) if mine.get(key) != theirs.get(key)]

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        """A `RunConfig` from a dict; unknown keys are ignored.

        Example:
        >>> RunConfig.from_dict({"model": "m", "extra": 1}).model
        'm'
        """
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def save(self, path):
        """Writes the config to `path` atomically.

        Example:
        >>> path = os.path.join(tempfile.mkdtemp(), "run.json")
        >>> RunConfig(model="m").save(path); RunConfig.load(path).model
        'm'
        """
        write_json(self.to_dict(), path)

    @classmethod
    def load(cls, path):
        """Reads `path`; None when it does not exist.

        Raises:
            WorkflowError: when the file is not a run configuration.

        Example:
        >>> RunConfig.load("no/such/run.json") is None
        True
        """
        data = read_json(path)
        if data is None:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("model", ""), str):
            raise WorkflowError(f"{path!r} is not a keras-ba run configuration.")
        if "status" not in data:  # written by keras-ba before 0.1.0 had `status`
            paths = RunPaths(os.path.dirname(os.fspath(path)))
            done = os.path.isfile(paths.model) and not os.path.isdir(paths.backup)
            data = dict(data, status=FINISHED if done else RUNNING)
        return cls.from_dict(data)


def _comparable(config):
    flat = {}
    for key, value in config.to_dict().items():
        if key in RunConfig.NOT_COMPARED:
            continue
        if isinstance(value, dict):
            flat.update({f"{key}.{k}": _plain(v) for k, v in value.items()})
        else:
            flat[key] = _plain(value)
    return flat


def _plain(value):
    """Tuples and lists compare equal (JSON has only lists)."""
    return list(value) if isinstance(value, tuple) else value


def model_info(model_path, image_size=None, crop_pct=None):
    """Image size, crop and class names for a model, from the `run.json` beside it.

    Without a `run.json` (a model saved outside `keras-ba train`), the
    image size is None (use the model's input size), the crop 1.0 and the
    class names None.

    Args:
        model_path: a `.keras` file.
        image_size: overrides the run's image size.
        crop_pct: overrides the run's evaluation crop.

    Returns:
        `dict(image_size=..., crop_pct=..., class_names=[...] or None, name=...)`.

    Example:
    >>> model_info("no/such/model.keras", image_size=32)
    {'image_size': 32, 'crop_pct': 1.0, 'class_names': None, 'name': None}
    """
    config = read_run_config(os.path.dirname(os.fspath(model_path)))
    return {
        "image_size": image_size or (config.image_size if config else None),
        "crop_pct": crop_pct or (config.eval_crop_pct if config else None) or 1.0,
        "class_names": config.class_names if config else None,
        "name": config.model if config else None,
    }


def read_run_config(folder, recovery=None):
    """The `RunConfig` of a run folder, or None when it has no `run.json`.

    Raises:
        WorkflowError: a `run.json` that is damaged (not a run configuration),
            naming the file and what to do.

    Example:
    >>> read_run_config("no/such/folder") is None
    True
    """
    path = RunPaths(folder).config
    try:
        return RunConfig.load(path)
    except (WorkflowError, ValueError, TypeError, OSError) as error:
        reason = _first_line(error).replace(repr(path), "it")
        raise WorkflowError(damaged_message(path, reason, recovery or CONFIG_RECOVERY)) from None


CONFIG_RECOVERY = (
    "restore it from a copy; to use the model without it, pass the settings it held "
    "(`image_size`, `crop_pct`) and copy the model file out of the run folder"
)
TRAIN_CONFIG_RECOVERY = (
    "restore it from a copy, or pass `overwrite=True` to train again from scratch there"
)
HISTORY_RECOVERY = (
    "restore it from a copy, or delete it (training resumes; the history then starts at the "
    "resumed epoch), or pass `overwrite=True` to train again from scratch"
)


def damaged_message(path, reason, recovery):
    """One line naming a damaged run file, why, and how to recover.

    Example:
    >>> damaged_message("run/history.csv", "row 3 is cut off", "restore it")
    "The run file 'run/history.csv' is damaged (row 3 is cut off): restore it."
    """
    return f"The run file {os.fspath(path)!r} is damaged ({reason.rstrip('.')}): {recovery}."


# === Atomic writes ===


def prepare_output_dir(path):
    """Creates `path` if needed and proves that files can be written in it.

    Raises:
        WorkflowError: naming the folder and the reason.

    Example:
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


def fsync_path(path):
    """Flushes a file (or a folder's entries) to disk.

    Example:
    >>> fsync_path(tempfile.mkdtemp())
    """
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) if os.path.isdir(path) else os.O_RDONLY
    try:
        handle = os.open(path, flags)
    except OSError:
        return  # folders cannot be opened on Windows: nothing to flush there
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


@contextlib.contextmanager
def atomic_path(path, suffix=None):
    """A fresh name beside `path`, renamed to `path` when the block succeeds.

    The temporary name is `.<name>.tmp-XXXXXXXX<suffix>` in the same folder
    (so the rename cannot cross file systems); `suffix` defaults to the
    extension of `path` (Keras checks `.keras`, `.weights.h5`). The file is
    flushed to disk before the rename. On an exception the temporary file
    is removed and `path` is untouched.

    Example:
    >>> path = os.path.join(tempfile.mkdtemp(), "out.txt")
    >>> with atomic_path(path) as temporary:
    ...     _ = open(temporary, "w").write("done")
    >>> open(path).read()
    'done'
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    name = os.path.basename(path)
    if suffix is None:
        suffix = ".weights.h5" if name.endswith(".weights.h5") else os.path.splitext(name)[1]
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{name}.tmp-", suffix=suffix, dir=folder)
    except OSError as error:
        raise OSError(error.errno, error.strerror or str(error), path) from None
    os.close(handle)
    os.chmod(temporary, default_mode(is_folder=False))  # mkstemp makes it private (0600)
    try:
        yield temporary
        fsync_path(temporary)
        os.replace(temporary, path)
        fsync_path(folder)
    except OSError as error:  # name the file being written, not its temporary name
        raise OSError(error.errno, error.strerror or str(error), path) from None
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def default_mode(is_folder):
    """The permissions a new file or folder gets from the umask (0644 / 0755 usually).

    `tempfile` creates private files (0600) and folders (0700); a model or a
    SavedModel renamed from them would be unreadable by other users (a TF
    Serving container, say).

    Example:
    >>> oct(default_mode(is_folder=True) & 0o700)
    '0o700'
    """
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if is_folder else 0o666) & ~mask


def atomic_save(model, path):
    """Saves `model` to `path` (`.keras` or `.weights.h5`) atomically.

    If saving fails, `path` is untouched (an older file stays) and no
    partial file is left behind.

    Example:
    >>> import keras
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> path = os.path.join(tempfile.mkdtemp(), "m.keras")
    >>> atomic_save(model, path); os.path.exists(path)
    True
    """
    with atomic_path(path) as temporary:
        if os.fspath(path).endswith(".weights.h5"):
            weights_files.save_weights(model, temporary)
        else:
            model.save(temporary)


def write_text(text, path):
    """Writes `text` to `path` atomically.

    Example:
    >>> path = os.path.join(tempfile.mkdtemp(), "labels.txt")
    >>> write_text("a\\nb\\n", path); open(path).read()
    'a\\nb\\n'
    """
    with atomic_path(path) as temporary:
        with open(temporary, "w", newline="") as file:
            file.write(text)


def write_json(data, path):
    """Writes `data` as JSON to `path` atomically.

    Example:
    >>> path = os.path.join(tempfile.mkdtemp(), "run.json")
    >>> write_json({"a": 1}, path); read_json(path)
    {'a': 1}
    """
    write_text(json.dumps(data, indent=2) + "\n", path)


def read_json(path):
    """Reads a JSON file; None if it does not exist.

    Raises:
        WorkflowError: when the file is not valid JSON.

    Example:
    >>> read_json("no/such/run.json") is None
    True
    """
    if not os.path.exists(path):
        return None
    try:
        with open(path) as file:
            return json.load(file)
    except (ValueError, UnicodeDecodeError) as error:
        raise WorkflowError(f"{path!r} is not valid JSON: {_first_line(error)}.") from None


def makedirs_for(path):
    """Creates the folder that will hold the file `path`.

    Example:
    >>> path = os.path.join(tempfile.mkdtemp(), "a", "b.txt")
    >>> makedirs_for(path); os.path.isdir(os.path.dirname(path))
    True
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


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
    import hashlib

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
                f"The backup {path} does not fit this model ({_first_line(error)}): "
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
        print(f"Skipping the damaged backup {folder}: {_first_line(error)}.")
        return 0
    return epoch


def _read_every_dataset(path):
    import h5py

    def read(name, item):
        if isinstance(item, h5py.Dataset):
            item[()]

    with h5py.File(path, "r") as file:
        file.visititems(read)


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# === History ===


def read_history(path):
    """The CSV history as `{column: [float, ...]}`, ordered by epoch.

    Example:
    >>> path = os.path.join(tempfile.mkdtemp(), "h.csv")
    >>> _ = open(path, "w").write("epoch,loss\\n0,2.0\\n1,1.5\\n")
    >>> read_history(path)["loss"]
    [2.0, 1.5]
    """
    if not os.path.exists(path):
        raise WorkflowError(f"No training history at {path!r}.")
    header, rows = read_history_rows(path)
    return {c: [_number(r.get(c, "")) for r in rows] for c in header}


def read_history_rows(path, separator=","):
    """`(header, rows)` of a CSV history; rows as dicts of strings.

    Raises:
        WorkflowError: a damaged file (cut off, not text, a row of another
            length), naming it and what to do.

    Example:
    >>> read_history_rows("no/such/history.csv")
    ([], [])
    """
    if not os.path.exists(path):
        return [], []
    try:
        with open(path, newline="", encoding="utf-8") as file:
            text = file.read()
        table = list(csv.reader(text.splitlines(), delimiter=separator))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise WorkflowError(damaged_message(path, _first_line(error), HISTORY_RECOVERY)) from None
    if not table:
        return [], []
    problem = _history_problem(text, table)
    if problem:
        raise WorkflowError(damaged_message(path, problem, HISTORY_RECOVERY))
    header = table[0]
    rows = [dict(zip(header, r, strict=True)) for r in table[1:]]
    return header, rows


def _history_problem(text, table):
    """What is wrong with a history table, or None (every file keras-ba writes
    ends with a newline and starts with `epoch`)."""
    header = table[0]
    if not text.endswith("\n"):
        return "it is cut off: no newline at its end"
    if not header or header[0] != "epoch" or "" in header or len(set(header)) < len(header):
        return f"its header {','.join(header)!r} is not a history header"
    for number, row in enumerate(table[1:], start=2):
        if len(row) != len(header):
            return f"line {number} has {len(row)} values for {len(header)} columns"
        if _epoch_of(dict(zip(header, row, strict=True))) is None:
            return f"line {number} has no epoch number"
    return None


def write_history_rows(path, header, rows, separator=","):
    """Writes a CSV history atomically.

    Example:
    >>> path = os.path.join(tempfile.mkdtemp(), "h.csv")
    >>> write_history_rows(path, ["epoch", "loss"], [{"epoch": "0", "loss": "2.0"}])
    >>> open(path).read()
    'epoch,loss\\n0,2.0\\n'
    """
    with atomic_path(path) as temporary:
        with open(temporary, "w", newline="") as file:
            writer = csv.DictWriter(
                file, header, delimiter=separator, lineterminator="\n", restval=""
            )
            writer.writeheader()
            writer.writerows(rows)


def keep_epochs_before(path, epoch, separator=","):
    """Rewrites the CSV history `path` without the rows of epochs `>= epoch`.

    Rows that do not parse (a history written by another tool and cut off)
    are dropped too.

    Example:
    >>> path = os.path.join(tempfile.mkdtemp(), "h.csv")
    >>> _ = open(path, "w").write("epoch,loss\\n0,2.0\\n1,1.5\\n1,1.5\\n")
    >>> keep_epochs_before(path, 1); open(path).read()
    'epoch,loss\\n0,2.0\\n'
    """
    header, rows = read_history_rows(path, separator)
    if not header:
        return
    if epoch == 0:
        os.remove(path)
        return
    kept = {}
    for row in rows:
        index = _epoch_of(row)
        if index is not None and index < epoch:
            kept[index] = row  # one row per epoch: the last one written
    write_history_rows(path, header, [kept[i] for i in sorted(kept)], separator)


def _epoch_of(row):
    try:
        return int(row.get("epoch", ""))
    except ValueError:
        return None


def _number(text):
    try:
        return float(text)
    except ValueError:
        return float("nan")


# === The trained model ===


def load_trained_model(path):
    """Loads a `.keras` file for inference (no optimizer), with clear errors.

    Args:
        path: a `.keras` file or a run folder.

    Raises:
        WorkflowError: no such file, or a file Keras cannot load.

    Example:
    >>> load_trained_model("missing.keras")
    Traceback (most recent call last):
    ...
    keras_ba.errors.WorkflowError: No such model file: 'missing.keras'.
    """
    path = model_path(path)
    from keras_ba.saving import load_model

    try:
        model = load_model(path, compile=False)
    except Exception as error:
        raise WorkflowError(f"Cannot load the model {path!r}: {_first_line(error)}") from None
    check_image_classifier(model, path)
    return model


def check_image_classifier(model, path):
    """Refuses a model that does not take RGB images `[batch, H, W, 3]` to class scores.

    Raises:
        WorkflowError: naming the model's inputs and outputs.

    Example:
    >>> import keras
    >>> model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(2)])
    >>> check_image_classifier(model, "m.keras")
    Traceback (most recent call last):
    ...
    keras_ba.errors.WorkflowError: 'm.keras' is not an image classifier: it maps (None, 5) to (None, 2), ...
    """
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        return  # a subclassed model without a graph: Keras reports what fails
    if not inputs or not outputs:
        return
    shapes_in = [tuple(x.shape) for x in inputs]
    shapes_out = [tuple(y.shape) for y in outputs]
    images = len(shapes_in) == 1 and len(shapes_in[0]) == 4 and shapes_in[0][-1] == 3
    scores = len(shapes_out) == 1 and len(shapes_out[0]) == 2
    if not (images and scores):
        ins = ", ".join(map(str, shapes_in))
        outs = ", ".join(map(str, shapes_out))
        raise WorkflowError(
            f"{os.fspath(path)!r} is not an image classifier: it maps {ins} to {outs}, and "
            "keras-ba evaluate, predict and export need one input of RGB images "
            "(batch, height, width, 3) and one output of class scores (batch, classes)."
        )
