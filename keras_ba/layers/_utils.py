"""Tensor helpers shared by the attention layers (axes, pooling, broadcast).

Argument checks live in `keras_ba._validation`.
"""

import keras
from keras import ops


def spatial_axes(rank, data_format):
    """Axes to pool over for a feature tensor of `rank` (batch included).

    Example:
    >>> spatial_axes(4, "channels_last"), spatial_axes(4, "channels_first")
    ((1, 2), (2, 3))
    """
    if data_format == "channels_last":
        return tuple(range(1, rank - 1))
    return tuple(range(2, rank))


def check_feature_shape(shape, position, layer_name):
    """Checks one feature shape: rank >= 3 (batch, ..., channels)."""
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
    """Config value for an activation given by name or as a callable.

    Example:
    >>> serialize_activation("swish")
    'swish'
    """
    if isinstance(identifier, str):
        return identifier
    return keras.activations.serialize(identifier)
