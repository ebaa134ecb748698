"""Shared pieces of the workflow tests: tiny runs, the CLI in a subprocess, kills.

`cli(...)` runs `keras-ba` in a fresh process, optionally with `kill_at`: a
test-side hook (`KILL_HOOK`, loaded with `-c` before the command line, never
part of the library) that SIGKILLs the process in the middle of a file
write, the way a preempted machine or an out-of-memory killer would.
"""

import os
import signal
import subprocess
import sys
import threading
import time

from conftest import BACKEND, run_command

TINY_MODEL = ["--model", "ba_resnet18", "--depths", "1", "1", "1", "1"]
TINY_MODEL += ["--widths", "8", "16", "32", "64"]

# Loaded by `python -c` before `keras_ba.cli.main` when KBA_TEST_KILL_AT is
# "<kind>|<path substring>|<n>": at the n-th matching write the process
# kills itself with SIGKILL, leaving the file as it is at that instant.
#   h5:   inside h5py.File.close of a file open for writing (data written,
#         file never finalized: what a kill during save_weights leaves);
#   zip:  inside zipfile.ZipFile.close (a .keras archive without its
#         central directory);
#   open: at the first write() of a text/binary file opened for writing,
#         after writing half of the data.
KILL_HOOK = r"""
import builtins, os, signal, sys

_kind, _needle, _nth = os.environ["KBA_TEST_KILL_AT"].split("|")
_nth, _count = int(_nth), [0]


def _hit(path):
    if _needle in os.fspath(path):
        _count[0] += 1
        return _count[0] == _nth
    return False


def _die(what):
    sys.stdout.flush()
    os.write(2, f"KILL_HOOK: SIGKILL while writing {what}\n".encode())
    os.kill(os.getpid(), signal.SIGKILL)


if _kind == "h5":
    import h5py

    _close = h5py.File.close

    def _h5_close(self):
        if self.id.valid and self.mode != "r" and _hit(self.filename):
            _die(self.filename)
        return _close(self)

    h5py.File.close = _h5_close
elif _kind == "zip":
    import zipfile

    _zip_close = zipfile.ZipFile.close

    def _zipfile_close(self):
        if self.mode in ("w", "x", "a") and self.filename and _hit(self.filename):
            _die(self.filename)
        return _zip_close(self)

    zipfile.ZipFile.close = _zipfile_close
elif _kind == "open":
    _open = builtins.open

    class _Torn:
        def __init__(self, file, path):
            self._file, self._path = file, path

        def write(self, data):
            self._file.write(data[: max(1, len(data) // 2)])
            self._file.flush()
            _die(self._path)

        def __getattr__(self, name):
            return getattr(self._file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self._file.__exit__(*exc)

    def _hooked_open(file, mode="r", *args, **kwargs):
        handle = _open(file, mode, *args, **kwargs)
        writes = any(c in mode for c in "wax+")
        if isinstance(file, (str, os.PathLike)) and writes and _hit(file):
            return _Torn(handle, os.fspath(file))
        return handle

    builtins.open = _hooked_open
"""

RUN_CLI = "import sys\n{hook}\nfrom keras_ba.cli import main\nsys.exit(main(sys.argv[1:]))\n"


def jax_cache_env(tmp_path_factory):
    """A persistent JAX compilation cache shared by the workflow tests' processes."""
    folder = tmp_path_factory.getbasetemp() / "jax-cache"
    return {
        "JAX_COMPILATION_CACHE_DIR": str(folder),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


def optimized_xla_env():
    """XLA_FLAGS without the runner's `--xla_backend_optimization_level=0`, for a
    process that runs many steps of one program (the runner's flag makes tiny
    models compile faster and run slower: the run fixture of test_workflow.py
    trains 50 steps in 29 s of the JAX pass with LLVM's optimisations, 37 s without)."""
    flags = os.environ.get("XLA_FLAGS", "").split()
    kept = " ".join(f for f in flags if not f.startswith("--xla_backend_optimization_level"))
    return {"XLA_FLAGS": kept or None}


def cli_command(kill_at=None):
    """`python -c ...` running `keras-ba` (with the kill hook when `kill_at` is set)."""
    return [sys.executable, "-c", RUN_CLI.format(hook=KILL_HOOK if kill_at else "")]


def cli_env(env=None, kill_at=None):
    full = dict(os.environ, KERAS_BACKEND=BACKEND, **(env or {}))
    full.pop("KBA_TEST_KILL_AT", None)
    full.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user runs it: keras-ba keeps TF quiet
    if kill_at:
        full["KBA_TEST_KILL_AT"] = kill_at
    return full


def cli(args, env=None, kill_at=None, timeout=600):
    """Runs `keras-ba ARGS` in a fresh process on the current backend."""
    # as a user runs it: keras-ba keeps TensorFlow quiet itself
    extra = {**(env or {}), "KBA_TEST_KILL_AT": kill_at, "TF_CPP_MIN_LOG_LEVEL": None}
    return run_command(
        cli_command(kill_at) + list(args), env=extra, timeout=timeout, cwd=os.getcwd()
    )


def cli_killed_after(args, marker, delay, last_marker=None, env=None, timeout=600):
    """Runs `keras-ba ARGS` and SIGKILLs it `delay` seconds after `marker` is printed.

    When `last_marker` is printed before that, the kill comes at once.
    Returns `(returncode, stdout, stderr, killed)`; `killed` is False when
    the process ended before the kill.
    """
    process = subprocess.Popen(
        cli_command() + list(args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(env),
    )
    lines, errors, seen, last = [], [], threading.Event(), threading.Event()

    def read_stdout():
        for line in process.stdout:
            lines.append(line)
            if marker in line:
                seen.set()
            if last_marker and last_marker in line:
                last.set()

    def read_stderr():
        errors.extend(process.stderr)

    readers = [threading.Thread(target=read_stdout), threading.Thread(target=read_stderr)]
    for reader in readers:
        reader.start()
    killed = False
    deadline = time.time() + timeout
    while not seen.is_set() and process.poll() is None and time.time() < deadline:
        seen.wait(0.05)
    if seen.is_set():
        last.wait(delay)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            killed = True
    process.wait(timeout=max(1, deadline - time.time()))
    for reader in readers:
        reader.join()
    return process.returncode, "".join(lines), "".join(errors), killed
