"""Guards of a run folder: one process at a time, nothing left by a failed start.

`train` looks at the folder's lock before anything else (`run_lock`: another
process training there stops the new one at once, naming its pid), takes
the lock only once the data, the model and the options are checked
(`lock_run`: nothing is written in the folder before), holds it for the
whole run, and lets the operating system drop it if the process dies. A new
run whose images fail to decode before its first epoch is undone
(`undo_fresh_run`), so the same folder takes the corrected command.

Example:
>>> from keras_ba.training.distributed.launch import ProcessGroup
>>> lock = run_lock(run_folder.RunPaths("no/such/run"), ProcessGroup())
>>> lock.held
False
"""

import contextlib
import os

from keras_ba.errors import WorkflowError
from keras_ba.runs import folder as run_folder
from keras_ba.utils import locking


class DataReadError(WorkflowError):
    """The images could not be read while training (a damaged file).

    Example:
    >>> isinstance(DataReadError("Invalid JPEG data"), WorkflowError)
    True
    """


def run_lock(paths, group):
    """The run folder's lock, not taken yet; fails at once when another process holds it.

    Only process 0 looks (it is the one that writes). Nothing is written.

    Raises:
        WorkflowError: naming the process (pid) that trains in the folder.

    Example:
    >>> from keras_ba.training.distributed.launch import ProcessGroup
    >>> run_lock(run_folder.RunPaths("no/such/run"), ProcessGroup()).path
    'no/such/run/.keras-ba.lock'
    """
    lock = locking.FolderLock(
        paths.root,
        "The run folder",
        "wait until it finishes or stop it (rerunning the same command then resumes), or "
        "choose another `output`",
    )
    if group.is_chief:
        try:
            lock.check_free()
        except locking.LockedError as error:
            raise WorkflowError(str(error)) from None
    return lock


def lock_run(lock, paths, existing, requested, overwrite, existing_run, check_same_run):
    """Creates the folder and takes its lock; returns the run there now.

    Another process may have started or finished the same run since the
    first look: its `run.json` is checked again under the lock.

    Example:
        existing = lock_run(lock, paths, existing, requested, False, load, compare)
    """
    run_folder.prepare_output_dir(paths.root)
    try:
        lock.acquire()
    except locking.LockedError as error:
        raise WorkflowError(str(error)) from None
    current = existing_run(paths, overwrite)
    if current is not None and (existing is None or current.to_dict() != existing.to_dict()):
        check_same_run(current, requested, paths)
        if current.finished:
            raise WorkflowError(
                f"Another process finished this run in {paths.root!r} meanwhile: nothing to do."
            )
    return current


def undo_fresh_run(paths, created, lock):
    """A new run that failed on its data before any epoch: leave the folder as it was.

    Its files are removed (the folder too when this run created it), so the
    same `output` takes the command with corrected data.

    Example:
        undo_fresh_run(paths, created=True, lock=lock)
    """
    if os.path.exists(paths.history_csv):
        return  # epochs were trained: keep them (the run resumes once the data is fixed)
    paths.clear()
    lock.release()
    if created:
        with contextlib.suppress(OSError):
            os.rmdir(paths.root)
