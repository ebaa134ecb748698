"""What every keras_ba application shares: input, head, checks, weights."""

import os

import keras
from keras import layers

from keras_ba.layers import _utils
from keras_ba.layers.factory import check_attention

POOLINGS = (None, "avg", "max")
INPUT_NAME = "images"


# === Argument checks ===


def check_application_args(include_top, weights, pooling, classes, attention):
    """Validates the keras.applications-style arguments with clear errors."""
    if not isinstance(include_top, bool):
        raise ValueError(
            "Received an invalid value for `include_top`, expected True or "
            f"False. Received: include_top={include_top!r}"
        )
    if weights is not None and not isinstance(weights, (str, os.PathLike)):
        raise ValueError(
            "Received an invalid value for `weights`, expected None or the "
            "path to a `.keras` or `.weights.h5` file. keras_ba ships no "
            "downloadable weights. Received: weights={weights!r}"
        )
    if weights is not None and not os.path.isfile(os.fspath(weights)):
        raise ValueError(
            f"The weights file {os.fspath(weights)!r} does not exist. Pass None "
            "for random initialisation or the path to a `.keras` or "
            "`.weights.h5` file (the authors' PyTorch checkpoints convert with "
            "`keras-ba convert`)."
        )
    if pooling not in POOLINGS:
        raise ValueError(
            f"Received an invalid value for `pooling`, expected one of "
            f"{POOLINGS}. Received: pooling={pooling!r}"
        )
    _utils.check_positive_int(classes, "classes")
    check_attention(attention)


def check_int_list(values, name, length=None):
    """Checks a list of positive integers (stage depths, widths...)."""
    ok = isinstance(values, (list, tuple)) and len(values) > 0
    ok = ok and all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values
    )
    if not ok or (length is not None and len(values) != length):
        expected = "a non-empty list of positive integers"
        if length is not None:
            expected = f"a list of {length} positive integers"
        raise ValueError(
            f"Received an invalid value for `{name}`, expected {expected}. "
            f"Received: {name}={values!r}"
        )
    return list(values)


def check_choice(value, name, choices):
    if value not in choices:
        raise ValueError(
            f"Received an invalid value for `{name}`, expected one of "
            f"{tuple(choices)}. Received: {name}={value!r}"
        )
    return value


# === Input ===


def image_input(input_tensor, input_shape, data_format, min_size, stem_name):
    """Returns `(image_tensor, model_inputs)` for a builder.

    `input_shape` defaults to a fully convolutional `(None, None, 3)`;
    a given shape must have rank 3 and spatial sizes of at least `min_size`.
    """
    if input_shape is not None:
        _check_input_shape(input_shape, data_format, min_size, stem_name)
    elif data_format == "channels_last":
        input_shape = (None, None, 3)
    else:
        input_shape = (3, None, None)
    if input_tensor is None:
        image = keras.Input(shape=input_shape, name=INPUT_NAME)
        return image, image
    if not keras.backend.is_keras_tensor(input_tensor):
        image = keras.Input(tensor=input_tensor, shape=input_shape, name=INPUT_NAME)
        return image, image
    return input_tensor, keras.utils.get_source_inputs(input_tensor)


def _check_input_shape(input_shape, data_format, min_size, stem_name):
    if not isinstance(input_shape, (list, tuple)) or len(input_shape) != 3:
        raise ValueError(
            "Received an invalid value for `input_shape`, expected "
            "(height, width, channels) for channels_last or (channels, "
            f"height, width) for channels_first. Received: input_shape={input_shape!r}"
        )
    if data_format == "channels_last":
        spatial, channels = input_shape[:2], input_shape[2]
    else:
        spatial, channels = input_shape[1:], input_shape[0]
    if channels is None or channels < 1:
        raise ValueError(
            "`input_shape` needs a known, positive number of channels. "
            f"Received: input_shape={tuple(input_shape)!r}"
        )
    if any(size is not None and size < min_size for size in spatial):
        raise ValueError(
            f"Received input_shape={tuple(input_shape)!r}, too small for the "
            f"{stem_name!r} stem: height and width must be at least "
            f"{min_size} pixels (or None)."
        )


# === Head ===


