"""Load PyTorch checkpoints into keras_ba models.

`load_torch_weights(model, source)` reads a `.pth`/`.pt` (safely, with
`torch.load(weights_only=True)`), `.safetensors` or `.npz` file, or a
mapping of names to arrays, checks it against the model as a whole and
assigns it: the Bridge Attention authors' checkpoints (BA-ResNet, SE-ResNet,
BA-ResNeXt, BA-EfficientNet, BA-MobileNetV3, BAv2 ResNets), and with
`strict="trunk"` the ImageNet trunk of a torchvision or timm ResNet/ResNeXt
under freshly initialised attention layers. The per-family key maps live in
`resnet_keys`, `efficientnet_keys` and `mobilenet_v3_keys`; what the
converter knows about attention is in `attention`; `keras-ba convert` is the
command-line front end. Padding and BatchNorm epsilon do not show in weight
shapes: `trunk_check` reads them from the model's layers, and the report
says whether the model computes the authors' function (build
`trunk_style="pytorch"` for their checkpoints; docs/trunks.md).

Example:
>>> from keras_ba.applications import BAResNet50
>>> from keras_ba.convert import load_torch_weights
>>> model = BAResNet50(attention="bav1")  # doctest: +SKIP
>>> print(load_torch_weights(model, "ba_resnet50.pth"))  # doctest: +SKIP
>>> print(load_torch_weights(model, "resnet50-11ad3fa6.pth", strict="trunk"))  # doctest: +SKIP
"""

from keras_ba.convert.attention import attention_names, detect_attention, is_attention_key
from keras_ba.convert.keymap import FAMILIES, KeyMap, build_key_map, detect_family
from keras_ba.convert.loader import load_torch_weights
from keras_ba.convert.report import CheckpointMismatchError, ConversionReport
from keras_ba.convert.sources import StateDict, read_state_dict

__all__ = [
    "FAMILIES",
    "CheckpointMismatchError",
    "ConversionReport",
    "KeyMap",
    "StateDict",
    "attention_names",
    "build_key_map",
    "detect_attention",
    "detect_family",
    "is_attention_key",
    "load_torch_weights",
    "read_state_dict",
]
