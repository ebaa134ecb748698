"""BA-PVT: Pyramid Vision Transformer v1 with Bridge Attention.

The trunk is the official PVT v1 (whai362/PVT, `classification/pvt.py`,
`PyramidVisionTransformer`), computed on channels_last tokens:

- four stages, each a patch embedding (`patch_embed{i}_proj`, a Conv2D
  with kernel = stride, 4 then 2, and `patch_embed{i}_norm`, LayerNorm
  epsilon 1e-5), a learned position embedding (`pos_embed{i}`), then
  transformer blocks `block{i}_{j}`;
- the last stage prepends the class token (`cls_token`) before its
  position embedding, whose first entry is the class slot;
- blocks: `x + SRA(LN1(x))`, `x + MLP(LN2(x))`, block LayerNorms with
  epsilon 1e-6 (the official `norm_layer`), MLP ratios 8, 8, 4, 4, exact
  GELU; spatial-reduction attention (`SpatialReductionAttention`) with
  ratios 8, 4, 2, 1;
- at another input size than `pos_embed_size`, the position embeddings are
  resized bilinearly (`align_corners=False`) as the reference does (where
  the reference fails, e.g. stage 2 at twice the size, with the same resize).

The backbone's output and `pyramid_outputs["P5"]` are the last stage's
patch tokens as a `(batch, H/32, W/32, C)` map; `P2` ... `P4` are the other
stages' outputs (strides 4, 8, 16). The classifier head is the reference's:
final LayerNorm `norm` (epsilon 1e-6) on the class token, then
`predictions`.

Bridge Attention sits in every block (`keras_ba.applications.transformer`):
it bridges the attention branch, the MLP hidden activation and the MLP
output, and gates the MLP output before the residual add;
`attention="se"` puts SE there and `attention=None` is the official model.

Reference:
    Wang et al., "Pyramid Vision Transformer: A Versatile Backbone for Dense
    Prediction without Convolutions", ICCV 2021.
"""

import keras
from keras import layers

from keras_ba import _validation
from keras_ba.applications import classifier, registry, transformer
from keras_ba.applications.backbone import Backbone, start
from keras_ba.applications.preprocessing import preprocess_input
from keras_ba.applications.pvt_layers import (
    ClassToken,
    PositionEmbedding,
    SpatialReductionAttention,
)

__all__ = ["BAPVT", "BAPVTBackbone", "BAPVTSmall", "BAPVTTiny", "preprocess_input"]

NORM_EPSILON = 1e-6  # blocks and final norm (the official norm_layer)
PATCH_NORM_EPSILON = 1e-5  # patch embeddings: PyTorch's default LayerNorm
# size -> depths, read from the table of named models.
VARIANTS = {
    entry.name[len("ba_pvt_") :]: dict(entry.arguments)
    for entry in registry.MODELS.values()
    if entry.family == "pvt"
}
DEFAULTS = dict(
    embed_dims=(64, 128, 320, 512),
    num_heads=(1, 2, 5, 8),
    mlp_ratios=(8, 8, 4, 4),
    sr_ratios=(8, 4, 2, 1),
)


def _check_lists(embed_dims, depths, num_heads, mlp_ratios, sr_ratios):
    values = {}
    for name, value in (
        ("embed_dims", embed_dims),
        ("depths", depths),
        ("num_heads", num_heads),
        ("mlp_ratios", mlp_ratios),
        ("sr_ratios", sr_ratios),
    ):
        values[name] = _validation.check_int_list(value, name, length=4)
    for dim, heads in zip(values["embed_dims"], values["num_heads"], strict=True):
        if dim % heads:
            raise ValueError(
                f"Received embed_dims={embed_dims!r} and num_heads={num_heads!r}: "
                "every stage's heads must divide its width."
            )
    if values["sr_ratios"][-1] != 1:
        raise ValueError(
            f"Received sr_ratios={sr_ratios!r}: the last stage holds the class "
            "token, so its ratio must be 1 (as in the reference)."
        )
    return values


