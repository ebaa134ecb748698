"""keras_ba: Bridge Attention (BA-Net v1 and v2) for Keras 3."""

from keras_ba import applications, convert, layers
from keras_ba.layers import BridgeAttention, SqueezeExcite
from keras_ba.version import __version__

__all__ = ["BridgeAttention", "SqueezeExcite", "__version__", "applications", "convert", "layers"]
