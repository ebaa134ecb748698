"""KerasHub task classes for the BA backbones (with the `hub` extra).

KerasHub finds the classifier, preprocessor and image converter of a
backbone by their `backbone_cls` (`ImageClassifier.from_preset` looks for
the `ImageClassifier` subclass whose `backbone_cls` is the preset's
backbone class). For each keras_ba backbone family this module registers,
when keras-hub is installed:

- `BA<Family>ImageConverter`: resizes and normalises RGB in [0, 255] with
  the ImageNet mean and standard deviation (what `preprocess_input` does,
  the input every keras_ba model expects);
- `BA<Family>ImageClassifierPreprocessor`;
- `BA<Family>ImageClassifier`.

`image_classifier` builds the right one for a backbone, and
`classifier_to_task` turns a keras_ba application (a flat classifier) into
one, its head weights included, so that it can be saved as a preset.
Without keras-hub the module defines nothing else and `image_classifier`
raises `MissingExtraError` naming the extra.

Example:
>>> from keras_ba.applications import BAResNetBackbone
>>> backbone = BAResNetBackbone([1], [8], block_type="basic", stem="cifar",
...                             stem_filters=8, reduction=4, image_shape=(16, 16, 3))
>>> model = image_classifier(backbone, num_classes=3, image_size=(16, 16))
>>> type(model).__name__, model.output_shape
('BAResNetImageClassifier', (None, 3))
"""

import keras

from keras_ba.applications.backbone import HUB_BACKBONE
from keras_ba.applications.cswin import BACSWinBackbone
from keras_ba.applications.efficientnet import BAEfficientNetBackbone
from keras_ba.applications.mobilenet_v3 import BAMobileNetV3Backbone
from keras_ba.applications.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from keras_ba.applications.pvt import BAPVTBackbone
from keras_ba.applications.regnet import BARegNetYBackbone
from keras_ba.applications.resnet import BAResNetBackbone
from keras_ba.applications.swin import BASwinTransformer
from keras_ba.extras import require

# Every backbone family (BA-ResNeXt is BAResNetBackbone with groups).
FAMILIES = (
    BAResNetBackbone,
    BAEfficientNetBackbone,
    BAMobileNetV3Backbone,
    BARegNetYBackbone,
    BASwinTransformer,
    BAPVTBackbone,
    BACSWinBackbone,
)
IMAGENET_SCALE = [1.0 / (255.0 * s) for s in IMAGENET_STD]
IMAGENET_OFFSET = [-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)]
HEAD_LAYERS = ("avg_pool", "top_dropout", "predictions")  # a head KerasHub's classifier has

TASKS = {}  # backbone class -> {"converter", "preprocessor", "classifier"}


def _register(cls, name):
    cls.__name__ = cls.__qualname__ = name
    cls.__module__ = __name__
    globals()[name] = cls
    return keras.saving.register_keras_serializable(package="keras_ba")(cls)


def _task_classes(backbone_cls):
    """Defines and registers the three KerasHub classes of one family."""
    import keras_hub

    family = backbone_cls.__name__.removesuffix("Backbone")

    class Converter(keras_hub.layers.ImageConverter):
        backbone_cls = None  # set below

        def __init__(self, image_size=None, scale=None, offset=None, **kwargs):
            scale = IMAGENET_SCALE if scale is None else scale
            offset = IMAGENET_OFFSET if offset is None else offset
            super().__init__(image_size=image_size, scale=scale, offset=offset, **kwargs)

    class Preprocessor(keras_hub.models.ImageClassifierPreprocessor):
        backbone_cls = None

    class Classifier(keras_hub.models.ImageClassifier):
        backbone_cls = None

    for cls in (Converter, Preprocessor, Classifier):
        cls.backbone_cls = backbone_cls
    Preprocessor.image_converter_cls = Converter
    Classifier.preprocessor_cls = Preprocessor
    return {
        "converter": _register(Converter, f"{family}ImageConverter"),
        "preprocessor": _register(Preprocessor, f"{family}ImageClassifierPreprocessor"),
        "classifier": _register(Classifier, f"{family}ImageClassifier"),
    }


if HUB_BACKBONE is not None:
    for _family in FAMILIES:
        TASKS[_family] = _task_classes(_family)


