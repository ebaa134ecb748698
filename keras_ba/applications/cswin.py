"""BA-CSWin: CSWin Transformer with Bridge Attention.

The trunk is the official CSWin Transformer (microsoft/CSWin-Transformer,
`models/cswin.py`, `CSWinTransformer`), computed on channels_last maps:

- stem `stage1_conv_embed` (Conv2D 7x7, stride 4, padding 2) and
  `stage1_conv_embed_norm` (LayerNorm, epsilon 1e-5);
- four stages of blocks `stage{i}_{j}`: `x + proj(CSWinAttention(LN1(x)))`,
  then `x + MLP(LN2(x))` (ratio 4, exact GELU), LayerNorm epsilon 1e-5;
- between stages `merge{i}_conv` (Conv2D 3x3, stride 2, padding 1) and
  `merge{i}_norm`.

Cross-shaped window attention (`CrossShapedWindowAttention`): `qkv`
(output channels `[q | k | v]`) is split in half along channels; the first
half attends within vertical stripes (full height x `split_size` columns),
the second within horizontal stripes, each with half the heads (head_dim =
C / heads, scale `head_dim ** -0.5`). LePE (`get_v_{b}`, a 3x3 depthwise
conv with bias) is applied to V inside each stripe, zero-padded at the
stripe's borders, and added to the attention output. The last stage (and
any stage whose side equals its split size) has one branch over the whole
map. Branch outputs are concatenated and projected (`proj`).

`pyramid_outputs` `P2` ... `P5` are the stages' outputs (strides 4 to 32);
the backbone's output is `P5`. The classifier head is the reference's:
LayerNorm `norm`, mean over tokens, `predictions`. The reference runs at its
constructed square size only (a multiple of 32); so does this model.

Bridge Attention sits in every block (`keras_ba.applications.transformer`).

Reference:
    Dong et al., "CSWin Transformer: A General Vision Transformer Backbone
    with Cross-Shaped Windows", CVPR 2022.
"""

import keras
from keras import layers, ops

from keras_ba import _validation
from keras_ba.applications import classifier, registry, transformer
from keras_ba.applications.backbone import Backbone, start
from keras_ba.applications.preprocessing import preprocess_input
from keras_ba.applications.pvt_layers import attend, merge_heads, split_heads

__all__ = [
    "BACSWin",
    "BACSWinBackbone",
    "BACSWinTiny",
    "CrossShapedWindowAttention",
    "preprocess_input",
]

# CSWin-T's architecture, read from the table of named models.
TINY = dict(registry.get_entry("ba_cswin_tiny").arguments)


