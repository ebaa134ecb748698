"""The command line's shared vocabulary: library messages in flag terms,
one-line errors, the common flags.

Example:
>>> import argparse
>>> parser = argparse.ArgumentParser()
>>> _ = parser.add_argument("--batch-size")
>>> flag_text("Use `batch_size=6`.", parser)
'Use --batch-size 6.'
"""

import os
import re
import sys

from keras_ba.errors import WorkflowError
from keras_ba.extras import MissingExtraError

# Library parameters whose flag is not `--` + the name with dashes.
FLAG_OF = {
    "distribute_mode": "distribute",
    "model_spec.name": "model",
    "data.data": "data",
    "source": "data",
    "top_k": "top-k",
}


def flag_text(message, parser):
    """A library message in command-line terms: `name=value` -> `--name value`.

    The library names its Python parameters in backquotes (`` `batch_size` ``,
    `` `batch_size=6` ``, `` `recipe.epochs` ``); those that are flags of
    `parser` become the flag (a dotted field: its last part), the others
    lose their backquotes.

    Example:
    >>> import argparse
    >>> parser = argparse.ArgumentParser()
    >>> _ = parser.add_argument("--batch-size"); _ = parser.add_argument("--overwrite")
    >>> flag_text("Use `batch_size=6`, `recipe.batch_size` or `overwrite=True`.", parser)
    'Use --batch-size 6, --batch-size or --overwrite.'
    """
    flags = {option for action in parser._actions for option in action.option_strings}

    def replace(match):
        name, value = match.group(1), match.group(2)
        flag = "--" + FLAG_OF.get(name, name.split(".")[-1]).replace("_", "-")
        if flag not in flags:
            return match.group(0)[1:-1]
        if value is None or value == "True":
            return flag
        return f"{flag} {value.strip(chr(39))}"

    return re.sub(r"`([A-Za-z_][\w.]*)(?:=([^`]*))?`", replace, message)


def handler(function):
    """Runs a command: user errors become one message and exit status 1."""

    def run(args):
        try:
            return function(args) or 0
        except (WorkflowError, MissingExtraError) as error:
            if args.traceback:
                raise
            message = flag_text(str(error), args.command_parser)
            print(f"keras-ba {args.command}: error: {message}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f"\nkeras-ba {args.command}: interrupted.", file=sys.stderr)
            return 130
        except OSError as error:
            if args.traceback:
                raise
            print(f"keras-ba {args.command}: error: {os_error_message(error)}", file=sys.stderr)
            from keras_ba.utils import weights_files

            weights_files.exit_if_stuck(1)  # a weights file left open would crash the exit
            return 1

    return run


def os_error_message(error):
    """One line for an operating-system error (full disk, permissions...).

    Example:
    >>> import errno
    >>> os_error_message(OSError(errno.ENOSPC, "No space left on device", "run/model.keras"))[:63]
    "No space left on device: 'run/model.keras' (errno 28). Free som"
    """
    what = os.strerror(error.errno) if error.errno else str(error) or type(error).__name__
    where = f": {error.filename!r}" if error.filename else ""
    number = f" (errno {error.errno})" if error.errno else ""
    return (
        f"{what}{where}{number}. Free some space or fix the permissions, then rerun the same "
        "command (an interrupted run resumes at its last finished epoch)."
    )


def set_command(parser, function, check=None):
    parser.set_defaults(
        func=handler(function),
        check=handler(check) if check else None,
        command_parser=parser,
        needs_tensorflow=True,
    )


def common_flags(parser):
    parser.add_argument(
        "--traceback", action="store_true", help="show the full traceback of an error"
    )
    parser.add_argument(
        "--verbose",
        default="auto",
        choices=("auto", "0", "1", "2"),
        help="Keras progress output: 1 progress bar, 2 one line per epoch, 0 silent; auto: "
        "1 on a terminal, 2 when the output goes to a file or a pipe",
    )


def verbosity(value):
    return value if value == "auto" else int(value)
