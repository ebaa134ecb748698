"""Chooses the key map of a model's family and describes checkpoint layouts."""

import dataclasses

from keras_ba.convert import (
    common_keys,
    cswin_keys,
    efficientnet_keys,
    mobilenet_v3_keys,
    pvt_keys,
    regnet_keys,
    resnet_keys,
    swin_keys,
)
from keras_ba.convert.attention import detect_attention

# RegNet is detected first: its stem is named `stem_conv`, EfficientNet's marker.
_MODULES = (
    regnet_keys,
    resnet_keys,
    efficientnet_keys,
    mobilenet_v3_keys,
    swin_keys,
    pvt_keys,
    cswin_keys,
)
_FAMILIES = {module.FAMILY: module for module in _MODULES}
FAMILIES = tuple(_FAMILIES)

__all__ = ["FAMILIES", "KeyMap", "build_key_map", "detect_attention", "detect_family"]


@dataclasses.dataclass
class KeyMap:
    """The PyTorch keys a model expects.

    Attributes:
        family: `"resnet"`, `"efficientnet"` or `"mobilenet_v3"`.
        targets: ordered `{torch_key: Target(variable, transform, role)}`;
            `role` is `"trunk"`, `"attention"` or `"head"` (the classifier).
        head_prefix: prefix of the classifier keys (`"fc."`, `"_fc."`,
            `"classifier."`).
        classifier: the module of the last Linear (`"fc"`, `"_fc"`,
            `"classifier.3"`).
        has_head: whether the model has its classifier; without it the
            checkpoint's classifier keys are skipped, not unexpected.
        ignored: `(compiled pattern, reason)` pairs: checkpoint keys the
            family's layout carries but no model uses (skipped by name).
        unmapped: layers with weights but no counterpart in the layout
            (only with `allow_unmapped=True`; e.g. a user's own attention).
        rename: None, or `f(state) -> state` putting another layout's names
            on the family's (RegNet: torchvision's onto timm's).

    Example:
    >>> import re
    >>> key_map = KeyMap("resnet", {}, "fc.", "fc", True, ((re.compile(r"^gate"), "unused"),))
    >>> key_map.ignore_reason("gate1.0.weight"), key_map.ignore_reason("fc.weight")
    ('unused', None)
    """

    family: str
    targets: dict
    head_prefix: str
    classifier: str
    has_head: bool
    ignored: tuple = ()
    unmapped: list = dataclasses.field(default_factory=list)
    rename: object = None

    def ignore_reason(self, key):
        """Why `key` is skipped by name, or None if it is not (see `KeyMap`)."""
        for pattern, reason in self.ignored:
            if pattern.search(key):
                return reason
        return None


def detect_family(model):
    """Names the family of a keras_ba model from its layer names.

    Example:
    >>> from keras_ba.applications import BAResNet
    >>> detect_family(BAResNet([1, 1, 1, 1], [16, 16, 16, 16], block_type="basic",
    ...                        stem_filters=16, input_shape=(32, 32, 3)))
    'resnet'
    """
    names = {layer.name for layer in common_keys.leaf_layers(model)}
    for family, module in _FAMILIES.items():
        if module.MARKER in names:
            return family
    markers = " / ".join(repr(module.MARKER) for module in _MODULES)
    raise ValueError(
        f"Cannot tell the architecture family of model {model.name!r} from "
        f"its layer names (no {markers} layer). Build it with a keras_ba "
        f"application, or pass `family=` one of {FAMILIES}."
    )


def build_key_map(model, family=None, allow_unmapped=False):
    """Returns the `KeyMap` of `model` (family detected when None).

    Args:
        model: a keras_ba model.
        family: one of `FAMILIES`, or None to detect it.
        allow_unmapped: if True, layers with weights but no counterpart in
            the layout are listed in `KeyMap.unmapped` instead of raising.

    Example:
    >>> from keras_ba.applications import BAResNet
    >>> model = BAResNet([1, 1, 1, 1], [16, 16, 16, 16], block_type="basic",
    ...                  stem_filters=16, classes=10, input_shape=(32, 32, 3))
    >>> key_map = build_key_map(model)
    >>> tuple(key_map.targets["fc.weight"].variable.shape), key_map.targets["fc.weight"].role
    ((16, 10), 'head')
    """
    if family is None:
        family = detect_family(model)
    if family not in _FAMILIES:
        raise ValueError(
            "Received an invalid value for `family`, expected one of "
            f"{FAMILIES} or None. Received: family={family!r}"
        )
    module = _FAMILIES[family]
    targets, unmapped = common_keys.collect_keys(
        model, module.layer_keys_fn(model), family, allow_unmapped
    )
    targets = {
        key: target._replace(role=common_keys.HEAD)
        if key.startswith(module.HEAD_PREFIX)
        else target
        for key, target in targets.items()
    }
    has_head = any(layer.name == "predictions" for layer in common_keys.leaf_layers(model))
    return KeyMap(
        family,
        targets,
        module.HEAD_PREFIX,
        module.CLASSIFIER,
        has_head,
        module.IGNORED,
        unmapped,
        getattr(module, "rename_state", None),
    )


def family_trunk_styles(family):
    """`{trunk_style: (padding, epsilon)}` of `family`, None if undeclared.

    See `keras_ba.convert.trunk_check`; `"pytorch"` is the authors' conventions.

    Example:
    >>> family_trunk_styles("mobilenet_v3")["pytorch"]
    ('symmetric', 1e-05)
    """
    return getattr(_FAMILIES[family], "TRUNK_STYLES", None)
