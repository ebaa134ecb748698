"""keras_ba: Bridge Attention (BA-Net v1 and v2) for Keras 3.

Sub-packages are imported on first use (`keras_ba.layers`,
`keras_ba.applications`, ...), so `import keras_ba` and the `keras-ba`
command line start quickly: importing Keras starts its backend, and that
is left to the first name that needs it. `keras_ba.load_model(path)`
imports what a `.keras` file needs and loads it in any process. When Keras
is already imported, `import keras_ba` also registers the layers and
models, so `import keras, keras_ba` is enough before
`keras.saving.load_model` too.

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

from keras_ba.utils.lazy import lazy_exports
from keras_ba.version import __version__

_SUBPACKAGES = (
    "analysis",
    "applications",
    "cli",
    "convert",
    "cv",
    "data",
    "errors",
    "export",
    "extras",
    "layers",
    "options",
    "runs",
    "saving",
    "training",
    "utils",
)
__getattr__, __dir__, _exported = lazy_exports(
    "keras_ba",
    {
        "BridgeAttention": "keras_ba.layers",
        "SqueezeExcite": "keras_ba.layers",
        "load_model": "keras_ba.saving",
        **{name: f"keras_ba.{name}" for name in _SUBPACKAGES},
    },
)
__all__ = ["BridgeAttention", "SqueezeExcite", "__version__", "load_model"] + list(_SUBPACKAGES)

if "keras" in sys.modules:  # registering the classes costs nothing more then
    importlib.import_module("keras_ba.saving").register_serializables()
