"""Attention layers: `BridgeAttention`, `SqueezeExcite`, chosen by name."""

from keras_ba.layers.bridge_attention import BridgeAttention
from keras_ba.layers.factory import (
    ATTENTION_TYPES,
    apply_attention,
    get_attention_layer,
)
from keras_ba.layers.pixel_gate import PixelGate
from keras_ba.layers.squeeze_excite import SqueezeExcite

__all__ = [
    "ATTENTION_TYPES",
    "BridgeAttention",
    "PixelGate",
    "SqueezeExcite",
    "apply_attention",
    "get_attention_layer",
]
