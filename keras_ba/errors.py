"""The one exception type of the training workflow.

Example:
>>> raise WorkflowError("The data folder 'photos' does not exist.")
Traceback (most recent call last):
...
keras_ba.errors.WorkflowError: The data folder 'photos' does not exist.
"""


class WorkflowError(ValueError):
    """A problem with what was asked: data, paths, flags, backend.

    The command line prints its message (no traceback) and exits with a
    non-zero status; library callers catch it like any `ValueError`.

    Example:
    >>> try:
    ...     raise WorkflowError("Unknown recipe 'x'.")
    ... except ValueError as error:
    ...     print(error)
    Unknown recipe 'x'.
    """
