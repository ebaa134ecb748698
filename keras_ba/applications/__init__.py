"""BA model builders in keras.applications style.

Example:
>>> from keras_ba.applications import BAResNet50
>>> model = BAResNet50(classes=10, input_shape=(64, 64, 3))
"""

from keras_ba.applications import resnet
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

__all__ = [
    "BAResNet",
    "BAResNet18",
    "BAResNet34",
    "BAResNet50",
    "BAResNet101",
    "BAResNet152",
    "get_model_builder",
    "list_models",
    "preprocess_input",
    "resnet",
]
