"""Squeeze-and-excitation, the baseline Bridge Attention is compared with."""

import keras

from keras_ba.layers import _utils
from keras_ba.layers._channel_attention import ChannelAttentionBase, project


@keras.saving.register_keras_serializable(package="keras_ba")
class SqueezeExcite(ChannelAttentionBase):
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
        super().__init__(
            reduction, squeeze_channels, hidden_activation, gate_activation, data_format, **kwargs
        )
        self.use_bias = bool(use_bias)

    def _last_shape(self, input_shape):
        if (
            isinstance(input_shape, (list, tuple))
            and input_shape
            and all(isinstance(s, (list, tuple)) for s in input_shape)
        ):
            input_shape = input_shape[-1]
        elif isinstance(input_shape, (list, tuple)) and len(input_shape) == 0:
            raise ValueError("`SqueezeExcite` received an empty list of features.")
        return tuple(input_shape)

    def build(self, input_shape):
        shape = self._last_shape(input_shape)
        channels = self._channels(shape, -1)
        width = self._bottleneck_width(channels)
        self.squeeze = self._dense(width, "squeeze", use_bias=self.use_bias)
        self.squeeze.build((None, channels))
        self.excitation = self._dense(channels, "excitation", use_bias=self.use_bias)
        self.excitation.build((None, width))

    def call(self, inputs, training=None, return_attention_scores=False):
        feature = inputs[-1] if isinstance(inputs, (list, tuple)) else inputs
        pooled = _utils.global_average(feature, self.data_format, training)
        squeezed = project(self.squeeze, pooled, training)
        return self._excite(squeezed, feature, return_attention_scores, training)

    def compute_output_shape(self, input_shape):
        shape = self._last_shape(input_shape)
        self._channels(shape, -1)
        return shape

    def compute_output_spec(self, inputs, return_attention_scores=False):
        feature = inputs[-1] if isinstance(inputs, (list, tuple)) else inputs
        output_shape = self.compute_output_shape(tuple(feature.shape))
        return self._output_spec(feature, output_shape, return_attention_scores)

    def get_config(self):
        config = super().get_config()
        config["use_bias"] = self.use_bias
        return config
