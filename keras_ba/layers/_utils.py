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


def global_average(feature, data_format, training=None):
    """Averages a feature map over its spatial axes: (batch, channels).

    In training, in float32/float64 with known spatial sizes, it is
    `sum(x) * (1 / count)`: the division then happens on the pooled vector,
    so the gradient is a broadcast of the scaled pooled gradient instead of a
    full-size division (one pass less over the feature map in eager PyTorch
    and in TensorFlow graphs; XLA fuses either form). Inference, and so every
    exported graph, keeps `ops.mean` (one MEAN op, which int8 converters
    quantise better than a SUM and a MUL), as do lower precisions (`ops.mean`
    accumulates in float32; a float16 sum could overflow).

    Example:
    >>> import numpy as np
    >>> x = np.arange(16, dtype="float32").reshape(1, 2, 2, 4)
    >>> keras.ops.convert_to_numpy(global_average(x, "channels_last")).tolist()
    [[6.0, 7.0, 8.0, 9.0]]
    """
    axes = spatial_axes(len(feature.shape), data_format)
    sizes = [feature.shape[axis] for axis in axes]
    dtype = keras.backend.standardize_dtype(feature.dtype)
    if not training or dtype not in ("float32", "float64") or any(size is None for size in sizes):
        return ops.mean(feature, axis=axes)
    count = 1
    for size in sizes:
        count *= size
    return ops.sum(feature, axis=axes) * (1.0 / count)


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
