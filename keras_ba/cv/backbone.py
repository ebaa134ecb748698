"""keras_ba models as keras-cv backbones, with their feature pyramid.

keras-cv's task models (`RetinaNet`, `YOLOV8Detector`, `DeepLabV3Plus`,
`ImageClassifier`) take a `keras_cv.models.Backbone` whose
`pyramid_level_inputs` maps levels `"P2"`..`"P5"` to the *names* of the
layers that produce them; keras-hub's take a model whose `pyramid_outputs`
maps levels to *tensors*. `BABackbone` wraps a keras_ba model and offers
both. Level `"Pk"` has stride `2**k`: for a 64x64 input, P2 is 16x16 and P5
is 2x2.

The wrapper shares the wrapped model's layers (and so its weights): no copy
is made, and a backbone built with `weights="classifier.keras"` brings the
classifier's trained trunk into the detector.

Example:
>>> from keras_ba.applications import BAResNet
>>> model = BAResNet([1, 1, 1, 1], [8, 16, 32, 64], block_type="basic",
...                  include_top=False, reduction=4)
>>> backbone = BABackbone(model)
>>> backbone.pyramid_level_inputs["P3"]
'conv3_block1_out'
"""

import re

import keras
import keras_cv

from keras_ba import _keras_compat

LEVEL_PATTERN = re.compile(r"^P([1-9])$")


class PyramidLevelError(KeyError, ValueError):
    """A pyramid level that the backbone does not have.

    A `KeyError` (it is raised by a mapping lookup) and a `ValueError` (it
    reports bad input), with a readable message.
    """

    def __str__(self):
        return str(self.args[0]) if self.args else ""


class _Levels(dict):
    """`{level: value}` whose missing keys raise a `PyramidLevelError`."""

    def __init__(self, values, owner):
        super().__init__(values)
        self.owner = owner

    def __missing__(self, level):
        raise PyramidLevelError(
            f"The backbone {self.owner!r} has no pyramid level {level!r}; "
            f"it has {sorted(self)}. Detection heads need P3, P4 and P5, "
            "DeepLabV3+ needs P2 and P5: build the BABackbone with those levels."
        )


# === Where the pyramid comes from ===

# Every keras_ba backbone exposes `pyramid_outputs`; a flat classifier does
# not (an application built with `include_top=False`, or any keras_ba model
# loaded from a `.keras` file as a plain functional model). For those, the
# stage-end layers by their stable names (keras.applications' naming) give
# the same levels.
_STAGE_END = re.compile(
    r"^(conv1_relu|conv\d+_block\d+_out"  # ResNet, ResNeXt
    r"|stem_activation|block\d+[a-z]+_(project_bn|add)"  # EfficientNet
    r"|conv_activation|expanded_conv(_\d+)?_(project_bn|add)"  # MobileNetV3
    r"|stem_relu|s\d+_b\d+_out"  # RegNet-Y
    r"|stage\d+_block\d+_add2"  # Swin
    r"|stage\d_map|stage\d+_\d+_add2)$"  # PVT, CSWin
)
_PROBE_SIZE = 256  # input side used to measure strides when the input is unsized


def _pyramid_outputs(model):
    """`{"P1".."P5": KerasTensor}` of a keras_ba model; `"Pk"` has stride 2**k.

    The one place that knows where a keras_ba model keeps its pyramid.
    """
    outputs = getattr(model, "pyramid_outputs", None)
    if outputs:
        return dict(outputs)
    return _pyramid_from_layer_names(model)


def _pyramid_from_layer_names(model):
    """The last stage-end layer at each stride, for models without a pyramid."""
    candidates = [layer for layer in model.layers if _STAGE_END.match(layer.name)]
    if not candidates or len(model.inputs) != 1:
        return {}
    image = model.inputs[0]
    spatial = [i for i in range(1, 4) if i != _channel_axis(image)]
    sizes = [image.shape[i] for i in spatial]
    if None in sizes:
        probe = keras.Model(model.inputs, [layer.output for layer in candidates])
        probe_shape = [1, 3, 3, 3]
        for axis in spatial:
            probe_shape[axis] = _PROBE_SIZE
        shapes = probe.compute_output_shape(tuple(probe_shape))
        sizes = [_PROBE_SIZE] * 2
    else:
        shapes = [layer.output.shape for layer in candidates]
    pyramid = {}
    for layer, shape in zip(candidates, shapes, strict=True):
        stride = sizes[0] // shape[spatial[0]]
        level = stride.bit_length() - 1
        if 2**level == stride and 1 <= level <= 9:
            pyramid[f"P{level}"] = layer.output  # the last layer at a stride wins
    return pyramid


def _channel_axis(image):
    """3 for (B, H, W, 3) images, 1 for (B, 3, H, W)."""
    return 1 if image.shape[1] == 3 and image.shape[-1] != 3 else 3