def _check_image(image_shape, pos_embed_size, patch_size):
    multiple = patch_size * 8
    if any(side is None or side % multiple for side in image_shape[:2]):
        raise ValueError(
            f"Received image_shape={tuple(image_shape)!r}: PVT needs a known height "
            f"and width, multiples of {multiple} (patch_size * 8)."
        )
    if pos_embed_size % multiple:
        raise ValueError(
            f"Received pos_embed_size={pos_embed_size!r}, expected a multiple of {multiple}."
        )


def _block(x, grid, heads, sr_ratio, mlp_ratio, attend, rate, name, dtype):
    """One PVT block: `x + SRA(LN1(x))`, then the shared residual MLP."""
    normed = transformer.layer_norm(f"{name}_norm1", dtype, NORM_EPSILON)(x)
    branch = SpatialReductionAttention(
        heads, sr_ratio, grid if sr_ratio > 1 else None, dtype=dtype, name=f"{name}_attn"
    )(normed)
    return transformer.residual_mlp(
        x,
        branch,
        mlp_ratio=mlp_ratio,
        attend=attend,
        name=name,
        drop_path_rate=rate,
        dtype=dtype,
        epsilon=NORM_EPSILON,
    )


def _embed(x, stage, dim, patch, grid, stored, resize, dtype):
    """Patch embedding, class token (last stage) and position embedding."""
    x = layers.Conv2D(dim, patch, strides=patch, dtype=dtype, name=f"patch_embed{stage}_proj")(x)
    x = layers.Reshape((grid[0] * grid[1], dim), dtype=dtype, name=f"patch_embed{stage}_flatten")(x)
    x = transformer.layer_norm(f"patch_embed{stage}_norm", dtype, PATCH_NORM_EPSILON)(x)
    prefix = 0
    if stage == 4:
        x = ClassToken(dtype=dtype, name="cls_token")(x)
        prefix = 1
    return PositionEmbedding(grid, stored, prefix, resize, dtype=dtype, name=f"pos_embed{stage}")(x)


