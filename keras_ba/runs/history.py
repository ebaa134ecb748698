"""A run's `history.csv`: one row per finished epoch, read strictly.

A damaged file (cut off, not text, a row of another length) stops the run
with one line naming the file and the way to recover, instead of silently
dropping epochs.

Example:
>>> path = os.path.join(tempfile.mkdtemp(), "history.csv")
>>> write_history_rows(path, ["epoch", "loss"], [{"epoch": "0", "loss": "2.5"}, {"epoch": "1", "loss": "1.5"}])
>>> read_history(path)["loss"]
[2.5, 1.5]
"""

import csv
import os
import tempfile  # noqa: F401 (the docstring examples)

from keras_ba.errors import WorkflowError
from keras_ba.runs.files import HISTORY_RECOVERY, atomic_path, damaged_message, first_line

# === History ===


def read_history(path):
    """The CSV history as `{column: [float, ...]}`, ordered by epoch.

    Example:
    >>> path = os.path.join(tempfile.mkdtemp(), "h.csv")
    >>> _ = open(path, "w").write("epoch,loss\\n0,2.0\\n1,1.5\\n")
    >>> read_history(path)["loss"]
    [2.0, 1.5]
    """
    if not os.path.exists(path):
        raise WorkflowError(f"No training history at {path!r}.")
    header, rows = read_history_rows(path)
    return {c: [_number(r.get(c, "")) for r in rows] for c in header}


def read_history_rows(path, separator=","):
    """`(header, rows)` of a CSV history; rows as dicts of strings.

    Raises:
        WorkflowError: a damaged file (cut off, not text, a row of another
            length), naming it and what to do.

    Example:
    >>> read_history_rows("no/such/history.csv")
    ([], [])
    """
    if not os.path.exists(path):
        return [], []
    try:
        with open(path, newline="", encoding="utf-8") as file:
            text = file.read()
        table = list(csv.reader(text.splitlines(), delimiter=separator))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise WorkflowError(damaged_message(path, first_line(error), HISTORY_RECOVERY)) from None
    if not table:
        return [], []
    problem = _history_problem(text, table)
    if problem:
        raise WorkflowError(damaged_message(path, problem, HISTORY_RECOVERY))
    header = table[0]
    rows = [dict(zip(header, r, strict=True)) for r in table[1:]]
    return header, rows


def _history_problem(text, table):
    """What is wrong with a history table, or None (every file keras-ba writes
    ends with a newline and starts with `epoch`)."""
    header = table[0]
    if not text.endswith("\n"):
        return "it is cut off: no newline at its end"
    if not header or header[0] != "epoch" or "" in header or len(set(header)) < len(header):
        return f"its header {','.join(header)!r} is not a history header"
    for number, row in enumerate(table[1:], start=2):
        if len(row) != len(header):
            return f"line {number} has {len(row)} values for {len(header)} columns"
        if _epoch_of(dict(zip(header, row, strict=True))) is None:
            return f"line {number} has no epoch number"
    return None


def write_history_rows(path, header, rows, separator=","):
    """Writes a CSV history atomically.

    Example:
    >>> path = os.path.join(tempfile.mkdtemp(), "h.csv")
    >>> write_history_rows(path, ["epoch", "loss"], [{"epoch": "0", "loss": "2.0"}])
    >>> open(path).read()
    'epoch,loss\\n0,2.0\\n'
    """
    with atomic_path(path) as temporary:
        with open(temporary, "w", newline="") as file:
            writer = csv.DictWriter(
                file, header, delimiter=separator, lineterminator="\n", restval=""
            )
            writer.writeheader()
            writer.writerows(rows)


def keep_epochs_before(path, epoch, separator=","):
    """Rewrites the CSV history `path` without the rows of epochs `>= epoch`.

    Rows that do not parse (a history written by another tool and cut off)
    are dropped too.

    Example:
    >>> path = os.path.join(tempfile.mkdtemp(), "h.csv")
    >>> _ = open(path, "w").write("epoch,loss\\n0,2.0\\n1,1.5\\n1,1.5\\n")
    >>> keep_epochs_before(path, 1); open(path).read()
    'epoch,loss\\n0,2.0\\n'
    """
    header, rows = read_history_rows(path, separator)
    if not header:
        return
    if epoch == 0:
        os.remove(path)
        return
    kept = {}
    for row in rows:
        index = _epoch_of(row)
        if index is not None and index < epoch:
            kept[index] = row  # one row per epoch: the last one written
    write_history_rows(path, header, [kept[i] for i in sorted(kept)], separator)


def _epoch_of(row):
    try:
        return int(row.get("epoch", ""))
    except ValueError:
        return None


def _number(text):
    try:
        return float(text)
    except ValueError:
        return float("nan")
