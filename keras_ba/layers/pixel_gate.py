"""A per-pixel channel gate: the attention of the authors' first MBConv block."""

import keras
from keras import ops

from keras_ba.layers.squeeze_excite import SqueezeExcite


@keras.saving.register_keras_serializable(package="keras_ba")
class PixelGate(SqueezeExcite):
    """Channel gate computed at every position, without pooling.

    `w = gate(W_2 act(W_1 X + b_1) + b_2)`, output `X * w`, where the two
    projections are 1x1 convolutions applied to the full feature map: unlike
    squeeze-and-excitation, nothing is averaged, so every pixel gets its own
    channel weights. It has exactly the weights of a `SqueezeExcite` of the
    same widths (a 1x1 conv is a `Dense` over the channel axis), which is why
    it subclasses it and shares its arguments and config; only `call`
    differs.

    This is the attention of the first MBConv block (the one without an
    expansion conv) in the Bridge Attention authors' BA-EfficientNet
    (`models/BA_effcientnet.py`): `att = Conv1x1(C -> C_in // 4, bias) ->
    Swish -> Conv1x1(-> C, bias) -> Sigmoid` and `x = x * att(x)` with the
    pooling line commented out. `keras_ba.applications.BAEfficientNet` uses it
    there, so the authors' checkpoints compute the same function.

    Args:
        reduction: positive integer `r`; the hidden width is `C // r`
            (4 in the authors' EfficientNet).
        squeeze_channels: optional positive integer that sets the hidden
            width directly, overriding `reduction`.
        hidden_activation: activation between the projections (`"swish"`).
        gate_activation: activation producing the weights (`"sigmoid"`).
        use_bias: whether both projections have a bias (True, as in the
            authors' 1x1 convs).
        data_format: `"channels_last"` or `"channels_first"`; None reads
            `keras.config.image_data_format()`.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a tensor, or a list of tensors whose last one is gated (the
            signature of the other attention layers).
        return_attention_scores: if True, returns `(output, weights)`, the
            weights having the shape of the gated feature map.

    Reference:
        Zhao et al., "BA-Net: Bridge Attention for Deep Convolutional Neural
        Networks", ECCV 2022 (the released BA-EfficientNet code).

    Example:
    >>> import keras, numpy as np
    >>> x = np.random.rand(2, 8, 8, 32).astype("float32")
    >>> layer = PixelGate(squeeze_channels=8)
    >>> y, w = layer(x, return_attention_scores=True)
    >>> tuple(y.shape), tuple(w.shape)
    ((2, 8, 8, 32), (2, 8, 8, 32))
    >>> y, w = keras.ops.convert_to_numpy(y), keras.ops.convert_to_numpy(w)
    >>> bool(np.allclose(y, x * w))
    True
    """

    def __init__(
        self,
        reduction=4,
        squeeze_channels=None,
        hidden_activation="swish",
        gate_activation="sigmoid",
        use_bias=True,
        data_format=None,
        **kwargs,
    ):
        super().__init__(
            reduction=reduction,
            squeeze_channels=squeeze_channels,
            hidden_activation=hidden_activation,
            gate_activation=gate_activation,
            use_bias=use_bias,
            data_format=data_format,
            **kwargs,
        )

    def call(self, inputs, return_attention_scores=False):
        feature = inputs[-1] if isinstance(inputs, (list, tuple)) else inputs
        channels_first = self.data_format == "channels_first"
        x = ops.moveaxis(feature, 1, -1) if channels_first else feature
        weights = self._gate(self.excitation(self._hidden(self.squeeze(x))))
        if channels_first:
            weights = ops.moveaxis(weights, -1, 1)
        output = feature * ops.cast(weights, feature.dtype)
        if return_attention_scores:
            return output, weights
        return output

    def compute_output_spec(self, inputs, return_attention_scores=False):
        feature = inputs[-1] if isinstance(inputs, (list, tuple)) else inputs
        shape = self.compute_output_shape(tuple(feature.shape))
        output = keras.KerasTensor(shape, dtype=feature.dtype)
        if not return_attention_scores:
            return output
        return output, keras.KerasTensor(shape, dtype=self.compute_dtype)
