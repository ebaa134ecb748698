"""One process at a time in a folder: an exclusive lock on a lock file.

`FolderLock(folder)` takes `fcntl.flock(LOCK_EX | LOCK_NB)` on
`<folder>/.keras-ba.lock` and writes its process id there. The lock is held
until `release()` (or the end of the `with` block), and the operating
system drops it when the process dies, however it dies (a kill, out of
memory, a lost machine): a later run never finds a stale lock. A second
process that asks for a held lock fails at once with `LockedError`, naming
the process that holds it.

On release the lock file is removed while still locked; a process that
opened the old file meanwhile notices (the path no longer names the file it
locked) and retries on the new one. Where `fcntl` does not exist (Windows)
nothing is locked.

Example:
>>> import tempfile
>>> folder = tempfile.mkdtemp()
>>> with FolderLock(folder):
...     FolderLock(folder).acquire()
Traceback (most recent call last):
...
keras_ba.utils.locking.LockedError: ... is in use by another keras-ba process (pid ...
"""

import os

try:
    import fcntl
except ImportError:  # Windows: no advisory locks
    fcntl = None

LOCK_FILE = ".keras-ba.lock"


class LockedError(ValueError):
    """The folder is locked by another process.

    Example:
    >>> isinstance(LockedError("busy"), ValueError)
    True
    """


class FolderLock:
    """An exclusive, process-lifetime lock on a folder (see the module docstring).

    Args:
        folder: the folder (it must exist when `acquire` runs).
        what: how messages name the folder, e.g. `"The run folder"`.
        advice: what to do when it is in use (appended to the message).

    Example:
    >>> import tempfile
    >>> lock = FolderLock(tempfile.mkdtemp()).acquire()
    >>> lock.held, lock.release(), lock.held
    (True, None, False)
    """

    def __init__(self, folder, what="The folder", advice=None):
        self.folder = os.fspath(folder)
        self.path = os.path.join(self.folder, LOCK_FILE)
        self.what = what
        self.advice = advice or "wait until it ends, or stop it"
        self._handle = None

    @property
    def held(self):
        return self._handle is not None

    def acquire(self):
        """Takes the lock; returns self.

        Raises:
            LockedError: another process holds it.
        """
        if fcntl is None or self.held:
            return self
        while True:
            handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(handle)
                raise LockedError(self._message(holder(self.folder))) from None
            if _same_file(handle, self.path):
                break
            os.close(handle)  # removed by its last holder meanwhile: lock the new one
        self._handle = handle
        try:
            os.ftruncate(handle, 0)
            os.write(handle, f"{os.getpid()}\n".encode())
        except OSError:
            pass  # a full disk: the lock holds all the same, its pid stays unknown
        return self

    def check_free(self):
        """Raises `LockedError` if another process holds the lock now; writes nothing.

        Example:
        >>> FolderLock("no/such/folder").check_free()
        """
        if fcntl is None or self.held:
            return
        try:
            handle = os.open(self.path, os.O_RDONLY)
        except OSError:
            return  # no lock file: nobody holds it
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            raise LockedError(self._message(holder(self.folder))) from None
        finally:
            os.close(handle)

    def release(self):
        """Removes the lock file and drops the lock (nothing when not held)."""
        if self._handle is None:
            return
        try:
            if _same_file(self._handle, self.path):
                os.remove(self.path)
        except OSError:
            pass
        os.close(self._handle)
        self._handle = None

    def _message(self, pid):
        who = f"pid {pid}" if pid else "pid unknown"
        return (
            f"{self.what} {self.folder!r} is in use by another keras-ba process ({who}): "
            f"{self.advice}."
        )

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def holder(folder):
    """The process id written in `folder`'s lock file, or None.

    Example:
    >>> holder("no/such/folder") is None
    True
    """
    try:
        with open(os.path.join(os.fspath(folder), LOCK_FILE)) as file:
            text = file.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _same_file(handle, path):
    try:
        mine, now = os.fstat(handle), os.stat(path)
    except OSError:
        return False
    return (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino)