# === The keras-cv backbone ===


class _Untracked:
    """Holds a model outside Keras' attribute tracking.

    The wrapped model's layers are already the backbone's own layers;
    tracking the model itself would save every weight twice.
    """

    def __init__(self, model):
        self.model = model


@keras.saving.register_keras_serializable(package="keras_ba")
class BABackbone(keras_cv.models.Backbone):
    """A keras_ba model as a keras-cv backbone (and a keras-hub image encoder).

    The backbone shares the layers and weights of `backbone`, outputs its
    deepest pyramid level, and exposes the levels both ways:
    `pyramid_level_inputs` (`{"P2": layer name, ...}`, keras-cv) and
    `pyramid_outputs` (`{"P2": tensor, ...}`, keras-hub). Level `"Pk"` has
    stride `2**k`. keras-cv's task models are channels_last only.

    Args:
        backbone: a keras_ba model (a backbone, or an application built with
            `include_top=False`; a classifier works too, its head is left
            out), channels_last.
        levels: the levels to expose, e.g. `["P2", "P3", "P4", "P5"]`
            (default: every level the model has).
        **kwargs: `name` (default: the wrapped model's name), `trainable`.

    Raises:
        ValueError: if `backbone` has no pyramid levels, is channels_first,
            or lacks a requested level.

    Example:
    >>> from keras_ba.applications import BAResNet
    >>> model = BAResNet([1, 1, 1, 1], [8, 16, 32, 64], block_type="basic",
    ...                  include_top=False, reduction=4, input_shape=(64, 64, 3))
    >>> backbone = BABackbone(model, levels=["P3", "P4", "P5"])
    >>> {k: tuple(v.shape) for k, v in backbone.pyramid_outputs.items()}
    {'P3': (None, 8, 8, 16), 'P4': (None, 4, 4, 32), 'P5': (None, 2, 2, 64)}
    """

    def __init__(self, backbone, levels=None, **kwargs):
        if isinstance(backbone, dict):  # from_config
            backbone = keras.saving.deserialize_keras_object(backbone)
        if not isinstance(backbone, keras.Model):
            raise ValueError(
                "Received an invalid value for `backbone`, expected a keras_ba "
                f"model (keras.Model). Received: backbone={backbone!r}"
            )
        pyramid = _pyramid_outputs(backbone)
        if not pyramid:
            raise ValueError(
                f"The model {backbone.name!r} has no pyramid levels: pass a "
                "keras_ba backbone or application (e.g. "
                "`BAResNet50(include_top=False)`), which have P2..P5 stage outputs."
            )
        if _channel_axis(backbone.inputs[0]) != 3:
            raise ValueError(
                f"The model {backbone.name!r} is channels_first; keras-cv task "
                "models need channels_last: build it with "
                "data_format='channels_last'."
            )
        available = _Levels(pyramid, backbone.name)
        levels = sorted(pyramid) if levels is None else list(levels)
        if not levels or any(not LEVEL_PATTERN.match(str(level)) for level in levels):
            raise ValueError(
                "Received an invalid value for `levels`, expected a non-empty "
                f"list of level names such as 'P3'. Received: levels={levels!r}"
            )
        pyramid = {level: available[level] for level in sorted(levels)}
        names = {}
        for level, tensor in pyramid.items():
            layer = _keras_compat.producing_layer(tensor)
            if (
                not isinstance(layer, keras.layers.Layer)
                or backbone.get_layer(layer.name) is not layer
            ):
                raise ValueError(
                    f"Pyramid level {level} of {backbone.name!r} is not the output "
                    "of a named layer of the model; keras-cv needs layer names."
                )
            names[level] = layer.name
        kwargs.setdefault("name", backbone.name)
        top = pyramid[max(pyramid, key=lambda level: int(level[1:]))]
        super().__init__(inputs=backbone.inputs, outputs=top, **kwargs)

        # === Config ===
        self._source = _Untracked(backbone)
        self.levels = list(pyramid)
        self.pyramid_level_inputs = names

    @property
    def pyramid_level_inputs(self):
        """`{"P2": layer name, ...}`: the levels for keras-cv's task models."""
        return _Levels(self._pyramid_level_inputs, self.name)

    @pyramid_level_inputs.setter
    def pyramid_level_inputs(self, value):
        self._pyramid_level_inputs = dict(value)

    @property
    def pyramid_outputs(self):
        """`{"P2": KerasTensor, ...}`: the levels for keras-hub's task models.

        A plain dict: Keras' functional API takes it as model outputs.
        """
        return {
            level: self.get_layer(name).output for level, name in self._pyramid_level_inputs.items()
        }

    def get_config(self):
        config = super().get_config()  # name, trainable
        config.update(
            backbone=keras.saving.serialize_keras_object(self._source.model),
            levels=list(self.levels),
        )
        return config