@keras.saving.register_keras_serializable(package="keras_ba")
class BAPVTBackbone(Backbone):
    """PVT v1 trunk (four stages of spatial-reduction attention) with attention.

    See the module docstring for the data flow and where attention sits.

    Args:
        depths: blocks per stage (4 values; Tiny 2-2-2-2, Small 3-4-6-3).
        embed_dims: stage widths (64, 128, 320, 512).
        num_heads: heads per stage (1, 2, 5, 8).
        mlp_ratios: MLP hidden width over the stage width (8, 8, 4, 4).
        sr_ratios: spatial-reduction ratios (8, 4, 2, 1; the last must be 1).
        patch_size: stride of the first patch embedding (4).
        pos_embed_size: image side the position embeddings are stored for
            (the reference's `img_size`, 224); another `image_shape`
            resizes them.
        drop_path_rate: stochastic depth of the last block (linear schedule).
        attention: `"bav2"` (default), `"bav1"`, `"se"`, another registered
            name, a `keras.layers.Layer` subclass, a callable, or None (the
            official PVT).
        reduction: attention reduction ratio.
        image_shape: `(H, W, 3)`, sides multiples of `patch_size * 8`;
            default `(pos_embed_size, pos_embed_size, 3)`.
        input_tensor: optional Keras tensor to build on.
        data_format: None or `"channels_last"` (tokens are channels last).
        trunk_style: `"pytorch"`, the only style (the official trunk).
        dtype: dtype policy of every layer.
        **kwargs: `name`, `trainable`.

    Example:
    >>> backbone = BAPVTBackbone([1, 1, 1, 1], embed_dims=[8, 16, 16, 16],
    ...                          num_heads=[1, 2, 2, 2], pos_embed_size=32,
    ...                          image_shape=(64, 32, 3), reduction=4)
    >>> {k: tuple(v.shape) for k, v in backbone.pyramid_outputs.items()}
    {'P2': (None, 16, 8, 8), 'P3': (None, 8, 4, 16), 'P4': (None, 4, 2, 16), 'P5': (None, 2, 1, 16)}
    """

    def __init__(
        self,
        depths=VARIANTS["tiny"]["depths"],
        embed_dims=DEFAULTS["embed_dims"],
        num_heads=DEFAULTS["num_heads"],
        mlp_ratios=DEFAULTS["mlp_ratios"],
        sr_ratios=DEFAULTS["sr_ratios"],
        patch_size=4,
        pos_embed_size=224,
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
        transformer.check_trunk_style(trunk_style, "PVT")
        data_format = transformer.check_channels_last(data_format, "PVT")
        spec = _check_lists(embed_dims, depths, num_heads, mlp_ratios, sr_ratios)
        _validation.check_positive_int(patch_size, "patch_size")
        _validation.check_positive_int(pos_embed_size, "pos_embed_size")
        rates = transformer.drop_path_rates(
            spec["depths"], transformer.check_rate(drop_path_rate, "drop_path_rate")
        )
        if image_shape is None and input_tensor is None:
            image_shape = (pos_embed_size, pos_embed_size, 3)
        begin = start(attention, reduction, image_shape, input_tensor, data_format, 32, "pvt")
        _check_image(begin.image_shape, pos_embed_size, patch_size)
        attend = transformer.attention_builder(attention, reduction, dtype=dtype)

        # === Functional Model ===
        x = begin.images
        height, width = begin.image_shape[:2]
        stored_side = pos_embed_size // patch_size
        first_count = stored_side**2
        pyramid_outputs = {}
        for index in range(4):
            stage, patch = index + 1, patch_size if index == 0 else 2
            stride = patch_size * 2**index
            grid = (height // stride, width // stride)
            stored = (stored_side // 2**index,) * 2
            # The reference adds the stored embedding unchanged when a stage
            # has as many patches as stage 1 had at the construction size
            # (`_get_pos_embed`); it fails where that count is not the
            # stage's own, and there the embedding is resized instead.
            count = grid[0] * grid[1]
            resize = count != first_count or count != stored[0] * stored[1]
            dim = spec["embed_dims"][index]
            x = _embed(x, stage, dim, patch, grid, stored, resize, dtype)
            for block in range(spec["depths"][index]):
                x = _block(
                    x,
                    grid,
                    spec["num_heads"][index],
                    spec["sr_ratios"][index],
                    spec["mlp_ratios"][index],
                    attend,
                    rates[index][block],
                    f"block{stage}_{block}",
                    dtype,
                )
            if stage == 4:
                self.class_token = layers.Cropping1D(
                    (0, grid[0] * grid[1]), dtype=dtype, name="cls_select"
                )(x)
                x = layers.Cropping1D((1, 0), dtype=dtype, name="patch_select")(x)
            x = layers.Reshape((*grid, dim), dtype=dtype, name=f"stage{stage}_map")(x)
            pyramid_outputs[f"P{index + 2}"] = x
        super().__init__(begin, x, pyramid_outputs, dtype=dtype, **kwargs)

        # === Config ===
        self.depths = spec["depths"]
        self.embed_dims = spec["embed_dims"]
        self.num_heads = spec["num_heads"]
        self.mlp_ratios = spec["mlp_ratios"]
        self.sr_ratios = spec["sr_ratios"]
        self.patch_size = patch_size
        self.pos_embed_size = pos_embed_size
        self.drop_path_rate = drop_path_rate
        self.trunk_style = trunk_style

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "depths": self.depths,
                "embed_dims": self.embed_dims,
                "num_heads": self.num_heads,
                "mlp_ratios": self.mlp_ratios,
                "sr_ratios": self.sr_ratios,
                "patch_size": self.patch_size,
                "pos_embed_size": self.pos_embed_size,
                "drop_path_rate": self.drop_path_rate,
                "trunk_style": self.trunk_style,
            }
        )
        return config


# === Classifier ===


def class_token_top(backbone, x):
    """The reference's head input: final `norm` (epsilon 1e-6) on the class token.

    Returned as a `(batch, 1, 1, C)` map, so that `build_classifier`'s
    `avg_pool` passes it through unchanged to `predictions` (LayerNorm acts
    per token: normalising the class token alone equals the reference's
    norm over all tokens followed by taking token 0).

    Example:
    >>> backbone = BAPVTBackbone([1, 1, 1, 1], embed_dims=[8, 8, 8, 8],
    ...                          num_heads=[1, 1, 1, 1], pos_embed_size=32,
    ...                          attention=None)
    >>> tuple(class_token_top(backbone, backbone.output).shape)
    (None, 1, 1, 8)
    """
    del x  # the head reads the class token, not the patch map
    dtype = backbone.dtype_policy
    token = transformer.layer_norm("norm", dtype, NORM_EPSILON)(backbone.class_token)
    return layers.Reshape((1, 1, token.shape[-1]), dtype=dtype, name="cls_map")(token)


def BAPVT(
    depths,
    embed_dims=DEFAULTS["embed_dims"],
    num_heads=DEFAULTS["num_heads"],
    mlp_ratios=DEFAULTS["mlp_ratios"],
    sr_ratios=DEFAULTS["sr_ratios"],
    patch_size=4,
    pos_embed_size=224,
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
    dtype=None,
    name="ba_pvt",
):
    """Builds a PVT v1 classifier with Bridge Attention (or SE, or none).

    `BAPVTBackbone` plus the reference head (`norm` on the class token,
    `predictions`), in one flat model. With `include_top=False`, `pooling`
    (`"avg"`, `"max"`) pools the last stage's patch map.

    Args:
        depths ... drop_path_rate, attention, reduction, data_format,
            trunk_style, dtype: as in `BAPVTBackbone`.
        include_top: whether to end with the classifier head.
        weights: None or the path to a `.keras` / `.weights.h5` file.
        input_tensor: optional Keras tensor to use as the image input.
        input_shape: optional `(H, W, 3)` (default: `pos_embed_size` square).
        pooling: `None`, `"avg"` or `"max"`; used when `include_top=False`.
        classes: number of classes.
        classifier_activation: activation of `predictions` (None: logits).
        name: model name.

    Returns:
        A functional `keras.Model` taking `preprocess_input` output
        (ImageNet mean/std).

    Example:
    >>> model = BAPVT([1, 1, 1, 1], embed_dims=[8, 8, 8, 8], num_heads=[1, 1, 1, 1],
    ...               pos_embed_size=32, classes=10, reduction=4)
    >>> model.output_shape
    (None, 10)
    """
    trunk = dict(
        depths=depths,
        embed_dims=embed_dims,
        num_heads=num_heads,
        mlp_ratios=mlp_ratios,
        sr_ratios=sr_ratios,
        patch_size=patch_size,
        pos_embed_size=pos_embed_size,
        drop_path_rate=drop_path_rate,
        trunk_style=trunk_style,
        dtype=dtype,
    )
    return classifier.build_application(
        BAPVTBackbone,
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
        top=class_token_top,
    )


# === Named variants ===

DESCRIPTION = """The official PVT v1 (depths {depths}; widths 64-128-320-512) with
    Bridge Attention in every block (the MLP output gated; docs:
    transformers); `attention="se"` puts SE at the same spot, None is the
    official model. Takes `preprocess_input` output (ImageNet mean/std);
    224 x 224 by default (other sizes resize the position embeddings)."""


def _variant(name, **kwargs):
    return BAPVT(**registry.variant_arguments(name, kwargs))


def BAPVTTiny(*, include_top=True, weights=None, classes=1000, **kwargs):
    return _variant(
        "ba_pvt_tiny", include_top=include_top, weights=weights, classes=classes, **kwargs
    )


def BAPVTSmall(*, include_top=True, weights=None, classes=1000, **kwargs):
    return _variant(
        "ba_pvt_small", include_top=include_top, weights=weights, classes=classes, **kwargs
    )


for _function, _title in ((BAPVTTiny, "BA-PVT-Tiny"), (BAPVTSmall, "BA-PVT-Small")):
    registry.document_variant(_function, "BAPVT", _title, DESCRIPTION)