def _to_windows(x, window):
    """`(B, H, W, c)` -> `(B * nW, wh * ww, c)`, windows row-major, tokens row-major."""
    (height, width, channels), (wh, ww) = x.shape[1:], window
    x = ops.reshape(x, (-1, height // wh, wh, width // ww, ww, channels))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, wh * ww, channels))


def _from_windows(x, window, size):
    """Inverse of `_to_windows` for a `size = (H, W)` map."""
    (wh, ww), (height, width), channels = window, size, x.shape[-1]
    x = ops.reshape(x, (-1, height // wh, width // ww, wh, ww, channels))
    x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (-1, height, width, channels))


@keras.saving.register_keras_serializable(package="keras_ba")
class CrossShapedWindowAttention(layers.Layer):
    """CSWin's attention on a `(B, H, W, C)` map: `qkv`, stripes + LePE, `proj`.

    Args:
        num_heads: heads of the block (each branch has half of them).
        split_size: stripe width.
        last_stage: one branch over the whole map (global attention), as in
            the last stage or where the map's side equals `split_size`.
        **kwargs: `name`, `dtype`, ...

    Example:
    >>> import numpy as np
    >>> layer = CrossShapedWindowAttention(2, split_size=2)
    >>> tuple(layer(np.zeros((1, 4, 4, 8), "float32")).shape)
    (1, 4, 4, 8)
    >>> [tuple(conv.kernel.shape) for conv in layer.get_v]
    [(3, 3, 4, 1), (3, 3, 4, 1)]
    """

    def __init__(self, num_heads, split_size, last_stage=False, **kwargs):
        super().__init__(**kwargs)
        self.num_heads = _validation.check_positive_int(num_heads, "num_heads")
        self.split_size = _validation.check_positive_int(split_size, "split_size")
        self.last_stage = _validation.check_bool(last_stage, "last_stage")
        self.branches = 1 if last_stage else 2
        if num_heads % self.branches:
            raise ValueError(
                f"Received num_heads={num_heads}: the two cross-shaped branches need an "
                "even number of heads."
            )

    def _windows(self, size):
        if self.last_stage:
            return [tuple(size)]
        return [(size[0], self.split_size), (self.split_size, size[1])]

    def build(self, input_shape):
        height, width, channels = input_shape[1:]
        if channels % self.num_heads:
            raise ValueError(
                f"num_heads={self.num_heads} does not divide the {channels} channels of "
                f"layer {self.name!r}."
            )
        if not self.last_stage and (height % self.split_size or width % self.split_size):
            raise ValueError(
                f"split_size={self.split_size} does not divide the {height}x{width} map of "
                f"layer {self.name!r}."
            )
        policy = dict(dtype=self.dtype_policy)
        dense = dict(kernel_initializer=transformer.dense_init(), **policy)
        self.qkv = layers.Dense(3 * channels, name="qkv", **dense)
        self.qkv.build(input_shape)
        self.proj = layers.Dense(channels, name="proj", **dense)
        self.proj.build(input_shape)
        width_b = channels // self.branches
        self.get_v = []
        for branch, window in enumerate(self._windows((height, width))):
            conv = layers.DepthwiseConv2D(3, padding="same", name=f"get_v_{branch}", **policy)
            conv.build((None, *window, width_b))
            self.get_v.append(conv)

    def _branch(self, q, k, v, window, conv):
        size, heads = q.shape[1:3], self.num_heads // self.branches
        channels = q.shape[-1]
        q, k, v = (_to_windows(t, window) for t in (q, k, v))
        lepe = conv(ops.reshape(v, (-1, *window, channels)))
        lepe = split_heads(ops.reshape(lepe, (-1, window[0] * window[1], channels)), heads)
        out = attend(split_heads(q, heads), split_heads(k, heads), split_heads(v, heads))
        return _from_windows(merge_heads(out + lepe), window, size)

    def call(self, inputs):
        channels = inputs.shape[-1]
        qkv = self.qkv(inputs)
        q, k, v = (qkv[..., i * channels : (i + 1) * channels] for i in range(3))
        half = channels // self.branches
        outputs = []
        for branch, window in enumerate(self._windows(inputs.shape[1:3])):
            part = slice(branch * half, (branch + 1) * half)
            outputs.append(
                self._branch(q[..., part], k[..., part], v[..., part], window, self.get_v[branch])
            )
        out = outputs[0] if len(outputs) == 1 else ops.concatenate(outputs, axis=-1)
        return self.proj(out)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "split_size": self.split_size,
                "last_stage": self.last_stage,
            }
        )
        return config


def _conv_norm(x, filters, kernel, stride, padding, name, norm_name, dtype):
    """Zero padding, a strided conv (with bias) and a LayerNorm (stem, merges)."""
    x = layers.ZeroPadding2D(padding, dtype=dtype, name=f"{name}_pad")(x)
    x = layers.Conv2D(filters, kernel, strides=stride, dtype=dtype, name=name)(x)
    return transformer.layer_norm(norm_name, dtype)(x)


def _block(x, heads, split, last, mlp_ratio, attend, rate, name, dtype):
    normed = transformer.layer_norm(f"{name}_norm1", dtype)(x)
    branch = CrossShapedWindowAttention(heads, split, last, dtype=dtype, name=f"{name}_attn")(
        normed
    )
    return transformer.residual_mlp(
        x, branch, mlp_ratio=mlp_ratio, attend=attend, name=name, drop_path_rate=rate, dtype=dtype
    )


def _check_config(embed_dim, depths, num_heads, split_sizes, mlp_ratio, image_shape):
    _validation.check_positive_int(embed_dim, "embed_dim")
    depths = _validation.check_int_list(depths, "depths", length=4)
    num_heads = _validation.check_int_list(num_heads, "num_heads", length=4)
    split_sizes = _validation.check_int_list(split_sizes, "split_sizes", length=4)
    _validation.check_positive_number(mlp_ratio, "mlp_ratio")
    height, width = image_shape[:2]
    if height is None or width is None or height != width or height % 32:
        raise ValueError(
            f"Received image_shape={tuple(image_shape)!r}: CSWin runs at a square size, "
            "a multiple of 32, fixed when the model is built (as the reference)."
        )
    return depths, num_heads, split_sizes


@keras.saving.register_keras_serializable(package="keras_ba")
class BACSWinBackbone(Backbone):
    """CSWin Transformer trunk (cross-shaped window attention) with attention.

    See the module docstring for the data flow and where attention sits.

    Args:
        embed_dim: width of the first stage (64); stages double it.
        depths: blocks per stage (Tiny 1-2-21-1).
        num_heads: heads per stage (Tiny 2-4-8-16).
        split_sizes: stripe widths per stage (Tiny 1-2-7-7).
        mlp_ratio: MLP hidden width over the stage width (4).
        drop_path_rate: stochastic depth of the last block (linear schedule).
        attention: `"bav2"` (default), `"bav1"`, `"se"`, another registered
            name, a `keras.layers.Layer` subclass, a callable, or None (the
            official CSWin).
        reduction: attention reduction ratio.
        image_shape: `(S, S, 3)` with S a multiple of 32 (default 224).
        input_tensor: optional Keras tensor to build on.
        data_format: None or `"channels_last"`.
        trunk_style: `"pytorch"`, the only style (the official trunk).
        dtype: dtype policy of every layer.
        **kwargs: `name`, `trainable`.

    Example:
    >>> backbone = BACSWinBackbone(8, [1, 1, 1, 1], [2, 2, 2, 2], [1, 2, 2, 2],
    ...                            image_shape=(64, 64, 3), reduction=4)
    >>> {k: tuple(v.shape) for k, v in backbone.pyramid_outputs.items()}
    {'P2': (None, 16, 16, 8), 'P3': (None, 8, 8, 16), 'P4': (None, 4, 4, 32), 'P5': (None, 2, 2, 64)}
    """

    def __init__(
        self,
        embed_dim=TINY["embed_dim"],
        depths=TINY["depths"],
        num_heads=TINY["num_heads"],
        split_sizes=TINY["split_sizes"],
        mlp_ratio=4.0,
        drop_path_rate=0.2,
        attention="bav2",
        reduction=16,
        image_shape=None,
        input_tensor=None,
        data_format=None,
        trunk_style="pytorch",
        dtype=None,
        **kwargs,
    ):
        # === Arguments ===
        transformer.check_trunk_style(trunk_style, "CSWin")
        data_format = transformer.check_channels_last(data_format, "CSWin")
        if image_shape is None and input_tensor is None:
            image_shape = (224, 224, 3)
        begin = start(attention, reduction, image_shape, input_tensor, data_format, 32, "cswin")
        spec = _check_config(
            embed_dim, depths, num_heads, split_sizes, mlp_ratio, begin.image_shape
        )
        depths, num_heads, split_sizes = spec
        rates = transformer.drop_path_rates(
            depths, transformer.check_rate(drop_path_rate, "drop_path_rate")
        )
        attend = transformer.attention_builder(attention, reduction, dtype=dtype)

        # === Functional Model ===
        x = _conv_norm(
            begin.images, embed_dim, 7, 4, 2, "stage1_conv_embed", "stage1_conv_embed_norm", dtype
        )
        pyramid_outputs = {}
        for index in range(4):
            stage, side = index + 1, x.shape[1]
            if index:
                x = _conv_norm(
                    x, 2 * x.shape[-1], 3, 2, 1, f"merge{index}_conv", f"merge{index}_norm", dtype
                )
                side = x.shape[1]
            last = index == 3 or side == split_sizes[index]
            for block in range(depths[index]):
                x = _block(
                    x,
                    num_heads[index],
                    split_sizes[index],
                    last,
                    mlp_ratio,
                    attend,
                    rates[index][block],
                    f"stage{stage}_{block}",
                    dtype,
                )
            pyramid_outputs[f"P{index + 2}"] = x
        super().__init__(begin, x, pyramid_outputs, dtype=dtype, **kwargs)

        # === Config ===
        self.embed_dim = embed_dim
        self.depths = depths
        self.num_heads = num_heads
        self.split_sizes = split_sizes
        self.mlp_ratio = mlp_ratio
        self.drop_path_rate = drop_path_rate
        self.trunk_style = trunk_style

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "embed_dim": self.embed_dim,
                "depths": self.depths,
                "num_heads": self.num_heads,
                "split_sizes": self.split_sizes,
                "mlp_ratio": self.mlp_ratio,
                "drop_path_rate": self.drop_path_rate,
                "trunk_style": self.trunk_style,
            }
        )
        return config


