"""Attention layers (`BridgeAttention`, `SqueezeExcite`) and their registry.

Example:
>>> from keras_ba.layers import attention_names
>>> attention_names()[:3]
('bav1', 'bav2', 'se')
"""

from keras_ba.layers.bridge_attention import BridgeAttention
from keras_ba.layers.pixel_gate import PixelGate
from keras_ba.layers.registry import (
    ATTENTION_KWARGS,
    apply_attention,
    attention_names,
    register_attention,
    resolve_attention,
)
from keras_ba.layers.squeeze_excite import SqueezeExcite

__all__ = [
    "ATTENTION_KWARGS",
    "BridgeAttention",
    "PixelGate",
    "SqueezeExcite",
    "apply_attention",
    "attention_names",
    "register_attention",
    "resolve_attention",
]
