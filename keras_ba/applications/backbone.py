"""The base of the BA backbones: a functional model with pyramid outputs.

A backbone is a `keras.Model` built functionally in its constructor (the
keras-hub pattern): `get_config()` returns the constructor arguments, so a
backbone saved to `.keras` loads (with `safe_mode=True`) by calling the
constructor again, and keeps its `pyramid_outputs`. A classifier is the
backbone's layers plus a small head (`keras_ba.applications.classifier`).

With keras-hub installed (the `hub` extra) `Backbone` subclasses
`keras_hub.models.Backbone`: the BA backbones are KerasHub backbones
(`save_to_preset`, `from_preset`, KerasHub's task models). Without it,
`Backbone` is a plain `keras.Model` with the same contract and its preset
methods raise `MissingExtraError` naming the extra.
"""

import contextlib
import importlib.util
import threading
from typing import NamedTuple

import keras

from keras_ba import _validation
from keras_ba.extras import require
from keras_ba.layers.registry import (
    deserialize_attention,
    resolve_attention,
    serialize_attention,
)

INPUT_NAME = "images"


class Start(NamedTuple):
    """What `start` returns: the input and the checked shared arguments."""

    images: object  # the tensor the stem takes
    inputs: object  # the model inputs
    attention: object
    reduction: int
    image_shape: tuple
    data_format: str


def start(attention, reduction, image_shape, input_tensor, data_format, min_size, stem_name):
    """Checks the arguments every backbone shares and creates its input.

    `image_shape` None gives a fully convolutional `(None, None, 3)` (or
    `(3, None, None)`); with an `input_tensor` it defaults to the tensor's
    shape.

    Returns:
        A `Start`, for the backbone's layers and `Backbone.__init__`.

    Example:
    >>> begin = start("bav1", 16, None, None, "channels_last", 32, "imagenet")
    >>> begin.image_shape, begin.images.name
    ((None, None, 3), 'images')
    """
    resolve_attention(attention)
    _validation.check_positive_int(reduction, "reduction")
    data_format = _validation.standardize_data_format(data_format)
    if image_shape is None and input_tensor is not None:
        image_shape = tuple(input_tensor.shape[1:])
    image_shape = _validation.check_input_shape(image_shape, data_format, min_size, stem_name)
    if input_tensor is None:
        images = inputs = keras.Input(shape=image_shape, name=INPUT_NAME)
    elif not keras.backend.is_keras_tensor(input_tensor):
        images = inputs = keras.Input(tensor=input_tensor, shape=image_shape, name=INPUT_NAME)
    else:
        images, inputs = input_tensor, keras.utils.get_source_inputs(input_tensor)
    return Start(images, inputs, attention, reduction, image_shape, data_format)


def check_no_input_shape(class_name, kwargs):
    """Refuses keras.applications' `input_shape=`: backbones take `image_shape=`.

    Keras' `Model` accepts and ignores `input_shape`, which would give an
    unsized backbone without a word.

    Example:
    >>> check_no_input_shape("BAResNetBackbone", {"input_shape": (64, 64, 3)})
    Traceback (most recent call last):
    ...
    ValueError: BAResNetBackbone takes `image_shape=` (keras-hub's name), not `input_shape=`: pass image_shape=(64, 64, 3).
    """
    if "input_shape" in kwargs:
        raise ValueError(
            f"{class_name} takes `image_shape=` (keras-hub's name), not `input_shape=`: "
            f"pass image_shape={tuple(kwargs['input_shape'])}."
        )


def _hub_backbone_class():
    """`keras_hub.models.Backbone` when keras-hub is installed, else None."""
    try:
        if importlib.util.find_spec("keras_hub") is None:
            return None
        return importlib.import_module("keras_hub").models.Backbone
    except ImportError:  # installed but broken: the lean contract still holds
        return None


HUB_BACKBONE = _hub_backbone_class()
_BASE = HUB_BACKBONE or keras.Model
_CAPTURE = threading.local()


@contextlib.contextmanager
def capture_backbones():
    """Collects the backbones built inside the block (e.g. by an application).

    An application builder returns a flat classifier that holds its
    backbone's layers; this recovers the backbone object itself (same layers,
    same weights), e.g. to save it as a preset.

    Example:
    >>> from keras_ba.applications import BAResNet
    >>> with capture_backbones() as built:
    ...     model = BAResNet([1], [8], block_type="basic", stem="cifar", stem_filters=8,
    ...                      reduction=4, input_shape=(8, 8, 3), classes=2)
    >>> [type(b).__name__ for b in built]
    ['BAResNetBackbone']
    """
    outer = getattr(_CAPTURE, "built", None)
    _CAPTURE.built = []
    try:
        yield _CAPTURE.built
    finally:
        _CAPTURE.built = outer


class Backbone(_BASE):
    """Base class of the keras_ba backbones (not registered itself).

    Subclasses check their own arguments, call `start(...)`, build their
    layers, then call `super().__init__(begin, outputs, pyramid_outputs,
    dtype=dtype, **kwargs)` with `begin` the `Start`, and set the
    attributes of their own `get_config` entries.

    Attributes:
        pyramid_outputs: dict from level name to symbolic tensor: `"P{k}"`
            is the last output at total stride `2**k` (`"P2"` ... `"P5"`
            for an ImageNet stem; `"P1"` where the stem has stride 2).
        attention, reduction, image_shape, data_format: the arguments.
    """

    def __init__(self, begin, outputs, pyramid_outputs, dtype=None, **kwargs):
        check_no_input_shape(type(self).__name__, kwargs)
        super().__init__(inputs=begin.inputs, outputs=outputs, **kwargs)
        self.pyramid_outputs = pyramid_outputs
        self.attention = begin.attention
        self.reduction = begin.reduction
        self.image_shape = begin.image_shape
        self.data_format = begin.data_format
        if dtype is not None:
            self.dtype_policy = keras.dtype_policies.get(dtype)
        if getattr(_CAPTURE, "built", None) is not None:
            _CAPTURE.built.append(self)

    def pyramid_model(self):
        """A functional model from the image to the `pyramid_outputs` dict.

        Example:
        >>> from keras_ba.applications import BAResNetBackbone
        >>> backbone = BAResNetBackbone([1, 1], [8, 16], block_type="basic",
        ...                             stem="cifar", stem_filters=8,
        ...                             reduction=4, image_shape=(16, 16, 3))
        >>> {k: tuple(v.shape) for k, v in backbone.pyramid_model().output.items()}
        {'P0': (None, 16, 16, 8), 'P1': (None, 8, 8, 16)}
        """
        return keras.Model(self.input, dict(self.pyramid_outputs), name=f"{self.name}_pyramid")

    if HUB_BACKBONE is None:  # the lean install: name the extra

        def save_to_preset(self, preset_dir, max_shard_size=10):
            """Saves a KerasHub preset (needs the `hub` extra).

            Example:
                backbone.save_to_preset("presets/ba_resnet50")
            """
            require("keras_hub", "hub", "Backbone.save_to_preset")

        @classmethod
        def from_preset(cls, preset, load_weights=True, **kwargs):
            """Loads a KerasHub preset (needs the `hub` extra).

            Example:
                backbone = BAResNetBackbone.from_preset("presets/ba_resnet50")
            """
            require("keras_hub", "hub", "Backbone.from_preset")

    # === Config ===

    def get_config(self):
        # Not Functional's config: the constructor arguments (keras-hub).
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "attention": serialize_attention(self.attention),
            "reduction": self.reduction,
            "image_shape": self.image_shape,
            "data_format": self.data_format,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["attention"] = deserialize_attention(config["attention"])
        return cls(**config)
