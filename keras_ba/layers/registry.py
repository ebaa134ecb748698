"""Attention modules by name, class or callable, and where a block puts them.

Every builder's `attention=` goes through `resolve_attention`: a name
registered here (`"bav1"`, `"bav2"`, `"se"` built in), a `keras.layers.Layer`
subclass, a callable `(features, name, **kwargs) -> tensor`, or None (no
attention). A class is passed through unchanged, as timm's `get_attn` does:
a user's own module needs no edit of keras_ba.

Blocks call attention with the same keyword arguments whatever the kind
(`ATTENTION_KWARGS`: `reduction`, `hidden_activation`, `gate_activation`,
`data_format`, `dtype`), on the list of their intra-block features,
earliest first; the result replaces the last feature.

Example:
>>> attention_names()[:3]
('bav1', 'bav2', 'se')
"""

import re

import keras

from keras_ba.layers.bridge_attention import BridgeAttention
from keras_ba.layers.squeeze_excite import SqueezeExcite

# The keyword arguments every block passes to its attention.
ATTENTION_KWARGS = ("reduction", "hidden_activation", "gate_activation", "data_format", "dtype")
CUSTOM_SUFFIX = "attn"  # layer-name suffix of a class or callable given directly
_NAME = re.compile(r"[A-Za-z0-9_]+")


def _bridge_attention(version):
    def build(features, name, **kwargs):
        return BridgeAttention(version=version, name=name, **kwargs)(features)

    build.__name__ = f"bridge_attention_{version}"
    return build


# name -> (builder, layer-name suffix); BA layers keep the `_ba` suffix that
# the converter's key maps read.
_REGISTRY = {
    "bav1": (_bridge_attention("v1"), "ba"),
    "bav2": (_bridge_attention("v2"), "ba"),
    "se": (SqueezeExcite, "se"),
}


def _is_layer_class(value):
    return isinstance(value, type) and issubclass(value, keras.layers.Layer)


