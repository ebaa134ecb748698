"""BA-Swin: the official Swin Transformer with Bridge Attention in every block.

Data flow (microsoft/Swin-Transformer `models/swin_transformer.py`): a 4x4
patch-embedding conv + LayerNorm, four stages of blocks (window attention,
every other block on a cyclically shifted grid, then the MLP), a
PatchMerging between stages, and the head (LayerNorm -> mean over tokens ->
Linear). Where Bridge Attention goes in a block is the rule shared by the
BA transformers (`keras_ba.applications.transformer.residual_mlp`).

The trunk computes on `(batch, height, width, channels)` token grids; a
Dense applies to the last axis, and pooling over the grid is pooling over
the tokens, so every layer sees what it would see on `(batch, tokens,
channels)`. With `attention=None` the model is the official one: the same
parameters (Swin-T 28,288,354), and the official checkpoints load with
`keras_ba.convert.load_torch_weights`.
"""

import keras
from keras import layers

from keras_ba import _validation
from keras_ba.applications import classifier, registry, transformer
from keras_ba.applications.backbone import Backbone, start
from keras_ba.applications.swin_layers import SwinWindowAttention, stage_windows

DEFAULT_IMAGE_SHAPE = (224, 224, 3)


# === Blocks ===


def swin_block(x, *, num_heads, window_size, shift_size, mlp_ratio, attend, drop, name, dtype):
    """`x + Attn(LN1(x))`, then the shared `residual_mlp` (and its attention).

    Example:
    >>> from keras_ba.applications import transformer
    >>> attend = transformer.attention_builder("bav2", reduction=4)
    >>> y = swin_block(keras.Input((4, 4, 8)), num_heads=2, window_size=2, shift_size=1,
    ...                mlp_ratio=4, attend=attend, drop=0.0, name="stage1_block2", dtype=None)
    >>> tuple(y.shape)
    (None, 4, 4, 8)
    """
    normed = transformer.layer_norm(f"{name}_norm1", dtype)(x)
    branch = SwinWindowAttention(
        num_heads, window_size, shift_size, name=f"{name}_attn", dtype=dtype
    )(normed)
    return transformer.residual_mlp(
        x,
        branch,
        mlp_ratio=mlp_ratio,
        attend=attend,
        drop_path_rate=drop,
        name=name,
        dtype=dtype,
    )


