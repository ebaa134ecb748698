"""Bridge Attention: channel attention fed by all the convs of a block."""

import keras
from keras import layers, ops

from keras_ba import _keras_compat, _validation
from keras_ba.layers import _utils
from keras_ba.layers._channel_attention import ChannelAttentionBase, project

VERSIONS = ("v1", "v2")


@keras.saving.register_keras_serializable(package="keras_ba")
class BridgeAttention(ChannelAttentionBase):
    """Bridge Attention (BA-Net) over the intra-block features of a block.

    Squeeze-and-excitation derives channel weights from the block's last
    conv output only. Bridge Attention also pools the earlier conv outputs of
    the same block, projects every pooled vector to the bottleneck width
    `C_n // reduction`, integrates them and generates the weights from that
    richer signal. The last feature map is recalibrated and returned.

    With features `X_1 ... X_n` (`X_n` the last, `C_n` channels):

    - `version="v1"` (ECCV 2022): `S_i = BN_i(W_i gap(X_i))`, `I = sum_i S_i`,
      `w = gate(W_g act(I))`.
    - `version="v2"` (2024, the authors' `ba_resnet_v2_1.py`):
      `S_i = W_i gap(X_i)`, `I = sum_i a_i S_i + b` (learned scalars, a
      `Dense(1)` over the stacked branch axis), `w = gate(W_g act(BN(I)))`.
      The paper calls this an adaptive selection; the released code, which
      produced the published numbers, makes it a static learned weighting,
      and this layer matches the code.

    The output is `X_n * w`, with `w` broadcast over the spatial axes. All
    projections are bias-free, as in the authors' code. Inputs may differ in
    channels and spatial size; rank 3, 4 and 5 feature maps (1D/2D/3D convs,
    token sequences) work.

    Args:
        version: `"v1"` or `"v2"`.
        reduction: positive integer `r`; the bottleneck width is
            `C_n // r` (16 in ResNets, 6 in EfficientNet and MobileNetV3).
        squeeze_channels: optional positive integer that sets the bottleneck
            width directly, overriding `reduction`.
        hidden_activation: activation between integration and excitation:
            `"relu"` (ResNet) or `"swish"` (EfficientNet).
        gate_activation: activation producing the weights: `"sigmoid"`, or
            `"hard_sigmoid"` for MobileNetV3-style blocks.
        epsilon: BatchNorm epsilon (1e-5 as in PyTorch).
        momentum: BatchNorm momentum in Keras' convention (0.9 equals
            PyTorch's default momentum 0.1).
        data_format: `"channels_last"` or `"channels_first"`; None reads
            `keras.config.image_data_format()`.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: a list of the block's feature tensors, earliest first; the
            last one is recalibrated.
        training: whether the BatchNorms use batch statistics.
        return_attention_scores: if True, returns `(output, weights)` where
            `weights` has shape `(batch, C_n)`.

    Reference:
        Zhao et al., "BA-Net: Bridge Attention for Deep Convolutional Neural
        Networks", ECCV 2022; Zhang et al., "BA-Net: Bridge Attention in Deep
        Neural Networks", 2024 (arXiv 2410.07860).

    Example:
    >>> import numpy as np
    >>> x1 = np.random.rand(2, 8, 8, 16).astype("float32")
    >>> x2 = np.random.rand(2, 8, 8, 64).astype("float32")
    >>> layer = BridgeAttention(version="v1", reduction=16)
    >>> y, w = layer([x1, x2], return_attention_scores=True)
    >>> tuple(y.shape), tuple(w.shape)
    ((2, 8, 8, 64), (2, 64))
    """

    def __init__(
        self,
        version="v1",
        reduction=16,
        squeeze_channels=None,
        hidden_activation="relu",
        gate_activation="sigmoid",
        epsilon=1e-5,
        momentum=0.9,
        data_format=None,
        **kwargs,
    ):
        super().__init__(
            reduction, squeeze_channels, hidden_activation, gate_activation, data_format, **kwargs
        )
        self.version = _validation.check_choice(version, "version", VERSIONS)
        self.epsilon = _validation.check_unit_interval(epsilon, "epsilon")
        self.momentum = _validation.check_unit_interval(momentum, "momentum", closed_low=True)

    # === Shapes ===

    def _feature_shapes(self, input_shape):
        """Validates the list of feature shapes; returns them and their channels."""
        if input_shape is None or (
            isinstance(input_shape, (list, tuple)) and len(input_shape) == 0
        ):
            raise ValueError(
                "`BridgeAttention` received an empty list of features; it "
                "needs at least the tensor to recalibrate."
            )
        is_list = isinstance(input_shape, (list, tuple)) and all(
            isinstance(s, (list, tuple)) for s in input_shape
        )
        if not is_list:
            raise ValueError(
                "`BridgeAttention` expects a list of the block's feature "
                "tensors (earliest first, the one to recalibrate last). "
                f"Received a single input of shape {input_shape}. Wrap it in "
                "a list: `layer([x])`."
            )
        shapes = [tuple(shape) for shape in input_shape]
        channels = [self._channels(shape, position) for position, shape in enumerate(shapes)]
        _utils.check_batch_sizes(shapes, "BridgeAttention")
        return shapes, channels

    # === Build ===

    def build(self, input_shape):
        _, channels = self._feature_shapes(input_shape)
        width = self._bottleneck_width(channels[-1])
        self.num_features = len(channels)
        self.squeeze_layers = []
        self.squeeze_norms = []
        for index, in_channels in enumerate(channels):
            dense = self._dense(width, f"squeeze_{index}")
            dense.build((None, in_channels))
            self.squeeze_layers.append(dense)
            if self.version == "v1":
                self.squeeze_norms.append(self._batch_norm(f"squeeze_norm_{index}"))
                self.squeeze_norms[-1].build((None, width))
        if self.version == "v2":
            self.selection = self._dense(1, "selection", use_bias=True)
            self.selection.build((None, width, self.num_features))
            self.norm = self._batch_norm("norm")
            self.norm.build((None, width))
        self.excitation = self._dense(channels[-1], "excitation")
        self.excitation.build((None, width))

    def _batch_norm(self, name):
        return layers.BatchNormalization(
            epsilon=self.epsilon,
            momentum=self.momentum,
            name=name,
            dtype=self.dtype_policy,
        )

    # === Forward ===

    def call(self, inputs, training=None, return_attention_scores=False):
        features = self._call_features(inputs)
        pooled = [
            _utils.global_average(feature, self.data_format, training) for feature in features
        ]
        if self.version == "v1":
            # Fused in training only: inference (and every exported graph) keeps one
            # BatchNorm per branch, so that an int8 converter gives each branch its
            # own scale (one scale over the concatenation cost int8 LiteRT agreement).
            if training and self._fusable_norms():
                integrated = self._integrate_v1_fused(pooled, training)
            else:
                integrated = self._integrate_v1(pooled, training)
        else:
            integrated = self._integrate_v2(pooled, training)
        return self._excite(integrated, features[-1], return_attention_scores, training)

    def _integrate_v1(self, pooled, training):
        """`sum_i BN_i(W_i p_i)`, one BatchNormalization call per branch."""
        integrated = None
        for dense, norm, vector in zip(
            self.squeeze_layers, self.squeeze_norms, pooled, strict=True
        ):
            normed = norm(project(dense, vector, training), training=training)
            integrated = normed if integrated is None else integrated + normed
        return integrated

    def _fusable_norms(self):
        """Whether the branch BatchNorms can run as one over their concatenation.

        Only plain, identically configured `BatchNormalization` layers fuse. A
        norm whose `_moments` is replaced on the instance (the synchronised
        BatchNorm of `keras-ba train --distribute ddp`) computes its own
        statistics, so its branches keep one call each.
        """
        norms = self.squeeze_norms
        return all(
            type(norm) is layers.BatchNormalization
            and not _keras_compat.has_replaced_moments(norm)
            and not getattr(norm, "renorm", False)
            and not norm.synchronized
            and norm.trainable == norms[0].trainable
            and norm.epsilon == norms[0].epsilon
            and norm.center
            and norm.scale
            and norm.axis in (-1, 1)
            for norm in norms
        )

    def _integrate_v1_fused(self, pooled, training):
        """`_integrate_v1` as one BatchNorm over the concatenated branches.

        BatchNorm normalises every channel on its own, so the branches'
        projections are concatenated, normalised once with the branches'
        concatenated parameters and statistics (Keras' BatchNormalization
        arithmetic: float32 at least, moments over the batch) and summed; each
        branch's moving statistics get the update its own layer would make.
        The weights stay in the branch layers.
        """
        norms = self.squeeze_norms
        width = self.squeeze_layers[0].units
        projected = ops.concatenate(
            [
                project(dense, vector, training)
                for dense, vector in zip(self.squeeze_layers, pooled, strict=True)
            ],
            axis=-1,
        )
        dtype = keras.backend.result_type(projected.dtype, "float32")
        projected = ops.cast(projected, dtype)

        def gather(name):
            return ops.concatenate([ops.cast(getattr(norm, name), dtype) for norm in norms], axis=0)

        if training and norms[0].trainable:
            mean, variance = ops.moments(projected, axes=[0])
            for index, norm in enumerate(norms):
                part = slice(index * width, (index + 1) * width)
                for variable, batch_value in (
                    (norm.moving_mean, mean[part]),
                    (norm.moving_variance, variance[part]),
                ):
                    variable.assign(
                        ops.cast(variable, dtype) * norm.momentum
                        + batch_value * (1.0 - norm.momentum)
                    )
        else:
            mean, variance = gather("moving_mean"), gather("moving_variance")
        normed = ops.batch_normalization(
            projected,
            mean,
            variance,
            axis=-1,
            offset=gather("beta"),
            scale=gather("gamma"),
            epsilon=norms[0].epsilon,
        )
        normed = ops.cast(normed, norms[0].compute_dtype)
        return ops.sum(ops.reshape(normed, (-1, len(norms), width)), axis=1)

    def _integrate_v2(self, pooled, training):
        """`BN(sum_i a_i W_i p_i + b)`: the learned branch weighting."""
        squeezed = [
            project(dense, vector, training)
            for dense, vector in zip(self.squeeze_layers, pooled, strict=True)
        ]
        stacked = ops.stack(squeezed, axis=-1)
        integrated = ops.squeeze(project(self.selection, stacked, training), axis=-1)
        return self.norm(integrated, training=training)

    def _call_features(self, inputs):
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(
                "`BridgeAttention` expects a list of the block's feature "
                f"tensors. Received a single tensor of shape {inputs.shape}. "
                "Wrap it in a list: `layer([x])`."
            )
        shapes, _ = self._feature_shapes([tuple(x.shape) for x in inputs])
        if len(shapes) != self.num_features:
            raise ValueError(
                f"`BridgeAttention` was built for {self.num_features} "
                f"features and received {len(shapes)}."
            )
        return list(inputs)

    def compute_output_shape(self, input_shape):
        return self._feature_shapes(input_shape)[0][-1]

    def compute_output_spec(self, inputs, training=None, return_attention_scores=False):
        if not isinstance(inputs, (list, tuple)):
            self._feature_shapes(tuple(inputs.shape))
        output_shape = self.compute_output_shape([tuple(x.shape) for x in inputs])
        return self._output_spec(inputs[-1], output_shape, return_attention_scores)

    # === Config ===

    def get_config(self):
        config = super().get_config()
        config.update({"version": self.version, "epsilon": self.epsilon, "momentum": self.momentum})
        return config
