"""The `keras-ba` command line: one entry point, a module per concern.

Each command module exposes `register(subparsers)`, which adds its
sub-commands and sets `func` on them.

Example:
    keras-ba --help
"""

import argparse
import importlib
import sys

COMMAND_MODULES = ("keras_ba.cli.convert", "keras_ba.cli.workflow", "keras_ba.cli.analyze")


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-ba",
        description="Bridge Attention models for Keras 3: train, evaluate, "
        "predict, export and convert the authors' PyTorch checkpoints.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv=None):
    """Runs `keras-ba`; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
