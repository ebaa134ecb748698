"""Which trunk a model has, and whether it computes the authors' function.

Weight shapes cannot tell two trunks apart when they differ only in how
strided convs are padded and in the BatchNorm epsilon, yet both change the
function: BA-MobileNetV3 converted into the `keras.applications` trunk
(TensorFlow "same" padding, epsilon 1e-3) moves the authors' full-size
logits by up to 1.27. Each family's key module declares `TRUNK_STYLES`,
`{trunk_style: (padding, epsilon)}` with `"pytorch"` the authors'
conventions; `check_trunk` reads the model's layers and names its trunk.
Padding of a strided conv (kernel > 1): `"same"` (TensorFlow's, the extra
row and column bottom/right), `"symmetric"` (a symmetric `ZeroPadding2D`
then `"valid"`, PyTorch's) or `"valid"` (none).
"""

import dataclasses

from keras import layers

from keras_ba import _keras_compat
from keras_ba.convert.common_keys import leaf_layers

PADDING_NAMES = {
    "same": "TensorFlow 'same' padding",
    "symmetric": "symmetric padding",
    "valid": "no padding",
}


@dataclasses.dataclass
class TrunkCheck:
    """What `check_trunk` found.

    Attributes:
        style: the `trunk_style` the model's conventions match (`"keras"`,
            `"pytorch"`, or both joined by `"="` where a family's two
            trunks are the same), or `"custom"`.
        matches_authors: whether the trunk has the authors' conventions.
        summary: one line for the conversion report.

    Example:
    >>> TrunkCheck("keras", False, "trunk_style='keras': ...").matches_authors
    False
    """

    style: str
    matches_authors: bool
    summary: str


def trunk_conventions(model):
    """`(paddings, epsilons)`: sorted sets over strided convs and BatchNorms.

    Example:
    >>> from keras_ba.applications import BAResNet
    >>> model = BAResNet([1], [8], block_type="basic", stem_filters=8,
    ...                  reduction=4, input_shape=(32, 32, 3), classes=2)
    >>> trunk_conventions(model)
    (('symmetric',), (1e-05,))
    """
    paddings, epsilons = set(), set()
    for layer in leaf_layers(model):
        if isinstance(layer, layers.BatchNormalization):
            epsilons.add(float(layer.epsilon))
        elif isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D)):
            if max(layer.strides) > 1 and max(layer.kernel_size) > 1:
                paddings.add(_padding(layer))
    return tuple(sorted(paddings)), tuple(sorted(epsilons))


def _padding(conv):
    if conv.padding == "same":
        return "same"
    source = _keras_compat.producing_layer(conv.input)
    if isinstance(source, layers.ZeroPadding2D):
        (top, bottom), (left, right) = source.padding
        if top == bottom and left == right:
            return "symmetric"
    return "valid"


def check_trunk(model, trunk_styles, family):
    """Names the trunk of `model` among a family's `trunk_styles`.

    Args:
        model: a keras_ba model.
        trunk_styles: `{trunk_style: (padding, epsilon)}`; `"pytorch"` is
            the authors' conventions.
        family: the family name, for the summary.

    Returns:
        A `TrunkCheck`.

    Example:
    >>> from keras_ba.applications import BAResNet
    >>> model = BAResNet([1], [8], block_type="basic", stem_filters=8,
    ...                  reduction=4, input_shape=(32, 32, 3), classes=2)
    >>> check_trunk(model, {"pytorch": ("symmetric", 1e-5)}, "resnet").style
    'pytorch'
    """
    paddings, epsilons = trunk_conventions(model)
    found = _describe(paddings, epsilons)
    styles = [
        style
        for style, (padding, epsilon) in trunk_styles.items()
        if set(paddings) <= {padding} and set(epsilons) <= {epsilon}
    ]
    authors = trunk_styles["pytorch"]
    matches = "pytorch" in styles
    style = "=".join(styles) or "custom"
    if matches:
        same = " (the same trunk as 'keras' for this family)" if len(styles) > 1 else ""
        summary = (
            f"trunk_style={style.split('=')[-1]!r}{same}: {found}, the authors' "
            "conventions: computes the function of their PyTorch model"
        )
    else:
        summary = (
            f"trunk_style={style!r}: {found}, but the authors' {family} uses "
            f"{_describe([authors[0]], [authors[1]])}: the converted model computes a "
            "DIFFERENT function; build it with trunk_style='pytorch'"
        )
    return TrunkCheck(style, matches, summary)


def _describe(paddings, epsilons):
    padding = " and ".join(PADDING_NAMES[p] for p in paddings) or "no strided conv"
    epsilon = ", ".join(f"{e:g}" for e in epsilons) or "none"
    return f"{padding} at stride 2, BatchNorm epsilon {epsilon}"