def register_attention(name, builder):
    """Makes `builder` available to every block as `attention=name`.

    Blocks then name its layer `f"{block}_{name}"` (e.g. `conv2_block1_cbam`).
    A class must be registered with `keras.saving.register_keras_serializable`
    too for models that use it to load from `.keras` files.

    Args:
        name: a new name of letters, digits and underscores (not `"none"`,
            the command line's spelling of no attention).
        builder: a `keras.layers.Layer` subclass, instantiated as
            `builder(name=..., **kwargs)` and called on the list of the
            block's features; or a callable `builder(features, name,
            **kwargs)` returning the recalibrated last feature. `kwargs` are
            `ATTENTION_KWARGS`.

    Raises:
        ValueError: for a name that is taken or malformed, or a builder that
            is neither a Layer subclass nor callable.

    Example:
    >>> from keras_ba.layers import SqueezeExcite
    >>> class BiasedSE(SqueezeExcite):
    ...     def __init__(self, **kwargs):
    ...         super().__init__(use_bias=True, **kwargs)
    >>> register_attention("biased_se", BiasedSE)
    >>> "biased_se" in attention_names()
    True
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name.lower() == "none":
        raise ValueError(
            "Received an invalid value for `name`, expected a non-empty string of "
            "letters, digits and underscores other than 'none'. "
            f"Received: name={name!r}"
        )
    if name in _REGISTRY:
        raise ValueError(
            f"An attention named {name!r} is already registered "
            f"(registered: {attention_names()}). Choose another name."
        )
    if not (_is_layer_class(builder) or _is_builder_function(builder)):
        raise ValueError(
            "Received an invalid value for `builder`, expected a "
            "keras.layers.Layer subclass or a callable (features, name, "
            f"**kwargs) -> tensor. Received: builder={builder!r}"
        )
    _REGISTRY[name] = (builder, name)


def attention_names():
    """The registered attention names, built-in ones first.

    Example:
    >>> attention_names()[:3]
    ('bav1', 'bav2', 'se')
    """
    return tuple(_REGISTRY)


def _is_builder_function(value):
    # A Layer instance is callable too, but one instance would be shared
    # (weights and all) by every block.
    return (
        callable(value)
        and not isinstance(value, keras.layers.Layer)
        and not (isinstance(value, type))
    )


def resolve_attention(attention):
    """Returns `(builder, suffix)` for `attention`, or None for None.

    `builder(features, name, **kwargs)` returns the recalibrated last
    feature; `suffix` ends the attention layer's name.

    Raises:
        ValueError: for an unknown name, a Layer instance, or anything else
            that is not a Layer subclass or a callable.

    Example:
    >>> builder, suffix = resolve_attention("bav2")
    >>> suffix
    'ba'
    """
    if attention is None:
        return None
    if isinstance(attention, str):
        if attention not in _REGISTRY:
            raise ValueError(
                "Received an invalid value for `attention`, expected one of "
                f"{attention_names()}, None, a keras.layers.Layer subclass or "
                f"a callable. Received: attention={attention!r}"
            )
        builder, suffix = _REGISTRY[attention]
    elif _is_layer_class(attention) or _is_builder_function(attention):
        builder, suffix = attention, CUSTOM_SUFFIX
    elif isinstance(attention, keras.layers.Layer):
        raise ValueError(
            "Received a layer instance for `attention`; every block needs its "
            f"own layer: pass the class ({type(attention).__name__}) instead."
        )
    else:
        raise ValueError(
            "Received an invalid value for `attention`, expected one of "
            f"{attention_names()}, None, a keras.layers.Layer subclass or a "
            f"callable. Received: attention={attention!r}"
        )
    if _is_layer_class(builder):
        return _layer_builder(builder), suffix
    return builder, suffix


def _layer_builder(layer_class):
    def build(features, name, **kwargs):
        return layer_class(name=name, **kwargs)(features)

    return build


def apply_attention(features, attention, name, *, fallback=None, overrides=None, **kwargs):
    """The one rule for where attention goes in a block.

    The block hands over its intra-block features (earliest first); the
    result replaces the last one:

    - `attention=None`: the last feature, unchanged.
    - a name in `overrides` (a family's own layout for a name, e.g.
      EfficientNet's `"se"` is `keras.applications`' SE):
      `overrides[name](features, layer_name)`.
    - a single feature and a `fallback`: the family's single-feature
      fallback, `fallback(features, name)` (the authors keep SE in blocks
      that have one conv output: Bridge Attention needs two or more).
    - otherwise: the resolved attention over all features, called with
      `kwargs` (`ATTENTION_KWARGS`); the layer is `f"{name}_{suffix}"`
      (`_ba` for Bridge Attention, `_se`, the registered name, or `_attn`).

    Example:
    >>> x1 = keras.Input((8, 8, 16))
    >>> x2 = keras.Input((8, 8, 64))
    >>> y = apply_attention([x1, x2], "bav1", name="conv2_block1")
    >>> tuple(y.shape)
    (None, 8, 8, 64)
    """
    features = list(features)
    resolved = resolve_attention(attention)
    if resolved is None:
        return features[-1]
    builder, suffix = resolved
    layer_name = f"{name}_{suffix}"
    if overrides and isinstance(attention, str) and attention in overrides:
        return overrides[attention](features, layer_name)
    if len(features) == 1 and fallback is not None:
        return fallback(features, name)
    return builder(features, layer_name, **kwargs)


def serialize_attention(attention):
    """Config value of `attention`: the name, or Keras' registered name.

    Example:
    >>> serialize_attention("bav1"), serialize_attention(None)
    ('bav1', None)
    """
    if attention is None or isinstance(attention, str):
        return attention
    return {"registered_attention": keras.saving.get_registered_name(attention)}


def deserialize_attention(config):
    """Inverse of `serialize_attention`.

    Example:
    >>> deserialize_attention({"registered_attention": "keras_ba>SqueezeExcite"})
    <class 'keras_ba.layers.squeeze_excite.SqueezeExcite'>
    """
    if not isinstance(config, dict):
        return config
    registered = config.get("registered_attention")
    found = keras.saving.get_registered_object(registered)
    if found is None:
        raise ValueError(
            f"Cannot find the attention {registered!r} of this model: register "
            "the class or function with "
            "`keras.saving.register_keras_serializable` before loading."
        )
    return found
