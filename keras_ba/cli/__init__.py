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


def build_parser():
    """The `keras-ba` argument parser with every command.

    Example:
    >>> build_parser().parse_args(["evaluate", "m.keras"]).command
    'evaluate'
    """
    parser = argparse.ArgumentParser(
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
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    quiet_tensorflow_start(getattr(args, "needs_tensorflow", False))
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
