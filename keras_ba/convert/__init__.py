"""Load the Bridge Attention authors' PyTorch checkpoints into keras_ba models.

`load_torch_weights(model, source)` reads a `.pth`/`.pt` (safely, with
`torch.load(weights_only=True)`), `.safetensors` or `.npz` file, or a
mapping of names to arrays, checks it against the model as a whole and
assigns it. The per-family key maps live in `resnet_keys` and
`efficientnet_keys`; `keras-ba convert` is the command-line front end.

Example:
>>> from keras_ba.applications import BAResNet50
>>> from keras_ba.convert import load_torch_weights
>>> model = BAResNet50(attention="bav1")  # doctest: +SKIP
>>> print(load_torch_weights(model, "ba_resnet50.pth"))  # doctest: +SKIP
"""

from keras_ba.convert.keymap import FAMILIES, build_key_map, detect_attention, detect_family
from keras_ba.convert.loader import load_torch_weights
from keras_ba.convert.report import CheckpointMismatchError, ConversionReport
from keras_ba.convert.sources import StateDict, read_state_dict

__all__ = [
    "FAMILIES",
    "CheckpointMismatchError",
    "ConversionReport",
    "StateDict",
    "build_key_map",
    "detect_attention",
    "detect_family",
    "load_torch_weights",
    "read_state_dict",
]
