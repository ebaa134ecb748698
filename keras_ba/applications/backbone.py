"""The base of the BA backbones: a functional model with pyramid outputs.

A backbone is a `keras.Model` built functionally in its constructor (the
keras-hub pattern): `get_config()` returns the constructor arguments, so a
backbone saved to `.keras` loads (with `safe_mode=True`) by calling the
constructor again, and keeps its `pyramid_outputs`. A classifier is the
backbone's layers plus a small head (`keras_ba.applications.classifier`).
"""

import keras

from keras_ba import _validation
from keras_ba.layers.registry import deserialize_attention, serialize_attention

INPUT_NAME = "images"


def image_input(input_tensor, image_shape, data_format, min_size, stem_name):
    """Returns `(image_tensor, model_inputs, image_shape)` for a backbone.

    `image_shape` None gives a fully convolutional `(None, None, 3)` (or
    `(3, None, None)`); with an `input_tensor` it defaults to the tensor's
    shape.
    """
    if image_shape is None and input_tensor is not None:
        image_shape = tuple(input_tensor.shape[1:])
    image_shape = _validation.check_input_shape(image_shape, data_format, min_size, stem_name)
    if input_tensor is None:
        image = keras.Input(shape=image_shape, name=INPUT_NAME)
        return image, image, image_shape
    if not keras.backend.is_keras_tensor(input_tensor):
        image = keras.Input(tensor=input_tensor, shape=image_shape, name=INPUT_NAME)
        return image, image, image_shape
    return input_tensor, keras.utils.get_source_inputs(input_tensor), image_shape


class Backbone(keras.Model):
    """Base class of the keras_ba backbones (not registered itself).

    Subclasses build their layers, then call
    `super().__init__(inputs=..., outputs=..., pyramid_outputs=..., dtype=...)`
    and set the attributes their `get_config` reads.

    Attributes:
        pyramid_outputs: dict from level name to symbolic tensor: `"P{k}"`
            is the last output at total stride `2**k` (`"P2"` ... `"P5"`
            for an ImageNet stem; `"P1"` where the stem has stride 2).
    """

    def __init__(self, *, inputs, outputs, pyramid_outputs, dtype=None, **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.pyramid_outputs = pyramid_outputs
        if dtype is not None:
            self.dtype_policy = keras.dtype_policies.get(dtype)

    def __setattr__(self, name, value):
        # As keras-hub's Backbone: under the PyTorch backend, attributes set
        # before `Model.__init__` (and properties) bypass torch's Module.
        is_property = isinstance(getattr(type(self), name, None), property)
        if keras.config.backend() == "torch" and (is_property or not hasattr(self, "_tracker")):
            return object.__setattr__(self, name, value)
        return super().__setattr__(name, value)

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
        return keras.Model(self.inputs, dict(self.pyramid_outputs), name=f"{self.name}_pyramid")

    # === Config ===

    def get_config(self):
        # Not Functional's config: the constructor arguments (keras-hub).
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if "attention" in config:
            config["attention"] = deserialize_attention(config["attention"])
        return cls(**config)

    @staticmethod
    def _attention_config(attention):
        return serialize_attention(attention)
