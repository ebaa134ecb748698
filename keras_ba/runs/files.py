"""Writing a run folder's files: atomic writes, and naming a damaged file.

Every file is written under a temporary name in the same folder and renamed
(`os.replace`, atomic on POSIX and Windows) once complete and flushed to
disk, so a process killed at any instant leaves either the old file or the
new one, never half a file.

Example:
>>> path = os.path.join(tempfile.mkdtemp(), "note.txt")
>>> write_text("hello", path); open(path).read()
'hello'
"""

import contextlib
import json
import os
import tempfile

from keras_ba.errors import WorkflowError
from keras_ba.utils import weights_files

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


def first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


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
        raise WorkflowError(f"{path!r} is not valid JSON: {first_line(error)}.") from None


def makedirs_for(path):
    """Creates the folder that will hold the file `path`.

    Example:
    >>> path = os.path.join(tempfile.mkdtemp(), "a", "b.txt")
    >>> makedirs_for(path); os.path.isdir(os.path.dirname(path))
    True
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
