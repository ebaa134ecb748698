"""Chooses the key map of a model's family and describes checkpoint layouts."""

import dataclasses

from keras_ba.convert import efficientnet_keys, resnet_keys

_FAMILIES = {
    resnet_keys.FAMILY: (resnet_keys.resnet_key_map, resnet_keys.HEAD_PREFIX, "conv1_conv"),
    efficientnet_keys.FAMILY: (
        efficientnet_keys.efficientnet_key_map,
        efficientnet_keys.HEAD_PREFIX,
        "stem_conv",
    ),
}
FAMILIES = tuple(_FAMILIES)


@dataclasses.dataclass
class KeyMap:
    """The PyTorch keys a model expects.

    Attributes:
        family: `"resnet"` or `"efficientnet"`.
        targets: ordered `{torch_key: Target(variable, transform)}`.
        head_prefix: prefix of the classifier keys (`"fc."`, `"_fc."`).
        has_head: whether the model has its classifier; without it the
            checkpoint's classifier keys are skipped, not unexpected.
    """

    family: str
    targets: dict
    head_prefix: str
    has_head: bool


def detect_family(model):
    """Names the family of a keras_ba model from its layer names.

    Example:
    >>> from keras_ba.applications import BAResNet
    >>> detect_family(BAResNet([1, 1, 1, 1], [16, 16, 16, 16], block_type="basic",
    ...                        stem_filters=16, input_shape=(32, 32, 3)))
    'resnet'
    """
    names = {layer.name for layer in model.layers}
    for family, (_, _, marker) in _FAMILIES.items():
        if marker in names:
            return family
    raise ValueError(
        f"Cannot tell the architecture family of model {model.name!r} from "
        f"its layer names (no {' / '.join(repr(m) for *_, m in _FAMILIES.values())} "
        f"layer). Build it with a keras_ba application, or pass "
        f"`family=` one of {FAMILIES}."
    )


def build_key_map(model, family=None):
    """Returns the `KeyMap` of `model` (family detected when None).

    Example:
    >>> from keras_ba.applications import BAResNet
    >>> model = BAResNet([1, 1, 1, 1], [16, 16, 16, 16], block_type="basic",
    ...                  stem_filters=16, classes=10, input_shape=(32, 32, 3))
    >>> tuple(build_key_map(model).targets["fc.weight"].variable.shape)
    (16, 10)
    """
    if family is None:
        family = detect_family(model)
    if family not in _FAMILIES:
        raise ValueError(
            "Received an invalid value for `family`, expected one of "
            f"{FAMILIES} or None. Received: family={family!r}"
        )
    key_map_fn, head_prefix, _ = _FAMILIES[family]
    has_head = any(layer.name == "predictions" for layer in model.layers)
    return KeyMap(family, key_map_fn(model), head_prefix, has_head)


def detect_attention(keys):
    """Attention layout of a state dict's keys: `"bav1"`, `"bav2"`, `"se"`, None.

    BAv1 checkpoints have `pre_fusions`/`cur_fusion`, BAv2 ones `fusions` and
    `proj`, the SE baseline `se.fc`; None means no attention keys at all (a
    plain ResNet). EfficientNet checkpoints with BA blocks count as BAv1.

    Example:
    >>> detect_attention(["layer1.0.ba.fusions.0.0.weight", "fc.weight"])
    'bav2'
    """
    keys = list(keys)
    if any(".cur_fusion." in key or ".pre_fusions." in key for key in keys):
        return "bav1"
    if any(".fusions." in key for key in keys):
        return "bav2"
    if any(".se.fc." in key or ".att.0." in key for key in keys):
        return "se"
    return None