def patch_merging(x, name, dtype):
    """Swin's PatchMerging: 2x2 neighbours concatenated as x0, x1, x2, x3.

    x0 = (even row, even col), x1 = (odd, even), x2 = (even, odd), x3 =
    (odd, odd); then LayerNorm(4C) and a bias-free Linear(4C -> 2C).

    Example:
    >>> tuple(patch_merging(keras.Input((4, 4, 8)), "stage1_merge", None).shape)
    (None, 2, 2, 16)
    """
    _, height, width, channels = x.shape
    x = layers.Reshape(
        (height // 2, 2, width // 2, 2, channels), dtype=dtype, name=f"{name}_split"
    )(x)
    # (rows, row parity, cols, col parity, C) -> (rows, cols, col parity, row parity, C)
    x = layers.Permute((1, 3, 4, 2, 5), dtype=dtype, name=f"{name}_order")(x)
    x = layers.Reshape((height // 2, width // 2, 4 * channels), dtype=dtype, name=f"{name}_cat")(x)
    x = transformer.layer_norm(f"{name}_norm", dtype)(x)
    return layers.Dense(
        2 * channels,
        use_bias=False,
        kernel_initializer=transformer.dense_init(),
        dtype=dtype,
        name=f"{name}_reduction",
    )(x)


# === Backbone ===


def check_swin_shape(image_shape, patch_size, depths, window_size):
    """Checks that every stage of a Swin at `image_shape` cuts into windows.

    Returns:
        The stage resolutions.

    Example:
    >>> check_swin_shape((224, 224, 3), 4, [2, 2, 6, 2], 7)
    [(56, 56), (28, 28), (14, 14), (7, 7)]
    """
    height, width = image_shape[:2]
    multiple = patch_size * 2 ** (len(depths) - 1)
    if height is None or width is None or height % multiple or width % multiple:
        raise ValueError(
            f"Swin needs a fixed image size whose sides are multiples of {multiple} "
            f"(patch_size * 2**(stages - 1)). Received: image_shape={tuple(image_shape)!r}; "
            "pass e.g. image_shape=(224, 224, 3)."
        )
    resolutions = []
    for stage, depth in enumerate(depths):
        size = (height // patch_size // 2**stage, width // patch_size // 2**stage)
        window, _ = stage_windows(size, window_size, depth)
        if size[0] % window or size[1] % window:
            raise ValueError(
                f"Swin stage {stage + 1} has a {size[0]}x{size[1]} grid, which does not "
                f"divide into {window}x{window} windows at image_shape={tuple(image_shape)!r}. "
                f"Use sides that make every stage a multiple of window_size={window_size}."
            )
        resolutions.append(size)
    return resolutions


@keras.saving.register_keras_serializable(package="keras_ba")
class BASwinTransformer(Backbone):
    """Swin Transformer trunk with Bridge Attention (or SE, or none) in every block.

    A functional model from images to the last stage's token grid
    `(batch, H/32, W/32, 8C)`, with `pyramid_outputs` `"P2"`..`"P5"`: the
    stage outputs (channels_last feature maps at strides 4 to 32, before
    each PatchMerging). Layer names: `patch_embed_proj`, `patch_embed_norm`,
    `stage{s}_block{i}_{norm1,attn,norm2,mlp_fc1,mlp_fc2,ba,se}`,
    `stage{s}_merge_{norm,reduction}`.

    Args:
        embed_dim: width C of the first stage (96 for Swin-T and Swin-S).
        depths: blocks per stage, e.g. `[2, 2, 6, 2]`.
        num_heads: heads per stage, e.g. `[3, 6, 12, 24]`.
        window_size: window side (7); a stage whose smaller side is at most
            the window uses one window of that side and no shift (the
            official rule).
        patch_size: side of the patch-embedding conv (4).
        mlp_ratio: hidden width of the MLPs over the channels (4).
        drop_path_rate: stochastic depth of the last block, rising linearly
            from 0 (the official schedule; 0.2 for Swin-T, 0.3 for Swin-S).
        attention: `"bav2"` (default), `"bav1"`, `"se"`, None (the official
            Swin), a registered name, a `keras.layers.Layer` subclass or a
            callable (see `keras_ba.applications.transformer`).
        reduction: attention reduction ratio over the MLP output's channels.
        image_shape: `(H, W, 3)`, fixed (the attention mask depends on it);
            None: `(224, 224, 3)`, or the shape of `input_tensor`.
        input_tensor: optional Keras tensor to build on.
        data_format: None or `"channels_last"` (the tokens' layout).
        trunk_style: `"pytorch"`, the only trunk of the transformers (the
            option name every family shares).
        dtype: dtype policy of every layer (None: the global policy).
        **kwargs: `name`, `trainable`.

    Reference:
        Liu et al., "Swin Transformer: Hierarchical Vision Transformer using
        Shifted Windows", ICCV 2021; Zhao et al., "BA-Net: Bridge Attention
        for Deep Convolutional Neural Networks", ECCV 2022.

    Example:
    >>> backbone = BASwinTransformer(embed_dim=8, depths=[1, 1], num_heads=[2, 2],
    ...                              window_size=2, reduction=4, image_shape=(32, 32, 3))
    >>> {k: tuple(v.shape) for k, v in backbone.pyramid_outputs.items()}
    {'P2': (None, 8, 8, 8), 'P3': (None, 4, 4, 16)}
    """

    def __init__(
        self,
        embed_dim=96,
        depths=(2, 2, 6, 2),
        num_heads=(3, 6, 12, 24),
        window_size=7,
        patch_size=4,
        mlp_ratio=4.0,
        drop_path_rate=0.1,
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
        transformer.check_trunk_style(trunk_style, "Swin")
        data_format = transformer.check_channels_last(data_format, "Swin")
        embed_dim = _validation.check_positive_int(embed_dim, "embed_dim")
        depths = _validation.check_int_list(depths, "depths")
        num_heads = _validation.check_int_list(num_heads, "num_heads", length=len(depths))
        window_size = _validation.check_positive_int(window_size, "window_size")
        patch_size = _validation.check_positive_int(patch_size, "patch_size")
        mlp_ratio = _validation.check_positive_number(mlp_ratio, "mlp_ratio")
        drop_path_rate = transformer.check_rate(drop_path_rate, "drop_path_rate")
        if image_shape is None and input_tensor is None:
            image_shape = DEFAULT_IMAGE_SHAPE
        begin = start(attention, reduction, image_shape, input_tensor, data_format, 32, "Swin")
        resolutions = check_swin_shape(begin.image_shape, patch_size, depths, window_size)

        # === Functional Model ===
        attend = transformer.attention_builder(attention, reduction, dtype=dtype)
        x = layers.Conv2D(
            embed_dim, patch_size, strides=patch_size, dtype=dtype, name="patch_embed_proj"
        )(begin.images)
        x = transformer.layer_norm("patch_embed_norm", dtype)(x)
        pyramid_outputs = {}
        rates = transformer.drop_path_rates(depths, drop_path_rate)
        for stage, (depth, heads, size) in enumerate(
            zip(depths, num_heads, resolutions, strict=True)
        ):
            window, shifts = stage_windows(size, window_size, depth)
            for index, shift in enumerate(shifts):
                x = swin_block(
                    x,
                    num_heads=heads,
                    window_size=window,
                    shift_size=shift,
                    mlp_ratio=mlp_ratio,
                    attend=attend,
                    drop=rates[stage][index],
                    name=f"stage{stage + 1}_block{index + 1}",
                    dtype=dtype,
                )
            pyramid_outputs[f"P{stage + 2}"] = x
            if stage < len(depths) - 1:
                x = patch_merging(x, f"stage{stage + 1}_merge", dtype)
        super().__init__(begin, x, pyramid_outputs, dtype=dtype, **kwargs)

        # === Config ===
        self.embed_dim = embed_dim
        self.depths = depths
        self.num_heads = num_heads
        self.window_size = window_size
        self.patch_size = patch_size
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
                "window_size": self.window_size,
                "patch_size": self.patch_size,
                "mlp_ratio": self.mlp_ratio,
                "drop_path_rate": self.drop_path_rate,
                "trunk_style": self.trunk_style,
            }
        )
        return config


# === Classifiers ===

# size -> architecture, read from the table of named models.
SWIN_VARIANTS = {
    entry.name[len("ba_swin_") :]: dict(entry.arguments)
    for entry in registry.MODELS.values()
    if entry.family == "swin"
}


def BASwinTransformerClassifier(
    embed_dim=96,
    depths=(2, 2, 6, 2),
    num_heads=(3, 6, 12, 24),
    window_size=7,
    patch_size=4,
    mlp_ratio=4.0,
    drop_path_rate=0.1,
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
    name="ba_swin",
):
    """Builds a Swin classifier with Bridge Attention (or SE, or none) in every block.

    `BASwinTransformer` plus the official head: LayerNorm (`norm`), the
    mean over tokens (`avg_pool`) and a Linear (`predictions`).

    Args:
        embed_dim, depths, num_heads, window_size, patch_size, mlp_ratio,
        drop_path_rate, attention, reduction, data_format, trunk_style: as
            in `BASwinTransformer`.
        include_top: whether to end with the head; otherwise `pooling`.
        weights: None or a `.keras` / `.weights.h5` file of the same
            architecture (official PyTorch checkpoints convert with
            `keras_ba.convert.load_torch_weights`).
        input_tensor: optional Keras tensor to use as the image input.
        input_shape: `(H, W, 3)`; default `(224, 224, 3)`.
        pooling: `None`, `"avg"` or `"max"` when `include_top=False`.
        classes: number of classes.
        classifier_activation: `"softmax"`, or None for logits.
        name: model name.

    Returns:
        A functional `keras.Model` whose input layer is named `"images"`.

    Example:
    >>> model = BASwinTransformerClassifier(16, [1, 1], [2, 2], window_size=2,
    ...                                     input_shape=(32, 32, 3), classes=5, reduction=4)
    >>> model.output_shape, model.get_layer("stage2_block1_ba").name
    ((None, 5), 'stage2_block1_ba')
    """
    trunk = dict(
        embed_dim=embed_dim,
        depths=depths,
        num_heads=num_heads,
        window_size=window_size,
        patch_size=patch_size,
        mlp_ratio=mlp_ratio,
        drop_path_rate=drop_path_rate,
        trunk_style=trunk_style,
    )
    return classifier.build_application(
        BASwinTransformer,
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


DESCRIPTION = """The official Swin Transformer (patch 4, window {window_size}, width
    {embed_dim}, depths {depths}, heads {num_heads}) with Bridge Attention in
    every block (the MLP output gated; docs: transformers); `attention="se"`
    puts SE at the same spot, None is the official model. Takes
    `preprocess_input` output (ImageNet mean/std); 224 x 224 by default."""


def _variant(name, **kwargs):
    return BASwinTransformerClassifier(**registry.variant_arguments(name, kwargs))


def BASwinTransformerTiny(*, include_top=True, weights=None, classes=1000, **kwargs):
    return _variant(
        "ba_swin_tiny", include_top=include_top, weights=weights, classes=classes, **kwargs
    )


def BASwinTransformerSmall(*, include_top=True, weights=None, classes=1000, **kwargs):
    return _variant(
        "ba_swin_small", include_top=include_top, weights=weights, classes=classes, **kwargs
    )


for _function, _title in (
    (BASwinTransformerTiny, "BA-Swin-T"),
    (BASwinTransformerSmall, "BA-Swin-S"),
):
    registry.document_variant(_function, "BASwinTransformerClassifier", _title, DESCRIPTION)
