"""keras_ba: Bridge Attention (BA-Net v1 and v2) for Keras 3.

Sub-packages are imported on first use (`keras_ba.layers`,
`keras_ba.applications`, ...), so `import keras_ba` and the `keras-ba`
command line start quickly: importing Keras starts its backend, and that
is left to the first name that needs it. When Keras is already imported,
`import keras_ba` also registers the layers, so that
`import keras, keras_ba` is enough before `keras.saving.load_model` of a
keras_ba file (otherwise `import keras_ba.layers`).

Example:
>>> import keras_ba
>>> keras_ba.__version__
'0.1.0'
>>> from keras_ba import BridgeAttention, layers
>>> layers.BridgeAttention is BridgeAttention
True
"""

import importlib
import sys

from keras_ba.version import __version__

_SUBPACKAGES = ("analysis", "applications", "cli", "convert", "extras", "layers", "training")
_NAMES = {"BridgeAttention": "keras_ba.layers", "SqueezeExcite": "keras_ba.layers"}

__all__ = ["BridgeAttention", "SqueezeExcite", "__version__", "applications", "convert", "layers"]


def __getattr__(name):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"keras_ba.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'keras_ba' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_SUBPACKAGES) | set(_NAMES))


if "keras" in sys.modules:  # registering the layers costs nothing more then
    importlib.import_module("keras_ba.layers")
