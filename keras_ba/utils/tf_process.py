"""Runs a module under the TensorFlow backend, in a child process.

Exports (SavedModel, ONNX, LiteRT, detectors) and tf-keras-vis explanations
need TensorFlow's graph machinery; from JAX or PyTorch, keras_ba runs them
as `python -m <module> ...` with `KERAS_BACKEND=tensorflow`, the child's
standard output passed through, and its last `error: ` line (or last line
of standard error) as the one-line message when it fails.

Example:
>>> run_under_tensorflow("keras_ba.version", [], "the version module").returncode
0
"""

import os
import subprocess
import sys


def run_under_tensorflow(module, args, what, error=ValueError):
    """Runs `python -m module *args` with `KERAS_BACKEND=tensorflow`.

    Args:
        module: the dotted module to run (it must have a `__main__` block).
        args: its command-line arguments (strings).
        what: what the child does, for the error message ("the export").
        error: the exception class raised when the child fails.

    Returns:
        The `subprocess.CompletedProcess` (standard error captured).

    Raises:
        error: with the child's last `error: ` line, or its last line of
            standard error and exit status.

    Example:
    >>> run_under_tensorflow("keras_ba.no_such_module", [], "The demo")
    Traceback (most recent call last):
    ...
    ValueError: The demo (a TensorFlow subprocess) failed (exit status 1): ...No module named keras_ba.no_such_module
    """
    env = dict(os.environ, KERAS_BACKEND="tensorflow")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    command = [sys.executable, "-m", module, *map(str, args)]
    result = subprocess.run(command, env=env, stderr=subprocess.PIPE, text=True)
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        errors = [line[len("error: ") :] for line in lines if line.startswith("error: ")]
        if errors:
            raise error(errors[-1])
        tail = lines[-1] if lines else "no message"
        raise error(
            f"{what} (a TensorFlow subprocess) failed (exit status {result.returncode}): {tail}"
        )
    return result
