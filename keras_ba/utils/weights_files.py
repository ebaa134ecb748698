"""Writing `.weights.h5` files so that a full disk is an error, not a crash.

`keras.Model.save_weights` opens the HDF5 file and closes it only when every
weight was written. When a write fails (a full disk), the file stays open
in the HDF5 library, each later flush fails again, and the interpreter
crashes when it exits (a segmentation fault, exit status 139) after the
error was reported; closing the file by force can crash too. So:

- `save_weights` first checks that the folder has room for the weights
  (`needed_bytes`) and raises `OSError(ENOSPC)` before HDF5 opens anything;
- when a write fails all the same (the disk filled meanwhile), the command
  line ends with `exit_if_stuck`: it reports, flushes and leaves at once,
  without the exit handlers that would crash.

Example:
>>> import os, tempfile, keras
>>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
>>> path = os.path.join(tempfile.mkdtemp(), "m.weights.h5")
>>> save_weights(model, path); os.path.exists(path)
True
"""

import errno
import os
import shutil
import sys

_FAILED = []  # paths whose HDF5 write failed (their files may be left open)


def needed_bytes(model):
    """Room to reserve for the model's weights and optimizer state in HDF5.

    The variables' bytes plus 4 KiB of HDF5 structure per variable and
    256 KiB for the file itself (generous: the check only refuses a disk
    that would fill anyway).

    Example:
    >>> import keras
    >>> needed_bytes(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    270348
    """
    import numpy as np

    variables = list(model.weights)
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None and getattr(optimizer, "built", False):
        variables += list(optimizer.variables)
    data = sum(
        int(np.prod(v.shape)) * np.dtype(getattr(v.dtype, "name", v.dtype)).itemsize
        for v in variables
    )
    return data + 4096 * len(variables) + 256 * 1024


def check_room(model, path):
    """Raises `OSError(ENOSPC)` naming `path` when its folder has no room for the weights.

    Example:
    >>> import keras, tempfile
    >>> check_room(keras.Sequential([keras.Input((2,))]), tempfile.mkdtemp() + "/w.weights.h5")
    """
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # cannot tell: let the write report
    if free < needed_bytes(model):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))


def save_weights(model, path):
    """`model.save_weights(path)` after `check_room`; a failed write is remembered.

    Example:
        save_weights(model, "backup/state.weights.h5")
    """
    check_room(model, path)
    try:
        model.save_weights(path)
    except BaseException:
        _FAILED.append(os.path.abspath(os.fspath(path)))
        raise


def open_failed_files():
    """The failed writes whose HDF5 files are still open in this process.

    Example:
    >>> open_failed_files()
    []
    """
    if not _FAILED or "h5py" not in sys.modules:
        return []
    import h5py

    names = set()
    for file_id in h5py.h5f.get_obj_ids(types=h5py.h5f.OBJ_FILE):
        if file_id.name:
            names.add(os.path.abspath(file_id.name.decode(errors="replace")))
    return [path for path in _FAILED if path in names]


def exit_if_stuck(status):
    """Leaves the process now (`os._exit(status)`) when a failed HDF5 write is still open.

    Call it after the error was reported: the interpreter's own exit would
    crash flushing that file. Standard output and error are flushed first.

    Example:
    >>> exit_if_stuck(1)  # nothing stuck: returns
    """
    if not open_failed_files():
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