def classification_head(
    features,
    include_top,
    pooling,
    classes,
    classifier_activation,
    data_format,
    dropout_rate=None,
):
    """Pooling, optional dropout and the `predictions` Dense layer.

    The classifier computes in float32 under mixed precision so that the
    softmax and the loss stay numerically safe.
    """
    if include_top:
        x = layers.GlobalAveragePooling2D(data_format=data_format, name="avg_pool")(
            features
        )
        if dropout_rate:
            x = layers.Dropout(dropout_rate, name="top_dropout")(x)
        head_dtype = None
        if keras.config.dtype_policy().name.startswith("mixed"):
            head_dtype = "float32"
        return layers.Dense(
            classes,
            activation=classifier_activation,
            name="predictions",
            dtype=head_dtype,
        )(x)
    if pooling == "avg":
        return layers.GlobalAveragePooling2D(data_format=data_format, name="avg_pool")(
            features
        )
    if pooling == "max":
        return layers.GlobalMaxPooling2D(data_format=data_format, name="max_pool")(
            features
        )
    return features


# === Weights ===


def load_weights(model, weights, rebuild):
    """Fills `model` from a `.keras` or `.weights.h5` file, by layer name.

    `rebuild(include_top, classes)` builds the same architecture; it is used
    to read a `.weights.h5` file, whose head may differ from `model`'s. Every
    layer with weights in `model` must find a layer of the same name and
    shapes in the file; the head may be absent when `include_top=False`.
    All checks run before any weight is assigned, so a failed load leaves the
    model untouched.
    """
    if weights is None:
        return model
    path = os.fspath(weights)
    source = _read_weights_file(path, rebuild)
    pairs = _match_layers_by_name(source, model, path)
    for target_layer, source_layer in pairs:
        target_layer.set_weights(source_layer.get_weights())
    return model


def _read_weights_file(path, rebuild):
    if path.endswith(".keras"):
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    if path.endswith(".weights.h5"):
        classes = _classes_in_weights_file(path)
        source = rebuild(include_top=classes is not None, classes=classes or 1)
        try:
            source.load_weights(path)
        except ValueError as error:
            raise ValueError(
                f"The weights file {path!r} does not fit this architecture "
                "(was it saved from another depth or `attention`?): "
                f"{error}"
            ) from error
        return source
    raise ValueError(
        f"Unsupported weights file {path!r}: expected a `.keras` or a "
        "`.weights.h5` file."
    )


def _classes_in_weights_file(path):
    """Class count of the classifier stored in a .weights.h5 file.

    Keras keys these files by auto-generated class names, not layer names;
    in keras_ba models the only top-level Dense layer is `predictions`.
    """
    import h5py

    with h5py.File(path, "r") as file:
        group = file.get("layers/dense/vars")
        if group is None:
            return None
        return int(group["1"].shape[0])


def _match_layers_by_name(source, target, path):
    source_layers = {layer.name: layer for layer in source.layers}
    pairs, missing, mismatched = [], [], []
    for layer in target.layers:
        if not layer.weights:
            continue
        found = source_layers.get(layer.name)
        if found is None:
            missing.append(layer.name)
            continue
        target_shapes = [tuple(w.shape) for w in layer.weights]
        source_shapes = [tuple(w.shape) for w in found.weights]
        if target_shapes == source_shapes:
            pairs.append((layer, found))
        elif layer.name == "predictions":
            raise ValueError(
                f"The weights file {path!r} has a classifier for "
                f"{source_shapes[-1][0]} classes, but the model was built with "
                f"classes={target_shapes[-1][0]}. Build with "
                "include_top=False (and add your own head) or with the "
                "file's class count."
            )
        else:
            mismatched.append(f"{layer.name}: file {source_shapes} vs model {target_shapes}")
    if missing or mismatched:
        problems = [f"missing in file: {name}" for name in missing] + [
            f"shape mismatch: {item}" for item in mismatched
        ]
        raise ValueError(
            f"The weights file {path!r} does not fit this architecture "
            f"({len(problems)} problems; was it saved from another depth or "
            "`attention`?):\n  " + "\n  ".join(problems[:20])
        )
    return pairs
