"""What BridgeAttention and SqueezeExcite share: arguments, widths, gating.

Both squeeze pooled features to a bottleneck of `C // reduction` units (or
`squeeze_channels`), excite back to the `C` channels of the feature they
recalibrate and multiply it by `gate(W_g hidden(.))`. Subclasses build the
squeeze and implement `call`.
"""

import keras
from keras import layers, ops

from keras_ba import _validation
from keras_ba.layers import _utils


def project(dense, x, training=True):
    """`dense(x)`, in training computed from its weights without a nested layer call.

    The sublayers keep their weights (names, shapes, checkpoints) and are
    only read here: under PyTorch's eager execution a nested Keras layer
    call costs several times its matmul. Inference (and so every exported
    graph), quantized and LoRA-enabled layers call the layer as it is.

    Example:
    >>> import numpy as np
    >>> dense = keras.layers.Dense(2, use_bias=False, kernel_initializer="ones")
    >>> dense.build((None, 3))
    >>> keras.ops.convert_to_numpy(project(dense, np.ones((1, 3), "float32"))).tolist()
    [[3.0, 3.0]]
    """
    if (
        not training
        or getattr(dense, "quantization_mode", None) is not None
        or getattr(dense, "lora_enabled", False)
        or dense.activation not in (None, keras.activations.linear)
    ):
        return dense(x)
    y = ops.matmul(x, dense.kernel)
    if dense.use_bias:
        y = ops.add(y, dense.bias)
    return y


class ChannelAttentionBase(layers.Layer):
    """Base of the channel attention layers (not registered, not public).

    Args:
        reduction: positive integer `r`; the bottleneck width is `C // r`.
        squeeze_channels: optional positive integer that sets the bottleneck
            width directly, overriding `reduction`.
        hidden_activation: activation of the bottleneck.
        gate_activation: activation producing the channel weights.
        data_format: `"channels_last"` or `"channels_first"`; None reads
            `keras.config.image_data_format()`.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).
    """

    def __init__(
        self, reduction, squeeze_channels, hidden_activation, gate_activation, data_format, **kwargs
    ):
        super().__init__(**kwargs)
        self.reduction = _validation.check_positive_int(reduction, "reduction")
        if squeeze_channels is not None:
            _validation.check_positive_int(squeeze_channels, "squeeze_channels")
        self.squeeze_channels = squeeze_channels
        self.hidden_activation = _validation.check_activation(
            hidden_activation, "hidden_activation"
        )
        self.gate_activation = _validation.check_activation(gate_activation, "gate_activation")
        self.data_format = _validation.standardize_data_format(data_format)
        self._hidden = keras.activations.get(hidden_activation)
        self._gate = keras.activations.get(gate_activation)

    # === Shapes ===

    def _channels(self, shape, position):
        """Channel count of one feature shape (rank >= 3, channels known)."""
        shape = tuple(shape)
        name = self.__class__.__name__
        _utils.check_feature_shape(shape, position, name)
        channels = shape[_validation.channel_axis(self.data_format)]
        if channels is None:
            raise ValueError(
                f"`{name}` needs a known channel dimension; input {position} "
                f"has shape {shape} with data_format={self.data_format!r}."
            )
        return channels

    def _bottleneck_width(self, channels):
        if self.squeeze_channels is not None:
            return self.squeeze_channels
        width = channels // self.reduction
        if width < 1:
            raise ValueError(
                f"Received reduction={self.reduction}, larger than the "
                f"{channels} channels of the feature to recalibrate: the "
                "bottleneck would have 0 units. Use a reduction of at most "
                f"{channels}, or set `squeeze_channels`."
            )
        return width

    def _dense(self, units, name, use_bias=False):
        return layers.Dense(units, use_bias=use_bias, name=name, dtype=self.dtype_policy)

    # === Forward ===

    def _excite(self, squeezed, feature, return_attention_scores, training=None):
        """`feature * gate(W_g hidden(squeezed))`, with the weights if asked."""
        weights = self._gate(project(self.excitation, self._hidden(squeezed), training))
        output = feature * _utils.broadcast_channel_weights(weights, feature, self.data_format)
        if return_attention_scores:
            return output, weights
        return output

    def _output_spec(self, feature, output_shape, return_attention_scores):
        output = keras.KerasTensor(output_shape, dtype=feature.dtype)
        if not return_attention_scores:
            return output
        channels = feature.shape[_validation.channel_axis(self.data_format)]
        scores = keras.KerasTensor((feature.shape[0], channels), dtype=self.compute_dtype)
        return output, scores

    # === Config ===

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "reduction": self.reduction,
                "squeeze_channels": self.squeeze_channels,
                "hidden_activation": _utils.serialize_activation(self.hidden_activation),
                "gate_activation": _utils.serialize_activation(self.gate_activation),
                "data_format": self.data_format,
            }
        )
        return config
