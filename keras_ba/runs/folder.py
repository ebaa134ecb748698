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

import dataclasses
import os
import shutil
import tempfile  # noqa: F401 (the docstring examples)

from keras_ba.errors import WorkflowError
from keras_ba.runs.backup import (  # noqa: F401 (re-exported: run_folder.<name>)
    STATE_INFO,
    STATE_PREFIX,
    STATE_WEIGHTS,
    check_training_state,
    restore_training_state,
    save_training_state,
)
from keras_ba.runs.files import (  # noqa: F401 (re-exported: run_folder.<name>)
    CONFIG_RECOVERY,
    HISTORY_RECOVERY,
    TRAIN_CONFIG_RECOVERY,
    atomic_path,
    atomic_save,
    damaged_message,
    default_mode,
    first_line,
    fsync_path,
    makedirs_for,
    prepare_output_dir,
    read_json,
    write_json,
    write_text,
)
from keras_ba.runs.history import (  # noqa: F401 (re-exported: run_folder.<name>)
    keep_epochs_before,
    read_history,
    read_history_rows,
    write_history_rows,
)

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
        reason = first_line(error).replace(repr(path), "it")
        raise WorkflowError(damaged_message(path, reason, recovery or CONFIG_RECOVERY)) from None


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
        raise WorkflowError(f"Cannot load the model {path!r}: {first_line(error)}") from None
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
