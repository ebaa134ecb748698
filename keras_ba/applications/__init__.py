"""BA model builders in keras.applications style.

Example:
>>> from keras_ba.applications import BAResNet50
>>> model = BAResNet50(classes=10, input_shape=(64, 64, 3))
"""

from keras_ba.applications import efficientnet, mobilenet_v3, resnet, resnext
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
)
from keras_ba.applications.mobilenet_v3 import (
    BAMobileNetV3,
    BAMobileNetV3Large,
    BAMobileNetV3Small,
)
from keras_ba.applications.registry import get_model_builder, list_models
from keras_ba.applications.resnet import (
    BAResNet,
    BAResNet18,
    BAResNet34,
    BAResNet50,
    BAResNet101,
    BAResNet152,
    preprocess_input,
)
from keras_ba.applications.resnext import (
    BAResNeXt50_32x4d,
    BAResNeXt101_32x4d,
    BAResNeXt101_32x8d,
)

__all__ = [
    "BAEfficientNet",
    "BAEfficientNetB0",
    "BAEfficientNetB1",
    "BAEfficientNetB2",
    "BAEfficientNetB3",
    "BAEfficientNetB4",
    "BAEfficientNetB5",
    "BAEfficientNetB6",
    "BAEfficientNetB7",
    "BAMobileNetV3",
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
    "efficientnet",
    "get_model_builder",
    "list_models",
    "mobilenet_v3",
    "preprocess_input",
    "resnet",
    "resnext",
]
