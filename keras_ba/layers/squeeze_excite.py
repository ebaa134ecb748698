"""Squeeze-and-excitation, the baseline Bridge Attention is compared with."""

import keras
from keras import layers

from keras_ba.layers import _utils


@keras.saving.register_keras_serializable(package="keras_ba")
class SqueezeExcite(layers.Layer):
    """Squeeze-and-excitation channel attention (Hu et al., SENet).

    `w = gate(W_2 act(W_1 gap(X)))`, output `X * w`. Bias-free by default,
    like the SE baseline in the Bridge Attention authors' code, so that
    `attention="se"` models match their parameter counts.

    It takes the same input as `BridgeAttention` (a list of the block's
    features, of which only the last is used) or a single tensor, so blocks
    can swap one attention for the other by name.

    Args:
        reduction: positive integer `r`; the bottleneck width is `C // r`.
        squeeze_channels: optional positive integer that sets the bottleneck
            width directly (EfficientNet uses a quarter of the block input).
        hidden_activation: activation of the bottleneck (`"relu"`, `"swish"`).
        gate_activation: `"sigmoid"` or `"hard_sigmoid"`.
        use_bias: whether both projections have a bias.
        data_format: `"channels_last"` or `"channels_first"`; None reads
            `keras.config.image_data_format()`.
        **kwargs: base `Layer` arguments.

    Call arguments:
        inputs: a tensor, or a list of tensors whose last one is recalibrated.
        return_attention_scores: if True, returns `(output, weights)` with
            weights of shape `(batch, C)`.

    Reference:
        Hu et al., "Squeeze-and-Excitation Networks", CVPR 2018.

    Example:
    >>> import numpy as np
    >>> x = np.random.rand(2, 8, 8, 64).astype("float32")
    >>> tuple(SqueezeExcite(reduction=16)(x).shape)
    (2, 8, 8, 64)
    """

    def __init__(
        self,
        reduction=16,
        squeeze_channels=None,
        hidden_activation="relu",
        gate_activation="sigmoid",
        use_bias=False,
        data_format=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.reduction = _utils.check_positive_int(reduction, "reduction")
        if squeeze_channels is not None:
            _utils.check_positive_int(squeeze_channels, "squeeze_channels")
        self.squeeze_channels = squeeze_channels
        self.hidden_activation = _utils.check_activation(
            hidden_activation, "hidden_activation"
        )
        self.gate_activation = _utils.check_activation(
            gate_activation, "gate_activation"
        )
        self.use_bias = bool(use_bias)
        self.data_format = _utils.standardize_data_format(data_format)
        self._hidden = keras.activations.get(hidden_activation)
        self._gate = keras.activations.get(gate_activation)

    def _last_shape(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and input_shape and all(
            isinstance(s, (list, tuple)) for s in input_shape
        ):
            input_shape = input_shape[-1]
        elif isinstance(input_shape, (list, tuple)) and len(input_shape) == 0:
            raise ValueError("`SqueezeExcite` received an empty list of features.")
        shape = tuple(input_shape)
        _utils.check_feature_shape(shape, -1, "SqueezeExcite")
        if shape[_utils.channel_axis(self.data_format)] is None:
            raise ValueError(
                "`SqueezeExcite` needs a known channel dimension. Received "
                f"shape {shape} with data_format={self.data_format!r}."
            )
        return shape

    def build(self, input_shape):
        shape = self._last_shape(input_shape)
        channels = shape[_utils.channel_axis(self.data_format)]
        width = self.squeeze_channels or channels // self.reduction
        if width < 1:
            raise ValueError(
                f"Received reduction={self.reduction}, larger than the "
                f"{channels} channels of the input: the bottleneck would have "
                f"0 units. Use a reduction of at most {channels}."
            )
        self.squeeze = layers.Dense(
            width, use_bias=self.use_bias, name="squeeze", dtype=self.dtype_policy
        )
        self.squeeze.build((None, channels))
        self.excitation = layers.Dense(
            channels, use_bias=self.use_bias, name="excitation", dtype=self.dtype_policy
        )
        self.excitation.build((None, width))

    def call(self, inputs, return_attention_scores=False):
        feature = inputs[-1] if isinstance(inputs, (list, tuple)) else inputs
        pooled = _utils.global_average(feature, self.data_format)
        weights = self._gate(self.excitation(self._hidden(self.squeeze(pooled))))
        output = feature * _utils.broadcast_channel_weights(
            weights, feature, self.data_format
        )
        if return_attention_scores:
            return output, weights
        return output

    def compute_output_shape(self, input_shape):
        return self._last_shape(input_shape)

    def compute_output_spec(self, inputs, return_attention_scores=False):
        feature = inputs[-1] if isinstance(inputs, (list, tuple)) else inputs
        output = keras.KerasTensor(
            self.compute_output_shape(tuple(feature.shape)), dtype=feature.dtype
        )
        if not return_attention_scores:
            return output
        channels = feature.shape[_utils.channel_axis(self.data_format)]
        return output, keras.KerasTensor(
            (feature.shape[0], channels), dtype=self.compute_dtype
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "reduction": self.reduction,
                "squeeze_channels": self.squeeze_channels,
                "hidden_activation": _utils.serialize_activation(self.hidden_activation),
                "gate_activation": _utils.serialize_activation(self.gate_activation),
                "use_bias": self.use_bias,
                "data_format": self.data_format,
            }
        )
        return config

