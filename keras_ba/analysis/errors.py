"""The one exception type of `keras_ba.analysis`.

Example:
>>> raise AnalysisError("The model has no attention layer.")
Traceback (most recent call last):
...
keras_ba.analysis.errors.AnalysisError: The model has no attention layer.
"""


class AnalysisError(ValueError):
    """A problem with what was asked: model, data, layer names, methods.

    `keras-ba analyze` prints its message (no traceback) and exits with
    status 1; library callers catch it like any `ValueError`.

    Example:
    >>> try:
    ...     raise AnalysisError("Unknown CAM method 'x'.")
    ... except ValueError as error:
    ...     print(error)
    Unknown CAM method 'x'.
    """
