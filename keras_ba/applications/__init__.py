"""BA model builders in keras.applications style, and their backbones.

Classifiers (`BAResNet50()`, `BAEfficientNetB0()`, ...) are a backbone
(`BAResNetBackbone`, `BAEfficientNetBackbone`, `BAMobileNetV3Backbone`, with
`pyramid_outputs` for detection and segmentation heads) plus a small head.

Example:
>>> from keras_ba.applications import BAResNet
>>> model = BAResNet([1, 1], [8, 16], block_type="basic", stem="cifar",
...                  stem_filters=8, reduction=4, input_shape=(16, 16, 3), classes=10)
>>> model.get_layer("conv2_block1_ba").name, model.output_shape
('conv2_block1_ba', (None, 10))
"""

from keras_ba.applications import (
    blocks,
    efficientnet,
    hub,  # KerasHub task classes (with the hub extra)
    mobilenet_v3,
    resnet,
    resnext,
)
from keras_ba.applications.backbone import Backbone
from keras_ba.applications.efficientnet import (
    BAEfficientNet,
    BAEfficientNetB0,
    BAEfficientNetB1,
    BAEfficientNetB2,
    BAEfficientNetB3,
    BAEfficientNetB4,
    BAEfficientNetB5,
    BAEfficientNetB6,
    BAEfficientNetB7,
    BAEfficientNetBackbone,
)
from keras_ba.applications.mobilenet_v3 import (
    BAMobileNetV3,
    BAMobileNetV3Backbone,
    BAMobileNetV3Large,
    BAMobileNetV3Small,
)
from keras_ba.applications.preprocessing import preprocess_input
from keras_ba.applications.registry import get_model_builder, list_models
from keras_ba.applications.resnet import (
    BAResNet,
    BAResNet18,
    BAResNet34,
    BAResNet50,
    BAResNet101,
    BAResNet152,
    BAResNetBackbone,
)
from keras_ba.applications.resnext import (
    BAResNeXt50_32x4d,
    BAResNeXt101_32x4d,
    BAResNeXt101_32x8d,
)

__all__ = [
    "BAEfficientNet",
    "BAEfficientNetBackbone",
    "BAEfficientNetB0",
    "BAEfficientNetB1",
    "BAEfficientNetB2",
    "BAEfficientNetB3",
    "BAEfficientNetB4",
    "BAEfficientNetB5",
    "BAEfficientNetB6",
    "BAEfficientNetB7",
    "BAMobileNetV3",
    "BAMobileNetV3Backbone",
    "BAMobileNetV3Large",
    "BAMobileNetV3Small",
    "BAResNeXt50_32x4d",
    "BAResNeXt101_32x4d",
    "BAResNeXt101_32x8d",
    "BAResNet",
    "BAResNet18",
    "BAResNet34",
    "BAResNet50",
    "BAResNet101",
    "BAResNet152",
    "BAResNetBackbone",
    "Backbone",
    "blocks",
    "efficientnet",
    "get_model_builder",
    "list_models",
    "mobilenet_v3",
    "preprocess_input",
    "resnet",
    "resnext",
    "hub",
]