# === Classifier ===


def BACSWin(
    embed_dim,
    depths,
    num_heads,
    split_sizes,
    mlp_ratio=4.0,
    drop_path_rate=0.2,
    include_top=True,
    weights=None,
    input_tensor=None,
    input_shape=None,
    pooling=None,
    classes=1000,
    classifier_activation="softmax",
    attention="bav2",
    reduction=16,
    data_format=None,
    trunk_style="pytorch",
    dtype=None,
    name="ba_cswin",
):
    """Builds a CSWin Transformer classifier with Bridge Attention (or SE, or none).

    `BACSWinBackbone` plus the reference head (`norm`, mean over tokens,
    `predictions`), in one flat model.

    Args:
        embed_dim ... drop_path_rate, attention, reduction, data_format,
            trunk_style, dtype: as in `BACSWinBackbone`.
        include_top: whether to end with the classifier head.
        weights: None or the path to a `.keras` / `.weights.h5` file.
        input_tensor: optional Keras tensor to use as the image input.
        input_shape: optional `(S, S, 3)`, S a multiple of 32 (default 224).
        pooling: `None`, `"avg"` or `"max"`; used when `include_top=False`.
        classes: number of classes.
        classifier_activation: activation of `predictions` (None: logits).
        name: model name.

    Returns:
        A functional `keras.Model` taking `preprocess_input` output
        (ImageNet mean/std).

    Example:
    >>> model = BACSWin(8, [1, 1, 1, 1], [2, 2, 2, 2], [1, 2, 2, 2],
    ...                 input_shape=(64, 64, 3), classes=10, reduction=4)
    >>> model.output_shape
    (None, 10)
    """
    trunk = dict(
        embed_dim=embed_dim,
        depths=depths,
        num_heads=num_heads,
        split_sizes=split_sizes,
        mlp_ratio=mlp_ratio,
        drop_path_rate=drop_path_rate,
        trunk_style=trunk_style,
        dtype=dtype,
    )
    return classifier.build_application(
        BACSWinBackbone,
        trunk,
        include_top,
        weights,
        input_tensor,
        input_shape,
        pooling,
        classes,
        classifier_activation,
        attention,
        reduction,
        data_format,
        name,
        top=transformer.head_norm,
    )


DESCRIPTION = """The official `CSWin_64_12211_tiny_224` (width {embed_dim}, depths
    {depths}, heads {num_heads}, split sizes {split_sizes}) with Bridge
    Attention in every block (the MLP output gated; docs: transformers);
    `attention=None` is the official model (22,320,552 parameters with 1000
    classes). Takes `preprocess_input` output (ImageNet mean/std)."""


def _variant(name, **kwargs):
    return BACSWin(**registry.variant_arguments(name, kwargs))


def BACSWinTiny(*, include_top=True, weights=None, classes=1000, **kwargs):
    return _variant(
        "ba_cswin_tiny", include_top=include_top, weights=weights, classes=classes, **kwargs
    )


registry.document_variant(BACSWinTiny, "BACSWin", "BA-CSWin-T", DESCRIPTION)
