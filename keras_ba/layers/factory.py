"""Attention modules chosen by name, with one signature for every kind."""

from keras_ba.layers.bridge_attention import BridgeAttention
from keras_ba.layers.squeeze_excite import SqueezeExcite

ATTENTION_TYPES = ("bav1", "bav2", "se", None)

_BUILDERS = {
    "bav1": lambda **kwargs: BridgeAttention(version="v1", **kwargs),
    "bav2": lambda **kwargs: BridgeAttention(version="v2", **kwargs),
    "se": lambda **kwargs: SqueezeExcite(**kwargs),
}

_SUFFIX = {"bav1": "ba", "bav2": "ba", "se": "se"}


def check_attention(attention):
    """Raises a clear error for an unknown attention name; returns it."""
    if attention not in ATTENTION_TYPES:
        raise ValueError(
            "Received an invalid value for `attention`, expected one of "
            f"{ATTENTION_TYPES}. Received: attention={attention!r}"
        )
    return attention


def get_attention_layer(attention, name=None, **kwargs):
    """Builds the attention layer called `attention`, or returns None.

    Args:
        attention: `"bav1"`, `"bav2"`, `"se"` or None (no attention).
        name: optional layer name.
        **kwargs: layer arguments (`reduction`, `hidden_activation`,
            `gate_activation`, `data_format`, `dtype`, ...). Bridge
            Attention-only arguments (`epsilon`, `momentum`) are dropped for
            `"se"`.

    Example:
    >>> layer = get_attention_layer("bav2", reduction=16)
    >>> layer.version
    'v2'
    """
    check_attention(attention)
    if attention is None:
        return None
    if attention == "se":
        kwargs.pop("epsilon", None)
        kwargs.pop("momentum", None)
    return _BUILDERS[attention](name=name, **kwargs)


def apply_attention(features, attention, name, **kwargs):
    """Recalibrates the last of a block's `features` with `attention`.

    The block hands all its intra-block features over; Bridge Attention uses
    them all, squeeze-and-excitation the last only, None returns the last
    unchanged. The layer is named `f"{name}_ba"` or `f"{name}_se"`.

    Example:
    >>> import keras
    >>> x1 = keras.Input((8, 8, 16))
    >>> x2 = keras.Input((8, 8, 64))
    >>> y = apply_attention([x1, x2], "bav1", name="conv2_block1")
    >>> tuple(y.shape)
    (None, 8, 8, 64)
    """
    check_attention(attention)
    if attention is None:
        return features[-1]
    layer = get_attention_layer(attention, name=f"{name}_{_SUFFIX[attention]}", **kwargs)
    return layer(list(features))