def _tasks_of(backbone):
    require("keras_hub", "hub", "KerasHub task models")
    for family in type(backbone).__mro__:
        if family in TASKS:
            return TASKS[family]
    raise ValueError(
        f"Expected a keras_ba backbone ({', '.join(c.__name__ for c in FAMILIES)}). "
        f"Received: {type(backbone).__name__} {getattr(backbone, 'name', '')!r}"
    )


def image_classifier(backbone, num_classes, image_size=None, **kwargs):
    """KerasHub's `ImageClassifier` for a BA backbone, with its preprocessor.

    The preprocessor resizes to `image_size` (None: no resizing) and
    normalises RGB in [0, 255] as `preprocess_input` does; `fit`,
    `predict` and `evaluate` then take raw RGB.

    Args:
        backbone: a keras_ba backbone.
        num_classes: classes of the `predictions` layer.
        image_size: `(height, width)` the preprocessor resizes to.
        **kwargs: of `keras_hub.models.ImageClassifier` (`activation`,
            `pooling`, `dropout`, `name`...).

    Returns:
        A `BA<Family>ImageClassifier` (a `keras_hub.models.ImageClassifier`).

    Example:
    >>> from keras_ba.applications import BAResNetBackbone
    >>> backbone = BAResNetBackbone([1], [8], block_type="basic", stem="cifar",
    ...                             stem_filters=8, reduction=4)
    >>> model = image_classifier(backbone, 2)
    >>> type(model.preprocessor.image_converter).__name__
    'BAResNetImageConverter'
    """
    tasks = _tasks_of(backbone)
    converter = tasks["converter"](image_size=image_size)
    preprocessor = tasks["preprocessor"](image_converter=converter)
    return tasks["classifier"](
        backbone=backbone, num_classes=num_classes, preprocessor=preprocessor, **kwargs
    )


def classifier_to_task(model, backbone, image_size=None):
    """A keras_ba application (flat classifier) as KerasHub's classifier.

    The task shares `backbone`'s layers and takes a copy of the model's
    `predictions` weights and activation. Applications whose head is more
    than pooling, dropout and `predictions` (MobileNetV3's `conv_2` head)
    have no KerasHub equivalent: a ValueError says so.

    Args:
        model: the application, built with `include_top=True`.
        backbone: its backbone (`capture_backbones` recovers it).
        image_size: of the preprocessor (default: the model's input size).

    Returns:
        A `BA<Family>ImageClassifier` computing what `model` computes.

    Example:
    >>> from keras_ba.applications import BAResNet
    >>> from keras_ba.applications.backbone import capture_backbones
    >>> with capture_backbones() as built:
    ...     app = BAResNet([1], [8], block_type="basic", stem="cifar", stem_filters=8,
    ...                    reduction=4, input_shape=(16, 16, 3), classes=2)
    >>> task = classifier_to_task(app, built[-1])
    >>> import numpy as np
    >>> x = np.ones((1, 16, 16, 3), "float32")
    >>> bool(np.allclose(keras.ops.convert_to_numpy(task(x)), keras.ops.convert_to_numpy(app(x)),
    ...                  atol=1e-6))
    True
    """
    names = {layer.name for layer in model.layers} - {layer.name for layer in backbone.layers}
    if not names <= set(HEAD_LAYERS) or "predictions" not in names:
        raise ValueError(
            f"The head of {model.name!r} ({sorted(names)}) is not pooling + "
            "`predictions`: KerasHub's ImageClassifier cannot hold it; save the "
            "backbone alone (`backbone.save_to_preset`)."
        )
    dense = model.get_layer("predictions")
    dropout = model.get_layer("top_dropout").rate if "top_dropout" in names else 0.0
    activation = keras.activations.serialize(dense.activation)
    activation = None if activation == "linear" else activation
    shape = backbone.image_shape
    sides = shape[:2] if backbone.data_format == "channels_last" else shape[1:]
    if image_size is None and None not in sides:
        image_size = tuple(sides)
    task = image_classifier(
        backbone,
        dense.units,
        image_size=image_size,
        activation=activation,
        dropout=dropout,
        name=model.name,
    )
    task.output_dense.set_weights(dense.get_weights())
    return task
