"""The `keras-ba` command line: one entry point, a module per concern.

Every module of this package that defines `register(subparsers)` adds its
sub-commands (and sets `func` on them). Command modules import nothing
heavy at module level: the parser is built and the arguments are parsed
before Keras, TensorFlow or keras-cv are imported, so `keras-ba --help`
and every `keras-ba <command> --help` answer at once.

TensorFlow's start-up messages (oneDNN, CUDA, CPU features) are silenced
unless `TF_CPP_MIN_LOG_LEVEL` is set: with `TF_CPP_MIN_LOG_LEVEL=0` they
show again.

Example:
    keras-ba --help
"""

import argparse
import contextlib
import importlib
import importlib.util
import os
import pkgutil
import sys

# The Keras backends keras_ba runs on (KERAS_BACKEND), checked before any import.
BACKENDS = ("tensorflow", "jax", "torch")

# Hides TensorFlow's C++ INFO, WARNING and ERROR log lines (e.g. "failed call to
# cuInit" on machines without a GPU); failures still raise Python exceptions.
QUIET_TF_LOG_LEVEL = "3"


def command_modules():
    """Names of the modules of `keras_ba.cli` that add commands, sorted.

    Example:
    >>> "keras_ba.cli.workflow" in command_modules()
    True
    """
    package = os.path.dirname(__file__)
    return sorted(
        f"{__name__}.{info.name}"
        for info in pkgutil.iter_modules([package])
        if not info.name.startswith("_")
    )


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: the problem and where to read more.

    argparse prints the whole usage (dozens of lines for `train`) before a
    wrong flag's message; here the message comes alone, with a pointer to
    `--help`.

    Example:
    >>> import contextlib, io
    >>> parser = ArgumentParser(prog="keras-ba train")
    >>> _ = parser.add_argument("--epochs", type=int)
    >>> with contextlib.redirect_stderr(io.StringIO()) as err:
    ...     try:
    ...         parser.parse_args(["--epochs", "x"])
    ...     except SystemExit as exit:
    ...         print(exit.code)
    2
    >>> print(err.getvalue().strip())
    keras-ba train: error: argument --epochs: invalid int value: 'x' (see keras-ba train --help)
    """

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {with_suggestion(message)} (see {self.prog} --help)\n")


def with_suggestion(message):
    """argparse's "invalid choice" message with the closest choice named.

    Example:
    >>> with_suggestion("argument --recipe: invalid choice: 'bav3' (choose from bav1, bav2, small)")
    "argument --recipe: invalid choice: 'bav3' (choose from bav1, bav2, small; did you mean 'bav2'?)"
    """
    import difflib
    import re

    match = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
    if not match:
        return message
    choices = [c.strip().strip("'") for c in match.group(2).split(",")]
    close = difflib.get_close_matches(match.group(1), choices, n=1, cutoff=0.5)
    if not close:
        return message
    return f"{message[:-1]}; did you mean {close[0]!r}?)"


def check_backend_variable(environ=None):
    """The one-line error for a `KERAS_BACKEND` keras_ba cannot run on, else None.

    Checked before Keras is imported (Keras' own message is a long traceback).

    Example:
    >>> check_backend_variable({"KERAS_BACKEND": "pytorch"})
    "keras-ba: error: KERAS_BACKEND='pytorch' is not a backend keras_ba runs on: set it to tensorflow, jax or torch (did you mean 'torch'?)."
    >>> check_backend_variable({"KERAS_BACKEND": "jax"}) is None
    True
    """
    import difflib

    environ = os.environ if environ is None else environ
    backend = environ.get("KERAS_BACKEND")
    if backend is None or backend in BACKENDS:
        return None
    close = difflib.get_close_matches(backend.lower(), BACKENDS, n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return (
        f"keras-ba: error: KERAS_BACKEND={backend!r} is not a backend keras_ba runs on: "
        f"set it to {', '.join(BACKENDS[:-1])} or {BACKENDS[-1]}{hint}."
    )


def build_parser():
    """The `keras-ba` argument parser with every command.

    Example:
    >>> build_parser().parse_args(["evaluate", "m.keras"]).command
    'evaluate'
    """
    parser = ArgumentParser(
        prog="keras-ba",
        description="Bridge Attention models for Keras 3: train, evaluate, "
        "predict, export and convert the authors' PyTorch checkpoints.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in command_modules():
        module = importlib.import_module(module_name)
        if hasattr(module, "register"):
            module.register(subparsers)
    return parser


@contextlib.contextmanager
def _native_stderr_silenced():
    """Sends file descriptor 2 to /dev/null (C++ logs that bypass Python)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def quiet_tensorflow_start(needs_tensorflow=False):
    """Imports TensorFlow without its start-up log lines, unless asked for.

    TensorFlow 2.21 writes its oneDNN / CUDA / CPU-feature lines through
    absl before `TF_CPP_MIN_LOG_LEVEL` takes effect (twice: two of its
    libraries log them), so the import runs with the process' native
    stderr sent to /dev/null. Does nothing when the user set
    `TF_CPP_MIN_LOG_LEVEL` to 0, when TensorFlow is not installed, or when
    nothing needs it (`needs_tensorflow` False and another Keras backend).

    Args:
        needs_tensorflow: the command uses TensorFlow (tf.data, export)
            whatever the Keras backend.

    Example:
    >>> quiet_tensorflow_start(needs_tensorflow=False) in (True, False)
    True
    """
    level = os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", QUIET_TF_LOG_LEVEL)
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    wanted = needs_tensorflow or backend == "tensorflow"
    if "tensorflow" in sys.modules or not wanted:
        return False
    try:
        if importlib.util.find_spec("tensorflow") is None:
            return False  # not installed: the command says which extra it needs
    except (ImportError, ValueError):
        return False
    if level == "0":
        importlib.import_module("tensorflow")
        return True
    with _native_stderr_silenced():
        tf = importlib.import_module("tensorflow")
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    with contextlib.suppress(ImportError):
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    return tf is not None


def main(argv=None):
    """Runs `keras-ba`; returns the process exit code."""
    problem = check_backend_variable()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    check = getattr(args, "check", None)  # cheap checks, before TensorFlow starts
    if check is not None and check(args):
        return 1
    quiet_tensorflow_start(getattr(args, "needs_tensorflow", False))
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
