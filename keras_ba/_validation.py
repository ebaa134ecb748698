"""Argument checks shared by every keras_ba layer and builder.

Each check returns the (normalised) value or raises a one-line `ValueError`
in Keras' style: "Received an invalid value for `name`, expected ...
Received: name=value".

Example:
>>> check_positive_int(16, "reduction")
16
>>> check_choice("max", "pooling", (None, "avg", "max"))
'max'
"""

import os

import keras

DATA_FORMATS = ("channels_last", "channels_first")


def _invalid(name, expected, value):
    return ValueError(
        f"Received an invalid value for `{name}`, expected {expected}. Received: {name}={value!r}"
    )


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# === Data format ===


def standardize_data_format(data_format):
    """Returns `data_format`, or Keras' global image data format when None.

    Example:
    >>> standardize_data_format(None) in ("channels_last", "channels_first")
    True
    """
    if data_format is None:
        return keras.config.image_data_format()
    if data_format not in DATA_FORMATS:
        raise _invalid("data_format", f"one of {DATA_FORMATS}", data_format)
    return data_format


def channel_axis(data_format):
    """Index of the channel axis for `data_format` (-1 or 1).

    Example:
    >>> channel_axis("channels_last"), channel_axis("channels_first")
    (-1, 1)
    """
    return -1 if data_format == "channels_last" else 1


# === Numbers ===


def check_positive_int(value, name):
    """A positive integer (booleans refused).

    Example:
    >>> check_positive_int(0, "classes")
    Traceback (most recent call last):
    ...
    ValueError: Received an invalid value for `classes`, expected a positive integer. Received: classes=0
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _invalid(name, "a positive integer", value)
    return value


def check_positive_number(value, name):
    """A positive int or float.

    Example:
    >>> check_positive_number(1.1, "width_coefficient")
    1.1
    """
    if not _is_number(value) or value <= 0:
        raise _invalid(name, "a positive number", value)
    return value


def check_unit_interval(value, name, closed_low=False):
    """A number in (0, 1), or in [0, 1) with `closed_low=True`; as a float.

    Example:
    >>> check_unit_interval(0, "dropout_rate", closed_low=True)
    0.0
    """
    low_ok = _is_number(value) and (value >= 0.0 if closed_low else value > 0.0)
    if not (low_ok and value < 1.0):
        raise _invalid(name, f"a number in {'[0, 1)' if closed_low else '(0, 1)'}", value)
    return float(value)


def check_int_list(values, name, length=None):
    """A non-empty list of positive integers (of `length` items if given).

    Example:
    >>> check_int_list((3, 4, 6, 3), "stackwise_num_blocks")
    [3, 4, 6, 3]
    """
    ok = isinstance(values, (list, tuple)) and len(values) > 0
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)
    if not ok or (length is not None and len(values) != length):
        expected = "a non-empty list of positive integers"
        if length is not None:
            expected = f"a list of {length} positive integers"
        raise _invalid(name, expected, values)
    return list(values)


# === Choices ===


def check_choice(value, name, choices):
    """One of `choices`.

    Example:
    >>> check_choice("wide", "block_type", ("basic", "bottleneck"))
    Traceback (most recent call last):
    ...
    ValueError: Received an invalid value for `block_type`, expected one of ('basic', 'bottleneck'). Received: block_type='wide'
    """
    if value not in choices:
        raise _invalid(name, f"one of {tuple(choices)}", value)
    return value


def check_bool(value, name):
    """True or False (not a truthy value).

    Example:
    >>> check_bool(True, "include_top")
    True
    """
    if not isinstance(value, bool):
        raise _invalid(name, "True or False", value)
    return value


def check_activation(identifier, name):
    """A Keras activation name or callable.

    Example:
    >>> check_activation("hard_sigmoid", "gate_activation")
    'hard_sigmoid'
    """
    try:
        keras.activations.get(identifier)
    except (ValueError, TypeError) as error:
        raise _invalid(
            name,
            "the name of a Keras activation such as 'relu', 'swish', 'sigmoid' or 'hard_sigmoid'",
            identifier,
        ) from error
    return identifier


def check_weights_path(weights):
    """None, or the path of an existing `.keras` / `.weights.h5` file.

    Example:
    >>> check_weights_path(None) is None
    True
    """
    if weights is None:
        return None
    if not isinstance(weights, (str, os.PathLike)):
        raise _invalid(
            "weights",
            "None or the path to a `.keras` or `.weights.h5` file (keras_ba "
            "ships no downloadable weights)",
            weights,
        )
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise ValueError(
            f"The weights file {path!r} does not exist. Pass None for random "
            "initialisation or the path to a `.keras` or `.weights.h5` file "
            "(the authors' PyTorch checkpoints convert with `keras-ba convert`)."
        )
    if not path.endswith((".keras", ".weights.h5")):
        raise ValueError(
            f"Unsupported weights file {path!r}: expected a `.keras` or a `.weights.h5` file."
        )
    return path


def check_input_shape(input_shape, data_format, min_size, stem_name):
    """`(H, W, C)` / `(C, H, W)` with known channels and sides >= `min_size`.

    None gives the fully convolutional `(None, None, 3)` (or `(3, None,
    None)` for channels_first).

    Example:
    >>> check_input_shape(None, "channels_last", 32, "imagenet")
    (None, None, 3)
    """
    if input_shape is None:
        return (None, None, 3) if data_format == "channels_last" else (3, None, None)
    if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 3:
        raise ValueError(
            "Received an invalid value for `input_shape`, expected "
            "(height, width, channels) for channels_last or (channels, "
            f"height, width) for channels_first. Received: input_shape={input_shape!r}"
        )
    if data_format == "channels_last":
        spatial, channels = input_shape[:2], input_shape[2]
    else:
        spatial, channels = input_shape[1:], input_shape[0]
    if channels is None or channels < 1:
        raise ValueError(
            "`input_shape` needs a known, positive number of channels. "
            f"Received: input_shape={tuple(input_shape)!r}"
        )
    if any(size is not None and size < min_size for size in spatial):
        raise ValueError(
            f"Received input_shape={tuple(input_shape)!r}, too small for the "
            f"{stem_name!r} stem: height and width must be at least "
            f"{min_size} pixels (or None)."
        )
    return tuple(input_shape)
