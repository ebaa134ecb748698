"""Small helpers shared by the attention layers (argument checks, axes)."""

import keras
from keras import ops

DATA_FORMATS = ("channels_last", "channels_first")


def standardize_data_format(data_format):
    """Returns `data_format`, or Keras' global image data format when None.

    Example:
    >>> standardize_data_format(None) in ("channels_last", "channels_first")
    True
    """
    if data_format is None:
        return keras.config.image_data_format()
    if data_format not in DATA_FORMATS:
        raise ValueError(
            "Received an invalid value for `data_format`, expected one of "
            f"{DATA_FORMATS}. Received: data_format={data_format!r}"
        )
    return data_format


def channel_axis(data_format):
    """Index of the channel axis for `data_format` (-1 or 1)."""
    return -1 if data_format == "channels_last" else 1


def spatial_axes(rank, data_format):
    """Axes to pool over for a feature tensor of `rank` (batch included)."""
    if data_format == "channels_last":
        return tuple(range(1, rank - 1))
    return tuple(range(2, rank))


def check_positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"Received an invalid value for `{name}`, expected a positive "
            f"integer. Received: {name}={value!r}"
        )
    return value


def check_unit_interval(value, name, closed_low=False):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok and (0.0 <= value < 1.0 if closed_low else 0.0 < value < 1.0)
    if not ok:
        bounds = "[0, 1)" if closed_low else "(0, 1)"
        raise ValueError(
            f"Received an invalid value for `{name}`, expected a number in "
            f"{bounds}. Received: {name}={value!r}"
        )
    return float(value)


def check_activation(identifier, name):
    """Resolves an activation name (or callable), with a clear error."""
    try:
        keras.activations.get(identifier)
    except (ValueError, TypeError) as error:
        raise ValueError(
            f"Received an invalid value for `{name}`, expected the name of a "
            f"Keras activation such as 'relu', 'swish', 'sigmoid' or "
            f"'hard_sigmoid'. Received: {name}={identifier!r}"
        ) from error
    return identifier


def check_feature_shape(shape, position, layer_name):
    """Checks one feature shape: rank >= 3 and a known channel count."""
    if len(shape) < 3:
        raise ValueError(
            f"`{layer_name}` expects feature maps of rank 3 or more "
            "(batch, ..., channels), e.g. (batch, steps, channels) or "
            f"(batch, height, width, channels). Input {position} has rank "
            f"{len(shape)} and shape {tuple(shape)}."
        )


def check_batch_sizes(shapes, layer_name):
    """Raises if the known batch sizes of `shapes` disagree."""
    sizes = {shape[0] for shape in shapes if shape[0] is not None}
    if len(sizes) > 1:
        raise ValueError(
            f"`{layer_name}` received feature maps with different batch "
            f"sizes: {[shape[0] for shape in shapes]}. All intra-block "
            "features must come from the same batch."
        )


def global_average(feature, data_format):
    """Averages a feature map over its spatial axes: (batch, channels)."""

    return ops.mean(feature, axis=spatial_axes(len(feature.shape), data_format))


def broadcast_channel_weights(weights, feature, data_format):
    """Reshapes (batch, C) weights so that they broadcast against `feature`."""

    weights = ops.cast(weights, feature.dtype)
    axis = 1 if data_format == "channels_last" else 2
    for _ in range(len(feature.shape) - 2):
        weights = ops.expand_dims(weights, axis=axis)
    return weights


def serialize_activation(identifier):
    """Config value for an activation given by name or as a callable."""
    if isinstance(identifier, str):
        return identifier
    return keras.activations.serialize(identifier)
