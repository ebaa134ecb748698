"""The one owner of private Keras API in keras_ba.

Every use of a Keras internal goes through a function here, with a comment
saying which public API is missing. `tests/test_keras_compat.py` fails as
soon as a Keras release drops or renames one of them, and `pyproject.toml`
pins `keras` to the range the suite runs on.

Example:
>>> import keras
>>> inputs = keras.Input((3,))
>>> producing_layer(keras.layers.Dense(2, name="fc")(inputs)).name
'fc'
"""

import contextlib

import keras

# The private names this module relies on (checked by tests/test_keras_compat.py).
PRIVATE_ATTRIBUTES = {
    "KerasTensor": ("_keras_history",),
    "Model": (
        "_compile_config",
        "_flatten_layers",
        "_compute_loss",
        "_loss_tracker",
        "_symbolic_build",
    ),
    "BatchNormalization": ("_moments", "_reduction_axes"),
}


def producing_layer(tensor):
    """The layer that produced the symbolic `tensor`.

    No public API: a `KerasTensor` records its operation only in
    `_keras_history` (what Keras' own functional API reads).

    Example:
    >>> import keras
    >>> producing_layer(keras.layers.ReLU(name="act")(keras.Input((2,)))).name
    'act'
    """
    return tensor._keras_history.operation


def set_compile_argument(model, key, value):
    """Records `key=value` among the compile arguments that `model` saves.

    No public setter: Keras keeps the arguments `get_compile_config()`
    returns in `_compile_config` (a SerializableDict with a `config` dict).

    Example:
    >>> import keras
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    >>> model.compile(loss="mse", jit_compile=False)
    >>> set_compile_argument(model, "jit_compile", "auto")
    >>> model.get_compile_config()["jit_compile"]
    'auto'
    """
    config = getattr(getattr(model, "_compile_config", None), "config", None)
    if isinstance(config, dict):
        config[key] = value


def all_sublayers(model):
    """Every layer inside `model`, nested ones included (not `model` itself).

    `Model.layers` lists only the direct children; the recursive walk Keras
    uses is `_flatten_layers` (no public counterpart).

    Example:
    >>> import keras
    >>> inputs = keras.Input((2,), name="x")
    >>> model = keras.Model(inputs, keras.layers.Dense(1, name="d")(inputs))
    >>> [layer.name for layer in all_sublayers(model)]
    ['x', 'd']
    """
    return list(model._flatten_layers(include_self=False))


def compute_loss(model, x, y, y_pred, training):
    """The compiled loss of `model` (with its regularisation losses).

    `Model.compute_loss` is public but takes no `training` flag, which
    Keras' own train step passes through `_compute_loss`.

    Example:
        loss = compute_loss(model, x, y, model(x), training=True)
    """
    return model._compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=None, training=training)


def loss_tracker(model):
    """The `Mean` metric behind the `loss` that `fit` reports.

    No public accessor: a custom loop that reports like `fit` updates it.

    Example:
        loss_tracker(model).update_state(loss, sample_weight=batch_size)
    """
    return model._loss_tracker


def symbolic_build(model, data_batch):
    """Builds `model`'s metrics and optimizer from one batch, as `fit` does.

    No public API: `fit` calls `_symbolic_build` before its first step.

    Example:
        symbolic_build(model, data_batch=(x, y))
    """
    model._symbolic_build(data_batch=data_batch)


def replace_moments(layer, moments):
    """Makes the BatchNorm `layer` compute its statistics with `moments`.

    `moments(inputs, mask)` returns `(mean, variance)`; Keras has no public
    hook for the statistics (synchronised BatchNorm across processes needs
    one), so this sets `_moments` on the instance. Undo with
    `restore_moments`.

    Example:
        replace_moments(bn, lambda inputs, mask: (mean, variance))
    """
    layer.__dict__["_moments"] = moments


def restore_moments(layer):
    """Undoes `replace_moments`.

    Example:
        restore_moments(bn)
    """
    layer.__dict__.pop("_moments", None)


def has_replaced_moments(layer):
    """Whether `replace_moments` is in force on `layer`.

    Example:
    >>> import keras
    >>> has_replaced_moments(keras.layers.BatchNormalization())
    False
    """
    return "_moments" in vars(layer)


def original_moments(layer):
    """The class's own `_moments(inputs, mask)` of the BatchNorm `layer`.

    Example:
        mean, variance = original_moments(bn)(inputs, None)
    """
    return layer._moments


def reduction_axes(layer):
    """The axes the BatchNorm `layer` reduces over (all but its `axis`).

    Set by `build` in `_reduction_axes`; no public attribute.

    Example:
    >>> import keras
    >>> bn = keras.layers.BatchNormalization(); bn.build((None, 4, 4, 3))
    >>> reduction_axes(bn)
    (0, 1, 2)
    """
    return tuple(layer._reduction_axes)


@contextlib.contextmanager
def grouped_convolutions_as_split():
    """Inside, TensorFlow traces a grouped convolution as split, one plain convolution per group, concatenate.

    Keras' TensorFlow backend runs a grouped convolution (`Conv2D(groups=G)`)
    inside an XLA-compiled `tf.function`, because TensorFlow has no CPU kernel
    for it; graph converters such as tf2onnx cannot read that call. The split
    form is the same function, made of ops every converter knows. No public
    API: this replaces `keras.src.backend.tensorflow.nn.conv` while the
    context is open (`tf.function`s traced inside keep the split form).

    Example:
        with grouped_convolutions_as_split():
            proto, _ = tf2onnx.convert.from_function(serve, input_signature=spec)
    """
    from keras.src.backend.tensorflow import nn as tf_nn

    plain_conv = tf_nn.conv

    def conv(inputs, kernel, strides=1, padding="valid", data_format=None, dilation_rate=1):
        import tensorflow as tf

        data_format = data_format or keras.config.image_data_format()
        axis = -1 if data_format == "channels_last" else 1
        groups = inputs.shape[axis] // kernel.shape[-2]
        if groups == 1:
            return plain_conv(inputs, kernel, strides, padding, data_format, dilation_rate)
        inputs_parts = tf.split(inputs, groups, axis=axis)
        parts = zip(inputs_parts, tf.split(kernel, groups, axis=-1), strict=True)
        outputs = [plain_conv(x, k, strides, padding, data_format, dilation_rate) for x, k in parts]
        return tf.concat(outputs, axis=axis)

    tf_nn.conv = conv
    try:
        yield
    finally:
        tf_nn.conv = plain_conv
